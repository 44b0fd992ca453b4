/**
 * Runs a plan step by step under a journal. On an error, steps that can be undone are undone, each undo step
 * journaled first (undo.ts: a crash mid-undo leaves a record repair continues as an undo), and the journal
 * closed (nothing changed); once a step without a way back has run, the journal stays and `volchain repair`
 * finishes the plan (every step can be redone safely).
 */
import { appendFile } from 'node:fs/promises';
import type { Backend } from '../backends/backend.js';
import { VolchainError, asVolchainError } from '../errors.js';
import { parseVolumeName } from '../naming/index.js';
import { readQcow2Header } from '../qcow2/index.js';
import * as qemuImg from '../tools/qemu-img.js';
import { Journal } from './journal.js';
import { guardPlanOnDisk } from './layer-guard-disk.js';
import { runLiveStep, type LiveSession } from './live-executor.js';
import { isLiveStep, liveDamagesWhenInterrupted, liveIsLong, liveUndoOf } from './live-steps.js';
import { describeStep, type Plan, type Step } from './plan.js';
import { runJournaledUndo, type UndoStep } from './undo.js';
import { needsRepair } from './error-fields.js';

export type EngineEvent =
  | { type: 'step'; volid: string; index: number; total: number; description: string; long: boolean }
  | { type: 'progress'; volid: string; index: number; percent: number }
  | { type: 'step-done'; volid: string; index: number };

export interface ExecuteOptions {
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
}

/** How a step can be walked back when a later step fails. */
export function undoOf(step: Step): Step | 'nothing' | 'impossible' {
  if (isLiveStep(step)) return liveUndoOf(step);
  switch (step.kind) {
    case 'create-overlay':
      return { kind: 'remove', layer: step.layer };
    case 'rename':
      return { kind: 'rename', from: step.to, to: step.from };
    case 'grow':
    case 'freeze':
    case 'rebase': // the child's view is unchanged and it still may depend on the (intact) old parent
      return 'nothing';
    default:
      return 'impossible';
  }
}

/** The undo of the first `done` steps of `plan`, last step first; steps with nothing to undo left out. */
export function undoStepsOf(plan: Plan, done: number): UndoStep[] {
  const out: UndoStep[] = [];
  for (let i = done - 1; i >= 0; i--) {
    const undo = undoOf(plan.steps[i] as Step);
    if (undo === 'impossible') throw new VolchainError('INTERNAL', `step ${i + 1} of ${plan.operation} of ${plan.volid} cannot be undone`);
    if (undo !== 'nothing') out.push({ of: i, step: undo });
  }
  return out;
}

/**
 * Undoes the steps `journal` says are done, journaling each (undo.ts); continues an undo a crash interrupted.
 * Undo steps run as redo: the failed step may have left part of its effect, and after a crash the last undo
 * step may have run already.
 */
export async function undoJournaled(backend: Backend, journal: Journal, live?: LiveSession): Promise<void> {
  const { plan, completedSteps } = journal.record;
  await runJournaledUndo(journal, undoStepsOf(plan, completedSteps), async ({ of, step }) => {
    injectFault(plan, of, 'undo-before');
    await runStep(backend, plan.vmid, step, undefined, true, live);
    injectFault(plan, of, 'undo-after');
  });
}

/** Steps that leave their target half-changed when they fail midway (others are atomic or harmless). */
export function damagesWhenInterrupted(step: Step): boolean {
  return step.kind === 'commit' || (isLiveStep(step) && liveDamagesWhenInterrupted(step));
}

export function isLong(step: Step): boolean {
  return step.kind === 'commit' || step.kind === 'rebase' || (isLiveStep(step) && liveIsLong(step));
}

export async function executePlan(backend: Backend, plan: Plan, opts: ExecuteOptions = {}): Promise<void> {
  if (!opts.journal) {
    // Backends whose layers must be made usable first (LVM: activation) do it before anything is written:
    // a refusal here (another host holds the LVs) leaves no trace, not even a journal.
    try {
      await backend.activate?.(plan.vmid, stepLayers(plan.steps));
      // Headers the planner could not read (inactive LVs) are readable now: judge them before any step.
      await guardPlanOnDisk(backend, plan, stepLayers(plan.steps));
    } catch (err) {
      const error = asVolchainError(err);
      throw new VolchainError(error.code, `${error.message} (nothing was changed)`, { cause: err });
    }
  }
  const journal = opts.journal ?? (await Journal.begin(backend.journal(), backend.id, plan));
  let index = 0;
  try {
    // A journal written beforehand (VM-wide operations): activation comes now, under its protection.
    if (opts.journal) {
      await backend.activate?.(plan.vmid, stepLayers(plan.steps));
      await guardPlanOnDisk(backend, plan, stepLayers(plan.steps));
    }
    for (; index < plan.steps.length; index++) {
      const step = plan.steps[index] as Step;
      injectFault(plan, index, 'before');
      await journal.stepStarted(index);
      injectFault(plan, index, 'started');
      opts.onEvent?.({
        type: 'step', volid: plan.volid, index, total: plan.steps.length, description: describeStep(step), long: isLong(step),
      });
      await runStep(
        backend,
        plan.vmid,
        step,
        (percent) => opts.onEvent?.({ type: 'progress', volid: plan.volid, index, percent }),
        false,
        opts.live,
      );
      injectFault(plan, index, 'after');
      await journal.stepDone(index);
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
          await undoJournaled(backend, journal, opts.live);
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
  await journal.finish();
  await appendTestOpLog(plan);
}

/**
 * Test hook (documented in README): with VOLCHAIN_TEST_OPLOG=<file>, every finished plan is appended to that
 * file as one JSON line while the VM's lock is still held, so a concurrency test can replay the true order
 * of operations against its model.
 */
async function appendTestOpLog(plan: Plan): Promise<void> {
  const file = process.env.VOLCHAIN_TEST_OPLOG;
  if (!file) return;
  await appendFile(file, JSON.stringify(plan) + '\n');
}

/**
 * Runs one step. With `redo`, a step that may already have happened (repair after a crash) first checks
 * whether its effect is there, so that running any step twice is harmless.
 */
export async function runStep(
  backend: Backend,
  vmid: number,
  step: Step,
  onProgress?: (percent: number) => void,
  redo = false,
  live?: LiveSession,
): Promise<void> {
  if (isLiveStep(step)) return runLiveStep(backend, vmid, step, { onProgress, redo, live });
  const path = (name: string): string => backend.layerPath(vmid, name);
  const exists = async (name: string): Promise<boolean> => (await backend.statLayer(vmid, name)) !== undefined;
  const progress = onProgress ? { onProgress } : {};
  if (redo) await backend.activate?.(vmid, stepLayers([step]));
  switch (step.kind) {
    case 'create-overlay':
      if (redo) await backend.removeLayer(vmid, step.layer);
      await backend.createOverlay(vmid, step.layer, step.backing, step.sizeBytes);
      return;
    case 'rename': {
      if (redo) {
        const from = await backend.statLayer(vmid, step.from);
        const to = await backend.statLayer(vmid, step.to);
        if (!from && to) return;
        // Interrupted between link and unlink: both names are one layer.
        if (from && to && from.identity === to.identity) return backend.removeLayer(vmid, step.from);
      }
      await backend.renameLayer(vmid, step.from, step.to);
      return;
    }
    case 'replace':
      if (redo && !(await exists(step.from))) return;
      await backend.replaceLayer(vmid, step.from, step.to);
      return;
    case 'grow':
      await backend.prepareGrow(vmid, step.layer, step.sizeBytes);
      return;
    case 'freeze':
      await backend.settleFrozen(vmid, step.layer);
      return;
    case 'commit':
      await qemuImg.commitIntoBacking(path(step.top), progress);
      // Commit may have grown the base's virtual size to the top's.
      await backend.layerChanged?.(vmid, step.base);
      return;
    case 'rebase': {
      const header = await readQcow2Header(path(step.layer), step.layer);
      if (!(redo && header.backingFile === (step.onto ?? undefined))) {
        // A safe rebase copies data into the layer: a frozen layer that was shrunk (LVM) needs room first.
        await backend.prepareGrow(vmid, step.layer, header.virtualSize);
        await qemuImg.rebase(path(step.layer), step.onto ?? undefined, progress);
      }
      await backend.layerChanged?.(vmid, step.layer);
      // A snapshot layer stays frozen: give back what the rebase did not use.
      if (!isVolumeName(backend, step.layer)) await backend.settleFrozen(vmid, step.layer);
      return;
    }
    case 'remove':
      await backend.removeLayer(vmid, step.layer);
      return;
    case 'resize':
      if (backend.resizeLayer) await backend.resizeLayer(vmid, step.layer, step.format, step.sizeBytes);
      else await qemuImg.resizeImage(path(step.layer), step.format, step.sizeBytes);
      return;
    case 'internal-snapshot': {
      if (redo && step.action !== 'apply') {
        const names = (await readQcow2Header(path(step.layer), step.layer)).internalSnapshots.map((s) => s.name);
        if (names.includes(step.name) === (step.action === 'create')) return;
      }
      await qemuImg.internalSnapshot(path(step.layer), step.action, step.name);
      return;
    }
  }
}

/** Every layer name a list of steps mentions (for backends that must activate layers before using them). */
export function stepLayers(steps: readonly Step[]): string[] {
  const names = new Set<string>();
  for (const step of steps) {
    for (const key of ['layer', 'from', 'to', 'top', 'base', 'backing', 'onto'] as const) {
      const value = (step as Partial<Record<typeof key, unknown>>)[key];
      if (typeof value === 'string') names.add(value);
    }
  }
  return [...names];
}

/** True when `layer` is a volume's (current layer's) name rather than a snapshot or temporary layer. */
export function isVolumeName(backend: Backend, layer: string): boolean {
  try {
    parseVolumeName(backend.kind, layer);
    return true;
  } catch {
    return false;
  }
}

/**
 * Test hooks (documented in README): VOLCHAIN_CRASH_AT=<operation>:<step>[:before|started|after[:<volume>]] kills the
 * process with SIGKILL at that point (`undo-before`/`undo-after`: around the undo of that step, after a later
 * step failed); VOLCHAIN_FAIL_AT=<operation>:<step>[:<volume name>] makes the step
 * fail with an error. Steps count from 1 as in --dry-run output.
 */
export type FaultMoment = 'before' | 'started' | 'after' | 'undo-before' | 'undo-after';

export function injectFault(plan: Plan, index: number, moment: FaultMoment): void {
  const crash = process.env.VOLCHAIN_CRASH_AT;
  if (crash) {
    const [op, step, when = 'started', volume] = crash.split(':');
    if (
      op === plan.operation &&
      Number(step) === index + 1 &&
      when === moment &&
      (volume === undefined || plan.volid.endsWith(volume))
    ) {
      process.kill(process.pid, 'SIGKILL');
    }
  }
  const fail = process.env.VOLCHAIN_FAIL_AT;
  if (fail && moment === 'started') {
    const [op, step, volume] = fail.split(':');
    if (op === plan.operation && Number(step) === index + 1 && (volume === undefined || plan.volid.endsWith(volume))) {
      throw new VolchainError('INTERNAL', `injected failure at ${plan.operation} step ${index + 1} (VOLCHAIN_FAIL_AT)`);
    }
  }
}
