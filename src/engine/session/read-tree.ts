/**
 * Reading a volume's chain for an operation: like readVolumeTree, but a read that fails while an operation
 * on the VM is running or was interrupted says so (exit 7, naming it and how to finish it) instead of
 * reporting the half-changed chain it met. Reads only.
 */
import type { Backend } from '../../backends/backend.js';
import { PendingOperationError } from '../../errors.js';
import { formatVolid, type VolumeRef } from '../../naming/index.js';
import { pendingOperations } from '../run/journal.js';
import { pendingFields } from '../run/error-fields.js';
import { readVolumeTree, type ReadTreeOptions, type VolumeTree } from '../read/volume-tree.js';

export async function readTree(backend: Backend, volume: VolumeRef, opts: ReadTreeOptions = {}): Promise<VolumeTree> {
  try {
    return await readVolumeTree(backend, volume, opts);
  } catch (err) {
    const pending = await pendingOperations(backend, { vmid: volume.vmid });
    // The operation on this very volume if there is one (a VM may have several disks mid-operation).
    const first = pending.find((r) => r.plan.volid === formatVolid(volume)) ?? pending[0];
    if (!first) throw err;
    throw new PendingOperationError(
      `${formatVolid(volume)} is in the middle of a ${first.plan.operation} (started ${first.startedAt} by pid ` +
        `${first.pid} on ${first.host}): wait for it, or if that process is gone run 'volchain repair ${first.plan.volid}'`,
      { fields: pendingFields(first), outcome: 'needs-repair' },
    );
  }
}
