/**
 * One writer per VM's disks per storage. The lock is flock(2) on a file in the storage's state directory:
 * the kernel drops it when the process dies (even by SIGKILL), and on NFS the kernel maps it to NFS locks
 * that other hosts see. Node has no flock binding, so a `flock` child (util-linux) locks a file descriptor
 * it shares with us; the lock belongs to the shared open file description and stays after the child exits.
 */
import { mkdir, open, type FileHandle } from 'node:fs/promises';
import { hostname } from 'node:os';
import { dirname } from 'node:path';
import { InvalidInputError, LockedError } from '../../errors.js';
import { flockDescriptor } from '../../tools/flock.js';

export interface LockHolder {
  pid: number;
  host: string;
  operation: string;
  since: string;
}

export interface HeldLock {
  path: string;
  release(): Promise<void>;
}

export const DEFAULT_LOCK_TIMEOUT_MS = 30_000;

/** $VOLCHAIN_LOCK_TIMEOUT in `env` (the session's settings by variable name, settingsEnv), else 30 s. */
export function lockTimeoutMs(env: NodeJS.ProcessEnv): number {
  const raw = env.VOLCHAIN_LOCK_TIMEOUT;
  if (raw === undefined || raw === '') return DEFAULT_LOCK_TIMEOUT_MS;
  const seconds = Number(raw);
  if (!Number.isFinite(seconds) || seconds < 0) {
    // A typo in the environment is the caller's input, not a lock someone holds.
    throw new InvalidInputError(`VOLCHAIN_LOCK_TIMEOUT must be a number of seconds (0 or more), got '${raw}'`);
  }
  return seconds * 1000;
}

export async function acquireLock(path: string, operation: string, timeoutMs: number): Promise<HeldLock> {
  await mkdir(dirname(path), { recursive: true });
  const handle = await open(path, 'a+');
  try {
    const acquired = await flockDescriptor(handle.fd, path, timeoutMs / 1000);
    if (!acquired) {
      const holder = await readHolder(handle);
      const who = holder ? `held by pid ${holder.pid} on ${holder.host} (${holder.operation}, since ${holder.since})` : 'held by another process';
      throw new LockedError(`${path} is ${who}; gave up after ${timeoutMs / 1000}s (VOLCHAIN_LOCK_TIMEOUT)`, {
        fields: { path, holder: holder ? { pid: holder.pid, host: holder.host, operation: holder.operation, since: holder.since } : null },
      });
    }
    const holder: LockHolder = { pid: process.pid, host: hostname(), operation, since: new Date().toISOString() };
    // Best effort: the holder's name only improves a waiter's message, and on a full storage this write is
    // the one that fails first; the lock itself is held either way.
    await handle.truncate(0).catch(() => undefined);
    await handle.write(JSON.stringify(holder) + '\n', 0).catch(() => undefined);
  } catch (err) {
    await handle.close();
    throw err;
  }
  let released = false;
  return {
    path,
    release: async () => {
      if (released) return;
      released = true;
      await handle.truncate(0).catch(() => undefined);
      await handle.close();
    },
  };
}

async function readHolder(handle: FileHandle): Promise<LockHolder | undefined> {
  try {
    const buf = Buffer.alloc(4096);
    const { bytesRead } = await handle.read(buf, 0, buf.length, 0);
    return JSON.parse(buf.subarray(0, bytesRead).toString('utf8')) as LockHolder;
  } catch {
    return undefined;
  }
}
