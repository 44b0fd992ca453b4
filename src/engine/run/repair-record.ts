/**
 * What `repair` does with one journal record it can read: an operation interrupted going forward is
 * finished (every step can be redone safely); one interrupted while its steps were being walked back after a
 * failure (the record has `undo`, see undo.ts) has its undo finished instead: redoing it forward would meet a
 * chain that is half-restored. A record whose remaining steps include one repair cannot run forward (a clone's
 * copy, whose source is on another storage) is walked back the same way (asWalkBack).
 */
import type { Backend } from '../../backends/backend.js';
import type { JournalRecord } from '../../journal/record.js';
import { runStep, undoJournaled } from './executor.js';
import { stepLayers } from './step-rules.js';
import { guardPlanOnDisk } from '../read/layer-guard-disk.js';
import { Journal } from './journal.js';
import type { LiveSession } from '../live/qemu-session.js';
import { describeStep } from '../plan/describe-step.js';
import { describeUndoRepair, undoStepsOf } from './undo.js';
import type { TestHooks } from '../../settings.js';
import { walkedBackOnRepair } from './step-rules.js';

/**
 * `record` turned into an undo when repair must walk it back rather than finish it: a step left to run
 * (running or not started) cannot be redone here (step-rules.ts walkedBackOnRepair: a clone's copy, whose
 * source is on another storage). The step that was running counts as done, so that its undo (removing the
 * partial copy) runs too; undo steps run as redo, so that is harmless when it had not started. Undefined
 * when the record is finished forward (or is an undo already).
 */
function asWalkBack(record: JournalRecord): JournalRecord | undefined {
  if (record.undo) return undefined;
  const left = record.plan.steps.slice(record.completedSteps);
  if (!left.some(walkedBackOnRepair)) return undefined;
  const done = record.runningStep !== null ? record.runningStep + 1 : record.completedSteps;
  return {
    ...record,
    completedSteps: done,
    runningStep: null,
    undo: { failedStep: record.runningStep ?? record.completedSteps, undone: 0, error: 'interrupted; the partial copy is discarded' },
  };
}

/** The lines `repair` reports for `record` (what it does, or with --dry-run would do). */
export function repairActions(record: JournalRecord): string[] {
  const walkBack = asWalkBack(record);
  if (walkBack) return describeUndoRepair(walkBack, undoStepsOf(walkBack.plan, walkBack.completedSteps));
  if (record.undo) return describeUndoRepair(record, undoStepsOf(record.plan, record.completedSteps));
  const remaining = record.plan.steps.slice(record.completedSteps);
  return [`finish ${record.plan.operation} (${remaining.length} of ${record.plan.steps.length} steps left)`, ...remaining.map(describeStep)];
}

/**
 * Finishes `record`'s operation (or its undo), then removes the record. Called under the VM's lock. A crash
 * in here leaves the record as it was (forward) or with the undo's progress (undo): repair runs again.
 * `hooks`: the session's test hooks (an interrupted undo's steps can crash on them as in the first run).
 */
export async function repairRecord(backend: Backend, record: JournalRecord, hooks: TestHooks, live?: LiveSession): Promise<void> {
  const walkBack = asWalkBack(record);
  if (walkBack) {
    // Written before the first undo step (undoJournaled's first write): a crash from here on continues the undo.
    await undoJournaled(backend, Journal.resume(backend.journal(), walkBack), hooks, live);
  } else if (record.undo) {
    await undoJournaled(backend, Journal.resume(backend.journal(), record), hooks, live);
  } else {
    if (record.completedSteps === 0 && record.runningStep === null) {
      // Nothing ran yet (a VM-wide operation's disk after the one that failed, or whose own steps were undone):
      // the chain is as planned, so the executor's check of the layers on disk holds before the first step,
      // and a layer volchain will not change (marked corrupt, internal snapshots) is refused here too.
      await backend.activate(record.plan.vmid, stepLayers(record.plan.steps));
      await guardPlanOnDisk(backend, record.plan, stepLayers(record.plan.steps));
    }
    for (const step of record.plan.steps.slice(record.completedSteps))
      await runStep(backend, record.plan.vmid, step, { redo: true, ...(live ? { live } : {}) });
  }
  await backend.journal().remove(record);
}
