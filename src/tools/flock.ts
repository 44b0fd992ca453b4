/**
 * flock(2) on a descriptor we share with a short-lived `flock` child (util-linux): Node has no flock binding,
 * and a lock taken this way belongs to the shared open file description, so it stays held after the child
 * exits and the kernel drops it when our process dies, even by SIGKILL. On NFS the kernel maps it to NFS locks.
 */
import { spawn } from 'node:child_process';
import { LockedError, NotSupportedError } from '../errors.js';

/**
 * Takes an exclusive lock on `fd` (opened on `path`, which only names it in messages). `wait`: seconds to
 * wait, or 'nonblock' to give up at once. Resolves true when locked, false when another holder kept it.
 */
export function flockDescriptor(fd: number, path: string, wait: number | 'nonblock'): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const waitArgs = wait === 'nonblock' ? ['--nonblock'] : ['--wait', String(wait)];
    const child = spawn('flock', ['--exclusive', ...waitArgs, '3'], { stdio: ['ignore', 'ignore', 'pipe', fd] });
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', (e: NodeJS.ErrnoException) => reject(e.code === 'ENOENT' ? new NotSupportedError('flock (util-linux) is not installed') : e));
    child.on('close', (code) => {
      if (code === 0) resolve(true);
      else if (code === 1) resolve(false);
      else reject(new LockedError(`flock on ${path} failed (exit ${String(code)}): ${stderr.trim()}`));
    });
  });
}
