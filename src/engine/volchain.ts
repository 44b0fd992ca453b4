/**
 * The library's front door: every CLI command (later every API route) is one call here, delegated to its operation
 * (engine/operations/: read → pure planner → executor) with the per-call machinery of engine/session/.
 */
import type { Writable } from 'node:stream';
import type { Backend, FinishRemovalsResult, PendingRemoval } from '../backends/backend.js';
import type { LoadOptions, StorageConfig, StorageDescription } from '../config/index.js';
import type { JournalLeftover, JournalRecord } from '../journal/record.js';
import type { Plan } from '../model/plan.js';
import type { ImageFormat, VolumeRef } from '../naming/index.js';
import { attachInfo, type AttachInfo } from './live/attach-info.js';
import { qemuArgs, type QemuArgs } from './live/qemu-args.js';
import type { VolumeListEntry } from './read/listing.js';
import type { VmTargetOptions } from './read/vm-disks.js';
import type { WipeMode } from './run/wipe.js';
import { describeStorages, loadConfigFor } from './session/open.js';
import { Session } from './session/session.js';
import * as op from './operations/index.js';
import type { CloneOptions } from './operations/clone.js';
import type { LinkedCloneOptions } from './operations/clone-linked.js';
import type { ConvertOptions } from './operations/convert.js';
import type { MoveOptions } from './operations/move.js';
import type { ExportResult } from './operations/export.js';
import type { ImportOptions } from './operations/import.js';
import type { ActivationResult, CallOptions, SnapshotListing, VolchainOptions, VolumeInfo, WipeOptions } from './operations/types.js';

export * from './operations/types.js';

export class Volchain {
  private readonly session: Session;
  readonly config: StorageConfig;
  /** Where removals left for after an operation (LVM saferemove's wipe) run: see VolchainOptions. */
  readonly wipeMode: WipeMode;
  /** LVM: frozen layers are shrunk to their image's end (see VolchainOptions.shrinkFrozen). */
  readonly shrinkFrozen: boolean;
  /** A rollback may keep newer snapshots as a branch (not next to PVE by default: engine/plan/branch-policy.ts). */
  readonly keepBranches: boolean;

  constructor(config: StorageConfig, options: VolchainOptions = {}) {
    this.session = new Session(config, options);
    ({ config: this.config, wipeMode: this.wipeMode, shrinkFrozen: this.shrinkFrozen, keepBranches: this.keepBranches } = this.session);
  }

  static async open(opts: Partial<LoadOptions> = {}, options: VolchainOptions = {}): Promise<Volchain> {
    const loaded = await loadConfigFor(opts, options);
    return new Volchain(loaded.config, loaded.options);
  }

  storages(): StorageDescription[] {
    return describeStorages(this.config, this.session.settings);
  }
  backend(storageId: string): Backend {
    return this.session.backend(storageId);
  }
  resolve(volid: string): { backend: Backend; volume: VolumeRef } {
    return this.session.resolve(volid);
  }

  // ---- volume lifecycle (operations/alloc-free.ts, info-list.ts, resize.ts, activation.ts) ---------------
  alloc(storage: string, vmidText: string | number, size: string | number, opts: { name?: string; format?: ImageFormat } = {}): Promise<string> {
    return op.alloc(this.session, storage, vmidText, size, opts);
  }
  free(volid: string, opts: CallOptions = {}): Promise<Plan> {
    return op.free(this.session, volid, opts);
  }
  /** Every volume of the storage; one that cannot be read is listed with its problem. */
  list(storage: string, opts: { vmid?: number } = {}): Promise<VolumeListEntry[]> {
    return op.list(this.session, storage, opts);
  }
  path(volid: string, opts: { snapshot?: string } = {}): Promise<string> {
    return op.path(this.session, volid, opts);
  }
  info(volid: string, opts: { deep?: boolean } = {}): Promise<VolumeInfo> {
    return op.info(this.session, volid, opts);
  }
  /** raw -> qcow2, so the volume can take snapshots (plan.newVolid: the new volid). */
  convert(volid: string, opts: ConvertOptions = {}): Promise<Plan> {
    return op.convert(this.session, volid, opts);
  }
  /** The volume becomes a template's base volume, base-<vmid>-… (plan.newVolid). */
  template(volid: string, opts: CallOptions = {}): Promise<Plan> {
    return op.template(this.session, volid, opts);
  }
  resize(volid: string, size: string | number, opts: CallOptions = {}): Promise<Plan> {
    return op.resize(this.session, volid, size, opts);
  }
  /** Makes every layer of the chain usable on this host (LVM: activates the LVs; dir: checks they exist). */
  activate(volid: string): Promise<ActivationResult> {
    return op.activate(this.session, volid);
  }
  /** Releases every layer of the chain on this host (LVM: `lvchange -an`; dir: nothing to do). */
  deactivate(volid: string): Promise<ActivationResult> {
    return op.deactivate(this.session, volid);
  }
  /** A full, independent copy of the volume (or of one snapshot's view) as a new volume (operations/clone.ts). */
  clone(volid: string, target: string, vmid: string | number, opts: CloneOptions = {}): Promise<Plan> {
    return op.clone(this.session, volid, target, vmid, opts);
  }
  /** A linked clone of a template's base volume, on the base's storage (operations/clone-linked.ts; plan.newVolid). */
  linkedClone(baseVolid: string, target: string, vmid: string | number, opts: LinkedCloneOptions = {}): Promise<Plan> {
    return op.linkedClone(this.session, baseVolid, target, vmid, opts);
  }

  /** Moves a volume with its snapshot tree to another storage, or reassigns it to another VM in place (operations/move.ts). */
  move(volid: string, target: string, opts: MoveOptions = {}): Promise<Plan> {
    return op.move(this.session, volid, target, opts);
  }

  /** The whole chain as one stream on `out` (operations/export.ts); dryRun: its manifest and size only. */
  exportChain(volid: string, out: Writable | undefined, opts: CallOptions = {}): Promise<ExportResult> {
    return op.exportChain(this.session, volid, out, opts);
  }
  /** A chain stream made by exportChain becomes a new volume with its snapshots (operations/import.ts). */
  importChain(storage: string, vmid: string | number, input: AsyncIterable<Buffer | string>, opts: ImportOptions = {}): Promise<Plan> {
    return op.importChain(this.session, storage, vmid, input, opts);
  }

  // ---- snapshots of one volume (operations/snapshot-*.ts) ----------------------------------------------
  snapshotCreate(volid: string, snapshot: string, opts: CallOptions = {}): Promise<Plan> {
    return op.snapshotCreate(this.session, volid, snapshot, opts);
  }
  snapshotRollback(volid: string, snapshot: string, opts: CallOptions & { purgeNewer?: boolean } = {}): Promise<Plan> {
    return op.snapshotRollback(this.session, volid, snapshot, opts);
  }
  snapshotDelete(volid: string, snapshot: string, opts: CallOptions = {}): Promise<Plan> {
    return op.snapshotDelete(this.session, volid, snapshot, opts);
  }
  snapshotList(volid: string): Promise<SnapshotListing> {
    return op.snapshotList(this.session, volid);
  }

  // ---- snapshots of every disk of a VM (operations/snapshot-*.ts through operations/vm-wide.ts) ----------
  /** All disks of `vmid` (optionally on one storage), in a stable order. */
  vmVolumes(vmid: number, storage?: string, vmConfig?: string, onWarning?: (message: string) => void): Promise<{ backend: Backend; volume: VolumeRef }[]> {
    return this.session.vmVolumes(vmid, storage, vmConfig, onWarning);
  }
  vmSnapshot(vmidText: string | number, snapshot: string, opts: CallOptions & VmTargetOptions = {}): Promise<Plan[]> {
    return op.vmSnapshot(this.session, vmidText, snapshot, opts);
  }
  vmRollback(vmidText: string | number, snapshot: string, opts: CallOptions & VmTargetOptions & { purgeNewer?: boolean } = {}): Promise<Plan[]> {
    return op.vmRollback(this.session, vmidText, snapshot, opts);
  }
  vmDeleteSnapshot(vmidText: string | number, snapshot: string, opts: CallOptions & VmTargetOptions = {}): Promise<Plan[]> {
    return op.vmDeleteSnapshot(this.session, vmidText, snapshot, opts);
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
    return op.wipe(this.session, opts);
  }
  /** Removals not finished yet (LVM saferemove: `del-` LVs being wiped or waiting for a wiper). */
  pendingRemovals(): Promise<PendingRemoval[]> {
    return op.pendingRemovals(this.session);
  }
  /** Journal files set aside as unreadable, and temp files of interrupted journal writes, for `status`. */
  journalLeftovers(): Promise<JournalLeftover[]> {
    return op.journalLeftovers(this.session);
  }
  status(): Promise<(JournalRecord & { volid: string })[]> {
    return op.status(this.session);
  }
  /** Finishes interrupted operations, then deals with temporary layers that no journal explains. */
  repair(target: { volid?: string }, opts: CallOptions = {}): Promise<{ volid: string; actions: string[] }[]> {
    return op.repair(this.session, target, opts);
  }
}
