/**
 * A small flock(2) helper for the LVM backend's own bookkeeping (which process is wiping which `del-` LV).
 * Same technique as the engine's VM lock (a `flock` child locks a descriptor we share with it, so the
 * kernel drops the lock when this process dies, even by SIGKILL); the primitive lives in src/tools/flock.ts
 * because backends do not depend on the engine.
 */
import { mkdir, open } from 'node:fs/promises';
import { dirname } from 'node:path';
import { flockDescriptor } from '../../tools/flock.js';

/**
 * Runs `fn` holding an exclusive flock on `path`. With `wait: false`, returns undefined at once when another
 * process holds the lock. `fn` gets the locked descriptor, to hand to children that must keep the lock held
 * while they run (see RunOptions.shareFd).
 */
export async function withFileLock<T>(path: string, wait: boolean, fn: (waited: boolean, fd: number) => Promise<T>): Promise<T | undefined> {
  await mkdir(dirname(path), { recursive: true });
  const handle = await open(path, 'a');
  try {
    if (await flockDescriptor(handle.fd, path, 'nonblock')) return await fn(false, handle.fd);
    if (!wait || !(await flockDescriptor(handle.fd, path, 600))) return undefined;
    return await fn(true, handle.fd);
  } finally {
    await handle.close();
  }
}
