/**
 * Where the LVM backend keeps host-local state: per storage id (lock-free fallback journals) and per VG
 * (VM locks, wipe locks and progress), under the state directory of the backend's settings
 * ($VOLCHAIN_STATE_DIR, default /var/lib/volchain). The backend is given its settings when the registry opens
 * it; nothing here reads the environment.
 */
import { dirname, join } from 'node:path';

export const DEFAULT_STATE_ROOT = '/var/lib/volchain';

/** `<state dir>/<storage id>`; `root` is the settings' stateDir (unset or empty: the default). */
export function storageStateDir(root: string | undefined, storageId: string): string {
  return join(root !== undefined && root !== '' ? root : DEFAULT_STATE_ROOT, storageId);
}

/**
 * Local state kept per VG rather than per storage id, for what storage ids naming one VG must share:
 * `<state dir>/<kind>/<vg>`.
 */
export function vgStateDir(root: string | undefined, storageId: string, vg: string, kind: '.locks' | '.wipe'): string {
  return join(dirname(storageStateDir(root, storageId)), kind, vg);
}
