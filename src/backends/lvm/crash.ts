/**
 * Test hook: VOLCHAIN_LVM_CRASH_AT=<point> kills the process with SIGKILL inside a backend primitive, where
 * the executor's own hooks cannot reach (points: remove-renamed, replace-removed; in a wipe: wipe-chunk after
 * the first chunk is zeroed and recorded, wipe-zeroed after the whole LV is zeroed, before its lvremove).
 * `hooks` are the backend's settings' (given when the registry opened it), not the environment's.
 */
import type { TestHooks } from '../../settings.js';

export function crashPoint(point: string, hooks: Pick<TestHooks, 'lvmCrashAt'>): void {
  if (hooks.lvmCrashAt === point) process.kill(process.pid, 'SIGKILL');
}
