/**
 * Template base volumes as whole volumes (list, info, free): which linked clones a base has, and the refusal
 * to free a base that clones still need. The chain side of clones is in engine/read/clone-base.ts.
 */
import type { Backend } from '../../backends/backend.js';
import { NotSupportedError } from '../../errors.js';
import type { VolumeRef } from '../../naming/index.js';
import { readQcow2Header } from '../../qcow2/index.js';
import { findClones } from './clone-base.js';
import { readVolumeTree } from './volume-tree.js';

/** The volids of every linked clone of base volume `volume` on `backend` ([] for a volume that is no base). */
export async function templateClones(backend: Backend, volume: VolumeRef): Promise<string[]> {
  if (!volume.template) return [];
  return findClones(
    backend,
    volume,
    async (v) => {
      const tree = await readVolumeTree(backend, v, { allocation: false });
      return { volid: tree.volid, base: tree.base?.volid ?? null, layers: [...tree.layers.keys(), ...tree.leftovers] };
    },
    async (vmid, name) => {
      // Checked like any layer first (regular file, no symlink); only then is its header read.
      if (!(await backend.statLayer(vmid, name))) return undefined;
      return (await readQcow2Header(backend.layerPath(vmid, name), name)).backingFile;
    },
  );
}

/**
 * `free` of a template's base volume while linked clones are backed by it: refused (exit 5), naming every
 * clone, before anything is changed (PVE refuses the same: its vdisk_free checks for clones of a base).
 * `free` checks before its lock (no trace for a refusal) and again under the base's VM lock, which
 * `clone --linked` holds while it makes a clone: no clone can appear between that check and the removal.
 */
export async function refuseFreeOfUsedBase(backend: Backend, volume: VolumeRef, volid: string): Promise<void> {
  const clones = await templateClones(backend, volume);
  if (clones.length === 0) return;
  throw new NotSupportedError(
    `cannot free ${volid}: it is a template's base volume and ${clones.length} linked clone(s) are backed by it: ` +
      `${clones.join(', ')}; free those first (or make full copies of them with 'volchain clone', without --linked)`,
  );
}

/**
 * The refusal (exit 5) of `template` and `clone --linked` on a storage without base volumes (thick LVM unless
 * opted in): why, and how to opt in (README, "Templates and linked clones on LVM").
 */
export function noBaseVolumesError(storage: string): NotSupportedError {
  return new NotSupportedError(
    `storage '${storage}' has no template base volumes: Proxmox VE makes no templates on thick LVM and its LVM plugin does not list ` +
      "'base-' LVs, so a 'pvesm free' of a base there would destroy its linked clones unseen; if PVE does not manage this storage " +
      `(or you accept that), opt in with VOLCHAIN_LVM_TEMPLATES=${storage} (the storage needs 'snapshot-as-volume-chain 1'), or use a dir storage`,
  );
}
