/**
 * Walking back the steps of a plan that failed part-way, journaled. Before each undo step the journal
 * records how far the undo has come (an fsync'ed write, like every journal write), so that a crash in the
 * middle of an undo leaves a record saying "undoing, n undo steps done": `repair` then continues the undo
 * instead of redoing the plan forward, which would meet a half-restored chain (both names of a rename
 * present) and fail.
 *
 * Crash states: killed before an undo step's record is written, the previous record holds (that step not
 * done: repair runs it); killed after the undo step ran but before the next record, repair runs that undo
 * step again, which is harmless because undo steps run as redo (each checks whether its effect is there).
 *
 * This module knows only the journal side; which step undoes which, and running a step, are the executor's
 * (executor.ts passes them in, so that this module does not import it back).
 */
import type { JournalRecord } from '../../journal/record.js';
import type { Journal } from './journal.js';
import { describeStep, type Step } from '../plan/describe-step.js';

/** One step of an undo: the plan's step it walks back (0-based index) and what to run. */
export interface UndoStep {
  of: number;
  step: Step;
}

/**
 * Runs `steps` (the whole undo, last plan step first) from where an earlier attempt stopped
 * (`record.undo.undone`), writing the progress durably before each undo step.
 */
export async function runJournaledUndo(journal: Journal, steps: readonly UndoStep[], run: (undo: UndoStep) => Promise<void>): Promise<void> {
  for (let n = journal.record.undo?.undone ?? 0; n < steps.length; n++) {
    // Durable before the step runs: a crash from here on finds this record and continues from undo step n.
    await journal.undoProgress(n);
    await run(steps[n] as UndoStep);
  }
  await journal.undoProgress(steps.length);
}

/** What repair does for an interrupted undo, for its report (and --dry-run). */
export function describeUndoRepair(record: JournalRecord, steps: readonly UndoStep[]): string[] {
  const left = steps.slice(record.undo?.undone ?? 0);
  const failedStep = record.undo?.failedStep ?? record.completedSteps;
  // A plan that ran to its end is walked back when another disk of its VM-wide operation failed (vm-undo.ts).
  const why = failedStep >= record.plan.steps.length ? 'it was done, then' : `it failed at step ${failedStep + 1}:`;
  return [
    `finish undoing ${record.plan.operation} (${why} ${record.undo?.error ?? 'unknown error'}; ${left.length} undo step(s) left)`,
    ...left.map((s) => `undo step ${s.of + 1}: ${describeStep(s.step)}`),
  ];
}
