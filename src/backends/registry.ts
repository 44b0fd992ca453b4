/** Storage type -> backend factory. Adding a backend means adding one file and one line here. */
import { assertAvailableHere, type StorageDefinition } from '../config/index.js';
import { NotSupportedError } from '../errors.js';
import type { Settings } from '../settings.js';
import type { Backend } from './backend.js';
import { DirBackend } from './dir/backend.js';
import { LvmBackend } from './lvm/backend.js';

export interface BackendOptions {
  /** LVM: shrink a layer that became a snapshot to its image's end (engine/plan/shrink-policy.ts). Default true. */
  shrinkFrozen?: boolean;
  /** The caller's settings (the session's): where mounts are read, and what the backend runs with (LVM's state dir, hooks). */
  settings: Settings;
}

/**
 * Also the one gate every operation passes before a storage is touched: a storage for other nodes, or whose
 * share is not mounted, is refused here (see config/availability.ts).
 */
export function createBackend(def: StorageDefinition, opts: BackendOptions): Backend {
  if (!def.supported) {
    throw new NotSupportedError(`storage '${def.id}' has type '${def.type}', which volchain does not drive (supported: dir, nfs, cifs, lvm)`);
  }
  assertAvailableHere(def, { settings: opts.settings });
  return def.backend === 'dir' ? new DirBackend(def) : new LvmBackend(def, { shrinkFrozen: opts.shrinkFrozen ?? true, settings: opts.settings });
}
