/**
 * Layers the engine must not change, and how deep a chain may grow (issue 13: corrupt images, internal
 * snapshots inside chain layers, unbounded chains).
 *
 * - A layer QEMU marked *corrupt* (incompatible feature bit 1) opens read-write nowhere but in
 *   `qemu-img check -r`: writing into it, freezing it as a snapshot, copying data out of it or building a new
 *   layer on it would spread (or set in stone) damage that `check -r` could still repair. Readers still show
 *   it, flagged, so the user can see what to repair.
 * - Internal snapshots (`qemu-img snapshot -c`, e.g. taken before the storage switched to volume chains) live
 *   inside one layer and read what that layer does not hold from its backing chain. Removing or replacing the
 *   layer drops them; rebasing it leaves them reading other data than they were taken with. Every such step
 *   is refused, naming the layer and its internal snapshots. A commit into the layer keeps them intact (see
 *   USES), so a delete by commit-child carries them over to the merged layer under its new name.
 * - A chain is at most DEFAULT_MAX_CHAIN_DEPTH layers deep (the same bound the chain walker in
 *   src/qcow2/validate.ts applies): reading a deeper tree is refused, and so is any plan that would make one.
 *
 * Everything here is pure: it judges a plan against the tree it was made from, before any step runs, so a
 * refusal changes nothing on disk.
 */
import { quoteForeign } from '../../quote.js';
import { CorruptImageError, NotSupportedError, UnsafeImageError } from '../../errors.js';
import { DEFAULT_MAX_CHAIN_DEPTH } from '../../qcow2/index.js';
import { offlineEquivalent, isLiveStep } from '../plan/live-steps.js';
import type { Step } from '../../model/plan.js';
import { chainDepths } from './chain-depth.js';
import type { LayerNode, VolumeTree } from './volume-tree.js';

/**
 * What a step does to a layer that already exists, and what that rules out: `corrupt` (a layer marked corrupt
 * may not be used so) and `internal` (a layer with internal snapshots may not be used so).
 */
const USES = {
  /**
   * Rebased: data is written into the layer and its backing changes, so its internal snapshots would read
   * what they do not hold from another layer than they were taken with.
   */
  rebase: { corrupt: true, internal: true },
  /**
   * Committed into: data is written into the layer's active state, but its backing stays and QEMU keeps the
   * clusters its internal snapshots use (refcounted, copied on write), so they still read what they were
   * taken with (checked with qemu-img: `snapshot -a` after a commit into the layer gives the old data back).
   */
  'commit-into': { corrupt: true, internal: false },
  /** Its data is committed into its parent; the step that then replaces or removes the layer is judged. */
  'commit-out': { corrupt: true, internal: false },
  /** The layer becomes (or is settled as) a frozen snapshot layer: internal snapshots stay valid in it. */
  freeze: { corrupt: true, internal: false },
  /** A new layer is created on top of it. */
  'build-on': { corrupt: true, internal: false },
  /** Its data is read to be copied into another layer; the layer itself is not changed. */
  read: { corrupt: true, internal: false },
  /** Written without changing what its internal snapshots read (resize, the internal snapshots themselves). */
  'write-keeps-snapshots': { corrupt: true, internal: false },
  /** The layer is removed or replaced: a corrupt one may go, its internal snapshots go with it. */
  drop: { corrupt: false, internal: true },
} as const;
type Use = keyof typeof USES;

interface LayerUse {
  node: LayerNode;
  use: Use;
  /** What the step does to it, as a participle for the message ("committed into", "rebased", …). */
  what: string;
}

/**
 * Throws when `steps`, planned from `tree`, would write, freeze, build on or copy out of a layer marked
 * corrupt (CorruptImageError), or would drop or re-base the internal snapshots of a layer (UnsafeImageError).
 * Layers whose header could not be read here (an inactive LV known from its tags) are not judged here; the
 * executor judges them once they are active (engine/read/layer-guard-disk.ts).
 */
export function guardSteps(tree: Pick<VolumeTree, 'layers'>, steps: readonly Step[]): void {
  for (const { node, use, what } of layerUses(tree, steps)) {
    const header = node.header;
    if (header === undefined) continue;
    if (header.corrupt && USES[use].corrupt) {
      throw new CorruptImageError(
        node.name,
        `is marked corrupt by QEMU, and volchain never has such a layer ${what}; repair it first with ` + `'qemu-img check -r all -f qcow2 ${node.path}'`,
      );
    }
    const internal = header.internalSnapshots.map((s) => s.name);
    if (internal.length > 0 && USES[use].internal) {
      const names = internal.map((n) => quoteForeign(n)).join(', '); // chosen by whoever wrote the image
      throw new UnsafeImageError(
        node.name,
        `holds internal snapshot(s) ${names} that would be lost if it were ${what}; copy one out with ` +
          `'qemu-img convert -f qcow2 -O qcow2 -l snapshot.name=<name> ${node.path} <new file>' or delete it with ` +
          `'qemu-img snapshot -d <name> ${node.path}' first`,
      );
    }
  }
}

/** What each step does to the tree's existing layers, following the names through renames. */
function layerUses(tree: Pick<VolumeTree, 'layers'>, steps: readonly Step[]): LayerUse[] {
  // Name now -> the tree layer that carries it at this point of the plan (undefined: a layer the plan made).
  const names = new Map<string, LayerNode | undefined>(tree.layers);
  // Names that a new overlay was given as backing before they existed (snapshot create: the old top's
  // future snapshot name): whatever is renamed to that name is what the overlay builds on.
  const awaited = new Set<string>();
  const uses: LayerUse[] = [];
  const use = (name: string | null, u: Use, what: string): void => {
    const node = name === null ? undefined : names.get(name);
    if (node) uses.push({ node, use: u, what });
  };
  for (const planned of steps) {
    const step = isLiveStep(planned) ? offlineEquivalent(planned) : planned;
    if (step === null || isLiveStep(step)) continue;
    switch (step.kind) {
      case 'create-overlay':
        if (names.has(step.backing)) use(step.backing, 'build-on', 'used as the base of a new layer');
        else awaited.add(step.backing);
        names.set(step.layer, undefined);
        break;
      case 'rename': {
        const node = names.get(step.from);
        if (awaited.has(step.to)) use(step.from, 'freeze', 'frozen as a snapshot');
        names.delete(step.from);
        names.set(step.to, node);
        break;
      }
      case 'replace': {
        use(step.to, 'drop', 'replaced');
        const node = names.get(step.from);
        names.delete(step.from);
        names.set(step.to, node);
        break;
      }
      case 'freeze':
        use(step.layer, 'freeze', 'frozen as a snapshot');
        break;
      case 'commit':
        use(step.top, 'commit-out', 'committed into its parent');
        use(step.base, 'commit-into', 'committed into');
        break;
      case 'rebase':
        use(step.layer, 'rebase', 'rebased');
        use(step.from, 'read', 'copied from');
        use(step.onto, 'read', 'read as the new backing of a rebase');
        break;
      case 'remove':
        use(step.layer, 'drop', 'removed');
        names.delete(step.layer);
        break;
      case 'resize':
        use(step.layer, 'write-keeps-snapshots', 'resized');
        break;
      case 'internal-snapshot':
        // On a storage without volume chains internal snapshots are the volume's own snapshots.
        use(step.layer, 'write-keeps-snapshots', `changed (internal snapshot ${step.action})`);
        break;
      case 'grow':
        break; // room on the storage only (LVM lvextend): the image is not touched
      case 'protect':
        use(step.layer, 'freeze', "made a template's read-only base volume");
        break;
      case 'convert':
      case 'verify':
        break; // a raw volume (no header to judge) read into a new layer; the verify step judges the copy
      case 'copy':
      case 'verify-copy':
        break; // a clone: a new volume; its source's tree was judged when the clone was planned
      case 'create-linked':
        names.set(step.layer, undefined);
        break; // a new layer; the base it names is checked by the backend (inspectBase) and never written
      case 'copy-layer':
      case 'verify-layer':
      case 'reassign-layer':
      case 'relink':
        break; // a move or reassign: its source's tree was judged when it was planned (engine/planners/move.ts)
      case 'import-layer':
      case 'verify-import':
        break; // an import: new layers only, judged by verify-import before they take their names
    }
  }
  return uses;
}

/**
 * Refuses a plan step that would put a new layer on top of `backing` when that makes a chain deeper than
 * `maxDepth` (exit 5: the volume is fine, the operation is what is not supported).
 */
export function refuseDeeperChain(tree: VolumeTree, backing: string, operation: string, maxDepth = DEFAULT_MAX_CHAIN_DEPTH): void {
  const depth = (chainDepths(tree).get(backing) ?? 0) + 1;
  if (depth > maxDepth) {
    throw new NotSupportedError(
      `${operation} of ${tree.volid} would make its chain ${depth} layers deep, more than the limit of ${maxDepth}: ` + `delete a snapshot first`,
    );
  }
}

// ---- what readers show ----------------------------------------------------------------------------------

/** An internal snapshot inside one layer, as `info` and `snapshot list` show it. */
export interface InternalSnapshotEntry {
  id: string;
  name: string;
  /** When it was taken (ISO 8601). */
  date: string;
  /** Bytes of saved VM state (0: disk only). */
  vmStateSize: number;
  /** Virtual size recorded with it, when recorded. */
  virtualSize: number | null;
}

/**
 * What readers flag about a layer: QEMU's corrupt bit, and the internal snapshots inside it. Both null when
 * the layer's header cannot be read on this host (an inactive LV known only from its tags).
 */
export interface LayerFlags {
  corrupt: boolean | null;
  internalSnapshots: InternalSnapshotEntry[] | null;
}

export function layerFlags(node: LayerNode): LayerFlags {
  const header = node.header;
  if (header === undefined) return { corrupt: null, internalSnapshots: null };
  return {
    corrupt: header.corrupt,
    internalSnapshots: header.internalSnapshots.map((s) => ({
      id: s.id,
      name: s.name,
      date: s.date.toISOString(),
      vmStateSize: s.vmStateSize,
      virtualSize: s.virtualSize ?? null,
    })),
  };
}

/** `info`'s per-layer entry: every layer of the tree, current first, then snapshot layers by name. */
export interface LayerFlagsEntry extends LayerFlags {
  layer: string;
  /** Snapshot the layer holds; null for the current layer. */
  snapshot: string | null;
}

export function treeLayerFlags(tree: VolumeTree): LayerFlagsEntry[] {
  const nodes = [...tree.layers.values()];
  const current = nodes.filter((n) => n.name === tree.current);
  const others = nodes.filter((n) => n.name !== tree.current).sort((a, b) => (a.snapshot ?? a.name).localeCompare(b.snapshot ?? b.name));
  return [...current, ...others].map((n) => ({ layer: n.name, snapshot: n.snapshot ?? null, ...layerFlags(n) }));
}
