/**
 * Names of the layers of a chain (DESIGN.md section 2), computed from (volume, snapshot), never parsed alone:
 * - dir: snapshot S of `vm-100-disk-0.qcow2` is `snap-S-vm-100-disk-0.qcow2` (PVE Plugin.pm get_snap_name);
 * - lvm: snapshot S of LV `vm-100-disk-0.qcow2` is `snap_vm-100-disk-0_S.qcow2` (PVE LVMPlugin.pm).
 * The inverse is ambiguous without the volume, on both storage types since snapshot names may contain '-'
 * (as PVE allows): LVM `snap_vm-101-a_b_cd.qcow2` is (vm-101-a.qcow2, b_cd) or (vm-101-a_b.qcow2, cd); dir
 * `snap-x-vm-1-vm-1-d.qcow2` is (vm-1-vm-1-d.qcow2, x) or (vm-1-d.qcow2, x-vm-1). Given the volume, the
 * snapshot is what lies between the volume's prefix and suffix, hyphens included; one volume's candidates can
 * still include another volume's layers, so chain membership comes from the qcow2 headers (engine/read/volume-tree.ts).
 *
 * Temporary layers (a new top being prepared, a layer being swapped) get names no PVE or volchain volume or
 * snapshot layer can have, recognisable by repair after a crash:
 * - dir: `.volchain-tmp-<purpose>-<volume>`: the leading dot hides it from PVE, whose list_images globs
 *   `images/<vmid>/*` (Perl's glob skips dot files) and would otherwise list any `*.qcow2` as a volume;
 * - lvm: `volchain-tmp-<purpose>-<volume>`: PVE lists only LVs starting `vm-`; a leading '.' is avoided
 *   because it is unusual enough to surprise LVM tooling, and LV names cannot start with '-'.
 * `<purpose>` is 1 to 16 lower-case letters, so the first '-' after it starts the volume name.
 */
import { InvalidInputError, NotSupportedError } from '../errors.js';
import { quote, utf8Length } from './common.js';
import { NAMING_SCHEMES, namingScheme } from './schemes.js';
import { isValidSnapshotName, validateSnapshotName } from './snapshot-name.js';
import type { StorageKind } from './types.js';
import { parseVolumeName } from './volume-id.js';

const PURPOSE_PATTERN = /^[a-z]{1,16}$/;
const TEMPORARY_PATTERN = /^(\.?)volchain-tmp-([a-z]{1,16})-(.+)$/s;

export function snapshotLayerName(kind: StorageKind, volumeName: string, snapshot: string): string {
  validateSnapshotName(snapshot);
  const { format } = parseVolumeName(kind, volumeName);
  if (format !== 'qcow2') {
    // PVE: "can't snapshot this image format" / "snapshot is working with qcow2 format only".
    throw new NotSupportedError(`volume ${quote(volumeName)} is a raw image: snapshots as volume chains need a qcow2 volume`);
  }
  const { prefix, suffix } = namingScheme(kind).snapshotAffixes(volumeName);
  const layer = `${prefix}${snapshot}${suffix}`;
  checkLayerName(kind, layer, `snapshot ${quote(snapshot)} of volume ${quote(volumeName)}`);
  return layer;
}

/**
 * The snapshot whose layer of `volumeName` is called `layerName`, or undefined when `layerName` is not such
 * a layer (another volume's layer, the volume itself, a temporary, or a name with an invalid snapshot part).
 * A name that fits several volumes gives each its own reading (see the top of this file). Throws only when
 * `volumeName` itself is not valid.
 */
export function snapshotOfLayerName(kind: StorageKind, volumeName: string, layerName: string): string | undefined {
  const { format } = parseVolumeName(kind, volumeName);
  if (format !== 'qcow2' || typeof layerName !== 'string') return undefined;
  const { prefix, suffix } = namingScheme(kind).snapshotAffixes(volumeName);
  if (layerName.length <= prefix.length + suffix.length) return undefined;
  if (!layerName.startsWith(prefix) || !layerName.endsWith(suffix)) return undefined;
  const snapshot = layerName.slice(prefix.length, layerName.length - suffix.length);
  return isValidSnapshotName(snapshot) ? snapshot : undefined;
}

export function temporaryLayerName(kind: StorageKind, volumeName: string, purpose: string): string {
  if (typeof purpose !== 'string' || !PURPOSE_PATTERN.test(purpose)) {
    throw new InvalidInputError(`temporary layer purpose ${quote(purpose)} is not valid: expected 1 to 16 lower-case letters, e.g. 'create'`);
  }
  parseVolumeName(kind, volumeName);
  const layer = `${namingScheme(kind).temporaryPrefix}volchain-tmp-${purpose}-${volumeName}`;
  checkLayerName(kind, layer, `temporary layer ${quote(purpose)} of volume ${quote(volumeName)}`);
  return layer;
}

/**
 * Recognises a temporary layer name and tells which volume it belongs to. With `kind`, only that storage
 * type's form is recognised (a dot on dir, none on LVM); the volume part must be a valid volume name.
 */
export function isVolchainTemporaryName(name: string, kind?: StorageKind): { purpose: string; volumeName: string } | undefined {
  if (typeof name !== 'string') return undefined;
  const match = TEMPORARY_PATTERN.exec(name);
  if (!match) return undefined;
  const [, dot, purpose = '', volumeName = ''] = match;
  // The storage types whose temporaries look like this (a dot on dir, none on LVM), of which `kind` if given.
  const forms = NAMING_SCHEMES.filter((s) => s.temporaryPrefix === dot && (kind === undefined || s.kind === kind));
  return forms.some((s) => isVolumeNameOf(s.kind, volumeName)) ? { purpose, volumeName } : undefined;
}

function isVolumeNameOf(kind: StorageKind, volumeName: string): boolean {
  try {
    parseVolumeName(kind, volumeName);
    return true;
  } catch {
    return false;
  }
}

/** A derived name must still be a legal file or LV name; long volume names can push it past the limit. */
function checkLayerName(kind: StorageKind, layer: string, what: string): void {
  const scheme = namingScheme(kind);
  const max = scheme.nameMaxBytes;
  if (utf8Length(layer) > max) {
    throw new InvalidInputError(
      `the layer name for the ${what} would be ${utf8Length(layer)} characters long, ` + `over the ${kind} limit of ${max}: use a shorter snapshot name`,
    );
  }
  const reserved = scheme.reservedSubstring(layer);
  if (reserved !== undefined) {
    throw new InvalidInputError(
      `the layer name for the ${what} would be ${quote(layer)}, which contains ${quote(reserved)}, ` + 'reserved by LVM: choose another snapshot name',
    );
  }
}
