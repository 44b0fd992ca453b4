/**
 * Which layers belong to which volume: the one place that decides it, for the engine's tree reader
 * (engine/read/volume-tree.ts), the live matcher (engine/live/match.ts: which volume a file QEMU opened is of)
 * and the LVM backend (backends/lvm/tags.ts, owners.ts: which LVs to activate, tag and read). Pure.
 *
 * Three kinds of evidence, strongest first:
 * 1. a trusted record of the layer's volume (LVM: volchain's tag, believed only when it agrees with PVE's
 *    tags and the LV's name, see backends/lvm/tags.ts trustedLayerTags): that volume, no other;
 * 2. the name: a volume's own name is that volume's current layer, a temporary names its volume, and a
 *    snapshot layer name fits every volume whose snapshot layer it can be. Names are ambiguous on both storage
 *    types (naming/layer-names.ts: `snap_vm-1-a_b_c.qcow2` is vm-1-a's `b_c` or vm-1-a_b's `c`), and renames
 *    never move a layer between volumes, so a layer opened (or listed) under any of these names is one of
 *    those volumes';
 * 3. the headers' backing references, for a name that fits several volumes and has no record: the layer is
 *    the volume's whose chain it joins (it is the backing of one of the volume's layers, or its backing is
 *    one of them), repeated until nothing changes, starting from the layers that are the volume's for sure.
 */
import { isVolchainTemporaryName, parseVolumeName, snapshotOfLayerName, type StorageKind } from '../naming/index.js';

/**
 * The volumes a layer called `name` may belong to, among `volumes` (volume names, i.e. current layer names)
 * for snapshot layer names: [recorded] when a trusted record names one; the layer's own name when it is a
 * volume's; the volume a temporary name carries; else every volume whose snapshot layer the name can be
 * (several: ambiguous; none: not a layer of these volumes).
 */
export function candidateVolumes(kind: StorageKind, name: string, volumes: readonly string[], recorded?: string): string[] {
  if (recorded !== undefined) return [recorded];
  if (isVolumeName(kind, name)) return [name];
  const temporary = isVolchainTemporaryName(name, kind);
  if (temporary) return [temporary.volumeName];
  return volumes.filter((v) => snapshotOfLayerName(kind, v, name) !== undefined);
}

export interface Ownership {
  /** Volume -> the layers of its chain: its sure layers and the ambiguous ones the backing references join to them. */
  chains: Map<string, Set<string>>;
  /** Layer -> its one volume: sure (one candidate), or ambiguous and joined to exactly one volume's chain. */
  owner: Map<string, string>;
}

/**
 * Settles the candidates (layer -> candidateVolumes) with the backing references read from the headers
 * (`backingOf`: layer -> the layer its header names as backing, null for none; layers whose header was not
 * read are absent, and can join a chain only as the backing of one of its layers). A layer with one
 * candidate is that volume's; an ambiguous one joined to no chain, or to two (a corrupt header), has no owner.
 */
export function settleOwnership(candidates: ReadonlyMap<string, readonly string[]>, backingOf: ReadonlyMap<string, string | null>): Ownership {
  const owner = new Map<string, string>();
  const chains = new Map<string, Set<string>>();
  const ambiguous = new Map<string, readonly string[]>();
  for (const [name, volumes] of candidates) {
    const [only] = volumes;
    if (volumes.length === 1 && only !== undefined) {
      owner.set(name, only);
      chains.set(only, (chains.get(only) ?? new Set()).add(name));
    } else if (volumes.length > 1) {
      ambiguous.set(name, volumes);
    }
  }
  if (ambiguous.size === 0) return { chains, owner };
  const joinedBy = new Map<string, string[]>();
  for (const volume of new Set([...ambiguous.values()].flat())) {
    const members = chains.get(volume) ?? new Set<string>();
    chains.set(volume, members);
    for (let grew = true; grew;) {
      grew = false;
      const backingOfMembers = new Set([...members].map((m) => backingOf.get(m)).filter((b): b is string => typeof b === 'string'));
      for (const [name, allowed] of ambiguous) {
        if (members.has(name) || !allowed.includes(volume)) continue;
        const backing = backingOf.get(name);
        if (backingOfMembers.has(name) || (typeof backing === 'string' && members.has(backing))) {
          members.add(name);
          joinedBy.set(name, [...(joinedBy.get(name) ?? []), volume]);
          grew = true;
        }
      }
    }
  }
  for (const [name, by] of joinedBy) if (by.length === 1) owner.set(name, by[0] as string);
  return { chains, owner };
}

/** What is known of one layer: its name, the volume a trusted record names, and its header's backing. */
export interface LayerFacts {
  name: string;
  /** The volume a trusted record names (LVM: volchain's tag); undefined when nothing trusted says. */
  recorded?: string | undefined;
  /** The layer its header names as backing (null: none); absent when the header was not read. */
  backing?: string | null | undefined;
}

/** Which layers belong to which of `volumes`: candidateVolumes for every layer, settled by settleOwnership. */
export function layerOwnership(
  kind: StorageKind,
  volumes: readonly string[],
  layers: readonly LayerFacts[],
): Ownership & { candidates: Map<string, string[]> } {
  const candidates = new Map(layers.map((l) => [l.name, candidateVolumes(kind, l.name, volumes, l.recorded)]));
  const backingOf = new Map(layers.flatMap((l) => (l.backing !== undefined ? [[l.name, l.backing] as const] : [])));
  return { ...settleOwnership(candidates, backingOf), candidates };
}

function isVolumeName(kind: StorageKind, name: string): boolean {
  // parseVolumeName refuses every snapshot layer name; saying so without building its error (issue 16: bulk
  // listings ask this of every snapshot layer) gives the same answer.
  if (/^snap[-_]/.test(name)) return false;
  try {
    parseVolumeName(kind, name);
    return true;
  } catch {
    return false;
  }
}
