/** Planning operations on a whole volume (pure): resize (grow only) and free (every layer removed). */
import { InvalidInputError } from '../../errors.js';
import type { Plan, Step } from '../../model/plan.js';
import { descendants, layer, snapshotLayers, type VolumeTree } from '../read/volume-tree.js';
import { guarded, refuseTemplate, sizing, type PlanContext } from './rules.js';

export function planResize(tree: VolumeTree, sizeBytes: number, ctx?: PlanContext): Plan {
  refuseTemplate(tree, 'resize it');
  const current = layer(tree, tree.current);
  if (sizeBytes < current.virtualSize) {
    throw new InvalidInputError(`cannot shrink ${tree.volid} from ${current.virtualSize} to ${sizeBytes} bytes: volchain only grows volumes`);
  }
  if (sizeBytes === current.virtualSize) {
    throw new InvalidInputError(`${tree.volid} already has ${sizeBytes} bytes`);
  }
  return guarded(tree, {
    operation: 'resize',
    volid: tree.volid,
    vmid: tree.volume.vmid,
    bytesMoved: 0,
    summary: `grow ${tree.volid} from ${current.virtualSize} to ${sizeBytes} bytes`,
    steps: sizing(ctx ?? { kind: tree.volume.kind, volumeChain: true }, [
      { kind: 'grow', layer: tree.current, sizeBytes },
      { kind: 'resize', layer: tree.current, format: tree.volume.format, sizeBytes },
    ]),
  });
}

export function planFree(tree: VolumeTree): Plan {
  // The current layer goes first: once it is gone the volume no longer exists for anyone, and a crash
  // leaves only snapshot layers that repair recognises and removes.
  const layers = [tree.current, ...orderedLeavesFirst(tree).filter((n) => n !== tree.current), ...tree.leftovers];
  return {
    operation: 'free',
    volid: tree.volid,
    vmid: tree.volume.vmid,
    bytesMoved: 0,
    summary: `remove ${tree.volid} and its ${snapshotLayers(tree).length} snapshot layer(s)`,
    steps: layers.map((l): Step => ({ kind: 'remove', layer: l })),
  };
}

function orderedLeavesFirst(tree: VolumeTree): string[] {
  const roots = [...tree.layers.values()].filter((l) => l.parent === undefined);
  return roots.flatMap((r) => [...descendants(tree, r.name).map((d) => d.name), r.name]);
}
