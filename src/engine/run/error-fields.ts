/**
 * Structured fields of the errors the engine raises about journals (see ErrorFields in src/errors.ts), built
 * in one place so that every error about an unfinished operation names it the same way.
 */
import type { ErrorFields, VolchainErrorOptions } from '../../errors.js';
import type { JournalRecord } from '../../journal/record.js';

/** An unfinished operation found in a journal: the refusal's fields, and outcome needs-repair (repair finishes it). */
export function pendingFields(record: JournalRecord): ErrorFields {
  return {
    volid: record.plan.volid,
    vmid: record.plan.vmid,
    storage: record.storage,
    operation: record.plan.operation,
    startedAt: record.startedAt,
    pid: record.pid,
    host: record.host,
  };
}

/** Options of an error that leaves (or finds) a journal for `repair` to act on. */
export function needsRepair(fields: ErrorFields, cause: unknown): VolchainErrorOptions {
  return { cause, outcome: 'needs-repair', fields };
}
