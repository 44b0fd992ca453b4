/**
 * The operation journal: one record per running operation, rewritten durably before each step (the
 * executor's one write per step, executor.ts; the live group executor also writes after each), so that after
 * a crash `repair` knows which step to redo first. Where records live is the
 * backend's choice (its JournalStore): on the storage itself, so another host that sees a shared storage
 * can finish what a dead host started.
 */
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { Backend } from '../../backends/backend.js';
import type { JournalLeftover, JournalRecord, JournalStore, ListJournalOptions } from '../../journal/record.js';
import type { Plan } from '../../model/plan.js';

export class Journal {
  private constructor(
    private readonly store: JournalStore,
    readonly record: JournalRecord,
  ) {}

  /**
   * Writes the record of `plan`, nothing done yet. `firstStepRunning`: the record says step 1 is running
   * (stepStarting(0) folded into this first write, the executor's way): nothing has changed yet either way,
   * and repair meets "step 1 running" exactly as after a crash just before step 1 did anything.
   */
  static async begin(store: JournalStore, storage: string, plan: Plan, group?: string, firstStepRunning = false): Promise<Journal> {
    const record: JournalRecord = {
      id: `${plan.vmid}-${Date.now()}-${randomUUID().slice(0, 8)}`,
      storage,
      host: hostname(),
      pid: process.pid,
      startedAt: new Date().toISOString(),
      plan,
      completedSteps: 0,
      runningStep: firstStepRunning && plan.steps.length > 0 ? 0 : null,
      ...(group !== undefined ? { group } : {}),
    };
    const journal = new Journal(store, record);
    await store.save(record);
    return journal;
  }

  async stepStarted(index: number): Promise<void> {
    this.record.runningStep = index;
    await this.store.save(this.record);
  }

  /**
   * Steps before `index` are done and step `index` is about to run, in one durable write: the executor's one
   * write per step (executor.ts says why the separate "done" write of the step before is not needed).
   */
  async stepStarting(index: number): Promise<void> {
    this.record.completedSteps = index;
    this.record.runningStep = index;
    await this.store.save(this.record);
  }

  async stepDone(index: number): Promise<void> {
    this.record.runningStep = null;
    this.record.completedSteps = index + 1;
    await this.store.save(this.record);
  }

  /** The journal of a record read back from the store (repair continues it). */
  static resume(store: JournalStore, record: JournalRecord): Journal {
    return new Journal(store, record);
  }

  /** Step `failedStep` failed and the steps before it are walked back (undo.ts): from now on repair undoes too. */
  beginUndo(failedStep: number, error: string): void {
    this.record.undo = { failedStep, undone: 0, error };
  }

  /**
   * Writes the record of a plan that ran to its end (and whose record `finish` removed) again, now saying
   * "undoing, 0 undo steps done": a VM-wide operation walks back the disks it finished when a later disk
   * fails (vm-undo.ts). Durable when this returns; from then on a crash leaves the undo to `repair`.
   */
  async reopenForUndo(error: string): Promise<void> {
    this.record.completedSteps = this.record.plan.steps.length;
    this.record.runningStep = null;
    this.record.undo = { failedStep: this.record.plan.steps.length, undone: 0, error };
    await this.store.save(this.record);
  }

  /** `undone` undo steps are done (written before the next one runs). */
  async undoProgress(undone: number): Promise<void> {
    if (!this.record.undo) throw new Error('undoProgress without beginUndo');
    this.record.undo.undone = undone;
    this.record.runningStep = null;
    await this.store.save(this.record);
  }

  /**
   * Makes the record say "nothing done yet" again after the plan was fully undone, with why it stopped: a
   * VM-wide operation keeps every disk's record so that `repair --all` finishes the operation on every disk.
   */
  async restart(error: string): Promise<void> {
    this.record.completedSteps = 0;
    this.record.runningStep = null;
    delete this.record.undo;
    this.record.error = error;
    await this.store.save(this.record);
  }

  async fail(message: string): Promise<void> {
    this.record.error = message;
    await this.store.save(this.record);
  }

  async finish(): Promise<void> {
    await this.store.remove(this.record);
  }
}

/** Unfinished operations on a storage (optionally only those of one VM), oldest first. */
export function pendingOperations(backend: Backend, opts: ListJournalOptions = {}): Promise<JournalRecord[]> {
  return backend.journal().list(opts);
}

/**
 * Journal files of these storages that are not records: set aside as unreadable, or temp files a crash
 * left. Each file once (storage ids naming one directory share its journal).
 */
export async function journalLeftovers(backends: readonly Backend[]): Promise<JournalLeftover[]> {
  const out = new Map<string, JournalLeftover>();
  for (const backend of backends) {
    for (const l of await backend.journal().leftovers()) if (!out.has(l.path)) out.set(l.path, { ...l, storage: backend.id });
  }
  return [...out.values()];
}
