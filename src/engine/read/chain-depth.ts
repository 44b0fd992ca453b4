/**
 * How deep a volume's chains are, and the refusal of a tree deeper than the limit (engine/read/layer-guard.ts explains
 * the limit). Typed on the fields it reads rather than on engine/read/volume-tree.ts's VolumeTree, which is what it is
 * given, so that engine/read/volume-tree.ts can call checkTreeDepth while reading a tree without an import cycle.
 */
import { UnsafeImageError } from '../../errors.js';
import { DEFAULT_MAX_CHAIN_DEPTH } from '../../qcow2/index.js';

/** What depths are computed from: a layer's name and its parent's (a VolumeTree's LayerNode has both). */
export interface DepthNode {
  name: string;
  parent: string | undefined;
}

/** A VolumeTree as far as depths go. */
export interface DepthTree {
  volid: string;
  layers: ReadonlyMap<string, DepthNode>;
}

/** Layers from each layer down to its root, itself included, by layer name. */
export function chainDepths(tree: DepthTree): Map<string, number> {
  const depths = new Map<string, number>();
  const depthOf = (start: DepthNode): number => {
    // Iterative: a hostile tree may be far deeper than the call stack.
    const path: DepthNode[] = [];
    let at: DepthNode | undefined = start;
    let below = 0;
    while (at) {
      const known = depths.get(at.name);
      if (known !== undefined) {
        below = known;
        break;
      }
      path.push(at);
      // readVolumeTree refuses loops before this runs; the bound keeps a loop from hanging here anyway.
      if (path.length > tree.layers.size) break;
      at = at.parent !== undefined ? tree.layers.get(at.parent) : undefined;
    }
    for (let i = path.length - 1; i >= 0; i--) depths.set((path[i] as DepthNode).name, ++below);
    return depths.get(start.name) ?? below;
  };
  for (const node of tree.layers.values()) depthOf(node);
  return depths;
}

/** Refuses a tree with a chain deeper than `maxDepth` layers (exit 8), naming its deepest layer. */
export function checkTreeDepth(tree: DepthTree, maxDepth = DEFAULT_MAX_CHAIN_DEPTH): void {
  let deepest: [string, number] | undefined;
  for (const entry of chainDepths(tree)) if (deepest === undefined || entry[1] > deepest[1]) deepest = entry;
  if (deepest !== undefined && deepest[1] > maxDepth) {
    throw new UnsafeImageError(
      deepest[0],
      `backing chain of ${tree.volid} is ${deepest[1]} layers deep, more than the limit of ${maxDepth} layers; ` +
        `volchain will not read or change it (merge layers with 'qemu-img commit' or copy the volume with 'qemu-img convert')`,
    );
  }
}
