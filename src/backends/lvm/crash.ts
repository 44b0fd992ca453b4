/**
 * Test hook: VOLCHAIN_LVM_CRASH_AT=<point> kills the process with SIGKILL inside a backend primitive, where
 * the executor's own hooks cannot reach (points: remove-renamed, replace-removed; in a wipe: wipe-chunk after
 * the first chunk is zeroed and recorded, wipe-zeroed after the whole LV is zeroed, before its lvremove).
 */
import { currentSettings } from '../../settings.js';

export function crashPoint(point: string): void {
  if (currentSettings().hooks.lvmCrashAt === point) process.kill(process.pid, 'SIGKILL');
}
