/**
 * The error of a VM-wide operation (vm rollback, vm delsnapshot) that stopped on one disk and cannot take
 * back the disks done before it. Every disk's plan was journaled before any ran, and the failed disk's
 * record is kept even when that disk's own steps were fully undone (ExecuteOptions.keepJournalWhenUndone),
 * so what the message promises is what the journals hold: `repair --all` finishes the operation on the
 * failed disk and on every disk after it; the disks before it are done.
 */
import { VolchainError, asVolchainError } from '../../errors.js';
import { needsRepair } from './error-fields.js';

export function vmOperationStopped(
  operation: string,
  vmid: number,
  failed: string,
  done: readonly string[],
  left: readonly string[],
  cause: unknown,
): VolchainError {
  const error = asVolchainError(cause);
  const doneText = done.length > 0 ? `done on ${done.join(', ')}; ` : '';
  return new VolchainError(
    error.code,
    `${operation} of VM ${vmid} stopped on ${failed}: ${error.message}; ${doneText}not finished on ${left.join(', ')}, ` +
      `each kept in its journal: run 'volchain repair --all' to finish it on every disk`,
    needsRepair({ vmid, operation, volid: failed, done: [...done], pending: [...left] }, cause),
  );
}
