/**
 * Thick LVM storage (a volume group, possibly shared by several hosts over a SAN): one LV per layer, named
 * exactly as Proxmox VE 9 names them (DESIGN.md section 2): the volume `vm-<vmid>-disk-<n>.qcow2`, snapshot S's
 * layer `snap_vm-<vmid>-disk-<n>_S.qcow2`, each qcow2 header naming its parent LV (resolved in /dev/<vg>/).
 * The engine's planners, executor and journal drive it through the Backend primitives; nothing here knows
 * about snapshots as operations.
 *
 * Sizing (DESIGN.md section 4). A thick LV cannot grow on demand, so:
 * - every writable qcow2 layer (a volume's current layer, a new top) is an LV of the fully-allocated size
 *   `qemu-img measure` gives for its virtual size, rounded up to the VG's extent: a guest that writes its
 *   whole disk never meets ENOSPC;
 * - a raw volume's LV is its virtual size rounded up to an extent (the LV size is the disk size);
 * - free space is checked in bytes before every lvcreate/lvextend; NoSpaceError says how much is missing;
 * - a frozen layer (a snapshot) is never written again, so `settleFrozen` shrinks its LV to the image's end
 *   (`qemu-img check` image-end-offset, rounded up to an extent); `prepareGrow` grows it back to the fully
 *   allocated size before anything writes into it (commit into it, or a rebase that copies data into it).
 *   The space a volume's snapshots take is `snapshotBytes` in `list`/`info`, next to `fullSizeSnapshotBytes`
 *   (the same layers at full size, as PVE 9 keeps them); a dry run of a snapshot shows both ways (space.ts).
 *
 * Metadata without activation. Every layer carries tags (backends/lvm/tags.ts): `pve-vm-<vmid>`, its volume, its
 * parent's LV name and its virtual size. `statLayer` reports them as `recorded` and says whether the LV is
 * active here (`readable`), so `list`, `info` and `snapshot list` read a chain from `lvs` alone, without
 * activating anything (on a shared VG another host may hold the LVs). Active layers are read from their
 * qcow2 headers (the truth), and `activate` (run by the executor before every plan) checks the tags against
 * the headers, corrects drift, and refuses a plan that was made from drifted tags. On a VG that is not
 * shared, a layer that carries no tags (made by PVE) and is inactive is activated to be read: nothing else
 * can read it, and activation on a local VG is invisible to other hosts.
 *
 * Selection: LVs are always named exactly (`vg/lv`), or chosen by exact volume tag; never by an LVM tag
 * expression (`@pve-vm-100` would also match LVs of other VGs, PVE bug 7143) nor by name prefix (`disk-1`
 * must never select `disk-11`'s layers).
 *
 * Activation: `lvcreate -aly -Wy --setautoactivation n --addtag pve-vm-<vmid>` as PVE 9 does (on a shared VG
 * `-aey`). `activate(vmid, layers)` activates every layer of the volumes named (a chain is only usable
 * whole); on a shared VG exclusively (`lvchange -aey`). See "Shared VGs" below.
 *
 * Renames. `lvrename` never replaces an existing LV, so `replaceLayer(from, to)` removes `to` first, then
 * renames `from` to `to` (with saferemove: renames `to` to `del-<to>`, then `from` to `to`, so the volume's
 * name is missing only between two renames). If the process dies after the first command, redoing the step
 * (repair) finds `from` still there and carries on (`to` is gone already); after the rename, the executor's
 * redo sees `from` gone and stops.
 *
 * saferemove (storage option), as PVE does it (rename in the operation, a forked worker zeroes and removes).
 * `removeLayer` (and `replaceLayer` for the old `to`) only renames the LV to `del-<lv>`, keeping volchain's
 * tags (an untagged LV made by PVE gets `volchain.removing` first): the volume is gone for everyone at once
 * and the step ends quickly. If `del-<lv>` still exists (an earlier removal of that name is still being
 * wiped) the name is `del-<n>-<lv>`. The engine takes `deferredRemovals` once the VM's lock is released and
 * has them finished (`finishRemovals`), by default in a detached `volchain wipe` process (or in the
 * foreground, engine/run/wipe.ts): zeroing in chunks (`blkdiscard --zeroout -o -l`, else `dd` with O_DIRECT; at
 * most `saferemove_throughput` bytes/s when set), each flushed and then recorded in a progress file, then
 * `lvremove`. A per-LV flock (held also by the zeroing command, so a wiper killed mid-chunk keeps others
 * out until that chunk ends) keeps two wipers off one LV; a wipe that was killed continues at the recorded
 * offset. A `del-` LV with volchain's tags that nobody wipes (its wiper or the renaming run died) is handed
 * out by the next `deferredRemovals` that sees it: after `list` and after every operation on its VM; `volchain
 * wipe` finishes it at any time. `del-` LVs made by PVE itself (no volchain tags) are left to PVE.
 *
 * Journal and locks. Operation journals live on the VG (backends/lvm/journal.ts): a small LV `volchain-journal-<vmid>`
 * exists while an operation on that VM runs or after it was interrupted, tagged with what the operation is,
 * so every host sees it in `lvs` and the host that repairs it reads the steps from the LV. Only when the VG
 * has no room for that LV do the records go to the local state directory. Locks are host-local flock(2)s
 * per VM and VG (`lockFile()`, under `$VOLCHAIN_STATE_DIR`, default `/var/lib/volchain`); across hosts, see
 * below.
 *
 * Shared VGs (storage option `shared 1`, or a VG with an lvmlockd lock type). Cluster safety comes from an
 * existing lock manager, not a home-made one:
 * - with lvmlockd (VG lock type sanlock or dlm), LVM takes the cluster locks itself: every activation here
 *   is exclusive (`-aey`), and LVM refuses a second host's exclusive activation of an LV another host holds;
 *   since `activate` runs before every plan and covers every layer of the volume, two hosts can never run
 *   operations on one volume at the same time, and metadata changes (lvcreate/lvrename/lvremove) are
 *   serialised by lvmlockd's VG lock;
 * - without lvmlockd (PVE's own model), volchain assumes what PVE assumes: the cluster's lock service
 *   (pmxcfs' storage lock in PVE) serialises callers across hosts; volchain's per-VM flock is host-local.
 */
import { randomUUID } from 'node:crypto';
import { statSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { LvmStorage } from '../../config/index.js';
import {
  AlreadyExistsError,
  CorruptImageError,
  InvalidInputError,
  LockedError,
  NoSpaceError,
  NotFoundError,
  NotSupportedError,
  VolchainError,
  asVolchainError,
} from '../../errors.js';
import { isVolchainTemporaryName, lvmLayerPath, parseVolname, snapshotOfLayerName, type ImageFormat, type VolumeRef } from '../../naming/index.js';
import { readQcow2Header, validateLayerHeader, type Qcow2Header } from '../../qcow2/index.js';
import * as lvm from '../../tools/lvm.js';
import { measureFullyAllocated } from '../../tools/lvm-measure.js';
import * as qemuImg from '../../tools/qemu-img.js';
import type {
  Backend,
  BackendCapabilities,
  FinishedRemoval,
  FinishRemovalsOptions,
  FinishRemovalsResult,
  LayerRecord,
  LayerStat,
  PendingRemoval,
} from '../backend.js';
import { checkLvDevice } from './device.js';
import { withFileLock } from './flock.js';
import {
  chunkSizeFor,
  listWipeProgress,
  parseThroughput,
  planChunks,
  readWipeProgress,
  removeWipeProgress,
  resumeOffset,
  throttleDelayMs,
  wiperAlive,
  writeWipeProgress,
  type WipeProgress,
} from './wipe.js';
import { LvmJournalStore, vmidOfJournalLv, type JournalVolumeGroup } from './journal.js';
import { FileJournalStore } from '../../journal/file-store.js';
import type { JournalStore } from '../../journal/record.js';
import {
  REMOVING_TAG,
  TAG_PREFIX,
  deletionName,
  isVolchainDeletion,
  isVolumeLv,
  layerTags,
  layersOfVolumes,
  tagChanges,
  trustedLayerTags,
  volumesOfLv,
} from './tags.js';
import { attributeLayers } from './owners.js';
import { currentSettings } from '../../settings.js';

/**
 * How long an `lvs` report may serve `statLayer` and the primitives. Operations run under the VM's lock, so
 * nobody else changes the VM's LVs meanwhile, and this process keeps the report current for what it
 * changes itself; a report never survives a hand-over of the VM's lock (see reportFor).
 */
const REPORT_MAX_AGE_MS = 60_000;
/** A report this young is reused by a listing (list reads each volume right after listing the VG). */
const LISTING_REUSE_MS = 1_000;
/** ... and by activate, which runs right after the tree was read (see there). */
const ACTIVATE_REUSE_MS = 3_000;

interface Report {
  vg: lvm.VgInfo;
  rows: Map<string, lvm.LvRow>;
  takenAtMs: number;
}

export const DEFAULT_STATE_ROOT = '/var/lib/volchain';

export class LvmBackend implements Backend {
  readonly kind = 'lvm' as const;
  readonly capabilities: BackendCapabilities;
  /** Thick LVs need no preallocation: the LV is the space. */
  readonly preallocation = undefined;
  private report: Report | undefined;
  /** Layers statLayer reported as unreadable (a plan may have been made from their tags). */
  private readonly servedFromTags = new Set<string>();
  /** `del-` LVs renamed (or found unfinished) here, to be wiped once the operation is over. */
  private readonly deferred = new Set<string>();
  private journalStore: JournalStore | undefined;

  /** Shrink layers that became snapshots (off next to PVE, which commits into them without growing them). */
  private readonly shrinkFrozen: boolean;

  constructor(
    readonly definition: LvmStorage,
    opts: { shrinkFrozen?: boolean } = {},
  ) {
    this.shrinkFrozen = opts.shrinkFrozen ?? true;
    this.capabilities = {
      volumeChain: definition.snapshotAsVolumeChain,
      // PVE 9 allows qcow2 on LVM only with snapshot-as-volume-chain.
      formats: definition.snapshotAsVolumeChain ? ['qcow2', 'raw'] : ['raw'],
      shared: definition.shared,
      fixedSizeLayers: true,
    };
  }

  get id(): string {
    return this.definition.id;
  }

  get vg(): string {
    return this.definition.vgname;
  }

  // ---- reading ----------------------------------------------------------------------------------------

  async listVolumes(vmid?: number): Promise<VolumeRef[]> {
    // `del-` LVs left unfinished are picked up from this report by deferredRemovals (the caller's next step).
    const volumes: VolumeRef[] = [];
    for (const name of (await this.forListing()).rows.keys()) {
      let volume: VolumeRef;
      try {
        volume = parseVolname('lvm', this.id, name);
      } catch {
        continue; // snapshot layers, del- LVs, temporaries and LVs that are not VM disks
      }
      if (vmid === undefined || volume.vmid === vmid) volumes.push(volume);
    }
    return volumes.sort((a, b) => a.vmid - b.vmid || a.name.localeCompare(b.name, 'en', { numeric: true }));
  }

  /**
   * The VG's LVs that belong to `vmid`: tagged `pve-vm-<vmid>`, or with `vm-<vmid>-` in the name (volumes,
   * snapshot layers, temporaries, `del-` LVs still being wiped: name allocation must see them all).
   */
  async listLayerNames(vmid: number): Promise<string[]> {
    return [...(await this.reportFor(vmid, LISTING_REUSE_MS)).rows.values()].filter((r) => vmidsOfLv(r).includes(vmid)).map((r) => r.name);
  }

  async listVmids(): Promise<number[]> {
    const ids = new Set<number>();
    for (const row of (await this.forListing()).rows.values()) for (const id of vmidsOfLv(row)) ids.add(id);
    return [...ids].sort((a, b) => a - b);
  }

  layerPath(_vmid: number, layerName: string): string {
    return lvmLayerPath(this.vg, layerName);
  }

  async statLayer(vmid: number, layerName: string): Promise<LayerStat | undefined> {
    const report = await this.reportFor(vmid, REPORT_MAX_AGE_MS);
    const row = report.rows.get(layerName);
    if (!row) return undefined;
    const stat: LayerStat = { usedBytes: row.sizeBytes, identity: row.uuid };
    const recorded = recordOf(row);
    if (recorded) stat.recorded = recorded;
    if (!row.active) {
      if (!recorded && !this.exclusive(report)) {
        // A layer without tags (made by PVE) on a VG only this host uses: activate it to read its header.
        await this.activateRows(report, [row]);
      } else {
        stat.readable = false;
        this.servedFromTags.add(layerName);
      }
    }
    if (row.active) this.checkDevice(row);
    return stat;
  }

  // ---- creating -----------------------------------------------------------------------------------------

  async createImage(vmid: number, layerName: string, format: ImageFormat, sizeBytes: number): Promise<void> {
    if (format === 'qcow2' && !this.capabilities.volumeChain) {
      throw new NotSupportedError(`storage '${this.id}' holds qcow2 volumes only with 'snapshot-as-volume-chain 1' (as Proxmox VE 9): allocate a raw volume`);
    }
    if (!isVolumeLv(layerName, vmid)) throw new InvalidInputError(`${layerName} is not a volume name of VM ${vmid}`);
    const report = await this.fresh();
    const lvSize = format === 'raw' ? lvm.roundUpTo(sizeBytes, report.vg.extentSizeBytes) : await this.fullSize(report, sizeBytes);
    const tags = layerTags(vmid, format === 'raw' ? { volume: layerName } : { volume: layerName, parent: null, virtualSize: sizeBytes });
    await this.createLv(report, layerName, lvSize, tags, `volume ${layerName}`);
    if (format === 'raw') return;
    try {
      await qemuImg.createImage(this.layerPath(vmid, layerName), 'qcow2', sizeBytes, undefined);
    } catch (err) {
      await this.dropLv(layerName);
      throw err;
    }
  }

  async createOverlay(vmid: number, layerName: string, backingLayerName: string, sizeBytes: number): Promise<void> {
    const report = await this.fresh();
    const volume = newLayerVolume(layerName);
    const lvSize = await this.fullSize(report, sizeBytes);
    const tags = layerTags(vmid, { ...(volume !== undefined ? { volume } : {}), parent: backingLayerName, virtualSize: sizeBytes });
    await this.createLv(report, layerName, lvSize, tags, `new layer ${layerName}`);
    try {
      await qemuImg.createOverlay(this.layerPath(vmid, layerName), backingLayerName, sizeBytes);
    } catch (err) {
      await this.dropLv(layerName);
      throw err;
    }
  }

  // ---- renaming and removing ----------------------------------------------------------------------------

  async renameLayer(_vmid: number, from: string, to: string): Promise<void> {
    this.checkDmName(to);
    const report = await this.fresh();
    if (report.rows.has(to)) throw new AlreadyExistsError(`cannot rename ${from} to ${to}: ${to} already exists in VG ${this.vg}`);
    await this.mutating(() => lvm.renameLv(this.vg, from, to));
    moveRow(report, from, to);
  }

  async replaceLayer(vmid: number, from: string, to: string): Promise<void> {
    this.checkDmName(to);
    const report = await this.fresh();
    if (!report.rows.has(from)) throw new NotFoundError(`cannot put ${from} in the place of ${to}: ${from} does not exist in VG ${this.vg}`);
    if (report.rows.has(to)) {
      // If we die after this, the volume has no current layer until repair redoes this step: the redo
      // finds `from` still there, skips this part (`to` is gone) and renames `from` below.
      if (this.definition.saferemove) await this.renameForRemoval(report, to);
      else await this.dropLv(to);
      crashPoint('replace-removed');
    }
    await this.mutating(() => lvm.renameLv(this.vg, from, to));
    moveRow(report, from, to);
  }

  async removeLayer(_vmid: number, layerName: string): Promise<void> {
    let report = await this.fresh();
    if (!report.rows.has(layerName)) report = await this.refresh(); // make sure before concluding it is gone
    // Already gone (a redo; a `del-` LV a crashed run left is picked up by deferredRemovals after the step).
    if (!report.rows.has(layerName)) return;
    if (!this.definition.saferemove) {
      await this.dropLv(layerName); // lvremove itself refuses an LV that is open
      return;
    }
    // From here the layer is gone for everyone; its data stays on the LV until the wipe after the operation.
    await this.renameForRemoval(report, layerName);
    crashPoint('remove-renamed');
  }

  // ---- space ----------------------------------------------------------------------------------------------

  async prepareGrow(_vmid: number, layerName: string, sizeBytes: number): Promise<void> {
    const report = await this.fresh();
    const row = this.requireRow(report, layerName);
    const target = isQcow2Lv(layerName) ? await this.fullSize(report, sizeBytes) : lvm.roundUpTo(sizeBytes, report.vg.extentSizeBytes);
    if (row.sizeBytes >= target) return;
    this.ensureFree(report, target - row.sizeBytes, `growing ${layerName} to ${target} bytes`);
    await this.resizeRow(report, row, target);
  }

  async settleFrozen(vmid: number, layerName: string): Promise<void> {
    if (!isQcow2Lv(layerName) || !this.shrinkFrozen) return;
    const report = await this.fresh();
    const row = this.requireRow(report, layerName);
    await this.activateRows(report, [row]);
    const check = await qemuImg.checkImage(this.layerPath(vmid, layerName));
    const target = frozenSize(row.sizeBytes, check, report.vg.extentSizeBytes);
    if (target >= row.sizeBytes) return;
    await this.resizeRow(report, row, target);
  }

  /** Full size of a writable layer (as createOverlay and prepareGrow make it), for space figures. */
  async fullLayerBytes(virtualSizeBytes: number): Promise<number> {
    return this.fullSize(await this.fresh(), virtualSizeBytes);
  }

  /**
   * What settleFrozen would shrink the layer to, read without changing anything: undefined for an inactive
   * LV (reading its image would need an activation).
   */
  async frozenLayerBytes(vmid: number, layerName: string): Promise<number | undefined> {
    const report = await this.fresh();
    const row = report.rows.get(layerName);
    if (!row || !isQcow2Lv(layerName) || !this.shrinkFrozen) return row?.sizeBytes;
    if (!row.active) return undefined;
    const check = await qemuImg.checkImage(this.layerPath(vmid, layerName));
    return frozenSize(row.sizeBytes, check, report.vg.extentSizeBytes);
  }

  async resizeLayer(vmid: number, layerName: string, format: ImageFormat, sizeBytes: number): Promise<void> {
    const report = await this.fresh();
    const row = this.requireRow(report, layerName);
    if (format === 'raw') {
      // A raw LV's size is the disk's size: prepareGrow did the resize (rounded up to an extent).
      if (row.sizeBytes < sizeBytes) await this.prepareGrow(vmid, layerName, sizeBytes);
      return;
    }
    await this.activateRows(report, [row]);
    await qemuImg.resizeImage(this.layerPath(vmid, layerName), 'qcow2', sizeBytes);
    await this.layerChanged(vmid, layerName);
  }

  // ---- recorded metadata and activation -------------------------------------------------------------------

  async layerChanged(vmid: number, layerName: string): Promise<void> {
    const report = await this.fresh();
    const row = report.rows.get(layerName);
    if (!row?.active || !isQcow2Lv(layerName)) return;
    const header = await readQcow2Header(this.layerPath(vmid, layerName), layerName);
    const volume = trustedLayerTags(row).volume ?? soleVolume(row, report);
    const wanted = layerTags(vmid, {
      ...(volume !== undefined ? { volume } : {}),
      parent: header.backingFile ?? null,
      virtualSize: header.virtualSize,
    });
    await this.syncTags(row, wanted);
  }

  async activate(vmid: number, layerNames: readonly string[]): Promise<void> {
    // Called when a plan starts (right after the tree was read under the VM's lock) and before a step is
    // redone (repair, possibly long after another process changed the VG): only a report taken moments ago
    // is trusted here.
    const report = await this.reportFor(vmid, ACTIVATE_REUSE_MS);
    // Every LV the names could belong to is activated and its header read; then the headers decide which
    // of them are the volumes' own (backends/lvm/owners.ts: a name may fit two volumes), and an LV activated only
    // to be read that turned out to be another volume's is deactivated again (if we die before that, it
    // stays active: harmless, the state PVE's own activation by --select leaves).
    const candidates = this.membersOf(report, vmid, layerNames).members;
    const wasInactive = new Set(candidates.filter((r) => !r.active).map((r) => r.name));
    await this.activateRows(report, candidates);
    const headers = new Map<string, Qcow2Header>();
    for (const row of candidates) {
      if (isQcow2Lv(row.name)) headers.set(row.name, await readQcow2Header(this.layerPath(vmid, row.name), row.name));
    }
    const parentOf = new Map([...headers].map(([name, h]) => [name, h.backingFile ?? null]));
    const { members, volumeOf } = this.membersOf(report, vmid, layerNames, parentOf);
    const foreign = candidates.filter((r) => wasInactive.has(r.name) && !members.includes(r));
    if (foreign.length > 0) {
      await this.mutating(() =>
        lvm.activateLvs(
          this.vg,
          foreign.map((r) => r.name),
          'n',
        ),
      );
      for (const row of foreign) row.active = false;
    }
    const drifted: string[] = [];
    for (const row of members) {
      const header = headers.get(row.name);
      if (header === undefined) continue;
      const volume = volumeOf.get(row.name);
      validateLayerHeader(row.name, header, {
        // A snapshot layer name of the same volume (it may not exist yet: a new top names its parent first).
        isExpectedLayerName: (ref) => volume !== undefined && snapshotOfLayerName('lvm', volume, ref) !== undefined,
      });
      const before = recordOf(row);
      const wanted = layerTags(vmid, {
        ...(volume !== undefined ? { volume } : {}),
        parent: header.backingFile ?? null,
        virtualSize: header.virtualSize,
      });
      if (await this.syncTags(row, wanted)) {
        if (before && wasInactive.has(row.name) && this.servedFromTags.has(row.name)) drifted.push(row.name);
      }
    }
    for (const row of members) this.servedFromTags.delete(row.name);
    if (drifted.length > 0) {
      throw new CorruptImageError(
        drifted.join(', '),
        `the chain recorded in the LV tags did not match the qcow2 headers (the tags are corrected now); ` +
          'the plan was made from the tags, so nothing was done: run the command again',
      );
    }
  }

  async deactivate(vmid: number, layerNames: readonly string[]): Promise<void> {
    const report = await this.fresh();
    // Which of the active LVs are the volumes' own is read from their headers (a name may fit two volumes).
    const parentOf = new Map<string, string | null>();
    for (const row of this.membersOf(report, vmid, layerNames).members) {
      if (row.active && isQcow2Lv(row.name)) parentOf.set(row.name, (await readQcow2Header(this.layerPath(vmid, row.name), row.name)).backingFile ?? null);
    }
    const active = this.membersOf(report, vmid, layerNames, parentOf).members.filter((r) => r.active);
    if (active.length === 0) return;
    await this.mutating(() =>
      lvm.activateLvs(
        this.vg,
        active.map((r) => r.name),
        'n',
      ),
    );
    for (const row of active) row.active = false;
  }

  stateDir(): string {
    const root = currentSettings().stateDir;
    return join(root !== undefined && root !== '' ? root : DEFAULT_STATE_ROOT, this.id);
  }

  lockFile(vmid: number): string {
    // Per VG, not per storage id: storage ids naming one VG share its journal LVs.
    return join(this.vgStateDir('.locks'), `${vmid}.lock`);
  }

  /** Journals live on the VG (backends/lvm/journal.ts), so that another host can finish what this one started. */
  journal(): JournalStore {
    this.journalStore ??= new LvmJournalStore(this.journalVolumeGroup(), new FileJournalStore(join(this.stateDir(), 'journal')));
    return this.journalStore;
  }

  // ---- internals ----------------------------------------------------------------------------------------

  private journalVolumeGroup(): JournalVolumeGroup {
    return {
      vg: this.vg,
      storage: this.id,
      row: async (vmid, name) => (await this.reportFor(vmid, REPORT_MAX_AGE_MS)).rows.get(name),
      journalRows: async () => [...(await this.forListing()).rows.values()].filter((r) => vmidOfJournalLv(r.name) !== undefined),
      freshRow: async (name) => (await this.fresh()).rows.get(name),
      create: async (name, sizeBytes, tags) => {
        const report = await this.fresh();
        const size = lvm.roundUpTo(sizeBytes, report.vg.extentSizeBytes);
        await this.createLv(report, name, size, [...tags], 'the operation journal', { zeroStart: true });
        return this.requireRow(report, name);
      },
      activate: async (row) => this.activateRows(await this.fresh(), [row]),
      remove: (name) => this.dropLv(name),
      shared: async () => this.exclusive(await this.forListing()),
      path: (name) => lvmLayerPath(this.vg, name),
    };
  }

  /** A report taken now (stamped with the time the command started: anything later makes it old). */
  private async refresh(): Promise<Report> {
    const startedAtMs = Date.now();
    const { vg, lvs } = await lvm.reportVg(this.vg);
    this.report = { vg, rows: new Map(lvs.map((r) => [r.name, r])), takenAtMs: startedAtMs };
    return this.report;
  }

  /** A report for a listing: new, unless one was taken a moment ago. */
  private async forListing(): Promise<Report> {
    return this.recent(LISTING_REUSE_MS);
  }

  private async recent(maxAgeMs: number): Promise<Report> {
    if (this.report && Date.now() - this.report.takenAtMs <= maxAgeMs) return this.report;
    return this.refresh();
  }

  /**
   * A report for reading the LVs of `vmid`: the last one if young enough and the VM's lock file (which the
   * engine rewrites on every acquisition and release) has not changed since it was taken; else a new one.
   * So a report never outlives a lock hand-over: whatever another process did while holding the lock is
   * seen, and an operation always starts from an `lvs` taken after its own lock was acquired.
   */
  private async reportFor(vmid: number, maxAgeMs: number): Promise<Report> {
    const report = this.report;
    if (report && Date.now() - report.takenAtMs <= maxAgeMs && !this.lockTouchedSince(vmid, report.takenAtMs)) return report;
    return this.refresh();
  }

  private lockTouchedSince(vmid: number, sinceMs: number): boolean {
    try {
      return statSync(this.lockFile(vmid)).mtimeMs >= sinceMs;
    } catch {
      return false; // no lock file yet: nobody has locked this VM here
    }
  }

  /** The last report if recent (this process keeps it current for what it changes), else a new one. */
  private async fresh(): Promise<Report> {
    if (this.report && Date.now() - this.report.takenAtMs <= REPORT_MAX_AGE_MS) return this.report;
    return this.refresh();
  }

  /** Runs an LVM change; on failure the cached report is dropped (the VG may have changed in part). */
  private async mutating<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      const hint = err instanceof NoSpaceError && this.report ? wipeHint(this.report) : '';
      this.report = undefined;
      if (hint !== '') throw new NoSpaceError(`${(err as NoSpaceError).message}${hint}`, { cause: err });
      throw err;
    }
  }

  private exclusive(report: Report): boolean {
    return this.definition.shared || lvm.hasLockManager(report.vg);
  }

  private activation(report: Report): 'ly' | 'ey' {
    return this.exclusive(report) ? 'ey' : 'ly';
  }

  private requireRow(report: Report, name: string): lvm.LvRow {
    const row = report.rows.get(name);
    if (!row) throw new NotFoundError(`layer ${name} does not exist in VG ${this.vg} (storage '${this.id}')`);
    return row;
  }

  /** Before renaming an LV for zeroing: lvremove would refuse an open LV, zeroing would not. */
  private refuseOpen(row: lvm.LvRow): void {
    if (row.open) {
      throw new LockedError(`${row.name} in VG ${this.vg} is open (in use, e.g. by a running VM): not removing it`);
    }
  }

  private async fullSize(report: Report, virtualSizeBytes: number): Promise<number> {
    return lvm.roundUpTo(await measureFullyAllocated(virtualSizeBytes), report.vg.extentSizeBytes);
  }

  private ensureFree(report: Report, bytes: number, what: string): void {
    const free = report.vg.freeBytes;
    if (bytes <= free) return;
    throw new NoSpaceError(
      `storage '${this.id}' (VG ${this.vg}): ${what} needs ${bytes} bytes, but only ${free} are free: ` + `${bytes - free} bytes missing${wipeHint(report)}`,
    );
  }

  private checkDmName(lv: string): void {
    const dm = lvm.dmName(this.vg, lv);
    if (Buffer.byteLength(dm) > lvm.DM_NAME_MAX) {
      throw new InvalidInputError(
        `LV name ${lv} is too long for VG ${this.vg}: its device-mapper name ${dm} has ${Buffer.byteLength(dm)} ` +
          `characters, at most ${lvm.DM_NAME_MAX} are possible (use a shorter snapshot or volume name)`,
      );
    }
  }

  private async createLv(report: Report, name: string, sizeBytes: number, tags: string[], what: string, opts: { zeroStart?: boolean } = {}): Promise<void> {
    this.checkDmName(name);
    if (report.rows.has(name)) throw new AlreadyExistsError(`${name} already exists in VG ${this.vg} (storage '${this.id}')`);
    this.ensureFree(report, sizeBytes, `${what} (${sizeBytes} bytes as an LV)`);
    await this.mutating(() =>
      lvm.createLv({
        vg: this.vg,
        name,
        sizeBytes,
        tags,
        activation: this.activation(report),
        extentSizeBytes: report.vg.extentSizeBytes,
        ...opts,
      }),
    );
    const attr = '-wi-a-----';
    const row = { name, uuid: `new:${randomUUID()}`, sizeBytes, tags: [...tags], attr, active: true, open: false };
    report.rows.set(name, row);
    this.checkDevice(row);
    report.vg.freeBytes -= sizeBytes;
  }

  /** lvremove, tolerating an LV that is gone already. */
  private async dropLv(name: string): Promise<void> {
    try {
      await this.mutating(() => lvm.removeLv(this.vg, name));
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err;
    }
    const report = this.report;
    const row = report?.rows.get(name);
    if (report && row) {
      report.rows.delete(name);
      report.vg.freeBytes += row.sizeBytes;
    }
  }

  private async resizeRow(report: Report, row: lvm.LvRow, sizeBytes: number): Promise<void> {
    await this.mutating(() => lvm.resizeLv(this.vg, row.name, row.sizeBytes, sizeBytes, report.vg.extentSizeBytes));
    report.vg.freeBytes -= sizeBytes - row.sizeBytes;
    row.sizeBytes = sizeBytes;
  }

  private async activateRows(report: Report, rows: readonly lvm.LvRow[]): Promise<void> {
    const inactive = rows.filter((r) => !r.active);
    if (inactive.length > 0) {
      await this.mutating(() =>
        lvm.activateLvs(
          this.vg,
          inactive.map((r) => r.name),
          this.activation(report),
        ),
      );
      for (const row of inactive) row.active = true;
    }
    // Every path about to be opened leads to its own LV (backends/lvm/device.ts), whoever made the /dev entry.
    for (const row of rows) this.checkDevice(row);
  }

  private checkDevice(row: lvm.LvRow): void {
    checkLvDevice(this.layerPath(0, row.name), this.vg, row.name, row.uuid.startsWith('new:') ? undefined : row.uuid);
  }

  /** Rewrites volchain's tags of one LV to `wanted` in one lvchange; true when something changed. */
  private async syncTags(row: lvm.LvRow, wanted: readonly string[]): Promise<boolean> {
    const { add, remove } = tagChanges(row.tags, wanted);
    if (add.length === 0 && remove.length === 0) return false;
    await this.mutating(() => lvm.changeTags(this.vg, row.name, add, remove));
    row.tags = [...row.tags.filter((t) => !remove.includes(t)), ...add];
    return true;
  }

  /**
   * Every layer of the volumes the named layers belong to, with the volume of each. Without `parentOf` (the
   * backing LV of each LV whose header was read) a name that fits two volumes counts for both, with no volume
   * (the candidates to read); with it, such an LV goes to the volume whose chain its header joins, or to none.
   */
  private membersOf(
    report: Report,
    vmid: number,
    layerNames: readonly string[],
    parentOf?: ReadonlyMap<string, string | null>,
  ): { members: lvm.LvRow[]; volumeOf: Map<string, string> } {
    const rows = [...report.rows.values()];
    const volumeNames = rows.map((r) => r.name).filter((n) => isVolumeLv(n, vmid));
    const volumes = new Set<string>();
    for (const name of layerNames) {
      const row = report.rows.get(name);
      const candidates = row ? volumesOfLv(row, volumeNames) : volumesOfLv({ name, tags: [] }, volumeNames);
      for (const v of candidates) if (isVolumeLv(v, vmid)) volumes.add(v);
    }
    const members = layersOfVolumes(rows, volumes);
    // A volume whose current layer is renamed away (a temporary) still owns its layers.
    const allVolumes = [...new Set([...volumeNames, ...volumes])];
    if (parentOf !== undefined) {
      const owners = attributeLayers(new Map(members.map((r) => [r.name, volumesOfLv(r, allVolumes)])), parentOf);
      const named = new Set(layerNames.flatMap((n) => owners.get(n) ?? (report.rows.has(n) ? [] : volumesOfLv({ name: n, tags: [] }, allVolumes))));
      const own = members.filter((r) => named.has(owners.get(r.name) ?? ''));
      return { members: own, volumeOf: new Map(own.map((r) => [r.name, owners.get(r.name) as string])) };
    }
    const volumeOf = new Map<string, string>();
    for (const row of members) {
      const owners = volumesOfLv(row, allVolumes).filter((v) => volumes.has(v));
      if (owners.length === 1) volumeOf.set(row.name, owners[0] as string);
    }
    return { members, volumeOf };
  }

  // ---- saferemove: `del-` LVs, zeroed and removed after the operation -----------------------------------

  /**
   * saferemove's first half, inside the operation: renames the LV to a free `del-` name, keeping its tags (an
   * LV without volchain tags, made by PVE, gets REMOVING_TAG first so that a wiper knows it), and leaves the
   * zeroing and lvremove for after the operation (deferredRemovals).
   */
  private async renameForRemoval(report: Report, name: string): Promise<string> {
    const row = this.requireRow(report, name);
    this.refuseOpen(row);
    let doomed = deletionName(name);
    for (let attempt = 1; report.rows.has(doomed); attempt++) {
      // An earlier removal of the same name is still being wiped (or is PVE's): take the next name, not wait.
      if (attempt > 99) throw new AlreadyExistsError(`cannot rename ${name} for removal: ${deletionName(name)} and 99 more names are taken in VG ${this.vg}`);
      doomed = deletionName(name, attempt);
    }
    if (!row.tags.some((t) => t.startsWith(TAG_PREFIX))) {
      await this.mutating(() => lvm.changeTags(this.vg, name, [REMOVING_TAG], []));
      row.tags = [...row.tags, REMOVING_TAG];
    }
    await this.mutating(() => lvm.renameLv(this.vg, name, doomed));
    moveRow(report, name, doomed);
    this.deferred.add(doomed);
    return doomed;
  }

  async deferredRemovals(vmid?: number): Promise<string[]> {
    // The last report only (no lvs here): the operation or listing that just ran keeps it current.
    const report = this.report && Date.now() - this.report.takenAtMs <= REPORT_MAX_AGE_MS ? this.report : undefined;
    for (const row of report?.rows.values() ?? []) {
      if (!isVolchainDeletion(row) || this.deferred.has(row.name) || !ofVm(row, vmid)) continue;
      // Left by a run that died (before its wipe began, or while wiping): unless a wiper works on it now.
      const progress = await readWipeProgress(this.wipeDir(), row.name);
      if (!progress || !wiperAlive(progress)) this.deferred.add(row.name);
    }
    const out = [...this.deferred].filter((name) => ofVm({ name, tags: report?.rows.get(name)?.tags ?? [] }, vmid));
    for (const name of out) this.deferred.delete(name);
    return out;
  }

  async finishRemovals(opts: FinishRemovalsOptions = {}): Promise<FinishRemovalsResult> {
    const report = await this.refresh();
    const names = [...report.rows.values()]
      .filter((r) => isVolchainDeletion(r) && ofVm(r, opts.vmid) && (opts.layers === undefined || opts.layers.includes(r.name)))
      .map((r) => r.name);
    const out: FinishRemovalsResult = { finished: [], busy: [], waited: [] };
    const failures: { name: string; error: VolchainError }[] = [];
    for (const name of names) {
      try {
        await this.wipe(name, opts, out);
      } catch (err) {
        const error = asVolchainError(err);
        opts.log?.(`${name}: ${error.message}`);
        failures.push({ name, error });
      }
    }
    const first = failures[0];
    if (first) {
      throw new VolchainError(
        first.error.code,
        `could not finish removing ${failures.map((f) => `${f.name} (${f.error.message})`).join('; ')} in VG ${this.vg}; ` +
          `the LV stays until 'volchain wipe' finishes it`,
        { cause: first.error },
      );
    }
    return out;
  }

  async pendingRemovals(): Promise<PendingRemoval[]> {
    const files = await listWipeProgress(this.wipeDir());
    let rows: lvm.LvRow[];
    try {
      rows = [...(await this.refresh()).rows.values()].filter(isVolchainDeletion);
    } catch {
      // The VG cannot be read here (e.g. not on this host): what the progress files say is all there is.
      return files.filter((p) => p.vg === this.vg).map((p) => this.toPending(p));
    }
    return rows.map((row) =>
      this.toPending(
        files.find((p) => p.lv === row.name),
        row,
      ),
    );
  }

  removalLog(): string {
    return join(this.wipeDir(), 'wipe.log');
  }

  /**
   * Wipe locks, progress files and the background wiper's log: one directory per VG next to the storages'
   * state directories (two storage entries may name one VG; one LV must never get two wipers).
   */
  private wipeDir(): string {
    return this.vgStateDir('.wipe');
  }

  /**
   * Local state kept per VG rather than per storage id (the state directory), for what storage ids naming
   * one VG must share: `$VOLCHAIN_STATE_DIR/<kind>/<vg>`.
   */
  private vgStateDir(kind: '.locks' | '.wipe'): string {
    return join(dirname(this.stateDir()), kind, this.vg);
  }

  /** Zeroes and removes one `del-` LV under its wipe lock; with `wait`, also one another process holds. */
  private async wipe(name: string, opts: FinishRemovalsOptions, out: FinishRemovalsResult): Promise<void> {
    const lockPath = join(this.wipeDir(), `${name}.lock`);
    let done: FinishedRemoval | undefined;
    const attempt = async (): Promise<boolean> =>
      (await withFileLock(lockPath, false, async (_waited, fd) => {
        done = await this.wipeLocked(name, fd, opts);
        return true;
      })) === true;
    if (await attempt()) {
      if (done) out.finished.push(done);
      return;
    }
    let seen = this.toPending(await readWipeProgress(this.wipeDir(), name), { name, uuid: '', sizeBytes: 0, tags: [] });
    if (!opts.wait) {
      out.busy.push(seen);
      return;
    }
    // Another process wipes it: follow its progress until it lets go, then finish whatever it left (it died).
    for (;;) {
      await sleep(1000);
      if (await attempt()) break;
      const progress = await readWipeProgress(this.wipeDir(), name);
      if (progress) {
        seen = this.toPending(progress);
        opts.onProgress?.(seen);
      }
    }
    if (done) out.finished.push(done);
    else out.waited.push({ ...seen, doneBytes: seen.totalBytes, state: 'waiting' });
  }

  private async wipeLocked(name: string, fd: number, opts: FinishRemovalsOptions): Promise<FinishedRemoval | undefined> {
    const dir = this.wipeDir();
    const report = await this.refresh(); // whoever held the lock before may have changed the VG
    const row = report.rows.get(name);
    if (!row) await removeWipeProgress(dir, name); // finished by another process
    if (!row || !isVolchainDeletion(row)) return undefined;
    if (row.open) throw new LockedError(`${name} in VG ${this.vg} is open (in use): not wiping it`);
    let throughput: number | undefined;
    try {
      throughput = parseThroughput(this.definition.options.saferemove_throughput);
    } catch (err) {
      throw new InvalidInputError(`storage '${this.id}': ${asVolchainError(err).message}`);
    }
    const from = resumeOffset(await readWipeProgress(dir, name), row);
    const now = new Date().toISOString();
    const progress: WipeProgress = {
      lv: name,
      vg: this.vg,
      storage: this.id,
      uuid: row.uuid,
      totalBytes: row.sizeBytes,
      doneBytes: from,
      pid: process.pid,
      host: hostname(),
      startedAt: now,
      updatedAt: now,
    };
    await writeWipeProgress(dir, progress);
    opts.onProgress?.(this.toPending(progress, row));
    opts.log?.(
      `zeroing ${name} in VG ${this.vg} (${row.sizeBytes} bytes${from > 0 ? `, continuing at ${from}` : ''}` +
        `${throughput !== undefined ? `, at most ${throughput} bytes/s` : ''})`,
    );
    if (from < row.sizeBytes) {
      await this.activateRows(report, [row]);
      const path = this.layerPath(0, name);
      const started = Date.now();
      for (const chunk of planChunks(row.sizeBytes, from, chunkSizeFor(throughput))) {
        // The zeroing command gets the lock's descriptor: if we die, the lock stays until it ends too.
        progress.method = await lvm.zeroRange(path, chunk.offset, chunk.length, {
          shareFd: fd,
          ...(progress.method === 'dd' ? { prefer: 'dd' as const } : {}),
        });
        // Recorded only once on stable storage, so that a resumed wipe never skips a range.
        await lvm.flushDevice(path);
        progress.doneBytes = chunk.offset + chunk.length;
        progress.updatedAt = new Date().toISOString();
        await writeWipeProgress(dir, progress);
        opts.onProgress?.(this.toPending(progress, row));
        crashPoint('wipe-chunk');
        const pause = throttleDelayMs(progress.doneBytes - from, Date.now() - started, throughput);
        if (pause > 0 && progress.doneBytes < row.sizeBytes) await sleep(pause);
      }
    }
    crashPoint('wipe-zeroed');
    await this.dropLv(name);
    await removeWipeProgress(dir, name);
    opts.log?.(`removed ${name} from VG ${this.vg}${progress.method ? ` (zeroed with ${progress.method})` : ''}`);
    return { storage: this.id, layer: name, vmid: vmidsOfLv(row)[0] ?? null, bytes: row.sizeBytes, resumedFromBytes: from };
  }

  /** A removal as status shows it: the LV (when known) with what its progress file says about it. */
  private toPending(progress: WipeProgress | undefined, row?: { name: string; uuid: string; sizeBytes: number; tags: readonly string[] }): PendingRemoval {
    const name = row?.name ?? progress?.lv ?? '';
    const alive = progress !== undefined && wiperAlive(progress);
    // A file about an earlier LV of the same name says nothing about this one, unless its wiper runs now.
    const p = progress && (row === undefined || row.uuid === '' || progress.uuid === row.uuid || alive) ? progress : undefined;
    return {
      storage: this.id,
      layer: name,
      path: this.layerPath(0, name),
      vmid: vmidsOfLv({ name, tags: row?.tags ?? [] })[0] ?? null,
      totalBytes: row && row.sizeBytes > 0 ? row.sizeBytes : (p?.totalBytes ?? 0),
      doneBytes: p?.doneBytes ?? 0,
      state: alive ? 'running' : 'waiting',
      pid: p?.pid ?? null,
      host: p?.host ?? null,
      startedAt: p?.startedAt ?? null,
      updatedAt: p?.updatedAt ?? null,
    };
  }
}

/** True when the LV belongs to `vmid` (always without one). */
function ofVm(row: { name: string; tags: readonly string[] }, vmid: number | undefined): boolean {
  return vmid === undefined || vmidsOfLv(row).includes(vmid);
}

/** What a NoSpaceError adds while `del-` LVs still hold space that their wipe gives back. */
function wipeHint(report: Report): string {
  const doomed = [...report.rows.values()].filter(isVolchainDeletion);
  if (doomed.length === 0) return '';
  const bytes = doomed.reduce((sum, r) => sum + r.sizeBytes, 0);
  return (
    `; ${bytes} bytes of ${doomed.length} removed LV(s) are still being wiped (saferemove) and come free when ` +
    `that ends: 'volchain wipe --wait' waits for it`
  );
}

/** VM ids an LV belongs to, by its `pve-vm-<vmid>` tags and by `vm-<vmid>-` anywhere in its name. */
export function vmidsOfLv(row: { name: string; tags: readonly string[] }): number[] {
  const ids = new Set<number>();
  for (const tag of row.tags) {
    const m = /^pve-vm-([1-9][0-9]{2,8})$/.exec(tag);
    if (m) ids.add(Number(m[1]));
  }
  for (const m of row.name.matchAll(/(?:^|[^A-Za-z0-9])(?:vm|base)-([1-9][0-9]{2,8})-/g)) ids.add(Number(m[1]));
  return [...ids];
}

/**
 * The LV size of a frozen layer: its image end (from `qemu-img check`) rounded up to an extent, never more
 * than it has. Only a clean image's end offset is trustworthy; otherwise the layer keeps its size.
 */
function frozenSize(sizeBytes: number, check: qemuImg.CheckResult, extentSizeBytes: number): number {
  if (check.corruptions > 0 || check.imageEndOffset === undefined) return sizeBytes;
  return Math.min(sizeBytes, lvm.roundUpTo(check.imageEndOffset, extentSizeBytes));
}

/** qcow2 layers end in `.qcow2` (volumes, snapshot layers and temporaries alike); raw LVs have no suffix. */
function isQcow2Lv(name: string): boolean {
  return name.endsWith('.qcow2');
}

/** The volume a layer being created belongs to: itself, or the volume a temporary name carries. */
function newLayerVolume(name: string): string | undefined {
  if (isVolumeLv(name)) return name;
  return isVolchainTemporaryName(name, 'lvm')?.volumeName;
}

/** The one volume an untagged LV can belong to, judged by the names in the report. */
function soleVolume(row: lvm.LvRow, report: Report): string | undefined {
  const owners = volumesOfLv(
    row,
    [...report.rows.keys()].filter((n) => isVolumeLv(n)),
  );
  return owners.length === 1 ? owners[0] : undefined;
}

/** What an LV's tags (or, for a raw LV, its size) say about the layer, when they say enough. */
export function recordOf(row: { name: string; sizeBytes: number; tags: readonly string[] }): LayerRecord | undefined {
  const tagged = trustedLayerTags(row);
  const volume = tagged.volume ?? (isVolumeLv(row.name) ? row.name : undefined);
  if (!isQcow2Lv(row.name)) {
    return { ...(volume !== undefined ? { volume } : {}), parent: null, virtualSize: row.sizeBytes };
  }
  if (tagged.parent === undefined || tagged.virtualSize === undefined) return undefined;
  return { ...(tagged.volume !== undefined ? { volume: tagged.volume } : {}), parent: tagged.parent, virtualSize: tagged.virtualSize };
}

function moveRow(report: Report, from: string, to: string): void {
  const row = report.rows.get(from);
  if (!row) return;
  report.rows.delete(from);
  row.name = to;
  report.rows.set(to, row);
}

/**
 * Test hook: VOLCHAIN_LVM_CRASH_AT=<point> kills the process with SIGKILL inside a backend primitive, where
 * the executor's own hooks cannot reach (points: remove-renamed, replace-removed; in a wipe: wipe-chunk after
 * the first chunk is zeroed and recorded, wipe-zeroed after the whole LV is zeroed, before its lvremove).
 */
function crashPoint(point: string): void {
  if (currentSettings().hooks.lvmCrashAt === point) process.kill(process.pid, 'SIGKILL');
}
