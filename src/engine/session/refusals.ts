/**
 * Refusals made before acting: refuseMissingVolume before taking a VM's lock, so that a command refused for
 * bad input leaves no trace on the storage, not even the VM's lock file (lock files are never deleted:
 * removing one would race with flock); refusePending under it (and for dry runs, which take no lock).
 */
import type { Backend } from '../../backends/backend.js';
import { NotFoundError, PendingOperationError } from '../../errors.js';
import { pendingOperations } from '../run/journal.js';
import { pendingFields } from '../run/error-fields.js';

/**
 * Throws NotFoundError when VM `vmid` surely has no layer `name`: none of that name, and no operation
 * pending on the VM (one may have the volume under a temporary name; the locked path refuses that with
 * its own message). When the storage cannot be looked at now, the locked path reports why.
 */
export async function refuseMissingVolume(backend: Backend, vmid: number, name: string, volid: string): Promise<void> {
  let names: string[];
  try {
    names = await backend.listLayerNames(vmid);
    if (names.includes(name) || (await pendingOperations(backend, { vmid })).length > 0) return;
  } catch {
    return;
  }
  throw new NotFoundError(`volume ${volid} does not exist`, { fields: { volid, vmid, storage: backend.id } });
}

/** Throws PendingOperationError (exit 7) when an operation on VM `vmid` is unfinished on this storage. */
export async function refusePending(backend: Backend, vmid: number): Promise<void> {
  const first = (await pendingOperations(backend, { vmid }))[0];
  if (first) {
    throw new PendingOperationError(
      `VM ${vmid} on storage '${backend.id}' has an unfinished ${first.plan.operation} of ${first.plan.volid} ` +
        `(started ${first.startedAt} by pid ${first.pid} on ${first.host}); run 'volchain repair ${first.plan.volid}'`,
      { fields: pendingFields(first), outcome: 'needs-repair' },
    );
  }
}
