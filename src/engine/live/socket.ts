/**
 * Finding the running QEMU of a VM and connecting to it: for a live operation (connectVm) and for the repair
 * of one (openRepairSession).
 *
 * Which QEMU: `--qmp SOCK` (the caller says the VM runs: a socket that does not answer is an error), else
 * `$VOLCHAIN_QMP_DIR/<vmid>.qmp` when VOLCHAIN_QMP_DIR is set and that socket exists and answers (on Proxmox
 * VE: VOLCHAIN_QMP_DIR=/var/run/qemu-server); a socket nobody listens on means the VM is stopped.
 */
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { InvalidInputError, VolchainError } from '../../errors.js';
import { QmpClient } from '../../qmp/client.js';
import { QmpConnectError } from '../../qmp/errors.js';
import type { Plan } from '../../model/plan.js';
import type { LiveSession } from './qemu-session.js';
import type { Settings } from '../../settings.js';

/** The socket to use for `vmid`: the explicit one, else $VOLCHAIN_QMP_DIR/<vmid>.qmp (of the session's settings) if that is set. */
export function qmpSocketFor(
  vmid: number,
  explicit: string | undefined,
  settings: Pick<Settings, 'qmpDir'>,
): { socket: string; explicit: boolean } | undefined {
  if (explicit !== undefined) {
    if (explicit === '') throw new InvalidInputError("--qmp needs the path of QEMU's QMP socket");
    return { socket: explicit, explicit: true };
  }
  const dir = settings.qmpDir;
  if (dir === undefined || dir === '') return undefined;
  return { socket: join(dir, `${vmid}.qmp`), explicit: false };
}

/**
 * Connects to the VM's QEMU, or returns undefined when it does not run (no socket configured, or, for a
 * configured directory, no socket or nobody listening). An explicit socket that does not answer is an error.
 */
export async function connectVm(
  vmid: number,
  explicit: string | undefined,
  settings: Pick<Settings, 'qmpDir'>,
): Promise<{ client: QmpClient; socket: string } | undefined> {
  const where = qmpSocketFor(vmid, explicit, settings);
  if (!where) return undefined;
  if (!where.explicit) {
    try {
      if (!(await stat(where.socket)).isSocket()) return undefined;
    } catch {
      return undefined;
    }
  }
  try {
    return { client: await QmpClient.connectUnix(where.socket, { connectTimeoutMs: 10_000 }), socket: where.socket };
  } catch (err) {
    const code = err instanceof QmpConnectError ? ((err.cause as NodeJS.ErrnoException | undefined)?.code ?? '') : '';
    if (!where.explicit && (code === 'ECONNREFUSED' || code === 'ENOENT')) return undefined;
    if (err instanceof VolchainError) {
      throw new VolchainError(err.code, `VM ${vmid}: ${err.message} (is the VM running, and is no other client connected to that socket?)`, { cause: err });
    }
    throw err;
  }
}

/** The QEMU version the connected QEMU announced in its greeting (0.0 when it did not say). */
export function qemuVersion(client: QmpClient): { major: number; minor: number } {
  const v = client.greeting?.QMP.version.qemu;
  return { major: v?.major ?? 0, minor: v?.minor ?? 0 };
}

/**
 * The session repair uses for a live plan: the QEMU it ran against, if it still runs (then the remaining
 * steps run live), else undefined (the offline equivalents finish the operation). `settings`: the session's.
 */
export async function openRepairSession(plan: Plan, explicit: string | undefined, settings: Pick<Settings, 'jobSpeed'>): Promise<LiveSession | undefined> {
  const socket = explicit ?? plan.live?.socket;
  if (socket === undefined) return undefined;
  try {
    const client = await QmpClient.connectUnix(socket, { connectTimeoutMs: 10_000 });
    return { client, socket, jobSpeed: settings.jobSpeed };
  } catch (err) {
    const code = err instanceof QmpConnectError ? ((err.cause as NodeJS.ErrnoException | undefined)?.code ?? '') : '';
    if (code === 'ECONNREFUSED' || code === 'ENOENT') return undefined; // QEMU is gone
    throw err;
  }
}
