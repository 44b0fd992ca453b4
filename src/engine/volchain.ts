/**
 * The library's front door: every CLI command (and later every API route) is one call here, delegated to the
 * operation's module in engine/operations/ (read → pure planner → executor). The per-call machinery those
 * share (resolving volume ids, the VM's locks, refusing over an unfinished operation) is engine/session/.
 * The option and result types are engine/operations/types.ts, re-exported here as the façade's signature.
 */
import type { Backend, FinishRemovalsResult, PendingRemoval } from '../backends/backend.js';
import { describeStorage, loadStorageConfig, type LoadOptions, type StorageConfig, type StorageDescription } from '../config/index.js';
import type { Plan } from '../model/plan.js';
import type { ImageFormat, VolumeRef } from '../naming/index.js';
import { attachInfo, type AttachInfo } from './live/attach-info.js';
import { qemuArgs, type QemuArgs } from './live/qemu-args.js';
import type { VolumeListEntry } from './read/listing.js';
import type { VmTargetOptions } from './read/vm-disks.js';
import type { JournalLeftover, JournalRecord } from '../journal/record.js';
import type { WipeMode } from './run/wipe.js';
import { Session } from './session/session.js';
import { activate, deactivate } from './operations/activation.js';
import { alloc, free } from './operations/alloc-free.js';
import { convert, template, type ConvertOptions } from './operations/convert.js';
import { info, list, path } from './operations/info-list.js';
import { repair } from './operations/repair.js';
import { resize } from './operations/resize.js';
import { snapshotCreate, vmSnapshot } from './operations/snapshot-create.js';
import { snapshotDelete, vmDeleteSnapshot } from './operations/snapshot-delete.js';
import { snapshotList } from './operations/snapshot-list.js';
import { snapshotRollback, vmRollback } from './operations/snapshot-rollback.js';
import { journalLeftovers, pendingRemovals, status, wipe } from './operations/status-wipe.js';
import type { ActivationResult, CallOptions, SnapshotListing, VolchainOptions, VolumeInfo, WipeOptions } from './operations/types.js';

export {
  CURRENT,
  type ActivationResult,
  type CallOptions,
  type LayerCheck,
  type PendingSummary,
  type SnapshotEntry,
  type SnapshotListing,
  type VolchainOptions,
  type VolumeInfo,
  type WipeOptions,
} from './operations/types.js';

export class Volchain {
  private readonly session: Session;
  /** Where removals left for after an operation (LVM saferemove's wipe) run: see VolchainOptions. */
  readonly wipeMode: WipeMode;
  /** LVM: frozen layers are shrunk to their image's end (see VolchainOptions.shrinkFrozen). */
  readonly shrinkFrozen: boolean;
  /** A rollback may keep newer snapshots as a branch (not next to PVE by default: engine/plan/branch-policy.ts). */
  readonly keepBranches: boolean;

  constructor(
    readonly config: StorageConfig,
    options: VolchainOptions = {},
  ) {
    this.session = new Session(config, options);
    this.wipeMode = this.session.wipeMode;
    this.shrinkFrozen = this.session.shrinkFrozen;
    this.keepBranches = this.session.keepBranches;
  }

  static async open(opts: LoadOptions = {}, options: VolchainOptions = {}): Promise<Volchain> {
    return new Volchain(await loadStorageConfig({ ...(options.settings ? { settings: options.settings } : {}), ...opts }), options);
  }

  storages(): StorageDescription[] {
    return this.config.storages.map((def) => describeStorage(def));
  }

  backend(storageId: string): Backend {
    return this.session.backend(storageId);
  }

  resolve(volid: string): { backend: Backend; volume: VolumeRef } {
    return this.session.resolve(volid);
  }

  // ---- volume lifecycle (operations/alloc-free.ts, info-list.ts, resize.ts, activation.ts) ---------------

  alloc(storage: string, vmidText: string | number, size: string | number, opts: { name?: string; format?: ImageFormat } = {}): Promise<string> {
    return alloc(this.session, storage, vmidText, size, opts);
  }

  free(volid: string, opts: CallOptions = {}): Promise<Plan> {
    return free(this.session, volid, opts);
  }

  /** Every volume of the storage; one that cannot be read is listed with its problem (listing.ts). */
  list(storage: string, opts: { vmid?: number } = {}): Promise<VolumeListEntry[]> {
    return list(this.session, storage, opts);
  }

  path(volid: string, opts: { snapshot?: string } = {}): Promise<string> {
    return path(this.session, volid, opts);
  }

  info(volid: string, opts: { deep?: boolean } = {}): Promise<VolumeInfo> {
    return info(this.session, volid, opts);
  }

  convert = (volid: string, opts: ConvertOptions = {}): Promise<Plan> => convert(this.session, volid, opts); // raw -> qcow2 (plan.newVolid)
  template = (volid: string, opts: CallOptions = {}): Promise<Plan> => template(this.session, volid, opts); // -> base-<vmid>-… (plan.newVolid)

  resize(volid: string, size: string | number, opts: CallOptions = {}): Promise<Plan> {
    return resize(this.session, volid, size, opts);
  }

  /** Makes every layer of the volume's chain usable on this host (LVM: activates the LVs); dir: checks it exists. */
  activate(volid: string): Promise<ActivationResult> {
    return activate(this.session, volid);
  }

  /** Releases every layer of the volume's chain on this host (LVM: `lvchange -an`); dir: nothing to do. */
  deactivate(volid: string): Promise<ActivationResult> {
    return deactivate(this.session, volid);
  }

  // ---- snapshots of one volume (operations/snapshot-*.ts) ----------------------------------------------

  snapshotCreate(volid: string, snapshot: string, opts: CallOptions = {}): Promise<Plan> {
    return snapshotCreate(this.session, volid, snapshot, opts);
  }

  snapshotRollback(volid: string, snapshot: string, opts: CallOptions & { purgeNewer?: boolean } = {}): Promise<Plan> {
    return snapshotRollback(this.session, volid, snapshot, opts);
  }

  snapshotDelete(volid: string, snapshot: string, opts: CallOptions = {}): Promise<Plan> {
    return snapshotDelete(this.session, volid, snapshot, opts);
  }

  snapshotList(volid: string): Promise<SnapshotListing> {
    return snapshotList(this.session, volid);
  }

  // ---- snapshots of every disk of a VM (operations/snapshot-*.ts through operations/vm-wide.ts) ----------

  /** All disks of `vmid` (optionally on one storage), in a stable order (session/session.ts). */
  vmVolumes(vmid: number, storage?: string, vmConfig?: string, onWarning?: (message: string) => void): Promise<{ backend: Backend; volume: VolumeRef }[]> {
    return this.session.vmVolumes(vmid, storage, vmConfig, onWarning);
  }

  vmSnapshot(vmidText: string | number, snapshot: string, opts: CallOptions & VmTargetOptions = {}): Promise<Plan[]> {
    return vmSnapshot(this.session, vmidText, snapshot, opts);
  }

  vmRollback(vmidText: string | number, snapshot: string, opts: CallOptions & VmTargetOptions & { purgeNewer?: boolean } = {}): Promise<Plan[]> {
    return vmRollback(this.session, vmidText, snapshot, opts);
  }

  vmDeleteSnapshot(vmidText: string | number, snapshot: string, opts: CallOptions & VmTargetOptions = {}): Promise<Plan[]> {
    return vmDeleteSnapshot(this.session, vmidText, snapshot, opts);
  }

  // ---- running VMs (engine/live/) ------------------------------------------------------------------

  /** `-blockdev` options that open the volumes' chains with volchain's node names (headers validated first). */
  qemuArgs(volids: readonly string[], opts: { driveIds?: readonly string[] } = {}): Promise<QemuArgs> {
    return qemuArgs(this.session, volids, opts);
  }

  /** Which QEMU block node uses which volume and layer of a running VM. */
  attachInfo(vmid: string | number, qmp?: string): Promise<AttachInfo> {
    return attachInfo(this.session, vmid, qmp);
  }

  /** Runs `fn` holding VM `vmid`'s lock on every storage given, after refusing over an unfinished operation there. */
  withVmLocks<T>(backends: readonly Backend[], vmid: number, operation: string, fn: () => Promise<T>): Promise<T> {
    return this.session.withVmLocks(backends, vmid, operation, fn);
  }

  // ---- crash recovery (operations/status-wipe.ts, repair.ts) ---------------------------------------------

  /** Finishes unfinished removals (LVM saferemove's wipe) here and now; without `wait`, others' are busy. */
  wipe(opts: WipeOptions = {}): Promise<FinishRemovalsResult> {
    return wipe(this.session, opts);
  }

  /** Removals not finished yet (LVM saferemove: `del-` LVs being wiped or waiting for a wiper). */
  pendingRemovals(): Promise<PendingRemoval[]> {
    return pendingRemovals(this.session);
  }

  /** Journal files set aside as unreadable, and temp files of interrupted journal writes, for `status`. */
  journalLeftovers(): Promise<JournalLeftover[]> {
    return journalLeftovers(this.session);
  }

  status(): Promise<(JournalRecord & { volid: string })[]> {
    return status(this.session);
  }

  /** Finishes interrupted operations, then deals with temporary layers that no journal explains. */
  repair(target: { volid?: string }, opts: CallOptions = {}): Promise<{ volid: string; actions: string[] }[]> {
    return repair(this.session, target, opts);
  }
}
