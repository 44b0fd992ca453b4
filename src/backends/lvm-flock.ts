/**
 * A small flock(2) helper for the LVM backend's own bookkeeping (which process is wiping which `del-` LV).
 * Same technique as the engine's VM lock (a `flock` child locks a descriptor we share with it, so the
 * kernel drops the lock when this process dies, even by SIGKILL); kept here because backends do not depend
 * on the engine.
 */
import { spawn } from 'node:child_process';
import { mkdir, open } from 'node:fs/promises';
import { dirname } from 'node:path';
import { NotSupportedError, VolchainError } from '../errors.js';

/**
 * Runs `fn` holding an exclusive flock on `path`. With `wait: false`, returns undefined at once when another
 * process holds the lock.
 */
export async function withFileLock<T>(path: string, wait: boolean, fn: (waited: boolean) => Promise<T>): Promise<T | undefined> {
  await mkdir(dirname(path), { recursive: true });
  const handle = await open(path, 'a');
  try {
    if (await flockFd(handle.fd, path, false)) return await fn(false);
    if (!wait || !(await flockFd(handle.fd, path, true))) return undefined;
    return await fn(true);
  } finally {
    await handle.close();
  }
}

function flockFd(fd: number, path: string, wait: boolean): Promise<boolean> {
  return new Promise<boolean>((resolve, reject) => {
      const child = spawn('flock', ['--exclusive', ...(wait ? ['--wait', '600'] : ['--nonblock']), '3'], {
        stdio: ['ignore', 'ignore', 'pipe', fd],
      });
      let stderr = '';
      child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('error', (e: NodeJS.ErrnoException) =>
        reject(e.code === 'ENOENT' ? new NotSupportedError('flock (util-linux) is not installed') : e),
      );
      child.on('close', (code) => {
        if (code === 0) resolve(true);
        else if (code === 1) resolve(false);
        else reject(new VolchainError('LOCKED', `flock on ${path} failed (exit ${code}): ${stderr.trim()}`));
      });
  });
}
