/**
 * Pure readings of one LV row (name, tags, size) that several parts of the LVM backend share: which VMs an
 * LV belongs to, what its tags record about the layer, and whether it holds a qcow2 image. No I/O here.
 */
import { isVolchainTemporaryName } from '../../naming/index.js';
import type { LayerRecord } from '../backend.js';
import { isVolumeLv, trustedLayerTags } from './tags.js';

/** VM ids an LV belongs to, by its `pve-vm-<vmid>` tags and by `vm-<vmid>-` anywhere in its name. */
export function vmidsOfLv(row: { name: string; tags: readonly string[] }): number[] {
  const ids = new Set<number>();
  for (const tag of row.tags) {
    const m = /^pve-vm-([1-9][0-9]{2,8})$/.exec(tag);
    if (m) ids.add(Number(m[1]));
  }
  for (const m of row.name.matchAll(/(?:^|[^A-Za-z0-9])(?:vm|base)-([1-9][0-9]{2,8})-/g)) ids.add(Number(m[1]));
  return [...ids];
}

/** True when the LV belongs to `vmid` (always without one). */
export function ofVm(row: { name: string; tags: readonly string[] }, vmid: number | undefined): boolean {
  return vmid === undefined || vmidsOfLv(row).includes(vmid);
}

/** qcow2 layers end in `.qcow2` (volumes, snapshot layers and temporaries alike); raw LVs have no suffix. */
export function isQcow2Lv(name: string): boolean {
  return name.endsWith('.qcow2');
}

/** The volume a layer being created belongs to: itself, or the volume a temporary name carries. */
export function newLayerVolume(name: string): string | undefined {
  if (isVolumeLv(name)) return name;
  return isVolchainTemporaryName(name, 'lvm')?.volumeName;
}

/** What an LV's tags (or, for a raw LV, its size) say about the layer, when they say enough. */
export function recordOf(row: { name: string; sizeBytes: number; tags: readonly string[] }): LayerRecord | undefined {
  const tagged = trustedLayerTags(row);
  const volume = tagged.volume ?? (isVolumeLv(row.name) ? row.name : undefined);
  if (!isQcow2Lv(row.name)) {
    return { ...(volume !== undefined ? { volume } : {}), parent: null, virtualSize: row.sizeBytes };
  }
  if (tagged.parent === undefined || tagged.virtualSize === undefined) return undefined;
  return { ...(tagged.volume !== undefined ? { volume: tagged.volume } : {}), parent: tagged.parent, virtualSize: tagged.virtualSize };
}
