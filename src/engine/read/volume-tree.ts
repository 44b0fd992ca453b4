/**
 * The snapshot tree of one volume, read from the qcow2 headers of its layers. The current layer has the
 * volume's name; every other member is a snapshot layer whose name is derived from (volume, snapshot). A
 * layer's parent is its backing file; after rollbacks that keep newer snapshots, a layer may have several
 * children. Every header is validated before it is trusted (DESIGN.md section 6).
 */
import { stat } from 'node:fs/promises';
import type { Backend, LayerStat } from '../../backends/backend.js';
import { CorruptImageError, NotFoundError, NotSupportedError, UnsafeImageError } from '../../errors.js';
import {
  formatVolid,
  isVolchainTemporaryName,
  parseBaseBackingRef,
  parseVolumeName,
  sameSnapshotName,
  snapshotOfLayerName,
  type VolumeRef,
} from '../../naming/index.js';
import { candidateVolumes, layerOwnership, type LayerFacts } from '../../ownership/layer-owners.js';
import { settleCloneBase, type CloneBase } from './clone-base.js';
import { checkTreeDepth } from './chain-depth.js';
import { readQcow2Layer, type Qcow2Header } from '../../qcow2/index.js';

export interface LayerNode {
  name: string;
  /** Snapshot this layer holds; undefined for the current (writable) layer. */
  snapshot: string | undefined;
  parent: string | undefined;
  children: string[];
  path: string;
  virtualSize: number;
  /** Guest bytes this layer itself defines (data and explicit zeroes): what copying it moves. */
  definedBytes: number;
  /** Bytes the layer occupies on the storage. */
  usedBytes: number;
  header: Qcow2Header | undefined;
  /**
   * Set on a linked clone's bottom layer(s): the backing reference `../<basevmid>/base-…` to the template's
   * base volume, which is not a member of the tree (`parent` is undefined) and is never written.
   */
  base?: string;
}

export interface VolumeTree {
  volume: VolumeRef;
  volid: string;
  /** Layer name of the current layer (= the volume name). */
  current: string;
  layers: Map<string, LayerNode>;
  /** Temporary layers of this volume left by an interrupted operation (repair handles them). */
  leftovers: string[];
  /**
   * Names that could be this volume's snapshot layers but belong to another volume's chain (names are
   * ambiguous: see layer-names.ts). A new snapshot must not take one of these names.
   */
  foreignLayers?: string[];
  /** A linked clone's base volume (engine/read/clone-base.ts): what its bottom layer(s) are backed by, read-only. */
  base?: CloneBase;
}

export interface ReadTreeOptions {
  /**
   * Count each layer's guest data from its L1/L2 tables (what planners need for byte counts). Off for bulk
   * listings, where `definedBytes` then falls back to the space the layer takes on the storage.
   */
  allocation?: boolean;
}

export async function readVolumeTree(backend: Backend, volume: VolumeRef, opts: ReadTreeOptions = {}): Promise<VolumeTree> {
  const volid = formatVolid(volume);
  const names = await backend.listLayerNames(volume.vmid);
  if (!names.includes(volume.name)) {
    throw new NotFoundError(`volume ${volid} does not exist`, { fields: { volid, vmid: volume.vmid, storage: volume.storage } });
  }
  const snapshotOf = new Map<string, string>();
  const leftovers: string[] = [];
  // Which layer is whose: ownership/layer-owners.ts, among the VM's volumes whose layer names could look like ours.
  const volumes = [volume.name, ...otherVolumeNames(backend.kind, volume, names)];
  // A template's base volume is one read-only layer: it has no snapshot layers (PVE: templates take none).
  for (const name of volume.template ? [] : names) {
    const snap = snapshotOfLayerName(backend.kind, volume.name, name);
    if (snap !== undefined) snapshotOf.set(name, snap);
    else if (isVolchainTemporaryName(name, backend.kind)?.volumeName === volume.name) leftovers.push(name);
  }
  const stats = new Map<string, LayerStat>();
  // Names another volume of the VM could also own: ours only if the headers join them to our chain.
  const ambiguous = new Set<string>();
  // What the backend recorded as each layer's volume (trusted: LVM's tags), which settles names that are
  // ambiguous on their own (LVM: `snap_vm-1-a_b_c.qcow2` is vm-1-a's snapshot b_c or vm-1-a_b's snapshot c).
  const recorded = new Map<string, string>();
  for (const name of [volume.name, ...snapshotOf.keys()]) {
    const st = await backend.statLayer(volume.vmid, name);
    if (!st) throw new NotFoundError(`layer ${name} of ${volid} vanished while reading the chain`);
    const owner = name === volume.name ? undefined : st.recorded?.volume;
    if (owner !== undefined) recorded.set(name, owner);
    const candidates = name === volume.name ? [volume.name] : candidateVolumes(backend.kind, name, volumes, owner);
    if (!candidates.includes(volume.name)) {
      snapshotOf.delete(name);
      continue;
    }
    stats.set(name, st);
    if (candidates.length > 1) ambiguous.add(name);
  }
  const layers = new Map<string, LayerNode>();
  // Why an ambiguous layer could not be read: an error only if our chain turns out to need it.
  const unreadable = new Map<string, unknown>();
  for (const [name, st] of stats) {
    try {
      layers.set(name, await readNode(name, st));
    } catch (err) {
      if (!ambiguous.has(name)) throw err;
      unreadable.set(name, err);
    }
  }
  const foreignLayers = ambiguous.size > 0 ? settleAmbiguous(backend.kind, volume.name, volumes, layers, { ambiguous, recorded, unreadable }) : [];
  for (const name of foreignLayers) snapshotOf.delete(name);

  async function readNode(name: string, st: LayerStat): Promise<LayerNode> {
    const path = backend.layerPath(volume.vmid, name);
    let header: Qcow2Header | undefined;
    let virtualSize: number;
    let definedBytes = st.usedBytes;
    let parent: string | undefined;
    if (volume.format === 'qcow2' && st.readable === false) {
      // Not openable on this host (an inactive LV, perhaps held by another host): the chain comes from what
      // the backend recorded. Before any plan runs, the backend's activate() checks it against the headers.
      if (!st.recorded) {
        throw new NotSupportedError(
          `layer ${name} of ${volid} cannot be opened on this host and the storage recorded nothing about it: activate the volume first`,
        );
      }
      parent = st.recorded.parent ?? undefined;
      if (parent !== undefined && !snapshotOf.has(parent)) {
        throw new UnsafeImageError(name, 'recorded parent is not an expected layer name of this volume', parent);
      }
      virtualSize = st.recorded.virtualSize;
    } else if (volume.format === 'qcow2') {
      // One open per layer: the header is validated before any table it points to is read.
      const info = await readQcow2Layer(path, name, {
        allocation: opts.allocation ?? true,
        policy: {
          base: volume.template,
          isExpectedLayerName: (ref) => snapshotOf.has(ref),
          // Only a storage that can check a base volume (dir) accepts PVE's `../<vmid>/base-…` reference.
          ...(backend.capabilities.baseVolumes && !volume.template ? { baseFormat: (ref: string) => parseBaseBackingRef(ref, backend.kind)?.format } : {}),
        },
      });
      header = info.header;
      parent = header.backingFile;
      virtualSize = header.virtualSize;
      if (info.allocation) definedBytes = info.allocation.dataBytes + info.allocation.zeroBytes;
    } else {
      virtualSize = st.recorded?.virtualSize ?? (await stat(path)).size;
    }
    // The base is outside the tree: the layer is a root of the clone's own layers, with the base noted.
    const base = parent !== undefined && header !== undefined && parseBaseBackingRef(parent, backend.kind) !== undefined ? parent : undefined;
    if (base !== undefined) parent = undefined;
    return {
      ...(base !== undefined ? { base } : {}),
      name,
      snapshot: snapshotOf.get(name),
      parent,
      children: [],
      path,
      virtualSize,
      definedBytes,
      usedBytes: st.usedBytes,
      header,
    };
  }
  for (const node of layers.values()) {
    if (node.parent === undefined) continue;
    const parent = layers.get(node.parent);
    if (!parent) {
      throw new CorruptImageError(node.name, `backing layer ${node.parent} is missing; run 'volchain repair ${volid}'`);
    }
    parent.children.push(node.name);
  }
  // A loop among snapshot layers would make every walk endless: refuse it here, once.
  for (const node of layers.values()) {
    const seen = new Set<string>();
    for (let at: LayerNode | undefined = node; at; at = at.parent ? layers.get(at.parent) : undefined) {
      if (seen.has(at.name)) throw new UnsafeImageError(node.name, 'backing chain loops back on itself', at.name);
      seen.add(at.name);
    }
  }
  for (const node of layers.values()) node.children.sort();
  // A linked clone: its base volume is checked (a plain base of this storage, never followed further) and
  // the volid gains the base part PVE gives it, whichever form the caller used.
  const base = await settleCloneBase(backend, volume, volid, layers.values());
  const ref = base ? { ...volume, base: base.volume } : volume;
  const fullVolid = base ? formatVolid(ref) : volid;
  const tree = {
    volume: base ? { ...ref, volname: fullVolid.slice(volume.storage.length + 1) } : volume,
    volid: fullVolid,
    current: volume.name,
    layers,
    leftovers,
    ...(foreignLayers.length > 0 ? { foreignLayers } : {}),
    ...(base ? { base } : {}),
  };
  // The chain walker's depth bound (validate.ts) holds for trees too: nothing deeper is handed on.
  checkTreeDepth(tree);
  return tree;
}

/**
 * The other volumes of the VM whose layer names could look like ours: the volumes listed, and the volumes a
 * temporary layer names (a volume whose top is renamed away mid-operation still owns its snapshot layers).
 */
function otherVolumeNames(kind: Backend['kind'], volume: VolumeRef, names: readonly string[]): string[] {
  const out = new Set<string>();
  for (const name of names) {
    const candidate = isVolchainTemporaryName(name, kind)?.volumeName ?? name;
    if (candidate === volume.name || name.startsWith('snap')) continue;
    try {
      parseVolumeName(kind, candidate, volume.vmid);
      out.add(candidate);
    } catch {
      // Not a volume name: a snapshot layer, a journal, a foreign file.
    }
  }
  return [...out];
}

/**
 * Keeps the ambiguous layers the headers join to this volume's chain (ownership/layer-owners.ts: one whose
 * parent is ours, or that is the parent of one of ours, repeated until nothing changes) and removes the others
 * from `layers`, returning their names. Every other layer is ours for sure, so the current layer's whole tree
 * is found this way: each snapshot layer is an ancestor of the current layer or hangs below one. An ambiguous
 * layer that could not be read is an error only when the chain needs it.
 */
function settleAmbiguous(
  kind: Backend['kind'],
  volumeName: string,
  volumes: readonly string[],
  layers: Map<string, LayerNode>,
  known: { ambiguous: ReadonlySet<string>; recorded: ReadonlyMap<string, string>; unreadable: ReadonlyMap<string, unknown> },
): string[] {
  const facts: LayerFacts[] = [...layers.keys(), ...known.unreadable.keys()].map((name) => {
    const node = layers.get(name);
    return { name, recorded: known.recorded.get(name), ...(node ? { backing: node.parent ?? null } : {}) };
  });
  const members = layerOwnership(kind, volumes, facts).chains.get(volumeName) ?? new Set<string>();
  for (const name of known.ambiguous) if (members.has(name) && !layers.has(name)) throw known.unreadable.get(name);
  const foreign = [...known.ambiguous].filter((n) => !members.has(n)).sort();
  for (const name of foreign) layers.delete(name);
  return foreign;
}

export function layer(tree: VolumeTree, name: string): LayerNode {
  const node = tree.layers.get(name);
  if (!node) throw new NotFoundError(`layer ${name} is not part of ${tree.volid}`);
  return node;
}

/** Layers from `name` up to the root, `name` first. */
export function ancestry(tree: VolumeTree, name: string): LayerNode[] {
  const chain: LayerNode[] = [];
  for (let at: LayerNode | undefined = layer(tree, name); at; at = at.parent ? tree.layers.get(at.parent) : undefined) {
    chain.push(at);
  }
  return chain;
}

/** Every layer below `name` (children, grandchildren, ...), leaves first. */
export function descendants(tree: VolumeTree, name: string): LayerNode[] {
  const out: LayerNode[] = [];
  const visit = (n: LayerNode): void => {
    for (const child of n.children) visit(layer(tree, child));
    if (n.name !== name) out.push(n);
  };
  visit(layer(tree, name));
  return out;
}

export function snapshotLayers(tree: VolumeTree): LayerNode[] {
  return [...tree.layers.values()].filter((l) => l.snapshot !== undefined);
}

/**
 * The layer of snapshot `snapshot`: the exact name first; failing that, a snapshot whose name differs only in
 * case (callers use it to refuse a new clashing name or to suggest the right one, never to act on it).
 */
export function findSnapshot(tree: VolumeTree, snapshot: string): LayerNode | undefined {
  const layers = snapshotLayers(tree);
  return layers.find((l) => l.snapshot === snapshot) ?? layers.find((l) => l.snapshot !== undefined && sameSnapshotName(l.snapshot, snapshot));
}
