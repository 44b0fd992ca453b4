/**
 * Removals that finish after the operation (LVM saferemove): the remove step only renames the LV to `del-`,
 * and once the VM's lock is released the engine has the zeroing and lvremove done, as PVE forks a worker
 * (`free_lvm_volumes`) for it. By default a background wiper does it, started by the runner the caller
 * injected (the CLI: a detached `volchain wipe` of itself, output in the backend's wipe log); without a
 * runner, or in the foreground (`VOLCHAIN_WIPE=foreground` or the Volchain option), the call returns only
 * when they are done, for tests and scripts that want a settled VG. The engine does not know how a wiper
 * process is made: that is the CLI's (or another host program's) business, so the engine never depends on it.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Backend } from '../../backends/backend.js';
import { InvalidInputError } from '../../errors.js';

export type WipeMode = 'background' | 'foreground';
export const WIPE_MODES: readonly WipeMode[] = ['background', 'foreground'];

/** The mode asked for, else $VOLCHAIN_WIPE (`env`: the session's settings by variable name, settingsEnv), else background. */
export function resolveWipeMode(asked: WipeMode | undefined, env: NodeJS.ProcessEnv): WipeMode {
  if (asked !== undefined) return asked;
  const value = env.VOLCHAIN_WIPE;
  if (value === undefined || value === '') return 'background';
  if (!(WIPE_MODES as readonly string[]).includes(value)) {
    throw new InvalidInputError(`VOLCHAIN_WIPE must be ${WIPE_MODES.join(' or ')}, got '${value}'`);
  }
  return value as WipeMode;
}

/** What a background wiper is asked to do: finish the deferred removals of one storage (of one VM, else all). */
export interface BackgroundWipeRequest {
  storage: string;
  vmid: number | undefined;
  /** The storage.cfg the engine was opened with, for a wiper that reads the configuration itself. */
  configPath: string;
  /** File the wiper's output goes to (its directory exists). */
  log: string;
}

/**
 * Starts a wiper that outlives the call (e.g. a detached `volchain wipe` process). Returns false when it
 * cannot start one; the engine then wipes in the foreground. Crash state: whatever it leaves unfinished is a
 * `del-` LV the next run finishes, so a wiper that dies is harmless.
 */
export type BackgroundWipeRunner = (request: BackgroundWipeRequest) => boolean;

/**
 * Finishes the removals `backend` left for later (of `vmid`, else all), in the background or here. Never
 * throws: the operation that left them is done, and what stays unfinished is a `del-` LV that the next run
 * (or `volchain wipe`) finishes and `volchain status` shows.
 */
export async function finishDeferredRemovals(
  backend: Backend,
  vmid: number | undefined,
  mode: WipeMode,
  configPath: string,
  runner?: BackgroundWipeRunner,
): Promise<void> {
  if (!backend.capabilities.deferredRemoval) return;
  try {
    const layers = await backend.deferredRemovals(vmid);
    if (layers.length === 0) return;
    if (mode === 'background' && runner && startWiper(backend, vmid, configPath, runner)) return;
    await backend.finishRemovals({ layers, wait: true, ...(vmid !== undefined ? { vmid } : {}) });
  } catch {
    // Left for the next run (see above).
  }
}

/** Hands the removals to `runner`; false when the backend keeps no wipe log or the runner cannot start. */
function startWiper(backend: Backend, vmid: number | undefined, configPath: string, runner: BackgroundWipeRunner): boolean {
  const log = backend.capabilities.deferredRemoval ? backend.removalLog() : undefined;
  if (log === undefined) return false;
  mkdirSync(dirname(log), { recursive: true });
  return runner({ storage: backend.id, vmid, configPath, log });
}
