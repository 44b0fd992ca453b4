/**
 * Shape checks for journal records read back from a storage. A journal file is data another host, an older
 * version, a full disk or a person with an editor may have written: the engine must not trust its fields
 * before knowing they are there and of the right type (a `{}` once stopped every command on the storage
 * with "Cannot read properties of undefined"). What fails here is set aside by the store, not acted on.
 */
import type { JournalRecord } from './record.js';

/**
 * Why `value` is not a journal record the engine can act on, or undefined when it is one. Checks every
 * field the engine reads (status, info, refusals, repair); steps are checked down to their `kind`, as
 * each step's runner checks its own fields when repair runs it.
 */
export function journalRecordProblem(value: unknown): string | undefined {
  if (!isObject(value)) return 'not a JSON object';
  for (const key of ['id', 'storage', 'host', 'startedAt'] as const) {
    if (typeof value[key] !== 'string' || value[key] === '') return `field '${key}' is not a non-empty string`;
  }
  if (!Number.isSafeInteger(value.pid)) return "field 'pid' is not an integer";
  const plan = value.plan;
  if (!isObject(plan)) return "field 'plan' is not an object";
  for (const key of ['operation', 'volid', 'summary'] as const) {
    if (typeof plan[key] !== 'string' || plan[key] === '') return `field 'plan.${key}' is not a non-empty string`;
  }
  if (!Number.isSafeInteger(plan.vmid) || (plan.vmid as number) < 1) return "field 'plan.vmid' is not a VM id";
  if (typeof plan.bytesMoved !== 'number') return "field 'plan.bytesMoved' is not a number";
  if (!Array.isArray(plan.steps)) return "field 'plan.steps' is not a list";
  const bad = plan.steps.findIndex((s) => !isObject(s) || typeof s.kind !== 'string' || s.kind === '');
  if (bad >= 0) return `step ${bad + 1} of the plan has no kind`;
  const steps = plan.steps.length;
  const done = value.completedSteps;
  if (!Number.isSafeInteger(done) || (done as number) < 0 || (done as number) > steps) {
    return `field 'completedSteps' is not a step count between 0 and ${steps}`;
  }
  const running = value.runningStep;
  if (running !== null && (!Number.isSafeInteger(running) || (running as number) < 0 || (running as number) >= steps)) {
    return `field 'runningStep' is neither null nor a step index below ${steps}`;
  }
  for (const key of ['error', 'group'] as const) {
    if (value[key] !== undefined && typeof value[key] !== 'string') return `field '${key}' is not a string`;
  }
  return undoProblem(value.undo, done as number, steps);
}

/** Why an `undo` field (see JournalRecord.undo) cannot be acted on; undefined when absent or well-formed. */
function undoProblem(undo: unknown, done: number, steps: number): string | undefined {
  if (undo === undefined) return undefined;
  if (!isObject(undo)) return "field 'undo' is not an object";
  // `steps` itself only when every step is done: the plan ran to its end and is walked back because another
  // disk of its VM-wide operation failed (engine/run/vm-undo.ts).
  const failed = undo.failedStep as number;
  if (!Number.isSafeInteger(failed) || failed < 0 || failed > steps || (failed === steps && done !== steps)) {
    return `field 'undo.failedStep' is not a step index below ${steps} (nor ${steps}, with every step done)`;
  }
  if (!Number.isSafeInteger(undo.undone) || (undo.undone as number) < 0 || (undo.undone as number) > done) {
    return `field 'undo.undone' is not a count between 0 and ${done}`;
  }
  if (typeof undo.error !== 'string') return "field 'undo.error' is not a string";
  return undefined;
}

/** `value` as a record, or an Error saying why it is not one. */
export function asJournalRecord(value: unknown, where: string): JournalRecord {
  const problem = journalRecordProblem(value);
  if (problem !== undefined) throw new Error(`${where} is not a journal record: ${problem}`);
  return value as JournalRecord;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
