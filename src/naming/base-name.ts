/**
 * Template base volumes and linked clones on dir storage, named as Proxmox VE names them (DESIGN.md
 * sections 1 and 6; pve-storage Plugin.pm create_base, clone_image, parse_volname):
 * - PVE's create_base renames `vm-<vmid>-<rest>.<fmt>` to `base-<vmid>-<rest>.<fmt>` (chmod 0444, chattr +i);
 * - clone_image makes `images/<vmid>/vm-<vmid>-disk-<n>.qcow2` whose header names `../<basevmid>/<basename>`
 *   with `-F <base format>`, and its volname is `<basevmid>/<basename>/<vmid>/<name>`.
 *
 * Base names themselves are parsed in volume-id.ts (parseBaseName). Pure: no I/O.
 */
import type { BaseVolume, StorageKind } from './types.js';
import { namingScheme } from './schemes.js';
import { parseBaseName, parseLvmBaseName } from './volume-id.js';

/** Every layer of the storage lives in one namespace (a VG: volids are layer names), so a base is named bare. */
const inOneNamespace = (kind: StorageKind): boolean => namingScheme(kind).volnameLayout === 'name';

/**
 * The backing reference a linked clone's bottom layer holds: dir (PVE clone_image) `../<vmid>/<name>`; LVM
 * (volchain's opt-in LVM templates) the base LV's name, resolved in the same VG like every layer's parent.
 */
export function baseBackingRef(base: Pick<BaseVolume, 'vmid' | 'name'>, kind: StorageKind = 'dir'): string {
  return inOneNamespace(kind) ? base.name : `../${base.vmid}/${base.name}`;
}

/**
 * The base a backing reference names when it has exactly PVE's clone shape `../<vmid>/base-<vmid>-….<fmt>`,
 * else undefined. Nothing else that crosses directories is ever accepted (DESIGN.md section 6): no other
 * `..`, no deeper path, no `vm-` volume or snapshot layer of another VM, no vmid that disagrees with the name.
 */
export function parseBaseBackingRef(ref: string, kind: StorageKind = 'dir'): BaseVolume | undefined {
  if (inOneNamespace(kind)) return parseLvmBaseName(ref);
  const m = /^\.\.\/([1-9][0-9]{2,8})\/(base-[^/]+)$/.exec(ref);
  if (!m) return undefined;
  try {
    return parseBaseName(m[2] ?? '', Number(m[1]));
  } catch {
    return undefined;
  }
}
