/**
 * Removals that finish after the operation (LVM saferemove): the remove step only renames the LV to `del-`,
 * and once the VM's lock is released the engine has the zeroing and lvremove done, as PVE forks a worker
 * (`free_lvm_volumes`) for it. By default a detached `volchain wipe` process does it, with its output in the
 * backend's wipe log; in the foreground (`VOLCHAIN_WIPE=foreground` or the Volchain option) the call returns
 * only when they are done, for tests and scripts that want a settled VG.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Backend } from '../backends/backend.js';
import { InvalidInputError } from '../errors.js';
import { spawnDetached } from '../tools/runner.js';

export type WipeMode = 'background' | 'foreground';
export const WIPE_MODES: readonly WipeMode[] = ['background', 'foreground'];

/** The mode asked for, else $VOLCHAIN_WIPE, else background. */
export function resolveWipeMode(asked: WipeMode | undefined, env: NodeJS.ProcessEnv = process.env): WipeMode {
  if (asked !== undefined) return asked;
  const value = env.VOLCHAIN_WIPE;
  if (value === undefined || value === '') return 'background';
  if (!(WIPE_MODES as readonly string[]).includes(value)) {
    throw new InvalidInputError(`VOLCHAIN_WIPE must be ${WIPE_MODES.join(' or ')}, got '${value}'`);
  }
  return value as WipeMode;
}

/** The CLI script a background wiper runs (bin/volchain.js beside dist/, as in the npm package). */
const CLI_SCRIPT = fileURLToPath(new URL('../../../bin/volchain.js', import.meta.url));

/**
 * Finishes the removals `backend` left for later (of `vmid`, else all), in the background or here. Never
 * throws: the operation that left them is done, and what stays unfinished is a `del-` LV that the next run
 * (or `volchain wipe`) finishes and `volchain status` shows.
 */
export async function finishDeferredRemovals(backend: Backend, vmid: number | undefined, mode: WipeMode, configPath: string): Promise<void> {
  if (!backend.deferredRemovals || !backend.finishRemovals) return;
  try {
    const layers = await backend.deferredRemovals(vmid);
    if (layers.length === 0) return;
    if (mode === 'background' && startWiper(backend, vmid, configPath)) return;
    await backend.finishRemovals({ layers, wait: true, ...(vmid !== undefined ? { vmid } : {}) });
  } catch {
    // Left for the next run (see above).
  }
}

/**
 * `node bin/volchain.js --config <file> wipe --storage <id> [--vmid N]`, detached, output appended to the
 * backend's wipe log. False when it cannot be started that way (no config file to hand over, no CLI script):
 * the caller then wipes in the foreground.
 */
function startWiper(backend: Backend, vmid: number | undefined, configPath: string): boolean {
  const log = backend.removalLog?.();
  if (log === undefined || !existsSync(CLI_SCRIPT) || !existsSync(configPath)) return false;
  mkdirSync(dirname(log), { recursive: true });
  const args = [CLI_SCRIPT, '--config', configPath, 'wipe', '--storage', backend.id, ...(vmid !== undefined ? ['--vmid', String(vmid)] : [])];
  // The wiper is always a foreground wipe itself; a test's crash hooks are passed on (they target it too).
  return spawnDetached(process.execPath, args, log, { VOLCHAIN_WIPE: 'foreground' }) > 0;
}
