/**
 * Where the LVM backend keeps host-local state: per storage id (lock-free fallback journals) and per VG
 * (VM locks, wipe locks and progress), under `$VOLCHAIN_STATE_DIR` (default /var/lib/volchain). Read from
 * the environment on every call, as the state directory may be set after a backend was made (tests).
 */
import { dirname, join } from 'node:path';
import { currentSettings } from '../../settings.js';

export const DEFAULT_STATE_ROOT = '/var/lib/volchain';

/** `$VOLCHAIN_STATE_DIR/<storage id>`. */
export function storageStateDir(storageId: string): string {
  const root = currentSettings().stateDir;
  return join(root !== undefined && root !== '' ? root : DEFAULT_STATE_ROOT, storageId);
}

/**
 * Local state kept per VG rather than per storage id, for what storage ids naming one VG must share:
 * `$VOLCHAIN_STATE_DIR/<kind>/<vg>`.
 */
export function vgStateDir(storageId: string, vg: string, kind: '.locks' | '.wipe'): string {
  return join(dirname(storageStateDir(storageId)), kind, vg);
}
