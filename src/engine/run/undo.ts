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
 * The one undo stack of every executor: one plan (executor.ts), the plans of a live or VM-wide operation
 * (engine/live/group.ts), and repair continuing an interrupted undo (repair-record.ts). Running a step is the
 * caller's (it passes a function in, so that this module imports neither executor: no cycle).
 */
import { VolchainError } from '../../errors.js';
import type { JournalRecord } from '../../journal/record.js';
import type { Plan } from '../../model/plan.js';
import type { Journal } from './journal.js';
import { describeStep } from '../plan/describe-step.js';
import type { Step } from '../../model/plan.js';
import { injectFault, undoOf } from './step-rules.js';
import type { TestHooks } from '../../settings.js';

/** One step of an undo: the plan's step it walks back (0-based index) and what to run. */
export interface UndoStep {
  of: number;
  step: Step;
}

/** The undo of the first `done` steps of `plan`, last step first; steps with nothing to undo left out. */
export function undoStepsOf(plan: Plan, done: number): UndoStep[] {
  const out: UndoStep[] = [];
  for (let i = done - 1; i >= 0; i--) {
    const step = plan.steps[i] as Step;
    const undo = step.kind === 'freeze' ? thawOf(plan, step.layer) : undoOf(step);
    if (undo === 'impossible') throw new VolchainError('INTERNAL', `step ${i + 1} of ${plan.operation} of ${plan.volid} cannot be undone`);
    if (undo !== 'nothing') out.push({ of: i, step: undo });
  }
  return out;
}

/**
 * The undo of a `freeze` of `layer` (LVM: shrunk to its image's end): grown back to full size for its virtual
 * size as the plan gives it (the overlay made on it, or its own grow), since walking back the steps before
 * makes it writable again. A freeze is a plan's last step or follows a step without a way back, so only a
 * plan walked back whole (vm-undo.ts) undoes one. 'nothing' when the plan does not give the size.
 */
function thawOf(plan: Plan, layer: string): Step | 'nothing' {
  for (const s of plan.steps) {
    if ((s.kind === 'create-overlay' && s.backing === layer) || (s.kind === 'grow' && s.layer === layer)) {
      return { kind: 'grow', layer, sizeBytes: s.sizeBytes };
    }
  }
  return 'nothing';
}

/**
 * Undoes the steps `journal` says are done (its record must say it is undoing: Journal.beginUndo), journaling
 * each; continues an undo a crash interrupted. `run` runs one undo step as a redo: the failed step may have
 * left part of its effect, and after a crash the last undo step may have run already. The test hooks
 * VOLCHAIN_CRASH_AT=<operation>:<step>:undo-before|undo-after (in `hooks`, the session's) fire around the undo of that step.
 */
export async function undoPlanJournaled(journal: Journal, hooks: TestHooks, run: (step: Step) => Promise<void>): Promise<void> {
  const { plan, completedSteps } = journal.record;
  await runJournaledUndo(journal, undoStepsOf(plan, completedSteps), async ({ of, step }) => {
    injectFault(plan, of, 'undo-before', hooks);
    await run(step);
    injectFault(plan, of, 'undo-after', hooks);
  });
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
