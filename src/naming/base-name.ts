/**
 * Template base volumes and linked clones on dir storage, named as Proxmox VE names them (DESIGN.md
 * sections 1 and 6; pve-storage Plugin.pm create_base, clone_image, parse_volname):
 * - PVE's create_base renames `vm-<vmid>-<rest>.<fmt>` to `base-<vmid>-<rest>.<fmt>` (chmod 0444, chattr +i);
 * - clone_image makes `images/<vmid>/vm-<vmid>-disk-<n>.qcow2` whose header names `../<basevmid>/<basename>`
 *   with `-F <base format>`, and its volname is `<basevmid>/<basename>/<vmid>/<name>`.
 *
 * Base names themselves are parsed in volume-id.ts (parseBaseName). Pure: no I/O.
 */
import type { BaseVolume } from './types.js';
import { parseBaseName } from './volume-id.js';

/** The backing reference a linked clone's bottom layer holds (PVE clone_image): `../<vmid>/<name>`. */
export function baseBackingRef(base: Pick<BaseVolume, 'vmid' | 'name'>): string {
  return `../${base.vmid}/${base.name}`;
}

/**
 * The base a backing reference names when it has exactly PVE's clone shape `../<vmid>/base-<vmid>-….<fmt>`,
 * else undefined. Nothing else that crosses directories is ever accepted (DESIGN.md section 6): no other
 * `..`, no deeper path, no `vm-` volume or snapshot layer of another VM, no vmid that disagrees with the name.
 */
export function parseBaseBackingRef(ref: string): BaseVolume | undefined {
  const m = /^\.\.\/([1-9][0-9]{2,8})\/(base-[^/]+)$/.exec(ref);
  if (!m) return undefined;
  try {
    return parseBaseName(m[2] ?? '', Number(m[1]));
  } catch {
    return undefined;
  }
}
