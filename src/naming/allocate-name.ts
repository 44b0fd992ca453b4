/**
 * The name volchain picks for a new disk: `vm-<vmid>-disk-<n>` with the lowest free n, as PVE's
 * get_next_vm_diskname does, and like PVE giving up after $MAX_VOLUMES_PER_GUEST = 1024 numbers (0..1023).
 *
 * Where a number counts as taken, volchain is stricter than PVE on purpose:
 * - any format blocks a number. PVE on dir matches only names with the requested extension, so
 *   `vm-100-disk-0.raw` and `vm-100-disk-0.qcow2` can coexist; on LVM a raw allocation avoids qcow2 numbers
 *   but a qcow2 one ignores raw LVs, giving `vm-100-disk-0` beside `vm-100-disk-0.qcow2`. Two volumes whose
 *   names differ only in the suffix invite mistakes in both directions.
 * - any name containing `vm-<vmid>-disk-<n>` or `base-<vmid>-disk-<n>` blocks n, whatever surrounds it.
 *   PVE's regex is unanchored too, so on LVM (where it sees every LV) leftovers block the number: `del-`
 *   LVs still being wiped, orphaned `snap_…` layers, and here also volchain temporaries. A new disk must
 *   never inherit such a leftover's snapshot or temporary layer names.
 */
import { AlreadyExistsError, InvalidInputError } from '../errors.js';
import { expectedKinds, isStorageKind, namingScheme } from './schemes.js';
import type { ImageFormat, StorageKind } from './types.js';
import { validateVmid } from './volume-id.js';

export const MAX_DISKS_PER_VM = 1024;

/**
 * Lowest free disk name for `vmid`. `existingNames` are the file names in images/<vmid> (dir) or all LV
 * names of the VG (lvm); volids work too, since only the `…-<vmid>-disk-<n>` part is looked at.
 */
export function nextFreeDiskName(kind: StorageKind, vmid: number, format: ImageFormat, existingNames: Iterable<string>): string {
  validateVmid(vmid);
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- guards a value that bypassed the types (plain-JS caller, config file)
  if (format !== 'raw' && format !== 'qcow2') {
    throw new InvalidInputError(`image format ${JSON.stringify(format)} is not valid: expected 'raw' or 'qcow2'`);
  }
  if (!isStorageKind(kind)) {
    throw new InvalidInputError(`storage type ${JSON.stringify(kind)} is not valid: expected ${expectedKinds()}`);
  }
  // Left boundary: a non-alphanumeric or the start, so `vm-100-disk-0` in `snap_vm-100-disk-0_a.qcow2` counts
  // but `xvm-100-disk-0` does not. Digits are taken greedily, so `disk-10` never reads as `disk-1`.
  const pattern = new RegExp(`(?:^|[^A-Za-z0-9])(?:vm|base)-${vmid}-disk-(\\d+)`, 'g');
  const taken = new Set<number>();
  for (const name of existingNames) {
    for (const match of name.matchAll(pattern)) {
      const n = Number(match[1]);
      if (n < MAX_DISKS_PER_VM) taken.add(n);
    }
  }
  for (let n = 0; n < MAX_DISKS_PER_VM; n++) {
    if (!taken.has(n)) {
      return namingScheme(kind).diskName(`vm-${vmid}-disk-${n}`, format);
    }
  }
  throw new AlreadyExistsError(
    `every disk name of VM ${vmid} is taken (vm-${vmid}-disk-0 to vm-${vmid}-disk-${MAX_DISKS_PER_VM - 1}): ` +
      'remove unused disks or give the new disk a name',
  );
}
