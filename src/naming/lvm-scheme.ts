/**
 * Names on thick LVM storage (PVE LVMPlugin.pm): a volume is the LV `vm-<vmid>-<rest>`, qcow2 when it ends
 * in `.qcow2` and raw (no suffix) otherwise, its volid `<storage>:<name>`; snapshot S of a qcow2 volume is
 * the LV `snap_<name without .qcow2>_S.qcow2`; a temporary layer is `volchain-tmp-<purpose>-<name>` (PVE
 * lists only LVs starting `vm-`; a leading '.' would surprise LVM tooling, and LV names cannot start with '-').
 */
import { InvalidInputError } from '../errors.js';
import { LV_NAME_MAX, lvmReservedSubstring, quote, volumeShapeError } from './common.js';
import type { NamingScheme } from './scheme.js';
import type { ImageFormat } from './types.js';

const SHAPE = "'vm-<vmid>-<name>' (raw) or 'vm-<vmid>-<name>.qcow2'";
const QCOW2_SUFFIX = '.qcow2';

export const lvmNaming: NamingScheme = {
  kind: 'lvm',
  label: 'LVM',
  objectName: 'LV name',
  nameMaxBytes: LV_NAME_MAX,
  volumeShape: SHAPE,
  disallowedChar: /[^A-Za-z0-9_.-]/,
  allowedChars: "letters, digits, '_', '.' and '-'",
  volnameLayout: 'name',
  baseVolumes: false,
  baseNameRefusal: (q) => `volume ${q} is a template base volume: LVM storage has no base volumes (PVE makes templates on LVM-thin and dir only)`,
  volumeFormat(name: string, rest: string): ImageFormat {
    // PVE parse_lvm_name: LV names end with a letter or digit.
    if (!/[A-Za-z0-9]$/.test(name)) {
      throw volumeShapeError(name, 'must end with a letter or digit', SHAPE);
    }
    const reserved = lvmReservedSubstring(name);
    if (reserved !== undefined) {
      throw new InvalidInputError(`volume name ${quote(name)} contains ${quote(reserved)}, reserved by LVM for internal volumes`);
    }
    const format: ImageFormat = name.endsWith(QCOW2_SUFFIX) ? 'qcow2' : 'raw';
    const core = format === 'qcow2' ? rest.slice(0, -QCOW2_SUFFIX.length) : rest;
    if (core.length === 0) {
      throw volumeShapeError(name, "has nothing after 'vm-<vmid>-'", SHAPE);
    }
    return format;
  },
  reservedSubstring: lvmReservedSubstring,
  checkNewVolumeName(name: string): void {
    // PVE would create a raw LV literally named `….raw`; a raw LV carries no suffix, and a misleading one
    // confuses other tools (cf. PVE bug 7811).
    const suffix = /\.(raw|vmdk|subvol)$/.exec(name);
    if (suffix) {
      throw new InvalidInputError(
        `volume name ${quote(name)} is not valid on LVM storage: a raw LV has no suffix and a qcow2 LV ends ` +
          `in '.qcow2' (did you mean ${quote(name.slice(0, -suffix[0].length))}?)`,
      );
    }
  },
  diskName: (stem, format) => (format === 'raw' ? stem : `${stem}.${format}`),
  snapshotAffixes: (volumeName) => ({ prefix: `snap_${volumeName.slice(0, -QCOW2_SUFFIX.length)}_`, suffix: QCOW2_SUFFIX }),
  temporaryPrefix: '',
};
