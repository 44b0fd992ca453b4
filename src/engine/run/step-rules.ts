/**
 * What the executors (executor.ts for one plan, engine/live/group.ts for the plans of one live operation) know
 * about steps besides running them: how each is undone, which damage their target when interrupted, which are
 * long, which layers they touch; the events they report; and the test hooks that crash or fail a step.
 * Pure apart from the test hooks (which may kill the process; they come from the session's settings).
 */
import type { Backend } from '../../backends/backend.js';
import { VolchainError } from '../../errors.js';
import type { Step, Plan } from '../../model/plan.js';
import { parseBaseBackingRef, parseVolumeName } from '../../naming/index.js';
import { isLiveStep, liveDamagesWhenInterrupted, liveIsLong, liveUndoOf } from '../plan/live-steps.js';
import type { TestHooks } from '../../settings.js';

export type EngineEvent =
  | { type: 'step'; volid: string; index: number; total: number; description: string; long: boolean }
  | { type: 'progress'; volid: string; index: number; percent: number }
  | { type: 'step-done'; volid: string; index: number };

/** How a step can be walked back when a later step fails. */
export function undoOf(step: Step): Step | 'nothing' | 'impossible' {
  if (isLiveStep(step)) return liveUndoOf(step);
  switch (step.kind) {
    case 'create-overlay':
    case 'copy':
    case 'convert': // the copy is a new temporary layer; its source is only read
    case 'create-linked': // a new temporary layer; the base it names is only read
    case 'import-layer': // a new temporary layer, filled from the import's stream
      return { kind: 'remove', layer: step.layer };
    case 'verify-copy':
    case 'verify-import':
      return 'nothing';
    case 'rename':
      return { kind: 'rename', from: step.to, to: step.from };
    case 'grow':
    case 'freeze': // the layer stays frozen; a plan walked back whole grows it again (executor.ts undoStepsOf)
    case 'rebase': // the child's view is unchanged and it still may depend on the (intact) old parent
    case 'verify': // reads only
    case 'protect': // a base volume stays read-only; the rename before it is what an undo takes back
      return 'nothing';
    case 'copy-layer': // a move's copy on the target: the source is only read
      return { kind: 'remove', layer: step.layer };
    case 'verify-layer':
      return 'nothing';
    case 'reassign-layer':
      return { kind: 'reassign-layer', vmid: step.newVmid, name: step.newName, newVmid: step.vmid, newName: step.name, volume: step.volume };
    case 'relink':
      return { ...step, parent: step.oldParent, oldParent: step.parent };
    case 'internal-snapshot':
      // Only a plan walked back whole (a finished disk of a failed VM-wide snapshot) has a create step done.
      return step.action === 'create' ? { kind: 'internal-snapshot', layer: step.layer, action: 'delete', name: step.name } : 'impossible';
    default:
      return 'impossible';
  }
}

/** Steps that leave their target half-changed when they fail midway (others are atomic or harmless). */
export function damagesWhenInterrupted(step: Step): boolean {
  return step.kind === 'commit' || (isLiveStep(step) && liveDamagesWhenInterrupted(step));
}

export function isLong(step: Step): boolean {
  return (
    step.kind === 'commit' ||
    step.kind === 'rebase' ||
    step.kind === 'copy' ||
    step.kind === 'verify-copy' ||
    step.kind === 'convert' ||
    step.kind === 'verify' ||
    step.kind === 'copy-layer' ||
    step.kind === 'verify-layer' ||
    step.kind === 'import-layer' ||
    (isLiveStep(step) && liveIsLong(step))
  );
}

/**
 * Steps repair cannot run forward: they read a source outside this storage's journal (a clone's copy and its
 * check, whose source may be another storage, maybe gone or changed since). A record with one of these
 * left to run is walked back instead (repair-record.ts): a clone interrupted before its final rename ends
 * as no clone at all.
 */
export function walkedBackOnRepair(step: Step): boolean {
  // An import's layers and their check read the import's stream, which is gone after a crash.
  return (
    step.kind === 'copy' ||
    step.kind === 'verify-copy' ||
    step.kind === 'copy-layer' ||
    step.kind === 'verify-layer' ||
    step.kind === 'import-layer' ||
    step.kind === 'verify-import'
  );
}

/** Every layer name a list of steps mentions (for backends that must activate layers before using them). */
export function stepLayers(steps: readonly Step[]): string[] {
  const names = new Set<string>();
  for (const step of steps) {
    for (const key of ['layer', 'from', 'to', 'top', 'base', 'backing', 'onto', 'against'] as const) {
      const value = (step as Partial<Record<typeof key, unknown>>)[key];
      // A linked clone's base (dir `../<vmid>/base-…`, LVM the base LV; a rebase's new backing, a template's new
      // name) is no layer of this VM's volumes to activate with them: only read (the backend activates it so).
      if (typeof value === 'string' && parseBaseBackingRef(value) === undefined && parseBaseBackingRef(value, 'lvm') === undefined) names.add(value);
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
 * fail with an error. Steps count from 1 as in --dry-run output. `hooks` are the session's settings' (given to
 * createVolchain, or the environment read once when the Volchain was made), never the environment now.
 */
export type FaultMoment = 'before' | 'started' | 'after' | 'undo-before' | 'undo-after';

export function injectFault(plan: Plan, index: number, moment: FaultMoment, hooks: Pick<TestHooks, 'crashAt' | 'failAt'>): void {
  const crash = hooks.crashAt;
  if (crash) {
    const [op, step, when = 'started', volume] = crash.split(':');
    if (op === plan.operation && Number(step) === index + 1 && when === moment && (volume === undefined || plan.volid.endsWith(volume))) {
      process.kill(process.pid, 'SIGKILL');
    }
  }
  const fail = hooks.failAt;
  if (fail && moment === 'started') {
    const [op, step, volume] = fail.split(':');
    if (op === plan.operation && Number(step) === index + 1 && (volume === undefined || plan.volid.endsWith(volume))) {
      throw new VolchainError('INTERNAL', `injected failure at ${plan.operation} step ${index + 1} (VOLCHAIN_FAIL_AT)`);
    }
  }
}
