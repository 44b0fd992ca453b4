/**
 * `snapshot list`: a volume's snapshots as a tree (volume-chain mode: one layer each; internal mode: the
 * internal snapshots of the current layer). Reads only.
 */
import { NotSupportedError } from '../../errors.js';
import { layerFlags } from '../read/layer-guard.js';
import { ancestry, layer, snapshotLayers, type LayerNode } from '../read/volume-tree.js';
import { readTree } from '../session/read-tree.js';
import type { Session } from '../session/session.js';
import { CURRENT, type SnapshotListing } from './types.js';

export async function snapshotList(session: Session, volid: string): Promise<SnapshotListing> {
  const { backend, volume } = session.resolve(volid);
  // Read first: a volume that does not exist is "not found" whatever its name says about its format.
  const tree = await readTree(backend, volume);
  if (volume.format !== 'qcow2') {
    throw new NotSupportedError(`${volid} is a raw volume: snapshots need qcow2`);
  }
  const current = layer(tree, tree.current);
  // A qcow2 layer read from its header has its data counted; one known only from LV tags does not.
  const dataOf = (l: LayerNode): number | null => (l.header !== undefined ? l.definedBytes : null);
  const currentEntry = {
    layer: current.name,
    path: current.path,
    parent: current.parent ? (layer(tree, current.parent).snapshot ?? null) : null,
    virtualSize: current.virtualSize,
    definedBytes: dataOf(current),
    usedBytes: current.usedBytes,
    ...layerFlags(current),
  };
  if (!backend.capabilities.volumeChain) {
    const internal = current.header?.internalSnapshots ?? [];
    return {
      volid: tree.volid,
      mode: 'internal',
      current: currentEntry,
      snapshots: internal.map((s, i) => ({
        name: s.name,
        layer: current.name,
        path: current.path,
        parent: i > 0 ? (internal[i - 1]?.name ?? null) : null,
        children: [],
        inCurrentChain: true,
        virtualSize: s.virtualSize ?? current.virtualSize,
        definedBytes: 0,
        usedBytes: 0,
        // These are the internal snapshots themselves: they live in the current layer and hold none.
        corrupt: currentEntry.corrupt,
        internalSnapshots: [],
      })),
    };
  }
  const chain = new Set(ancestry(tree, tree.current).map((l) => l.name));
  const nameOf = (layerName: string): string => layer(tree, layerName).snapshot ?? CURRENT;
  const snapshots = snapshotLayers(tree)
    .map((l) => ({
      name: l.snapshot ?? '',
      layer: l.name,
      path: l.path,
      parent: l.parent ? nameOf(l.parent) : null,
      children: l.children.map(nameOf),
      inCurrentChain: chain.has(l.name),
      virtualSize: l.virtualSize,
      definedBytes: dataOf(l),
      usedBytes: l.usedBytes,
      ...layerFlags(l),
    }))
    .sort((a, b) => a.name.localeCompare(b.name));
  return { volid: tree.volid, mode: 'volume-chain', current: currentEntry, snapshots };
}
