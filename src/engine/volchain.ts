/**
 * The library's front door: every CLI command (and later every API route) is one call here. Each mutating
 * call takes the VM's lock, refuses to run over an unfinished operation, reads the chain under the lock,
 * plans, and executes the plan with a journal. `dryRun` returns the plan without touching anything.
 */
import { randomUUID } from 'node:crypto';
import type { Backend, FinishRemovalsResult, PendingRemoval } from '../backends/backend.js';
import { createBackend } from '../backends/registry.js';
import {
  availableOnNode,
  defaultAllocFormat,
  describeStorage,
  findStorage,
  loadStorageConfig,
  type LoadOptions,
  type StorageConfig,
  type StorageDescription,
} from '../config/index.js';
import { InvalidInputError, LockedError, NotFoundError, NotSupportedError, PendingOperationError, VolchainError, asVolchainError } from '../errors.js';
import {
  formatVolid,
  isVolchainTemporaryName,
  nextFreeDiskName,
  parseSize,
  parseVmid,
  parseVolname,
  splitVolid,
  validateSnapshotName,
  validateVolumeName,
  type ImageFormat,
  type VolumeRef,
} from '../naming/index.js';
import { executePlan, type EngineEvent } from './run/executor.js';
import { Journal, journalLeftovers, pendingOperations, type JournalLeftover, type JournalRecord } from './run/journal.js';
import { acquireLock, lockTimeoutMs, type HeldLock } from './session/lock.js';
import { settingsEnv, type Settings } from '../settings.js';
import { refuseMissingVolume } from './session/refusals.js';
import { pendingFields } from './run/error-fields.js';
import { repairActions, repairRecord } from './run/repair-record.js';
import { vmOperationStopped } from './run/vm-failure.js';
import { finishDeferredRemovals, resolveWipeMode, type BackgroundWipeRunner, type WipeMode } from './run/wipe.js';
import { resolveShrinkFrozen, type ShrinkPolicy } from './plan/shrink-policy.js';
import { refuseNewBranch, resolveKeepBranches } from './plan/branch-policy.js';
import type { Plan } from '../model/plan.js';
import { planFree, planResize, planSnapshotCreate, planSnapshotDelete, planSnapshotRollback, type PlanContext } from './planners/offline.js';
import { layerFlags, treeLayerFlags, type LayerFlags, type LayerFlagsEntry } from './read/layer-guard.js';
import { ancestry, layer, readVolumeTree, snapshotLayers, type LayerNode, type ReadTreeOptions, type VolumeTree } from './read/volume-tree.js';
import { vmDisksFromConfig, vmDisksOnStorages, vmTarget, type VmTargetOptions } from './read/vm-disks.js';
import { listVolumeEntries, type VolumeListEntry } from './read/listing.js';
import type { VolumeSummary } from './read/volume-summary.js';
import { refuseFreeOfUsedBase, templateClones } from './read/templates.js';
import { estimatePlanSpace, layersFrozenBy, snapshotSpace, spaceEstimable } from './plan/space.js';
import { readQcow2Header } from '../qcow2/index.js';
import { checkImage } from '../tools/qemu-img.js';
import {
  attachInfo,
  liveSnapshotCreate,
  liveSnapshotDelete,
  openRepairSession,
  qemuArgs,
  refuseLiveRollback,
  type AttachInfo,
  type QemuArgs,
} from './live/operations.js';

export interface VolchainOptions {
  /**
   * Where removals left for after an operation run (LVM saferemove: zeroing and removing `del-` LVs):
   * 'background' (a detached `volchain wipe` process, as PVE forks a worker) or 'foreground' (before the
   * call returns). Default: $VOLCHAIN_WIPE, else 'background'.
   */
  wipe?: WipeMode;
  /**
   * How a background wipe is started (the CLI passes cli/wipe-runner.ts's spawnCliWiper: itself, detached).
   * Without one, 'background' wipes in the foreground too: the engine does not know how to start a wiper.
   */
  backgroundWipe?: BackgroundWipeRunner;
  /**
   * LVM: shrink a layer that becomes a snapshot to its image's end ('yes'), keep it full size as PVE does
   * ('no'), or 'auto': 'no' when the configuration is /etc/pve/storage.cfg (PVE commits into snapshot LVs
   * without growing them), else 'yes'. Default: $VOLCHAIN_LVM_SHRINK, else 'auto'. See engine/plan/shrink-policy.ts.
   */
  shrinkFrozen?: ShrinkPolicy;
  /** How long to wait for a VM's lock. Default: $VOLCHAIN_LOCK_TIMEOUT (read when a lock is taken), else 30 s. */
  lockTimeoutMs?: number;
  /** The environment's settings (src/settings.ts) the defaults above come from; without, process.env when needed. */
  settings?: Settings;
}

export interface WipeOptions {
  /** Only this storage (default: every storage). */
  storage?: string;
  /** Only removals of this VM. */
  vmid?: number;
  /** Also wait for removals another process is finishing now (and finish them if it dies). */
  wait?: boolean;
  onProgress?: (progress: PendingRemoval) => void;
  log?: (line: string) => void;
}

export interface CallOptions {
  dryRun?: boolean;
  onEvent?: (event: EngineEvent) => void;
  /**
   * QEMU's QMP socket when the VM runs: snapshot operations then act live (live.ts). Without it, a socket
   * `$VOLCHAIN_QMP_DIR/<vmid>.qmp` that answers counts the same.
   */
  qmp?: string;
  /** Aborting cancels a live operation's block job (the operation then fails, leaving a valid chain). */
  signal?: AbortSignal;
  /** Told what a VM-wide call skipped (a storage not available here, when searched without a VM config). */
  onWarning?: (message: string) => void;
}

/** What `activate`/`deactivate` did. */
export interface ActivationResult {
  volid: string;
  storage: string;
  /** The layers of the volume's chain (current layer first, then the snapshot layers by name). */
  layers: string[];
  /** The chain's state afterwards; null on storages whose layers need no activation (dir: nothing was done). */
  active: boolean | null;
}

export interface PendingSummary {
  operation: string;
  startedAt: string;
  pid: number;
  host: string;
}

export interface VolumeInfo extends VolumeSummary {
  path: string;
  /** An operation on this VM that is running now or was interrupted (then `repair` finishes it). */
  pendingOperation: PendingSummary | null;
  snapshotMode: 'volume-chain' | 'internal' | 'none';
  /** With `deep`: `qemu-img check` of every layer (run only after every header passed validation). */
  checks?: LayerCheck[];
  /** Snapshot the current layer continues from (volume-chain mode). */
  parentSnapshot: string | null;
  /** Every layer with QEMU's corrupt bit and its internal snapshots (engine/read/layer-guard.ts). */
  layers: LayerFlagsEntry[];
  /** A template's base volume: the volids of its linked clones ([] for other volumes). */
  clones: string[];
}

export interface LayerCheck {
  layer: string;
  snapshot: string | null;
  clean: boolean;
  corruptions: number;
  leaks: number;
  imageEndOffset: number | null;
}

export interface SnapshotEntry extends LayerFlags {
  name: string;
  layer: string;
  path: string;
  parent: string | null;
  children: string[];
  /** On the path from the current layer to the base: what the disk's current state builds on. */
  inCurrentChain: boolean;
  virtualSize: number;
  /**
   * Guest data the layer holds, from its L2 tables; null when the layer cannot be opened on this host (an
   * inactive LV, perhaps held by another host): its LV size is in usedBytes, but that is not its data.
   */
  definedBytes: number | null;
  usedBytes: number;
}

export interface SnapshotListing {
  volid: string;
  mode: 'volume-chain' | 'internal';
  current: { layer: string; path: string; parent: string | null; virtualSize: number; definedBytes: number | null; usedBytes: number } & LayerFlags;
  snapshots: SnapshotEntry[];
}

/** The name the current layer has in snapshot listings (reserved: no snapshot can be called that). */
export const CURRENT = 'current';

export class Volchain {
  private readonly backends = new Map<string, Backend>();

  /** Where removals left for after an operation (LVM saferemove's wipe) run: see VolchainOptions. */
  readonly wipeMode: WipeMode;
  private readonly backgroundWipe: BackgroundWipeRunner | undefined;
  /** LVM: frozen layers are shrunk to their image's end (see VolchainOptions.shrinkFrozen). */
  readonly shrinkFrozen: boolean;
  /** A rollback may keep newer snapshots as a branch (not next to PVE by default: engine/plan/branch-policy.ts). */
  readonly keepBranches: boolean;

  private readonly lockTimeoutMs: number | undefined;
  private readonly settings: Settings | undefined;

  constructor(
    readonly config: StorageConfig,
    options: VolchainOptions = {},
  ) {
    this.settings = options.settings;
    const env = options.settings && settingsEnv(options.settings); // undefined: the resolvers read process.env
    this.lockTimeoutMs = options.lockTimeoutMs;
    this.wipeMode = resolveWipeMode(options.wipe, env);
    this.backgroundWipe = options.backgroundWipe;
    this.shrinkFrozen = resolveShrinkFrozen(options.shrinkFrozen, config.source, env);
    this.keepBranches = resolveKeepBranches(config.source, env);
  }

  static async open(opts: LoadOptions = {}, options: VolchainOptions = {}): Promise<Volchain> {
    return new Volchain(await loadStorageConfig({ ...(options.settings ? { settings: options.settings } : {}), ...opts }), options);
  }

  storages(): StorageDescription[] {
    return this.config.storages.map((def) => describeStorage(def));
  }

  backend(storageId: string): Backend {
    const cached = this.backends.get(storageId);
    if (cached) return cached;
    const def = findStorage(this.config, storageId);
    if (def.disable) throw new NotSupportedError(`storage '${storageId}' is disabled in ${this.config.source}`);
    if (!def.content.includes('images')) {
      throw new NotSupportedError(`storage '${storageId}' does not allow VM disk images (content: ${def.content.join(',') || 'none'})`);
    }
    const backend = createBackend(def, { shrinkFrozen: this.shrinkFrozen });
    this.backends.set(storageId, backend);
    return backend;
  }

  resolve(volid: string): { backend: Backend; volume: VolumeRef } {
    const { storage, volname } = splitVolid(volid);
    const backend = this.backend(storage);
    return { backend, volume: parseVolname(backend.kind, storage, volname) };
  }

  // ---- volume lifecycle -------------------------------------------------------------------------------

  async alloc(storage: string, vmidText: string | number, size: string | number, opts: { name?: string; format?: ImageFormat } = {}): Promise<string> {
    const vmid = typeof vmidText === 'number' ? vmidText : parseVmid(vmidText);
    const sizeBytes = typeof size === 'number' ? size : parseSize(size);
    if (sizeBytes % 512 !== 0) throw new InvalidInputError(`size ${sizeBytes} is not a multiple of 512 bytes`);
    const backend = this.backend(storage);
    if (opts.format && !backend.capabilities.formats.includes(opts.format)) {
      throw new NotSupportedError(`storage '${storage}' cannot hold ${opts.format} volumes`);
    }
    let format: ImageFormat = opts.format ?? (opts.name === undefined ? defaultAllocFormat(backend.definition) : 'qcow2');
    if (opts.name !== undefined) {
      const named = validateVolumeName(backend.kind, vmid, opts.name);
      if (opts.format && named !== opts.format) {
        throw new InvalidInputError(`name '${opts.name}' says ${named} but --format says ${opts.format}`);
      }
      format = named;
    }
    return this.withVmLock(backend, vmid, 'alloc', async () => {
      const existing = await backend.listLayerNames(vmid);
      const name = opts.name ?? nextFreeDiskName(backend.kind, vmid, format, existing);
      await backend.createImage(vmid, name, format, sizeBytes);
      return formatVolid({ storage, kind: backend.kind, vmid, name });
    });
  }

  async free(volid: string, opts: CallOptions = {}): Promise<Plan> {
    const { backend, volume } = this.resolve(volid);
    await refuseFreeOfUsedBase(backend, volume, volid);
    return this.mutate(volid, 'free', opts, (tree) => planFree(tree));
  }

  /** Every volume of the storage; one that cannot be read is listed with its problem (listing.ts). */
  async list(storage: string, opts: { vmid?: number } = {}): Promise<VolumeListEntry[]> {
    const backend = this.backend(storage);
    const out = await listVolumeEntries(
      backend,
      opts.vmid,
      async (v) => summarize(backend, await this.readTree(backend, v, { allocation: false })),
      (v) => templateClones(backend, v),
    );
    // Removals a crashed run left unfinished (LVM: `del-` LVs nobody wipes) are finished from here too.
    await finishDeferredRemovals(backend, opts.vmid, this.wipeMode, this.config.source, this.backgroundWipe);
    return out;
  }

  async path(volid: string, opts: { snapshot?: string } = {}): Promise<string> {
    const { backend, volume } = this.resolve(volid);
    if (opts.snapshot === undefined) {
      if (!(await backend.statLayer(volume.vmid, volume.name))) await this.readTree(backend, volume, { allocation: false });
      return backend.layerPath(volume.vmid, volume.name);
    }
    validateSnapshotName(opts.snapshot);
    const tree = await this.readTree(backend, volume);
    if (!backend.capabilities.volumeChain) {
      const names = layer(tree, tree.current).header?.internalSnapshots.map((s) => s.name) ?? [];
      if (!names.includes(opts.snapshot)) throw new NotFoundError(`snapshot '${opts.snapshot}' of ${volid} does not exist`);
      return layer(tree, tree.current).path;
    }
    const node = snapshotLayers(tree).find((l) => l.snapshot === opts.snapshot);
    if (!node) throw new NotFoundError(`snapshot '${opts.snapshot}' of ${volid} does not exist`);
    return node.path;
  }

  async info(volid: string, opts: { deep?: boolean } = {}): Promise<VolumeInfo> {
    const { backend, volume } = this.resolve(volid);
    const tree = await this.readTree(backend, volume);
    const pending = (await pendingOperations(backend, { vmid: volume.vmid }))[0];
    const current = layer(tree, tree.current);
    const mode = volume.format !== 'qcow2' ? 'none' : backend.capabilities.volumeChain ? 'volume-chain' : 'internal';
    const parent = current.parent ? (layer(tree, current.parent).snapshot ?? null) : null;
    return {
      ...(await summarize(backend, tree)),
      path: current.path,
      pendingOperation: pending ? { operation: pending.plan.operation, startedAt: pending.startedAt, pid: pending.pid, host: pending.host } : null,
      snapshotMode: mode,
      parentSnapshot: parent,
      layers: treeLayerFlags(tree),
      clones: await templateClones(backend, volume),
      ...(opts.deep && volume.format === 'qcow2' ? { checks: await checkLayers(tree) } : {}),
    };
  }

  async resize(volid: string, size: string | number, opts: CallOptions = {}): Promise<Plan> {
    const sizeBytes = typeof size === 'number' ? size : parseSize(size);
    if (sizeBytes % 512 !== 0) throw new InvalidInputError(`size ${sizeBytes} is not a multiple of 512 bytes`);
    return this.mutate(volid, 'resize', opts, (tree, ctx) => planResize(tree, sizeBytes, ctx));
  }

  // ---- activation (LVM) -------------------------------------------------------------------------------

  /**
   * Makes every layer of the volume's chain usable on this host (LVM: activates the LVs, exclusively on a
   * shared VG, and checks their tags against the headers). Under the VM's lock, refused over an unfinished
   * operation. On storages without activation (dir) it only checks that the volume exists, as PVE does.
   */
  async activate(volid: string): Promise<ActivationResult> {
    const { backend, volume } = this.resolve(volid);
    await refuseMissingVolume(backend, volume.vmid, volume.name, volid);
    return this.withVmLock(backend, volume.vmid, 'activate', async () => {
      if (!(await backend.listLayerNames(volume.vmid)).includes(volume.name)) throw new NotFoundError(`volume ${volid} does not exist`);
      if (backend.activate) await backend.activate(volume.vmid, [volume.name]);
      // Read after activating: the headers of active layers are read, not their recorded copy.
      const tree = await readVolumeTree(backend, volume, { allocation: false });
      return { volid: tree.volid, storage: backend.id, layers: chainLayerNames(tree), active: backend.activate ? true : null };
    });
  }

  /**
   * Releases every layer of the volume's chain on this host (LVM: `lvchange -an`; fails, naming the LV, while
   * one is open, e.g. by a running VM). Same rules as activate; on dir storage nothing to do.
   */
  async deactivate(volid: string): Promise<ActivationResult> {
    const { backend, volume } = this.resolve(volid);
    await refuseMissingVolume(backend, volume.vmid, volume.name, volid);
    return this.withVmLock(backend, volume.vmid, 'deactivate', async () => {
      // Read before: a layer volchain made is read from its tags once inactive, but reading an untagged one
      // (made by PVE) on a local VG would activate it again.
      const tree = await readVolumeTree(backend, volume, { allocation: false });
      if (backend.deactivate) {
        try {
          await backend.deactivate(volume.vmid, [volume.name]);
        } catch (err) {
          const error = asVolchainError(err);
          throw new VolchainError(error.code, `cannot deactivate ${tree.volid}: ${error.message}`, { cause: err });
        }
      }
      return { volid: tree.volid, storage: backend.id, layers: chainLayerNames(tree), active: backend.deactivate ? false : null };
    });
  }

  // ---- snapshots of one volume ------------------------------------------------------------------------

  async snapshotCreate(volid: string, snapshot: string, opts: CallOptions = {}): Promise<Plan> {
    validateSnapshotName(snapshot);
    const live = await liveSnapshotCreate(this, { volid }, snapshot, opts);
    if (live) return live[0] as Plan;
    return this.mutate(volid, 'snapshot create', opts, (tree, ctx) => planSnapshotCreate(tree, ctx, snapshot));
  }

  async snapshotRollback(volid: string, snapshot: string, opts: CallOptions & { purgeNewer?: boolean } = {}): Promise<Plan> {
    validateSnapshotName(snapshot);
    await refuseLiveRollback(this, { volid }, opts);
    return this.mutate(volid, 'snapshot rollback', opts, (tree, ctx) =>
      refuseNewBranch(this.keepBranches, tree, planSnapshotRollback(tree, ctx, snapshot, { purgeNewer: opts.purgeNewer ?? false })),
    );
  }

  async snapshotDelete(volid: string, snapshot: string, opts: CallOptions = {}): Promise<Plan> {
    validateSnapshotName(snapshot);
    const live = await liveSnapshotDelete(this, { volid }, snapshot, opts);
    if (live) return live[0] as Plan;
    return this.mutate(volid, 'snapshot delete', opts, (tree, ctx) => planSnapshotDelete(tree, ctx, snapshot));
  }

  async snapshotList(volid: string): Promise<SnapshotListing> {
    const { backend, volume } = this.resolve(volid);
    // Read first: a volume that does not exist is "not found" whatever its name says about its format.
    const tree = await this.readTree(backend, volume);
    if (volume.format !== 'qcow2') {
      throw new NotSupportedError(`${volid} is a raw volume: snapshots need qcow2`);
    }
    const current = layer(tree, tree.current);
    // A qcow2 layer read from its header has its data counted; one known only from LV tags does not.
    const dataOf = (l: LayerNode): number | null => (l.header !== undefined ? l.definedBytes : null);
    const currentEntry = {
      layer: current.name,
      path: current.path,
      parent: current.parent ? (layer(tree, current.parent).snapshot ?? null) : null,
      virtualSize: current.virtualSize,
      definedBytes: dataOf(current),
      usedBytes: current.usedBytes,
      ...layerFlags(current),
    };
    if (!backend.capabilities.volumeChain) {
      const internal = current.header?.internalSnapshots ?? [];
      return {
        volid: tree.volid,
        mode: 'internal',
        current: currentEntry,
        snapshots: internal.map((s, i) => ({
          name: s.name,
          layer: current.name,
          path: current.path,
          parent: i > 0 ? (internal[i - 1]?.name ?? null) : null,
          children: [],
          inCurrentChain: true,
          virtualSize: s.virtualSize ?? current.virtualSize,
          definedBytes: 0,
          usedBytes: 0,
          // These are the internal snapshots themselves: they live in the current layer and hold none.
          corrupt: currentEntry.corrupt,
          internalSnapshots: [],
        })),
      };
    }
    const chain = new Set(ancestry(tree, tree.current).map((l) => l.name));
    const nameOf = (layerName: string): string => layer(tree, layerName).snapshot ?? CURRENT;
    const snapshots = snapshotLayers(tree)
      .map((l) => ({
        name: l.snapshot ?? '',
        layer: l.name,
        path: l.path,
        parent: l.parent ? nameOf(l.parent) : null,
        children: l.children.map(nameOf),
        inCurrentChain: chain.has(l.name),
        virtualSize: l.virtualSize,
        definedBytes: dataOf(l),
        usedBytes: l.usedBytes,
        ...layerFlags(l),
      }))
      .sort((a, b) => a.name.localeCompare(b.name));
    return { volid: tree.volid, mode: 'volume-chain', current: currentEntry, snapshots };
  }

  // ---- snapshots of every disk of a VM ----------------------------------------------------------------

  /**
   * All disks of `vmid` (optionally on one storage), in a stable order: the VM config's drives when it has
   * one (`vmConfig`, else /etc/pve/qemu-server/<vmid>.conf; see vm-disks.ts), else its volumes on the storages.
   */
  async vmVolumes(
    vmid: number,
    storage?: string,
    vmConfig?: string,
    onWarning?: (message: string) => void,
  ): Promise<{ backend: Backend; volume: VolumeRef }[]> {
    const fromConfig = await vmDisksFromConfig(this, vmid, { storage, vmConfig, ...(this.settings ? { settings: this.settings } : {}) });
    if (fromConfig) return fromConfig;
    // An unavailable storage the user did not name is skipped with a warning (vm-disks.ts).
    const out = await vmDisksOnStorages(this, vmid, this.imageStorageIds(storage), storage !== undefined, onWarning);
    if (out.length === 0) {
      throw new NotFoundError(`VM ${vmid} has no disks${storage !== undefined ? ` on storage '${storage}'` : ''}`);
    }
    return out;
  }

  /**
   * Snapshot of all disks at once: every disk is planned first (so bad input fails before anything
   * changes), then each is executed; if one fails, the disks already done get their snapshot taken back.
   */
  async vmSnapshot(vmidText: string | number, snapshot: string, opts: CallOptions & VmTargetOptions = {}): Promise<Plan[]> {
    validateSnapshotName(snapshot);
    const live = await liveSnapshotCreate(this, vmTarget(vmidText, opts), snapshot, opts);
    if (live) return live;
    return this.vmOperation(
      vmidText,
      opts,
      'vm snapshot',
      (tree, ctx) => planSnapshotCreate(tree, ctx, snapshot),
      async (done) => {
        for (const { backend, tree } of done.reverse()) {
          await this.undoSnapshotCreate(backend, tree.volume, snapshot);
        }
      },
    );
  }

  async vmRollback(vmidText: string | number, snapshot: string, opts: CallOptions & VmTargetOptions & { purgeNewer?: boolean } = {}): Promise<Plan[]> {
    validateSnapshotName(snapshot);
    await refuseLiveRollback(this, vmTarget(vmidText, opts), opts);
    return this.vmOperation(vmidText, opts, 'vm rollback', (tree, ctx) =>
      refuseNewBranch(this.keepBranches, tree, planSnapshotRollback(tree, ctx, snapshot, { purgeNewer: opts.purgeNewer ?? false })),
    );
  }

  async vmDeleteSnapshot(vmidText: string | number, snapshot: string, opts: CallOptions & VmTargetOptions = {}): Promise<Plan[]> {
    validateSnapshotName(snapshot);
    const live = await liveSnapshotDelete(this, vmTarget(vmidText, opts), snapshot, opts);
    if (live) return live;
    return this.vmOperation(vmidText, opts, 'vm delsnapshot', (tree, ctx) => planSnapshotDelete(tree, ctx, snapshot));
  }

  // ---- running VMs (live.ts) --------------------------------------------------------------------------

  /** `-blockdev` options that open the volumes' chains with volchain's node names (headers validated first). */
  qemuArgs(volids: readonly string[], opts: { driveIds?: readonly string[] } = {}): Promise<QemuArgs> {
    return qemuArgs(this, volids, opts);
  }

  /** Which QEMU block node uses which volume and layer of a running VM. */
  attachInfo(vmid: string | number, qmp?: string): Promise<AttachInfo> {
    return attachInfo(this, vmid, qmp);
  }

  /**
   * Runs `fn` holding VM `vmid`'s lock on every storage given, after refusing to start over an unfinished
   * operation there (for operations built outside this class: live.ts).
   */
  async withVmLocks<T>(backends: readonly Backend[], vmid: number, operation: string, fn: () => Promise<T>): Promise<T> {
    const locks: HeldLock[] = [];
    try {
      const unique = uniqueBackends(backends.map((backend) => ({ backend })));
      locks.push(...(await this.lockVmOn(unique, vmid, operation)));
      for (const backend of unique) await refusePending(backend, vmid);
      return await fn();
    } finally {
      for (const lock of locks.reverse()) await lock.release();
    }
  }

  // ---- crash recovery ---------------------------------------------------------------------------------

  /**
   * Finishes unfinished removals (LVM saferemove: zeroes and removes the `del-` LVs) here and now, each
   * under its own lock; without `wait`, the ones another process is finishing are returned as busy.
   */
  async wipe(opts: WipeOptions = {}): Promise<FinishRemovalsResult> {
    const out: FinishRemovalsResult = { finished: [], busy: [], waited: [] };
    const ids = this.imageStorageIds(opts.storage);
    for (const id of ids) {
      const backend = this.backend(id);
      if (!backend.finishRemovals) continue;
      let r: FinishRemovalsResult;
      try {
        r = await backend.finishRemovals({
          ...(opts.vmid !== undefined ? { vmid: opts.vmid } : {}),
          wait: opts.wait ?? false,
          ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
          ...(opts.log ? { log: opts.log } : {}),
        });
      } catch (err) {
        // Every storage: one whose VG is not on this host has nothing to wipe here.
        if (opts.storage === undefined && err instanceof NotFoundError) continue;
        throw err;
      }
      out.finished.push(...r.finished);
      out.busy.push(...r.busy);
      out.waited.push(...r.waited);
    }
    return out;
  }

  /** Removals not finished yet (LVM saferemove: `del-` LVs being wiped or waiting for a wiper). */
  async pendingRemovals(): Promise<PendingRemoval[]> {
    const out = new Map<string, PendingRemoval>();
    for (const id of this.imageStorageIds()) {
      const backend = this.backend(id);
      // Two storages may name one VG: each LV once.
      for (const r of (await backend.pendingRemovals?.()) ?? []) if (!out.has(r.path)) out.set(r.path, r);
    }
    return [...out.values()];
  }

  /** Journal files set aside as unreadable, and temp files of interrupted journal writes, for `status`. */
  journalLeftovers(): Promise<JournalLeftover[]> {
    return journalLeftovers(this.imageStorageIds().map((id) => this.backend(id)));
  }

  async status(): Promise<(JournalRecord & { volid: string })[]> {
    const out: (JournalRecord & { volid: string })[] = [];
    for (const id of this.imageStorageIds()) {
      for (const record of await pendingOperations(this.backend(id))) out.push({ ...record, volid: record.plan.volid });
    }
    return out;
  }

  /**
   * Finishes interrupted operations (every step can be redone safely, so repair always completes what was
   * started), then deals with temporary layers that no journal explains.
   */
  async repair(target: { volid?: string }, opts: CallOptions = {}): Promise<{ volid: string; actions: string[] }[]> {
    const results: { volid: string; actions: string[] }[] = [];
    const unreadable: string[] = [];
    // Each storage's journals are read once (on LVM that means reading, maybe activating, journal LVs).
    const targets: { backend: Backend; vmids: number[]; records: JournalRecord[] }[] = [];
    if (target.volid !== undefined) {
      const { backend, volume } = this.resolve(target.volid);
      targets.push({ backend, vmids: [volume.vmid], records: await pendingOperations(backend, { forRepair: true, vmid: volume.vmid }) });
    } else {
      for (const id of this.imageStorageIds()) {
        const backend = this.backend(id);
        const records = await pendingOperations(backend, { forRepair: true });
        // A journal can outlive every layer of its VM (an interrupted free): its VM still needs repair.
        const journaled = [...records.map((r) => r.plan.vmid), ...((await backend.journal().containerVmids?.()) ?? [])];
        targets.push({ backend, vmids: [...new Set([...(await backend.listVmids()), ...journaled])], records });
      }
    }
    for (const { backend, vmids, records } of targets) {
      for (const record of records) {
        if (target.volid !== undefined && record.plan.volid !== target.volid && record.group === undefined) continue;
        if (record.summaryOnly) {
          // Its steps are in a journal this host cannot read now (an LV another host holds): nothing to redo.
          unreadable.push(
            `${record.plan.operation} of ${record.plan.volid} (started ${record.startedAt} by pid ${record.pid} on ${record.host}): ${record.error ?? 'its journal is not readable on this host'}`,
          );
          continue;
        }
        results.push({ volid: record.plan.volid, actions: repairActions(record) });
        if (opts.dryRun) continue;
        await this.withLock(backend, record.plan.vmid, 'repair', async () => {
          // A live plan finishes through its QEMU if that still runs, else with the offline equivalents.
          const live = record.plan.live ? await openRepairSession(record.plan, opts.qmp) : undefined;
          try {
            await repairRecord(backend, record, live);
          } finally {
            await live?.client.close();
          }
        });
      }
      for (const vmid of vmids) {
        const actions = await this.repairLeftovers(backend, vmid, opts.dryRun ?? false);
        results.push(...actions);
      }
    }
    if (unreadable.length > 0) {
      // Everything else was repaired; these need the host that holds their journal to let go of it.
      throw new LockedError(
        `could not finish ${unreadable.length} interrupted operation(s) from here: ${unreadable.map((u) => u.replace(/\.+$/, '')).join('; ')}. ` +
          'If that host is alive the operation may still be running there; otherwise wait for its locks to expire and run repair again',
      );
    }
    return results;
  }

  /**
   * Temporary layers with no journal (the journal was lost, or a crash hit before it was written). A
   * temporary is never anyone's backing file, so it can go, unless the volume's own name is missing: then
   * it is the volume's new top and takes that name.
   */
  private async repairLeftovers(backend: Backend, vmid: number, dryRun: boolean): Promise<{ volid: string; actions: string[] }[]> {
    const out: { volid: string; actions: string[] }[] = [];
    return this.withLock(backend, vmid, 'repair', async () => {
      if ((await pendingOperations(backend, { vmid, forRepair: true })).length > 0) return out;
      // A journal container a crash left empty (created, never written) explains nothing: it goes too.
      for (const gone of (await backend.journal().sweep?.(vmid, dryRun)) ?? []) {
        out.push({ volid: `${backend.id}:vm-${vmid}`, actions: [`remove ${gone}`] });
      }
      const names = await backend.listLayerNames(vmid);
      for (const name of names) {
        const tmp = isVolchainTemporaryName(name, backend.kind);
        if (!tmp) continue;
        const volid = formatVolid({ storage: backend.id, kind: backend.kind, vmid, name: tmp.volumeName });
        const hasVolume = names.includes(tmp.volumeName);
        let adopt = false;
        if (!hasVolume) {
          // LVs may be inactive (after a reboot): make the temporary readable before looking inside it.
          await backend.activate?.(vmid, [name]);
          const backing = (await readQcow2Header(backend.layerPath(vmid, name), name)).backingFile;
          adopt = backing !== undefined && names.includes(backing);
        }
        const action = adopt ? `rename ${name} -> ${tmp.volumeName} (the volume's top was left under its temporary name)` : `remove stray temporary ${name}`;
        out.push({ volid, actions: [action] });
        if (dryRun) continue;
        if (adopt) await backend.renameLayer(vmid, name, tmp.volumeName);
        else await backend.removeLayer(vmid, name);
      }
      return out;
    });
  }

  /** Like readVolumeTree, but says so when an operation on the VM is running or was interrupted. */
  private async readTree(backend: Backend, volume: VolumeRef, opts: ReadTreeOptions = {}): Promise<VolumeTree> {
    try {
      return await readVolumeTree(backend, volume, opts);
    } catch (err) {
      const pending = await pendingOperations(backend, { vmid: volume.vmid });
      // The operation on this very volume if there is one (a VM may have several disks mid-operation).
      const first = pending.find((r) => r.plan.volid === formatVolid(volume)) ?? pending[0];
      if (!first) throw err;
      throw new PendingOperationError(
        `${formatVolid(volume)} is in the middle of a ${first.plan.operation} (started ${first.startedAt} by pid ` +
          `${first.pid} on ${first.host}): wait for it, or if that process is gone run 'volchain repair ${first.plan.volid}'`,
        { fields: pendingFields(first), outcome: 'needs-repair' },
      );
    }
  }

  // ---- internals --------------------------------------------------------------------------------------

  private ctx(backend: Backend): PlanContext {
    return { kind: backend.kind, volumeChain: backend.capabilities.volumeChain, fixedSizeLayers: backend.capabilities.fixedSizeLayers };
  }

  private async mutate(volid: string, operation: string, opts: CallOptions, plan: (tree: VolumeTree, ctx: PlanContext) => Plan): Promise<Plan> {
    const { backend, volume } = this.resolve(volid);
    if (opts.dryRun) {
      // What the real run would say: it refuses over an unfinished operation (exit 7).
      await refusePending(backend, volume.vmid);
      const tree = await this.readTree(backend, volume);
      return withSpace(backend, tree, plan(tree, this.ctx(backend)));
    }
    // A command refused for a volume that is not there leaves no trace (not even the VM's lock file). When
    // the storage cannot be looked at now, the locked path below reports why, as before. A volume missing
    // while an operation on its VM is journaled may only be mid-operation (a snapshot create renames the top
    // away for a moment): then the locked path waits for that operation instead of refusing over it.
    if (!(await backend.statLayer(volume.vmid, volume.name).catch(() => true)) && (await pendingOperations(backend, { vmid: volume.vmid })).length === 0) {
      await this.readTree(backend, volume);
    }
    return this.withVmLock(backend, volume.vmid, operation, async () => {
      const p = plan(await readVolumeTree(backend, volume), this.ctx(backend));
      await executePlan(backend, p, opts.onEvent ? { onEvent: opts.onEvent } : {});
      return p;
    });
  }

  private async vmOperation(
    vmidText: string | number,
    opts: CallOptions & VmTargetOptions,
    operation: string,
    plan: (tree: VolumeTree, ctx: PlanContext) => Plan,
    undo?: (done: { backend: Backend; tree: VolumeTree }[]) => Promise<void>,
  ): Promise<Plan[]> {
    const vmid = typeof vmidText === 'number' ? vmidText : parseVmid(vmidText);
    const disks = await this.vmVolumes(vmid, opts.storage, opts.vmConfig, opts.onWarning);
    const locks: HeldLock[] = [];
    try {
      const backends = uniqueBackends(disks);
      if (!opts.dryRun) locks.push(...(await this.lockVmOn(backends, vmid, operation)));
      // Dry runs too: a disk whose top an unfinished operation renamed away is not even listed.
      for (const backend of backends) await refusePending(backend, vmid);
      const planned: { backend: Backend; tree: VolumeTree; plan: Plan }[] = [];
      for (const { backend, volume } of disks) {
        const tree = await readVolumeTree(backend, volume);
        planned.push({ backend, tree, plan: plan(tree, this.ctx(backend)) });
      }
      if (opts.dryRun) {
        const out: Plan[] = [];
        for (const p of planned) out.push(await withSpace(p.backend, p.tree, p.plan));
        return out;
      }
      // Every disk's plan is journaled before any of them runs: after a crash, repair finishes all of them,
      // so a VM-wide operation never stays done on some disks only.
      const group = randomUUID();
      const journals: Journal[] = [];
      for (const p of planned) journals.push(await Journal.begin(p.backend.journal(), p.backend.id, p.plan, group));
      const done: { backend: Backend; tree: VolumeTree }[] = [];
      for (const [i, p] of planned.entries()) {
        try {
          const keep = { keepJournalWhenUndone: !undo };
          await executePlan(p.backend, p.plan, { ...(opts.onEvent ? { onEvent: opts.onEvent } : {}), journal: journals[i] as Journal, ...keep });
        } catch (err) {
          const error = asVolchainError(err);
          if (!undo)
            throw vmOperationStopped(
              operation,
              vmid,
              p.plan.volid,
              done.map((d) => d.tree.volid),
              planned.slice(i).map((q) => q.plan.volid),
              err,
            );
          for (const j of journals.slice(i + 1)) await j.finish();
          try {
            await undo(done);
          } catch (undoErr) {
            throw new VolchainError(error.code, `${error.message}; undoing the other disks also failed: ${asVolchainError(undoErr).message}`);
          }
          const others = done.length > 0 ? `; the ${done.length} disk(s) already done were restored` : '';
          throw new VolchainError(error.code, `${operation} of VM ${vmid} failed on ${p.plan.volid}: ${error.message}${others}`, { cause: err });
        }
        done.push(p);
      }
      return planned.map((p) => p.plan);
    } finally {
      for (const lock of locks.reverse()) await lock.release();
    }
  }

  /** Takes back a snapshot just created (its new top is still empty): the frozen layer becomes current again. */
  private async undoSnapshotCreate(backend: Backend, volume: VolumeRef, snapshot: string): Promise<void> {
    const tree = await readVolumeTree(backend, volume);
    const ctx = this.ctx(backend);
    const p = planSnapshotDelete(tree, ctx, snapshot);
    await executePlan(backend, p);
  }

  /** VM `vmid`'s lock on the place `backends` share (their one lockFile). */
  private async lockVm(backends: readonly Backend[], vmid: number, operation: string): Promise<HeldLock> {
    const lock = await acquireLock(
      (backends[0] as Backend).lockFile(vmid),
      operation,
      this.lockTimeoutMs ?? (this.settings && lockTimeoutMs(settingsEnv(this.settings))),
    );
    return {
      path: lock.path,
      release: async () => {
        await lock.release();
        // What the operation left for later (LVM saferemove's wipe) takes long and needs no lock of the VM.
        for (const backend of backends) await finishDeferredRemovals(backend, vmid, this.wipeMode, this.config.source, this.backgroundWipe);
      },
    };
  }

  /**
   * VM `vmid`'s locks for several storages: each lock file once (storage ids naming one VG or directory share
   * it, and a second flock of it would wait for the first), in path order so that two callers never wait
   * for each other in a cycle. All or none: what was taken is released when one cannot be.
   */
  private async lockVmOn(backends: readonly Backend[], vmid: number, operation: string): Promise<HeldLock[]> {
    const byFile = new Map<string, Backend[]>();
    for (const backend of backends) {
      const file = backend.lockFile(vmid);
      byFile.set(file, [...(byFile.get(file) ?? []), backend]);
    }
    const held: HeldLock[] = [];
    try {
      for (const file of [...byFile.keys()].sort()) held.push(await this.lockVm(byFile.get(file) as Backend[], vmid, operation));
      return held;
    } catch (err) {
      for (const lock of held.reverse()) await lock.release();
      throw err;
    }
  }

  /** `only`, else every storage that holds VM images. */
  private imageStorageIds(only?: string): string[] {
    return only !== undefined ? [only] : this.config.storages.filter(usableForImages).map((s) => s.id);
  }

  private async withLock<T>(backend: Backend, vmid: number, operation: string, fn: () => Promise<T>): Promise<T> {
    const lock = await this.lockVm([backend], vmid, operation);
    try {
      return await fn();
    } finally {
      await lock.release();
    }
  }

  /** Like withLock, and refuses to act over an unfinished operation on the same VM. */
  private async withVmLock<T>(backend: Backend, vmid: number, operation: string, fn: () => Promise<T>): Promise<T> {
    return this.withLock(backend, vmid, operation, async () => {
      await refusePending(backend, vmid);
      return fn();
    });
  }
}

async function checkLayers(tree: VolumeTree): Promise<LayerCheck[]> {
  const out: LayerCheck[] = [];
  for (const node of [...tree.layers.values()].sort((a, b) => a.name.localeCompare(b.name))) {
    const r = await checkImage(node.path);
    out.push({
      layer: node.name,
      snapshot: node.snapshot ?? null,
      clean: r.clean,
      corruptions: r.corruptions,
      leaks: r.leaks,
      imageEndOffset: r.imageEndOffset ?? null,
    });
  }
  return out;
}

async function refusePending(backend: Backend, vmid: number): Promise<void> {
  const first = (await pendingOperations(backend, { vmid }))[0];
  if (first) {
    throw new PendingOperationError(
      `VM ${vmid} on storage '${backend.id}' has an unfinished ${first.plan.operation} of ${first.plan.volid} ` +
        `(started ${first.startedAt} by pid ${first.pid} on ${first.host}); run 'volchain repair ${first.plan.volid}'`,
      { fields: pendingFields(first), outcome: 'needs-repair' },
    );
  }
}

function usableForImages(def: StorageConfig['storages'][number]): boolean {
  return def.supported && !def.disable && def.content.includes('images') && availableOnNode(def);
}

function uniqueBackends(disks: { backend: Backend }[]): Backend[] {
  return [...new Map(disks.map((d) => [d.backend.id, d.backend])).values()].sort((a, b) => a.id.localeCompare(b.id));
}

/** The current layer, then the snapshot layers by name. */
function chainLayerNames(tree: VolumeTree): string[] {
  return [
    tree.current,
    ...snapshotLayers(tree)
      .map((l) => l.name)
      .sort(),
  ];
}

/**
 * Full sizes of layers of these virtual sizes, from a backend with fixed-size layers (one `qemu-img measure`
 * per distinct size, cached); undefined for storages whose layers grow on demand.
 */
async function fullSizes(backend: Backend, virtualSizes: readonly number[]): Promise<((virtualSize: number) => number) | undefined> {
  if (!backend.fullLayerBytes) return undefined;
  const sizes = new Map<number, number>();
  for (const v of virtualSizes) if (!sizes.has(v)) sizes.set(v, await backend.fullLayerBytes(v));
  return (v) => {
    const bytes = sizes.get(v);
    if (bytes === undefined) throw new VolchainError('INTERNAL', `no full layer size measured for ${v} bytes`);
    return bytes;
  };
}

/**
 * A dry run's plan with its space estimate (space.ts) when the backend has fixed-size layers and the plan is
 * one the estimate covers (a snapshot create); otherwise the plan as it is.
 */
async function withSpace(backend: Backend, tree: VolumeTree, plan: Plan): Promise<Plan> {
  if (!backend.fullLayerBytes || !spaceEstimable(plan)) return plan;
  const full = await fullSizes(
    backend,
    plan.steps.flatMap((s) => (s.kind === 'create-overlay' ? [s.sizeBytes] : [])),
  );
  const frozen = new Map<string, number | undefined>();
  for (const name of layersFrozenBy(plan)) frozen.set(name, await backend.frozenLayerBytes?.(tree.volume.vmid, name));
  const space = estimatePlanSpace(plan, {
    fullLayerBytes: (v) => (full ? full(v) : 0),
    layerBytes: (name) => tree.layers.get(name)?.usedBytes,
    frozenLayerBytes: (name) => frozen.get(name),
  });
  return space ? { ...plan, space } : plan;
}

async function summarize(backend: Backend, tree: VolumeTree): Promise<VolumeSummary> {
  const volumeChain = backend.capabilities.volumeChain;
  const current = layer(tree, tree.current);
  const snapshots = volumeChain
    ? snapshotLayers(tree)
        .map((l) => l.snapshot ?? '')
        .sort()
    : (current.header?.internalSnapshots.map((s) => s.name) ?? []);
  // Internal snapshots live inside the current layer: no layer of their own, counted in usedBytes.
  const frozen = volumeChain ? snapshotLayers(tree) : [];
  const space = snapshotSpace(
    frozen,
    await fullSizes(
      backend,
      frozen.map((l) => l.virtualSize),
    ),
  );
  return {
    volid: tree.volid,
    storage: tree.volume.storage,
    vmid: tree.volume.vmid,
    name: tree.volume.name,
    format: tree.volume.format,
    virtualSize: current.virtualSize,
    usedBytes: current.usedBytes,
    chainUsedBytes: [...tree.layers.values()].reduce((sum, l) => sum + l.usedBytes, 0),
    snapshotBytes: space.snapshotBytes,
    fullSizeSnapshotBytes: space.fullSizeSnapshotBytes,
    snapshots,
    template: tree.volume.template === true,
    base: tree.base?.volid ?? null,
  };
}
