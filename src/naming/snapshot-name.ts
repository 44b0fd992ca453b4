/**
 * Snapshot names (DESIGN.md section 1) follow PVE's rule: pve-snapshot-name is format pve-configid,
 * `^[a-z][a-z0-9_-]+$` case-insensitive (pve-common JSONSchema.pm $CONFIGID_RE), at most 40 characters.
 * qemu-server reserves `current` (compared exactly: "unable to use snapshot name 'current'") and `pending`
 * (compared with lc()). volchain accepts exactly what PVE accepts, so every snapshot PVE made can be read and
 * operated on.
 *
 * The hyphen makes a dir layer name ambiguous on its own (`snap-x-vm-1-vm-2-d.qcow2` is both snapshot `x` of
 * `vm-1-vm-2-d.qcow2` and snapshot `x-vm-1` of `vm-2-d.qcow2`, as LVM's `_` already was); layer names are
 * therefore always matched given the volume, and chain membership settled by the headers (engine/read/volume-tree.ts).
 *
 * Two snapshots of one volume whose names differ only in case would become two files that a case-insensitive
 * mount (CIFS) merges: a *new* name that clashes in case with an existing one is refused by the planners, but
 * such pairs made elsewhere are read, and every lookup matches the exact name first.
 */
import { InvalidInputError } from '../errors.js';
import { asciiLower, quote } from './common.js';

export const SNAPSHOT_NAME_MAX = 40;
export const SNAPSHOT_NAME_PATTERN = /^[A-Za-z][A-Za-z0-9_-]{1,39}$/;
/** Reserved names as qemu-server checks them: `current` exactly, `pending` in any case. */
export const RESERVED_SNAPSHOT_NAMES: readonly string[] = ['current', 'pending'];

const ALLOWED = "2 to 40 characters: a letter (A-Z, a-z) followed by letters, digits, '_' or '-'";

/** Throws InvalidInputError saying what is wrong unless `name` is a valid snapshot name. */
export function validateSnapshotName(name: string): void {
  const problem = snapshotNameProblem(name);
  if (problem !== undefined) throw new InvalidInputError(problem);
}

/** True when `name` is a valid, non-reserved snapshot name. */
export function isValidSnapshotName(name: string): boolean {
  return snapshotNameProblem(name) === undefined;
}

/**
 * Whether two snapshot names differ at most in case (a clash for a new snapshot). ASCII case-insensitive:
 * valid names are ASCII, and a Unicode-aware comparison would equate e.g. 'K' (U+212A KELVIN SIGN) with 'k'.
 */
export function sameSnapshotName(a: string, b: string): boolean {
  return asciiLower(a) === asciiLower(b);
}

function isReserved(name: string): boolean {
  return name === 'current' || asciiLower(name) === 'pending';
}

function snapshotNameProblem(name: unknown): string | undefined {
  if (typeof name !== 'string' || name.length === 0) {
    return `snapshot name must not be empty: expected ${ALLOWED}`;
  }
  const q = quote(name);
  if (isReserved(name)) {
    return `snapshot name ${q} is reserved ('current', and 'pending' in any case, as in Proxmox VE): choose another name`;
  }
  if (name.length > SNAPSHOT_NAME_MAX) {
    return `snapshot name ${q} is ${name.length} characters long: at most ${SNAPSHOT_NAME_MAX} are allowed`;
  }
  if (!/^[A-Za-z]/.test(name)) {
    return `snapshot name ${q} must start with a letter (A-Z, a-z): expected ${ALLOWED}`;
  }
  const bad = /[^A-Za-z0-9_-]/.exec(name);
  if (bad) return `snapshot name ${q} contains ${quote(bad[0])}: expected ${ALLOWED}`;
  if (name.length < 2) {
    return `snapshot name ${q} is too short: expected ${ALLOWED}`;
  }
  return SNAPSHOT_NAME_PATTERN.test(name) ? undefined : `snapshot name ${q} is not valid: expected ${ALLOWED}`;
}
