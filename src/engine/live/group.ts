/**
 * Running the plans of every disk of one live operation together, so that the qmp-snapshot steps of all disks
 * go to QEMU as one transaction.
 *
 * Each step is journaled before and after it runs, exactly as offline (engine/run/executor.ts). On an error
 * before any point of no return, every step done is undone (the new tops are closed in QEMU, renamed back,
 * removed), journaled as offline (engine/run/undo.ts, see undoGroup): nothing changed. After one (QEMU switched onto the new tops; a snapshot layer was removed; a
 * commit wrote into the snapshot's layer), the journals stay and `repair` finishes the operation: live when
 * QEMU still runs, with the offline equivalent of each step when it is gone (engine/plan/live-steps.ts).
 */
import type { Backend } from '../../backends/backend.js';
import { VolchainError, asVolchainError } from '../../errors.js';
import type { Journal } from '../run/journal.js';
import type { LiveStep, Plan, Step } from '../../model/plan.js';
import { describeStep } from '../plan/describe-step.js';
import { damagesWhenInterrupted, injectFault, isLong, stepLayers, undoOf, type EngineEvent } from '../run/step-rules.js';
import { undoPlanJournaled, undoStepsOf } from '../run/undo.js';
import { snapshotTransaction, type LiveSession } from './qemu-session.js';
import type { TestHooks } from '../../settings.js';
import { dispatchStep } from './step.js';

export interface GroupEntry {
  backend: Backend;
  plan: Plan;
  /** Written before anything runs (VM-wide operations journal every disk first). */
  journal: Journal;
}

const isBarrier = (step: Step | undefined): step is Extract<LiveStep, { kind: 'qmp-snapshot' }> => step?.kind === 'qmp-snapshot';

/**
 * Runs the plans of one operation: each plan up to its qmp-snapshot step, then those steps of every plan in
 * one transaction, then the rest. Offline plans (disks QEMU does not have open) run alongside.
 */
export async function executeGroup(
  entries: readonly GroupEntry[],
  live: LiveSession | undefined,
  /** `hooks`: the session's test hooks (crash or fail a step), as the offline executor takes them. */
  opts: { hooks: TestHooks; onEvent?: (e: EngineEvent) => void },
): Promise<void> {
  const cursor = entries.map(() => 0);
  const done: { entry: number; step: Step }[] = [];
  let running: { entry: number; step: Step }[] = [];

  const begin = async (i: number): Promise<void> => {
    const e = entries[i] as GroupEntry;
    const index = cursor[i] as number;
    const step = e.plan.steps[index] as Step;
    injectFault(e.plan, index, 'before', opts.hooks);
    await e.journal.stepStarted(index);
    injectFault(e.plan, index, 'started', opts.hooks);
    opts.onEvent?.({ type: 'step', volid: e.plan.volid, index, total: e.plan.steps.length, description: describeStep(step), long: isLong(step) });
  };
  const end = async (i: number): Promise<void> => {
    const e = entries[i] as GroupEntry;
    const index = cursor[i] as number;
    injectFault(e.plan, index, 'after', opts.hooks);
    await e.journal.stepDone(index);
    opts.onEvent?.({ type: 'step-done', volid: e.plan.volid, index });
    done.push({ entry: i, step: e.plan.steps[index] as Step });
    cursor[i] = index + 1;
  };

  try {
    for (const e of entries) await e.backend.activate(e.plan.vmid, stepLayers(e.plan.steps));
    for (;;) {
      for (const [i, e] of entries.entries()) {
        for (let step = e.plan.steps[cursor[i] as number]; step && !isBarrier(step); step = e.plan.steps[cursor[i] as number]) {
          const index = cursor[i] as number;
          running = [{ entry: i, step }];
          await begin(i);
          await dispatchStep(e.backend, e.plan.vmid, step, {
            onProgress: (percent) => opts.onEvent?.({ type: 'progress', volid: e.plan.volid, index, percent }),
            redo: false,
            live,
          });
          await end(i);
          running = [];
        }
      }
      const waiting = entries.map((_, i) => i).filter((i) => isBarrier(entries[i]?.plan.steps[cursor[i] as number]));
      if (waiting.length === 0) break;
      if (!live) throw new VolchainError('INTERNAL', 'a live snapshot needs a connection to the running QEMU');
      running = waiting.map((i) => ({ entry: i, step: entries[i]?.plan.steps[cursor[i] as number] as Step }));
      for (const i of waiting) await begin(i);
      await snapshotTransaction(live, running.map((r) => r.step).filter(isBarrier));
      for (const i of waiting) await end(i);
      running = [];
    }
  } catch (err) {
    const error = asVolchainError(err);
    const undoable = !done.some((d) => undoOf(d.step) === 'impossible') && !running.some((r) => damagesWhenInterrupted(r.step));
    if (undoable) {
      try {
        await undoGroup(entries, cursor, error.message, live, opts.hooks);
      } catch (undoErr) {
        for (const e of entries) await e.journal.fail(error.message);
        throw new VolchainError(
          error.code,
          `${error.message}; undoing what was done also failed (${asVolchainError(undoErr).message}): run 'volchain repair ${entries[0]?.plan.volid ?? ''}'`,
          { cause: err },
        );
      }
      for (const e of entries) await e.journal.finish();
      throw new VolchainError(error.code, `${error.message} (nothing was changed)`, { cause: err });
    }
    const at = running[0];
    const where = at ? ` at '${describeStep(at.step)}' of ${entries[at.entry]?.plan.volid ?? '?'}` : '';
    for (const r of running) await entries[r.entry]?.journal.fail(error.message);
    // Disks whose plan ran to its end are done; the others stay journaled for repair.
    for (const [i, e] of entries.entries()) if ((cursor[i] as number) >= e.plan.steps.length) await e.journal.finish();
    const volids = entries.filter((_, i) => (cursor[i] as number) < (entries[i]?.plan.steps.length ?? 0)).map((e) => e.plan.volid);
    const repair = volids.length === 1 ? `volchain repair ${volids[0] ?? ''}` : 'volchain repair --all';
    throw new VolchainError(
      error.code,
      `${error.message}; the ${entries[0]?.plan.operation ?? 'operation'} stopped${where}: run '${repair}' to finish it ` +
        '(it talks to QEMU if it still runs, else finishes offline)',
      { cause: err },
    );
  }
  for (const e of entries) await e.journal.finish();
}

/**
 * Walks back the steps every plan of the group has done, through the journaled undo every executor uses
 * (engine/run/undo.ts), the disks in the reverse of the order they ran (each disk's steps last first).
 *
 * Every disk's record is marked "undoing" (durably) before the first undo step runs on any disk: a crash
 * during the undo then leaves records that repair continues as undos, never one it redoes forward (that
 * would finish the operation on a disk whose partner disks are half walked back). Crash states: killed while
 * the records are being marked, no undo step has run yet: repair walks back the disks marked and finishes
 * the others (each disk's chain is consistent either way); killed later, repair finishes the undo of every
 * disk from the progress its record holds.
 */
async function undoGroup(
  entries: readonly GroupEntry[],
  cursor: readonly number[],
  error: string,
  live: LiveSession | undefined,
  hooks: TestHooks,
): Promise<void> {
  // Nothing to walk back (every step done undoes as nothing): the caller closes the journals as they are.
  if (entries.every((e) => undoStepsOf(e.plan, e.journal.record.completedSteps).length === 0)) return;
  const order = entries.map((_, i) => i).reverse();
  for (const i of order) {
    const e = entries[i] as GroupEntry;
    // A plan without steps has nothing to walk back or to finish (its record cannot name a step).
    if (e.plan.steps.length === 0) continue;
    // The step each disk stopped before (a disk that ran its whole plan names its last step).
    e.journal.beginUndo(Math.min(cursor[i] as number, e.plan.steps.length - 1), error);
    await e.journal.undoProgress(0);
  }
  for (const i of order) {
    const e = entries[i] as GroupEntry;
    if (e.plan.steps.length === 0) continue;
    await undoPlanJournaled(e.journal, hooks, (step) => dispatchStep(e.backend, e.plan.vmid, step, { onProgress: undefined, redo: true, live }));
  }
}
