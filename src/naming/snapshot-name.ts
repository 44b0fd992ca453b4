/**
 * Snapshot names (DESIGN.md section 1): `^[A-Za-z][A-Za-z0-9_]{1,39}$`, with `current` and `pending`
 * reserved in any case.
 *
 * PVE's own rule (pve-snapshot-name = format pve-configid, `[a-z][a-z0-9_-]+` case-insensitive, at most 40
 * characters) also allows '-'. volchain does not: on dir storage the layer name is `snap-<S>-<volume>`, and
 * with '-' in S two different (volume, snapshot) pairs can produce the same file name
 * (`snap-x-vm-1-vm-2-d.qcow2` is both (vm-1-vm-2-d.qcow2, x) and (vm-2-d.qcow2, x-vm-1)). Without '-', the
 * snapshot name ends at the first '-' after `snap-`, so a dir layer name identifies its pair.
 * PVE refuses `current` (exact case) and `pending` (any case); volchain refuses both in any case, since two
 * snapshots of one volume never differ only in case.
 */
import { InvalidInputError } from '../errors.js';
import { asciiLower, quote } from './common.js';

export const SNAPSHOT_NAME_MAX = 40;
export const SNAPSHOT_NAME_PATTERN = /^[A-Za-z][A-Za-z0-9_]{1,39}$/;
export const RESERVED_SNAPSHOT_NAMES: readonly string[] = ['current', 'pending'];

const ALLOWED = "2 to 40 characters: a letter (A-Z, a-z) followed by letters, digits or '_'";

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
 * Whether two snapshot names denote the same snapshot of one volume. ASCII case-insensitive: valid names
 * are ASCII, and a Unicode-aware comparison would equate e.g. 'K' (U+212A KELVIN SIGN) with 'k'.
 */
export function sameSnapshotName(a: string, b: string): boolean {
  return asciiLower(a) === asciiLower(b);
}

function snapshotNameProblem(name: unknown): string | undefined {
  if (typeof name !== 'string' || name.length === 0) {
    return `snapshot name must not be empty: expected ${ALLOWED}`;
  }
  const q = quote(name);
  if (RESERVED_SNAPSHOT_NAMES.includes(asciiLower(name))) {
    return `snapshot name ${q} is reserved ('current' and 'pending' are reserved in any case): choose another name`;
  }
  if (name.length > SNAPSHOT_NAME_MAX) {
    return `snapshot name ${q} is ${name.length} characters long: at most ${SNAPSHOT_NAME_MAX} are allowed`;
  }
  if (!/^[A-Za-z]/.test(name)) {
    return `snapshot name ${q} must start with a letter (A-Z, a-z): expected ${ALLOWED}`;
  }
  const bad = /[^A-Za-z0-9_]/.exec(name);
  if (bad) {
    const why = bad[0] === '-' ? " ('-' would make dir layer names ambiguous)" : '';
    return `snapshot name ${q} contains ${quote(bad[0])}${why}: expected ${ALLOWED}`;
  }
  if (name.length < 2) {
    return `snapshot name ${q} is too short: expected ${ALLOWED}`;
  }
  return SNAPSHOT_NAME_PATTERN.test(name) ? undefined : `snapshot name ${q} is not valid: expected ${ALLOWED}`;
}
