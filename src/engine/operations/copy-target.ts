/**
 * What the copying operations (clone, move, import) measure on their target before planning: its layer names
 * for the VM, its free space and the space rule for new layers (planners/copy-target.ts). Reads only.
 */
import type { Backend } from '../../backends/backend.js';
import { VolchainError } from '../../errors.js';
import { measureFullyAllocated } from '../../tools/lvm-measure.js';
import type { CopyTarget } from '../planners/copy-target.js';

/** The target `backend` for VM `vmid`, new layers of the given virtual sizes, and an optional new name. */
export async function measureCopyTarget(backend: Backend, vmid: number, virtualSizes: Iterable<number>, name?: string): Promise<CopyTarget> {
  return {
    storage: backend.id,
    kind: backend.kind,
    vmid,
    ...(name !== undefined ? { name } : {}),
    existingNames: await backend.listLayerNames(vmid),
    freeBytes: await backend.freeBytes(),
    spaceNeeded: await spaceRule(backend, virtualSizes),
  };
}

/**
 * Bytes one new layer takes on `backend` (one `qemu-img measure` per virtual size): a file its data plus the
 * metadata of a fully written image at most (the whole image when the storage preallocates); an LV the full
 * size while written, and a snapshot layer (`frozen`) about its data once LVM shrinks it to its image end.
 */
async function spaceRule(backend: Backend, virtualSizes: Iterable<number>): Promise<CopyTarget['spaceNeeded']> {
  const full = new Map<number, number>();
  const whole = backend.capabilities.layerSizing || backend.preallocation === 'full' || backend.preallocation === 'falloc';
  for (const v of virtualSizes) {
    if (!full.has(v)) full.set(v, backend.capabilities.layerSizing ? await backend.fullLayerBytes(v) : await measureFullyAllocated(v));
  }
  return (v, data, frozen = false) => {
    const bytes = full.get(v);
    if (bytes === undefined) throw new VolchainError('INTERNAL', `no qcow2 size measured for ${v} bytes virtual`);
    const sparse = Math.min(bytes, data + (bytes - v));
    if (!whole) return sparse;
    return frozen && backend.capabilities.layerSizing ? sparse : bytes;
  };
}
