/**
 * The VM's lock is tried before a task is accepted, so that a client learns at once (409, the holder named)
 * that a CLI call or another task has the VM, instead of getting a task that waits and then fails.
 *
 * The probe takes each lock file the operation will take (the same files, engine/session/vm-lock.ts: one per
 * place the VM's disks live) without waiting and releases it at once; the task then takes the locks as the
 * CLI does. Between the two a CLI call may take the lock first: the task then waits for it (the library's
 * lock timeout) and fails LOCKED if it is not freed. Tasks of this server on one VM cannot race that way:
 * a lock file stays reserved here from the probe to the task's end, and a second request for it is refused.
 */
import { hostname } from 'node:os';
import type { Backend } from '../backends/backend.js';
import { LockedError } from '../errors.js';
import { acquireLock } from '../engine/session/lock.js';
import { refusePending } from '../engine/session/refusals.js';

interface Reservation {
  task: string | null;
  operation: string;
  since: string;
}

export class LockProbe {
  /** Lock files reserved by tasks of this server (from the probe to the task's end). */
  private readonly reserved = new Map<string, Reservation>();

  /**
   * Tries VM `vmid`'s locks on every storage of `backends` and reserves them for `operation`; `refuse`:
   * refuse (409 PENDING_OPERATION) when an operation on the VM is unfinished there, as every operation but
   * repair does. The reservation lasts until its release (when the task ends, or was not started).
   */
  async tryAndReserve(backends: readonly Backend[], vmid: number, operation: string, refuse: boolean): Promise<HeldReservation> {
    const unique = [...new Map(backends.map((b) => [b.id, b])).values()];
    const files = [...new Set(unique.map((b) => b.lockFile(vmid)))].sort();
    for (const file of files) {
      const r = this.reserved.get(file);
      if (r) {
        throw new LockedError(`VM ${vmid} is busy: task ${r.task ?? '(starting)'} of this server (${r.operation}, since ${r.since}) holds ${file}`, {
          fields: { vmid, path: file, holder: { pid: process.pid, host: hostname(), operation: r.operation, since: r.since, task: r.task } },
        });
      }
    }
    const reservation: Reservation = { task: null, operation, since: new Date().toISOString() };
    for (const file of files) this.reserved.set(file, reservation);
    const release = (): void => {
      for (const file of files) if (this.reserved.get(file) === reservation) this.reserved.delete(file);
    };
    try {
      if (refuse) for (const backend of unique) await refusePending(backend, vmid);
      for (const file of files) {
        const lock = await tryLock(file, vmid, operation);
        await lock.release();
      }
    } catch (err) {
      release();
      throw err;
    }
    return { release, setTask: (id) => (reservation.task = id) };
  }
}

export interface HeldReservation {
  release(): void;
  /** Names the task the reservation is for, once it has an id (the 409 of a second request names it). */
  setTask(id: string): void;
}

/** The lock in `file` at once, or LockedError naming its holder (the CLI's error, without its wait). */
async function tryLock(file: string, vmid: number, operation: string) {
  try {
    return await acquireLock(file, operation, 0);
  } catch (err) {
    if (!(err instanceof LockedError)) throw err;
    const holder = err.fields.holder as { pid?: number; host?: string; operation?: string; since?: string } | null | undefined;
    const who = holder ? `pid ${String(holder.pid)} on ${String(holder.host)} (${String(holder.operation)}, since ${String(holder.since)})` : 'another process';
    throw new LockedError(`VM ${vmid} is busy: ${file} is held by ${who}; try again when it is done`, { fields: { ...err.fields, vmid } });
  }
}
