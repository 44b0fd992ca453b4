/**
 * `activate`/`deactivate`: make a volume's whole chain usable on this host, or release it (LVM: the LVs;
 * on dir there is nothing to do beyond checking the volume exists, as PVE does). Under the VM's lock,
 * refused over an unfinished operation.
 */
import { NotFoundError, VolchainError, asVolchainError } from '../../errors.js';
import { readVolumeTree, snapshotLayers, type VolumeTree } from '../read/volume-tree.js';
import { refuseMissingVolume } from '../session/refusals.js';
import type { Session } from '../session/session.js';
import { withVmLocked } from '../session/vm-lock.js';
import type { ActivationResult } from './types.js';

/**
 * Makes every layer of the volume's chain usable on this host (LVM: activates the LVs, exclusively on a
 * shared VG, and checks their tags against the headers).
 */
export async function activate(session: Session, volid: string): Promise<ActivationResult> {
  const { backend, volume } = session.resolve(volid);
  await refuseMissingVolume(backend, volume.vmid, volume.name, volid);
  return withVmLocked(session.locks, [backend], volume.vmid, 'activate', async () => {
    if (!(await backend.listLayerNames(volume.vmid)).includes(volume.name)) throw new NotFoundError(`volume ${volid} does not exist`);
    if (backend.capabilities.activation) await backend.activate(volume.vmid, [volume.name]);
    // Read after activating: the headers of active layers are read, not their recorded copy.
    const tree = await readVolumeTree(backend, volume, { allocation: false });
    return { volid: tree.volid, storage: backend.id, layers: chainLayerNames(tree), active: backend.capabilities.activation ? true : null };
  });
}

/**
 * Releases every layer of the volume's chain on this host (LVM: `lvchange -an`; fails, naming the LV, while
 * one is open, e.g. by a running VM).
 */
export async function deactivate(session: Session, volid: string): Promise<ActivationResult> {
  const { backend, volume } = session.resolve(volid);
  await refuseMissingVolume(backend, volume.vmid, volume.name, volid);
  return withVmLocked(session.locks, [backend], volume.vmid, 'deactivate', async () => {
    // Read before: a layer volchain made is read from its tags once inactive, but reading an untagged one
    // (made by PVE) on a local VG would activate it again.
    const tree = await readVolumeTree(backend, volume, { allocation: false });
    if (backend.capabilities.activation) {
      try {
        await backend.deactivate(volume.vmid, [volume.name]);
      } catch (err) {
        const error = asVolchainError(err);
        throw new VolchainError(error.code, `cannot deactivate ${tree.volid}: ${error.message}`, { cause: err });
      }
    }
    return { volid: tree.volid, storage: backend.id, layers: chainLayerNames(tree), active: backend.capabilities.activation ? false : null };
  });
}

/** The current layer, then the snapshot layers by name. */
function chainLayerNames(tree: VolumeTree): string[] {
  return [
    tree.current,
    ...snapshotLayers(tree)
      .map((l) => l.name)
      .sort(),
  ];
}
