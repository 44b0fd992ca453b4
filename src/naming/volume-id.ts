/**
 * Volume ids (`<storage>:<volname>`) and volume names, as Proxmox VE writes them (DESIGN.md section 1):
 * - dir: volname `<vmid>/vm-<vmid>-<rest>.<raw|qcow2>`, the file `<path>/images/<vmid>/<name>`;
 * - lvm: volname = LV name `vm-<vmid>-<rest>`, qcow2 when it ends in `.qcow2`, raw otherwise.
 * - dir, template base volume: `<vmid>/base-<vmid>-<rest>.<raw|qcow2>` (PVE create_base);
 * - dir, linked clone: `<basevmid>/<basename>/<vmid>/vm-<vmid>-<rest>.qcow2` (PVE clone_image); the file is
 *   `<path>/images/<vmid>/<name>`, the base part says which base its chain ends in (base-name.ts).
 *
 * Everything here is validation before any path is built (DESIGN.md section 6), so it is stricter than PVE
 * where PVE is permissive in ways that could hurt:
 * - PVE's dir parser accepts any `[^/\s]+.<fmt>` file name; volchain wants `vm-<vmid>-…` and a safe
 *   character set (letters, digits, `_ . + -`): ':' would read as a protocol prefix to QEMU, ',' splits QEMU
 *   option strings, and neither can be typed safely everywhere.
 * - PVE takes the owner from the directory on dir storage and ignores the vmid inside the file name;
 *   volchain requires both to agree, so `100/vm-101-disk-0.qcow2` cannot touch VM 101's disk.
 * - vmids must be canonical (pve-vmid: 100..999999999, no leading zero) so one volume has one volid.
 */
import { InvalidInputError, NotSupportedError } from '../errors.js';
import { CONTROL_CHAR, quote, utf8Length, volumeShapeError } from './common.js';
import { namingScheme } from './schemes.js';
import { SNAPSHOT_NAME_MAX } from './snapshot-name.js';
import type { BaseVolume, ImageFormat, StorageKind, VolumeRef } from './types.js';

/** pve-vmid (pve-common JSONSchema): `^[1-9][0-9]{2,8}$`, i.e. 100..999999999. */
export const VMID_MIN = 100;
export const VMID_MAX = 999_999_999;
const VMID_PATTERN = /^[1-9][0-9]{2,8}$/;

/** PVE storage ids (pve-storage-id / parse_volume_id): at least 2 characters, case-insensitive. */
const STORAGE_ID_PATTERN = /^[a-z][a-z0-9._-]*[a-z0-9]$/i;

/**
 * Room a new volume name leaves for derived layer names: `snap-<S>-` on dir and `snap_` + `_<S>` on LVM
 * both add 6 + SNAPSHOT_NAME_MAX characters, and temporary names add less (see layer-names.ts).
 */
export const LAYER_NAME_OVERHEAD = 6 + SNAPSHOT_NAME_MAX;

const DIR_VOLNAME_SHAPE = "'<vmid>/<file name>', e.g. '100/vm-100-disk-0.qcow2'";

/** Content directories PVE keeps beside images/ on dir storage; volchain manages VM disks only. */
const OTHER_CONTENT = new Set(['iso', 'vztmpl', 'backup', 'snippets', 'import', 'private', 'rootdir']);

export function parseVmid(text: string): number {
  if (typeof text !== 'string' || !VMID_PATTERN.test(text)) {
    throw new InvalidInputError(`VM id ${quote(text)} is not valid: expected a whole number from ${VMID_MIN} to ${VMID_MAX} ` + 'without leading zeros');
  }
  return Number(text);
}

/** Throws unless `vmid` is a valid VM id number (pve-vmid range). */
export function validateVmid(vmid: number): void {
  if (!Number.isInteger(vmid) || vmid < VMID_MIN || vmid > VMID_MAX) {
    throw new InvalidInputError(`VM id ${String(vmid)} is not valid: expected a whole number from ${VMID_MIN} to ${VMID_MAX}`);
  }
}

export function validateStorageId(storage: string): void {
  if (typeof storage !== 'string' || !STORAGE_ID_PATTERN.test(storage)) {
    throw new InvalidInputError(
      `storage id ${quote(storage)} is not valid: expected at least 2 characters, starting with a letter, ` +
        "then letters, digits, '-', '_' or '.', ending with a letter or digit",
    );
  }
}

/**
 * Splits a volume id at its first ':' (PVE parse_volume_id: storage ids never contain ':', the volname may).
 * Control characters are refused here already: Perl's `$` lets PVE accept a trailing newline, volchain not.
 */
export function splitVolid(volid: string): { storage: string; volname: string } {
  const example = "expected '<storage>:<volume name>', e.g. 'local:100/vm-100-disk-0.qcow2'";
  if (typeof volid !== 'string' || volid.length === 0) {
    throw new InvalidInputError(`volume id must not be empty: ${example}`);
  }
  if (CONTROL_CHAR.test(volid)) throw new InvalidInputError(`volume id ${quote(volid)} contains a control character`);
  const colon = volid.indexOf(':');
  if (colon < 0) throw new InvalidInputError(`volume id ${quote(volid)} has no ':': ${example}`);
  const storage = volid.slice(0, colon);
  const volname = volid.slice(colon + 1);
  if (!STORAGE_ID_PATTERN.test(storage)) {
    throw new InvalidInputError(
      `volume id ${quote(volid)} does not start with a valid storage id: ${example}; a storage id has at ` +
        "least 2 characters, starts with a letter and has only letters, digits, '-', '_' and '.'",
    );
  }
  if (volname.length === 0) {
    throw new InvalidInputError(`volume id ${quote(volid)} has nothing after ':': ${example}`);
  }
  return { storage, volname };
}

export function parseVolname(kind: StorageKind, storage: string, volname: string): VolumeRef {
  validateStorageId(storage);
  if (typeof volname !== 'string' || volname.length === 0) {
    throw new InvalidInputError(`volume name on storage ${quote(storage)} must not be empty`);
  }
  const volid = quote(`${storage}:${volname}`);
  const scheme = namingScheme(kind);
  if (scheme.volnameLayout === 'name') {
    if (volname.includes('/')) {
      throw new InvalidInputError(
        `volume ${volid} is not valid: on ${scheme.label} storage the volume name is the ${scheme.objectName} alone ` +
          "(e.g. 'vm-100-disk-0.qcow2'), without '/'",
      );
    }
    const lvmBase = volname.startsWith('base-') ? parseLvmBaseName(volname) : undefined;
    // An LVM template's base LV (opt-in per storage: the backend refuses it where it is not allowed).
    if (lvmBase !== undefined) return { storage, kind, vmid: lvmBase.vmid, name: volname, format: lvmBase.format, volname, template: true };
    const { vmid, format } = parseVolumeName(kind, volname);
    return { storage, kind, vmid, name: volname, format, volname };
  }
  if (volname.startsWith('/')) {
    throw new InvalidInputError(`volume ${volid} is an absolute path: expected ${DIR_VOLNAME_SHAPE}`);
  }
  const parts = volname.split('/');
  const [first = '', second = '', third = '', fourth = ''] = parts;
  if (scheme.baseVolumes && parts.length === 4 && /^\d+$/.test(first) && /^(base|vm)-\d+-/.test(second) && /^\d+$/.test(third)) {
    // PVE: `<basevmid>/<basename>/<vmid>/<name>`, a linked clone of a template's base volume.
    const base = parseBaseName(second, parseVmidPart(volid, first));
    const clone = parseVolname(kind, storage, `${third}/${fourth}`);
    if (clone.template) throw new InvalidInputError(`volume ${volid} is not valid: a linked clone's own name starts with 'vm-', not 'base-'`);
    if (clone.format !== 'qcow2') throw new InvalidInputError(`volume ${volid} is not valid: a linked clone is a qcow2 volume`);
    return { ...clone, volname, base };
  }
  if (OTHER_CONTENT.has(first)) {
    throw new NotSupportedError(`volume ${volid} is ${quote(first)} content, not a VM disk image: volchain manages VM disks only`);
  }
  if (parts.length !== 2) {
    throw new InvalidInputError(`volume ${volid} is not valid: expected ${DIR_VOLNAME_SHAPE}`);
  }
  const [vmidText = '', name = ''] = parts;
  const vmid = parseVmidPart(volid, vmidText);
  if (scheme.baseVolumes && name.startsWith('base-')) {
    const { format } = parseBaseName(name, vmid);
    return { storage, kind, vmid, name, format, volname, template: true };
  }
  const { format } = parseVolumeName(kind, name, vmid);
  return { storage, kind, vmid, name, format, volname };
}

function parseVmidPart(volid: string, vmidText: string): number {
  if (!VMID_PATTERN.test(vmidText)) {
    throw new InvalidInputError(
      `volume ${volid} is not valid: ${quote(vmidText)} before '/' must be a VM id from ${VMID_MIN} ` + `to ${VMID_MAX} without leading zeros`,
    );
  }
  return Number(vmidText);
}

/**
 * Checks a template base volume's file name (`base-<vmid>-<rest>.<raw|qcow2>`, dir storage only) and returns
 * it with its vmid and format. A base name follows the rules of a volume name with `base-` for `vm-` (PVE's
 * create_base renames one into the other); with `expectedVmid` the vmid in the name must equal it.
 */
export function parseBaseName(name: string, expectedVmid?: number): BaseVolume {
  if (typeof name !== 'string' || !name.startsWith('base-')) {
    throw new InvalidInputError(`${quote(name)} is not a base volume name: expected 'base-<vmid>-disk-<n>.<qcow2|raw>'`);
  }
  try {
    const { vmid, format } = parseVolumeName('dir', `vm-${name.slice('base-'.length)}`, expectedVmid);
    return { vmid, name, format };
  } catch (err) {
    // The checks of a volume name apply unchanged; the message names the base name the user gave.
    const message = err instanceof Error ? err.message : String(err);
    throw new InvalidInputError(`base volume name ${quote(name)} is not valid: ${message.replace(/'vm-/g, "'base-")}`);
  }
}

/**
 * `storage:vmid/name` on dir, `storage:name` on LVM, and on dir a linked clone's
 * `storage:basevmid/basename/vmid/name`; validates first so it never emits an unparsable volid.
 */
export function formatVolid(ref: Pick<VolumeRef, 'storage' | 'kind' | 'vmid' | 'name'> & Pick<Partial<VolumeRef>, 'base'>): string {
  validateStorageId(ref.storage);
  validateVmid(ref.vmid);
  const scheme = namingScheme(ref.kind);
  if (scheme.baseVolumes && ref.name.startsWith('base-')) {
    parseBaseName(ref.name, ref.vmid);
    return `${ref.storage}:${ref.vmid}/${ref.name}`;
  }
  if (scheme.volnameLayout === 'name' && parseLvmBaseName(ref.name, ref.vmid) !== undefined) return `${ref.storage}:${ref.name}`;
  parseVolumeName(ref.kind, ref.name, ref.vmid);
  if (scheme.baseVolumes && ref.base !== undefined) {
    parseBaseName(ref.base.name, ref.base.vmid);
    return `${ref.storage}:${ref.base.vmid}/${ref.base.name}/${ref.vmid}/${ref.name}`;
  }
  return scheme.volnameLayout === 'vmid-dir' ? `${ref.storage}:${ref.vmid}/${ref.name}` : `${ref.storage}:${ref.name}`;
}

/**
 * Validates a name a user gives for a new volume (alloc) and returns its format. Stricter than parsing an
 * existing volume: the name must leave room for every snapshot layer name (LAYER_NAME_OVERHEAD), and on LVM
 * a `.raw`/`.vmdk`/`.subvol` suffix is refused (PVE would create a raw LV literally named `….raw`; a raw LV
 * carries no suffix, and a misleading one confuses other tools, cf. PVE bug 7811).
 */
export function validateVolumeName(kind: StorageKind, vmid: number, name: string): ImageFormat {
  validateVmid(vmid);
  const { format } = parseVolumeName(kind, name, vmid);
  const scheme = namingScheme(kind);
  const max = scheme.nameMaxBytes - LAYER_NAME_OVERHEAD;
  if (utf8Length(name) > max) {
    throw new InvalidInputError(`volume name ${quote(name)} is too long for a new volume: at most ${max} characters, ` + 'so that snapshot layer names fit');
  }
  scheme.checkNewVolumeName(name);
  return format;
}

/**
 * Checks the name of an existing volume (file name on dir, LV name on LVM) and returns the vmid inside it
 * and its format. With `expectedVmid`, the vmid in the name must equal it.
 */
export function parseVolumeName(kind: StorageKind, name: string, expectedVmid?: number): { vmid: number; format: ImageFormat } {
  // Reading a VM's chains checks the same few names once per layer per volume (issue 16: most of `list`'s
  // CPU time): names already accepted are answered from memory; a refusal is always worked out afresh.
  const key = typeof name === 'string' ? `${kind}/${name}` : undefined;
  const known = key !== undefined ? acceptedNames.get(key) : undefined;
  if (known !== undefined && (expectedVmid === undefined || known.vmid === expectedVmid)) return { ...known };
  const parsed = checkVolumeName(kind, name, expectedVmid);
  // Bounded: a long-running process sees names without end; dropping them all costs one re-parse each.
  if (acceptedNames.size >= ACCEPTED_NAMES_MAX) acceptedNames.clear();
  if (key !== undefined) acceptedNames.set(key, parsed);
  return { ...parsed };
}

const ACCEPTED_NAMES_MAX = 4096;
const acceptedNames = new Map<string, { vmid: number; format: ImageFormat }>();

function checkVolumeName(kind: StorageKind, name: string, expectedVmid?: number): { vmid: number; format: ImageFormat } {
  const scheme = namingScheme(kind);
  if (typeof name !== 'string' || name.length === 0) throw new InvalidInputError('volume name must not be empty');
  const q = quote(name);
  const shape = scheme.volumeShape;
  const max = scheme.nameMaxBytes;
  if (utf8Length(name) > max) {
    throw new InvalidInputError(`volume name ${q} is ${utf8Length(name)} bytes long: at most ${max} are allowed on ${kind} storage`);
  }
  if (name.includes('\0')) throw new InvalidInputError(`volume name ${q} contains a NUL character`);
  if (CONTROL_CHAR.test(name)) throw new InvalidInputError(`volume name ${q} contains a control character`);
  if (/\s/.test(name)) throw volumeShapeError(name, 'contains whitespace', shape);
  if (name.startsWith('/')) throw volumeShapeError(name, 'is an absolute path', shape);
  if (name.includes('/')) throw volumeShapeError(name, "contains '/'", shape);
  if (name.includes('..')) throw volumeShapeError(name, "contains '..'", shape);
  if (name.startsWith('-')) throw volumeShapeError(name, "starts with '-'", shape);
  if (/^snap[-_]/.test(name)) {
    // PVE parse_name_dir: "'<name>' is a snapshot filename, not a volume!"
    throw new InvalidInputError(`${q} is a snapshot layer name, not a volume: address the volume and name the snapshot instead`);
  }
  if (name.startsWith('del-')) {
    throw new InvalidInputError(`${q} is an LV being removed ('del-' prefix), not a volume`);
  }
  if (/^\.?volchain-tmp-/.test(name)) {
    throw new InvalidInputError(`${q} is a temporary layer of an unfinished volchain operation, not a volume`);
  }
  if (name.startsWith('base-')) {
    // Only PVE's create_base makes base volumes (dir: parseBaseName); LVM has no templates in PVE either.
    throw new NotSupportedError(scheme.baseNameRefusal(q));
  }
  if (/^(subvol|basevol)-/.test(name)) {
    throw new NotSupportedError(`volume ${q} is a container subvolume: volchain handles VM disk images only`);
  }
  const head = /^vm-(\d+)-/.exec(name);
  if (!head) throw volumeShapeError(name, 'is not valid', shape);
  const bad = scheme.disallowedChar.exec(name);
  if (bad) throw new InvalidInputError(`volume name ${q} contains ${quote(bad[0])}: only ${scheme.allowedChars} are allowed`);
  const vmidText = head[1] ?? '';
  if (!VMID_PATTERN.test(vmidText)) {
    throw new InvalidInputError(
      `volume name ${q} is not valid: the VM id ${quote(vmidText)} must be from ${VMID_MIN} to ${VMID_MAX} ` + 'without leading zeros',
    );
  }
  const vmid = Number(vmidText);
  if (expectedVmid !== undefined && vmid !== expectedVmid) {
    throw new InvalidInputError(
      `volume name ${q} belongs to VM ${vmid}, not to VM ${expectedVmid}: ` + `a volume of VM ${expectedVmid} must be named 'vm-${expectedVmid}-…'`,
    );
  }
  return { vmid, format: scheme.volumeFormat(name, name.slice(head[0].length)) };
}

/**
 * A template's base LV on LVM storage (volchain's opt-in LVM templates, made by `volchain template` from a qcow2
 * volume): `base-<vmid>-<rest>.qcow2`, following the rules of an LVM volume name with `base-` for `vm-`;
 * undefined for anything else (raw LVs have no LVM templates).
 */
export function parseLvmBaseName(name: string, expectedVmid?: number): BaseVolume | undefined {
  if (typeof name !== 'string' || !/^base-[1-9][0-9]{2,8}-.+\.qcow2$/.test(name)) return undefined;
  try {
    const { vmid, format } = parseVolumeName('lvm', `vm-${name.slice('base-'.length)}`, expectedVmid);
    return format === 'qcow2' ? { vmid, name, format } : undefined;
  } catch {
    return undefined;
  }
}
