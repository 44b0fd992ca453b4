/**
 * Names on directory storage (PVE Plugin.pm): a volume is the file `images/<vmid>/vm-<vmid>-<rest>.<raw|qcow2>`,
 * its volid `<storage>:<vmid>/<name>`; snapshot S of it is the file `snap-S-<name>`; a temporary layer is
 * `.volchain-tmp-<purpose>-<name>`, hidden from PVE's list_images (Perl's glob skips dot files).
 */
import { NotSupportedError } from '../errors.js';
import { DIR_NAME_MAX_BYTES, quote, volumeShapeError } from './common.js';
import type { NamingScheme } from './scheme.js';
import type { ImageFormat } from './types.js';

const SHAPE = "'vm-<vmid>-<name>.qcow2' or 'vm-<vmid>-<name>.raw'";

export const dirNaming: NamingScheme = {
  kind: 'dir',
  label: 'dir',
  objectName: 'file name',
  nameMaxBytes: DIR_NAME_MAX_BYTES,
  volumeShape: SHAPE,
  disallowedChar: /[^A-Za-z0-9_.+-]/,
  allowedChars: "letters, digits, '_', '.', '+' and '-'",
  volnameLayout: 'vmid-dir',
  baseVolumes: true,
  baseNameRefusal: (q) =>
    `${q} is a template base volume name ('base-' prefix): a base volume is not allocated, it is made from a volume by 'volchain template' (or PVE's template conversion)`,
  volumeFormat(name: string, rest: string): ImageFormat {
    const ext = /\.([^.]*)$/.exec(rest)?.[1];
    if (ext === 'vmdk' || ext === 'subvol') {
      throw new NotSupportedError(`volume ${quote(name)} has format ${quote(ext)}: volchain handles only raw and qcow2 images`);
    }
    if (ext !== 'raw' && ext !== 'qcow2') {
      throw volumeShapeError(name, "must end in '.qcow2' or '.raw'", SHAPE);
    }
    if (rest.length === ext.length + 1) {
      throw volumeShapeError(name, `has nothing between 'vm-<vmid>-' and '.${ext}'`, SHAPE);
    }
    return ext;
  },
  reservedSubstring: () => undefined,
  checkNewVolumeName: () => undefined,
  diskName: (stem, format) => `${stem}.${format}`,
  snapshotAffixes: (volumeName) => ({ prefix: 'snap-', suffix: `-${volumeName}` }),
  temporaryPrefix: '.',
};
