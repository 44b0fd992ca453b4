/**
 * A VM's lock as the operations take it: one flock (session/lock.ts) per place the VM's volumes live (a
 * directory or a VG; storage ids naming one place share its lock file), taken at the operation boundary,
 * never inside a backend. Releasing a lock also finishes what the operation left for later (LVM saferemove's
 * wipe), which takes long and needs no lock.
 *
 * Two ways to run under it, differing only in what they do about an unfinished operation (a journal) on the
 * VM: `withVmLocked` refuses (exit 7: every operation but repair), `withVmLockedForRepair` goes ahead
 * (repair is what finishes it).
 */
import type { Backend } from '../../backends/backend.js';
import { acquireLock, lockTimeoutMs, type HeldLock } from './lock.js';
import { refusePending } from './refusals.js';
import { finishDeferredRemovals, type BackgroundWipeRunner, type WipeMode } from '../run/wipe.js';

/** What taking and releasing a VM's lock needs of the session's settings. */
export interface LockSettings {
  lockTimeoutMs: number | undefined;
  /** Where $VOLCHAIN_LOCK_TIMEOUT is read when no timeout was given: the session's settings (settingsEnv). */
  env: NodeJS.ProcessEnv;
  wipeMode: WipeMode;
  /** The configuration file's path (the background wiper reads the same one). */
  configSource: string;
  backgroundWipe: BackgroundWipeRunner | undefined;
}

/**
 * Takes VM `vmid`'s lock on every place `backends` live, each lock file once (a second flock of one file
 * would wait for the first), in path order so that two callers never wait for each other in a cycle. All or
 * none: what was taken is released when one cannot be. Each release finishes its storages' deferred removals.
 */
export async function holdVmLocks(settings: LockSettings, backends: readonly Backend[], vmid: number, operation: string): Promise<HeldLock[]> {
  const byFile = new Map<string, Backend[]>();
  for (const backend of backends) {
    const file = backend.lockFile(vmid);
    byFile.set(file, [...(byFile.get(file) ?? []), backend]);
  }
  const held: HeldLock[] = [];
  try {
    for (const file of [...byFile.keys()].sort()) held.push(await holdLockFile(settings, file, byFile.get(file) as Backend[], vmid, operation));
    return held;
  } catch (err) {
    for (const lock of held.reverse()) await lock.release();
    throw err;
  }
}

/** Runs `fn` holding VM `vmid`'s locks on every storage given, after refusing to start over an unfinished operation there. */
export async function withVmLocked<T>(settings: LockSettings, backends: readonly Backend[], vmid: number, operation: string, fn: () => Promise<T>): Promise<T> {
  return underLocks(settings, backends, vmid, operation, async (unique) => {
    for (const backend of unique) await refusePending(backend, vmid);
    return fn();
  });
}

/** Runs `fn` holding VM `vmid`'s locks on every storage given, whatever operation is unfinished there (repair finishes it). */
export async function withVmLockedForRepair<T>(
  settings: LockSettings,
  backends: readonly Backend[],
  vmid: number,
  operation: string,
  fn: () => Promise<T>,
): Promise<T> {
  return underLocks(settings, backends, vmid, operation, () => fn());
}

/** Each storage once, by id (a VM's disks on one storage share its backend), in id order. */
export function uniqueBackends(backends: readonly Backend[]): Backend[] {
  return [...new Map(backends.map((b) => [b.id, b])).values()].sort((a, b) => a.id.localeCompare(b.id));
}

/** Runs `fn` (given each storage once) holding the VM's locks on all of them; releases them whatever happens. */
async function underLocks<T>(
  settings: LockSettings,
  backends: readonly Backend[],
  vmid: number,
  operation: string,
  fn: (unique: Backend[]) => Promise<T>,
): Promise<T> {
  const unique = uniqueBackends(backends);
  const locks = await holdVmLocks(settings, unique, vmid, operation);
  try {
    return await fn(unique);
  } finally {
    for (const lock of locks.reverse()) await lock.release();
  }
}

/** The lock in `file`, which `backends` (storage ids naming one place) share. */
async function holdLockFile(settings: LockSettings, file: string, backends: readonly Backend[], vmid: number, operation: string): Promise<HeldLock> {
  const lock = await acquireLock(file, operation, settings.lockTimeoutMs ?? lockTimeoutMs(settings.env));
  return {
    path: lock.path,
    release: async () => {
      await lock.release();
      for (const backend of backends) await finishDeferredRemovals(backend, vmid, settings.wipeMode, settings.configSource, settings.backgroundWipe);
    },
  };
}
