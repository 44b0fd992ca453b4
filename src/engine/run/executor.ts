/**
 * Runs a plan step by step under a journal. On an error, steps that can be undone are undone, each undo step
 * journaled first (undo.ts: a crash mid-undo leaves a record repair continues as an undo), and the journal
 * closed (nothing changed); once a step without a way back has run, the journal stays and `volchain repair`
 * finishes the plan (every step can be redone safely).
 */
import { appendFile } from 'node:fs/promises';
import type { Backend } from '../../backends/backend.js';
import { VolchainError, asVolchainError } from '../../errors.js';
import type { Plan, Step } from '../../model/plan.js';
import { Journal } from './journal.js';
import { guardPlanOnDisk } from '../read/layer-guard-disk.js';
import { dispatchStep } from '../live/step.js';
import type { LiveSession } from '../live/qemu-session.js';
import { describeStep } from '../plan/describe-step.js';
import { damagesWhenInterrupted, injectFault, isLong, stepLayers, undoOf, walkedBackOnRepair, type EngineEvent } from './step-rules.js';
import { undoPlanJournaled } from './undo.js';
import { needsRepair } from './error-fields.js';
import type { TestHooks } from '../../settings.js';

export interface ExecuteOptions {
  /** The session's test hooks (crash or fail a step, the operation log): passed down, never read here. */
  hooks: TestHooks;
  onEvent?: (event: EngineEvent) => void;
  /** A journal written beforehand (VM-wide operations record every disk's plan before running any). */
  journal?: Journal;
  /** The running QEMU that live steps (qmp-*) act through; without it they run their offline equivalents. */
  live?: LiveSession;
  /**
   * After a failure fully undone, keep the journal as "nothing done yet" (Journal.restart) instead of removing
   * it: a VM-wide operation that cannot take back the other disks leaves every disk for `repair --all`.
   */
  keepJournalWhenUndone?: boolean;
  /**
   * Runs once every step is done and journaled, before the journal is removed (move: the source's removal is
   * journaled on the source here, so that no crash finds neither record). A failure leaves the journal for repair.
   */
  beforeFinish?: () => Promise<void>;
}

/**
 * Undoes the steps `journal` says are done, journaling each (undo.ts); continues an undo a crash interrupted.
 * Undo steps run as redo: the failed step may have left part of its effect, and after a crash the last undo
 * step may have run already.
 */
export async function undoJournaled(backend: Backend, journal: Journal, hooks: TestHooks, live?: LiveSession): Promise<void> {
  await undoPlanJournaled(journal, hooks, (step) => runStep(backend, journal.record.plan.vmid, step, { redo: true, ...(live ? { live } : {}) }));
}

export async function executePlan(backend: Backend, plan: Plan, opts: ExecuteOptions): Promise<void> {
  if (!opts.journal) {
    // Backends whose layers must be made usable first (LVM: activation) do it before anything is written:
    // a refusal here (another host holds the LVs) leaves no trace, not even a journal.
    try {
      await backend.activate(plan.vmid, stepLayers(plan.steps));
      // Headers the planner could not read (inactive LVs) are readable now: judge them before any step.
      await guardPlanOnDisk(backend, plan, stepLayers(plan.steps));
    } catch (err) {
      const error = asVolchainError(err);
      throw new VolchainError(error.code, `${error.message} (nothing was changed)`, { cause: err });
    }
  }
  // Our own first write already says step 1 is running (Journal.begin): one durable write fewer.
  const ownJournal = opts.journal === undefined;
  const journal = opts.journal ?? (await Journal.begin(backend.journal(), backend.id, plan, undefined, true));
  let index = 0;
  try {
    // A journal written beforehand (VM-wide operations): activation comes now, under its protection.
    if (opts.journal) {
      await backend.activate(plan.vmid, stepLayers(plan.steps));
      await guardPlanOnDisk(backend, plan, stepLayers(plan.steps));
    }
    for (; index < plan.steps.length; index++) {
      const step = plan.steps[index] as Step;
      injectFault(plan, index, 'before', opts.hooks);
      // One durable write per step, before it runs: "steps before this one done, this one running". The
      // separate "done" write after each step is left out (kept only where repair reads it, below): a crash
      // between a step and the next write leaves the record saying that step is running, so repair redoes it,
      // which is harmless (every step checks whether its effect is there when redone) and is exactly the
      // state a crash right after the step and before its "done" write always left (the crash tests' `after`
      // point). Nothing but this write separates one step from the next, so repair never redoes a step
      // after a later one ran. After the last step the record is removed (finish) with no write between.
      if (index > 0 || !ownJournal) await journal.stepStarting(index);
      injectFault(plan, index, 'started', opts.hooks);
      opts.onEvent?.({
        type: 'step',
        volid: plan.volid,
        index,
        total: plan.steps.length,
        description: describeStep(step),
        long: isLong(step),
      });
      await runStep(backend, plan.vmid, step, {
        onProgress: (percent) => opts.onEvent?.({ type: 'progress', volid: plan.volid, index, percent }),
        ...(opts.live ? { live: opts.live } : {}),
      });
      injectFault(plan, index, 'after', opts.hooks);
      // Repair decides between finishing and walking back from what is left to run (repair-record.ts
      // asWalkBack): after a step it walks back (a clone's copy), the record must say it is done before the
      // next step runs, or a crash there would discard a finished copy that repair could complete.
      if (walkedBackOnRepair(step)) await journal.stepDone(index);
      opts.onEvent?.({ type: 'step-done', volid: plan.volid, index });
    }
  } catch (err) {
    const error = asVolchainError(err);
    const done = plan.steps.slice(0, index);
    const failed = plan.steps[index];
    const undos = done.map(undoOf);
    const fields = { volid: plan.volid, vmid: plan.vmid, operation: plan.operation, step: index + 1 };
    if (!undos.includes('impossible') && !(failed && damagesWhenInterrupted(failed))) {
      if (undos.some((u) => u !== 'nothing')) {
        // Journaled (undo.ts): a crash from here on leaves a record that repair continues as an undo.
        journal.beginUndo(index, error.message);
        try {
          await undoJournaled(backend, journal, opts.hooks, opts.live);
        } catch (undoErr) {
          const undoError = asVolchainError(undoErr);
          throw new VolchainError(
            undoError.code,
            `${error.message}; undoing ${plan.operation} of ${plan.volid} then failed: ${undoError.message}: ` +
              `run 'volchain repair ${plan.volid}' to finish the undo`,
            needsRepair(fields, undoErr),
          );
        }
      }
      if (opts.keepJournalWhenUndone) {
        await journal.restart(error.message);
        throw new VolchainError(error.code, `${error.message} (this disk was left as it was)`, needsRepair(fields, err));
      }
      await journal.finish();
      throw new VolchainError(error.code, `${error.message} (nothing was changed)`, { cause: err, outcome: 'unchanged', fields });
    }
    // Best effort: on a full storage even this small write can fail, and the journal as last written
    // (this step started) is already enough for repair.
    await journal.fail(error.message).catch(() => undefined);
    throw new VolchainError(
      error.code,
      `${error.message}; ${plan.operation} of ${plan.volid} stopped at step ${index + 1}/${plan.steps.length} ` +
        `(${failed ? describeStep(failed) : 'end'}): run 'volchain repair ${plan.volid}' to finish it`,
      needsRepair(fields, err),
    );
  }
  await opts.beforeFinish?.();
  await journal.finish();
  await appendTestOpLog(plan, opts.hooks);
}

/**
 * Test hook (documented in README): with VOLCHAIN_TEST_OPLOG=<file>, every finished plan is appended to that
 * file as one JSON line while the VM's lock is still held, so a concurrency test can replay the true order
 * of operations against its model.
 */
async function appendTestOpLog(plan: Plan, hooks: TestHooks): Promise<void> {
  const file = hooks.testOplog;
  if (!file) return;
  await appendFile(file, JSON.stringify(plan) + '\n');
}

export interface RunStepOptions {
  /** Told how far a long step (commit, rebase, block job) has come. */
  onProgress?: (percent: number) => void;
  /**
   * The step may already have happened (repair after a crash, or an undo step): it first checks whether its
   * effect is there, so that running any step twice is harmless. Default false.
   */
  redo?: boolean;
  /** The running QEMU that live steps (qmp-*) act through; without it they run their offline equivalents (redo only). */
  live?: LiveSession;
}

/** Runs one step, live or offline (engine/live/step.ts's dispatchStep tells them apart). */
export async function runStep(backend: Backend, vmid: number, step: Step, opts: RunStepOptions = {}): Promise<void> {
  return dispatchStep(backend, vmid, step, { onProgress: opts.onProgress, redo: opts.redo ?? false, live: opts.live });
}
