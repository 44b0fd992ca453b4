/**
 * Small helpers and limits shared by the naming modules (internal to src/naming; index.ts re-exports only
 * the limits callers may want to show in messages).
 */
import { InvalidInputError } from '../errors.js';

/** Longest file name Linux file systems accept (NAME_MAX), in bytes. */
export const DIR_NAME_MAX_BYTES = 255;

/**
 * Longest LV (and VG) name LVM accepts: lvm2 keeps names in NAME_LEN = 128 bytes including the NUL.
 * The device-mapper name `<vg>-<lv>` (hyphens doubled) has its own 127-byte limit, which depends on the
 * VG name and is therefore the LVM backend's check, not this layer's.
 */
export const LV_NAME_MAX = 127;

/**
 * Substrings lvm2 reserves for its internal sub-LVs (lvm(8), "VALID NAMES"): an LV whose name contains one
 * is refused by lvcreate/lvrename. A snapshot called e.g. `tmeta1` would give the LV name
 * `snap_vm-100-disk-0_tmeta1.qcow2`, so layer names are checked against this list before any LVM command.
 */
export const LVM_RESERVED_SUBSTRINGS: readonly string[] = [
  '_cdata',
  '_cmeta',
  '_corig',
  '_iorig',
  '_mimage',
  '_mlog',
  '_pmspare',
  '_rimage',
  '_rmeta',
  '_tdata',
  '_tmeta',
  '_vdata',
  '_vorigin',
  '_wcorig',
];

/** Characters LVM allows in VG and LV names (lvm(8)); a name must also not start with '-'. */
export const LVM_NAME_CHARS = /^[A-Za-z0-9+_.-]+$/;

/** The reserved substring `name` contains, if any (compared as lvm2 does: case-sensitively). */
export function lvmReservedSubstring(name: string): string | undefined {
  return LVM_RESERVED_SUBSTRINGS.find((s) => name.includes(s));
}

/**
 * Quotes a user-supplied value for an error message: JSON string syntax makes control characters, NUL and
 * trailing spaces visible, and very long input is cut so one message stays one readable line.
 */
export function quote(value: unknown): string {
  if (typeof value !== 'string') return String(value);
  const max = 80;
  return JSON.stringify(value.length > max ? `${value.slice(0, max)}…` : value);
}

/** Length of `text` in UTF-8 bytes, the unit file-name limits are expressed in. */
export function utf8Length(text: string): number {
  return Buffer.byteLength(text, 'utf8');
}

/** ASCII-only lower-casing: String#toLowerCase maps e.g. U+212A KELVIN SIGN to 'k', which we never want. */
export function asciiLower(text: string): string {
  return text.replace(/[A-Z]/g, (c) => String.fromCharCode(c.charCodeAt(0) + 32));
}

/** C0 control characters and DEL: never part of a name volchain accepts. */
// eslint-disable-next-line no-control-regex
export const CONTROL_CHAR = /[\u0000-\u001f\u007f]/;

/**
 * The refusal of a volume name that does not have its storage's shape (`shape`, NamingScheme.volumeShape),
 * one wording for every check: `volume name "<name>" <problem>: expected <shape>`.
 */
export function volumeShapeError(name: string, problem: string, shape: string): InvalidInputError {
  return new InvalidInputError(`volume name ${quote(name)} ${problem}: expected ${shape}`);
}
