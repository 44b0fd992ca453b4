/**
 * What an operation journal holds and where it can be kept. The engine writes one record per running
 * operation (per disk for VM-wide operations) through a JournalStore; each backend says where its records
 * live: a directory on the storage itself (dir), or an LV on the volume group (LVM), so that any host that
 * sees the storage can finish an operation another host started.
 */
import type { Plan } from '../model/plan.js';

export interface JournalRecord {
  id: string;
  storage: string;
  host: string;
  pid: number;
  startedAt: string;
  plan: Plan;
  /** Steps finished, in order. */
  completedSteps: number;
  /** Index of the step started but not yet known to be finished, if any. */
  runningStep: number | null;
  /** Set when the executor stopped on an error it could not undo. */
  error?: string;
  /**
   * Set while the steps done before a failed step are being walked back (engine/run/undo.ts): `repair` then
   * continues this undo (its first `undone` undo steps are done) instead of redoing the plan. Absent in
   * records of older versions, which never journaled an undo. `failedStep` equal to the number of steps: the
   * plan ran to its end and is walked back because another disk of its VM-wide operation failed.
   */
  undo?: { failedStep: number; undone: number; error: string };
  /** Shared by the journals of one VM-wide operation (one per disk). */
  group?: string;
  /**
   * Set on a record known only by its summary (LVM: the journal LV's tags) because reading it would mean
   * activating an LV that another host may hold: enough to say an operation is pending, not to repair it.
   */
  summaryOnly?: true;
}

export interface ListJournalOptions {
  /** Only this VM's records. */
  vmid?: number;
  /**
   * The caller will act on the records (repair, under the VM's lock): make them readable even when that
   * takes activating an LV. Without it a store returns summary-only records for what it cannot read
   * without side effects visible to other hosts.
   */
  forRepair?: boolean;
}

export interface JournalStore {
  /** Where the records live, for messages (a directory, or `vg/lv` pattern). */
  readonly location: string;
  /** Writes (creates or replaces) a record durably: when this returns, the record survives a power loss. */
  save(record: JournalRecord): Promise<void>;
  /** Removes a record durably; removing one that is not there is not an error. */
  remove(record: JournalRecord): Promise<void>;
  /** Unfinished operations, oldest first. */
  list(opts?: ListJournalOptions): Promise<JournalRecord[]>;
  /**
   * Drops what a crash left that holds no record (LVM: a journal LV created but never written); returns
   * what it dropped (or would drop, with `dryRun`). Called under the VM's lock.
   */
  sweep(vmid: number, dryRun: boolean): Promise<string[]>;
  /** VMs that have a journal container (even an empty one) in this store, for `repair --all`. */
  containerVmids(): Promise<number[]>;
  /** Files set aside as unreadable and temp files crashes left, for `status`. */
  leftovers(): Promise<JournalLeftover[]>;
}

/**
 * A file in a journal directory that is not a record the engine can use: one set aside because it could not
 * be read as a record (renamed `<name>.bad`, kept for a person to look at), or the temp file of a write a
 * crash interrupted (`<id>.json.tmp`; the record's previous version, if any, is intact beside it).
 */
export interface JournalLeftover {
  /** Storage id the journal belongs to (set by the engine). */
  storage?: string;
  path: string;
  kind: 'set-aside' | 'temp';
  /** The VM its name says it belongs to, when it says one. */
  vmid: number | null;
}
