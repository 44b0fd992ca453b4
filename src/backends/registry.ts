/** Storage type -> backend factory. Adding a backend means adding one file and one line here. */
import type { StorageDefinition } from '../config/index.js';
import { NotSupportedError } from '../errors.js';
import type { Backend } from './backend.js';
import { DirBackend } from './dir.js';
import { LvmBackend } from './lvm.js';

export interface BackendOptions {
  /** LVM: shrink a layer that became a snapshot to its image's end (engine/shrink-policy.ts). Default true. */
  shrinkFrozen?: boolean;
}

export function createBackend(def: StorageDefinition, opts: BackendOptions = {}): Backend {
  if (def.supported && def.type === 'dir') return new DirBackend(def);
  if (def.supported && def.type === 'lvm') return new LvmBackend(def, { shrinkFrozen: opts.shrinkFrozen ?? true });
  throw new NotSupportedError(`storage '${def.id}' has type '${def.type}', which volchain does not drive (supported: dir, lvm)`);
}
