/**
 * The one rule for refusing an operation because its VM is running (its QMP socket answers): clone and move
 * of the current state, convert, template, export, and rollback while QEMU has the disks open. Every such
 * refusal is a LockedError, exit 6, with one message shape and the same fields.
 *
 * Why exit 6 ("in use/locked") and not 5 ("not supported"): nothing about the request is unsupported. The
 * same command succeeds unchanged once the VM is stopped; until then the volume is in use by someone else
 * (the VM's QEMU), exactly as when another volchain process holds the VM's lock. A caller retries both the
 * same way, after the holder lets go.
 */
import { LockedError } from '../../errors.js';
import type { Settings } from '../../settings.js';
import { connectVm } from '../live/socket.js';

export interface RunningVmRefusal {
  vmid: number;
  /** The operation refused, as the journal names operations ('clone', 'convert', 'snapshot-rollback'...). */
  operation: string;
  /** The volume it was asked for; absent for a VM-wide call (vm rollback). */
  volid?: string;
  /** Why a running guest makes the operation unsafe, in a few words. */
  why: string;
  /** What to do instead (always starts by stopping the VM, or an alternative that needs no stop). */
  hint: string;
}

/**
 * The error for a refusal of `r` because QEMU answers at `socket`:
 * `VM <vmid> is running (QMP socket <socket> answers): <operation> of <volid> needs the VM stopped: <why>; <hint>`,
 * fields `{ vmid, socket, operation, volid }`. For callers that found the VM running themselves (rollback
 * looks at which disks QEMU has open first).
 */
export function runningVmError(r: RunningVmRefusal, socket: string): LockedError {
  const what = r.volid === undefined ? `${r.operation} of VM ${r.vmid}'s disks` : `${r.operation} of ${r.volid}`;
  return new LockedError(`VM ${r.vmid} is running (QMP socket ${socket} answers): ${what} needs the VM stopped: ${r.why}; ${r.hint}`, {
    fields: { vmid: r.vmid, socket, operation: r.operation, volid: r.volid },
  });
}

/**
 * Throws runningVmError when QEMU runs VM `r.vmid`: `--qmp` given (`qmp`), else a socket under
 * $VOLCHAIN_QMP_DIR that answers (engine/live/socket.ts connectVm). Returns when the VM is stopped. Reads
 * only: call it before taking any lock, so the refusal leaves no trace on the storage.
 */
export async function refuseRunningVm(settings: Pick<Settings, 'qmpDir'>, qmp: string | undefined, r: RunningVmRefusal): Promise<void> {
  const conn = await connectVm(r.vmid, qmp, settings);
  if (!conn) return;
  await conn.client.close();
  throw runningVmError(r, conn.socket);
}
