/**
 * Planning `clone` (pure): a full, independent copy of a volume's current state or of one snapshot's view,
 * as a new qcow2 volume without snapshots on any storage (issue 17). The copy is made under a temporary name
 * and checked before it takes its final name, so the clone's name never holds a half copy:
 *   1. copy         new qcow2 `<tmp>` filled with the source's view        undo: remove <tmp>
 *   2. verify-copy  `qemu-img compare` of the source's view and <tmp>       undo: nothing (reads only)
 *   3. rename       <tmp> -> <name>                                          undo: rename back
 * A crash before step 3 is walked back by repair (the copy's source may be on another storage, so repair
 * never redoes a copy: engine/run/repair-record.ts): no clone. A crash in step 3 is finished: a whole clone.
 */
import { AlreadyExistsError, CorruptImageError, InvalidInputError, NoSpaceError, NotFoundError } from '../../errors.js';
import type { CopySource, Plan } from '../../model/plan.js';
import { formatSize, formatVolid, nextFreeDiskName, temporaryLayerName, validateSnapshotName, validateVolumeName } from '../../naming/index.js';
import { ancestry, findSnapshot, layer, type LayerNode, type VolumeTree } from '../read/volume-tree.js';
import type { CopyTarget } from './copy-target.js';

export interface CloneRequest {
  /** The source volume's chain, read under its VM's lock, and the path its backend gives each layer. */
  tree: VolumeTree;
  layerPath: (name: string) => string;
  /** Copy this snapshot's view; absent: the current state. */
  snapshot?: string;
  target: CopyTarget;
}

export function planClone(req: CloneRequest): Plan {
  const { tree, target } = req;
  const from = sourceLayer(tree, req.snapshot);
  refuseCorrupt(tree, from);
  const name = cloneName(target);
  const tmp = temporaryLayerName(target.kind, name, 'clone');
  if (target.existingNames.includes(tmp)) {
    throw new AlreadyExistsError(`${tmp} is left from an interrupted clone into ${target.storage}: run 'volchain repair' first`);
  }
  const volid = formatVolid({ storage: target.storage, kind: target.kind, vmid: target.vmid, name });
  const virtualSize = from.virtualSize;
  const bytes = viewBytes(tree, from);
  const spaceNeededBytes = target.spaceNeeded(virtualSize, bytes);
  if (spaceNeededBytes > target.freeBytes) {
    throw new NoSpaceError(
      `storage '${target.storage}' has ${formatSize(target.freeBytes)} free, but the clone of ${tree.volid}` +
        `${req.snapshot !== undefined ? ` at '${req.snapshot}'` : ''} needs ${formatSize(spaceNeededBytes)} (${spaceNeededBytes} bytes): ` +
        `${spaceNeededBytes - target.freeBytes} bytes missing`,
    );
  }
  const source: CopySource = {
    volid: tree.volid,
    ...(req.snapshot !== undefined ? { snapshot: req.snapshot } : {}),
    layer: from.name,
    path: req.layerPath(from.name),
    format: from.name === tree.current ? tree.volume.format : 'qcow2',
  };
  const what = req.snapshot !== undefined ? `snapshot '${req.snapshot}' of ${tree.volid}` : `the current state of ${tree.volid}`;
  return {
    operation: 'clone',
    volid,
    vmid: target.vmid,
    ...(req.snapshot !== undefined ? { snapshot: req.snapshot } : {}),
    summary: `copy ${what} into the new volume ${volid} (qcow2, ${virtualSize} bytes virtual, no snapshots)`,
    bytesMoved: bytes,
    clone: {
      source: tree.volid,
      ...(req.snapshot !== undefined ? { snapshot: req.snapshot } : {}),
      virtualSize,
      spaceNeededBytes,
      freeBytes: target.freeBytes,
    },
    steps: [
      { kind: 'copy', layer: tmp, source, sizeBytes: virtualSize, bytes },
      { kind: 'verify-copy', layer: tmp, source },
      { kind: 'rename', from: tmp, to: name },
    ],
  };
}

/** The layer whose view is copied: the snapshot's (exact name; a case-only match is named as a hint), else the current one. */
function sourceLayer(tree: VolumeTree, snapshot: string | undefined): LayerNode {
  if (snapshot === undefined) return layer(tree, tree.current);
  validateSnapshotName(snapshot);
  const found = findSnapshot(tree, snapshot);
  if (found?.snapshot === snapshot) return found;
  const hint = found?.snapshot !== undefined ? ` (did you mean '${found.snapshot}'?)` : '';
  throw new NotFoundError(`snapshot '${snapshot}' of ${tree.volid} does not exist${hint}`, { fields: { volid: tree.volid, snapshot } });
}

/** A layer QEMU marked corrupt is never read for a copy (its data may be wrong): the user repairs it first. */
function refuseCorrupt(tree: VolumeTree, from: LayerNode): void {
  for (const node of ancestry(tree, from.name)) {
    if (node.header?.corrupt === true) {
      throw new CorruptImageError(
        node.name,
        `is marked corrupt by QEMU, and volchain never copies out of such a layer; repair it first with 'qemu-img check -r all -f qcow2 ${node.path}'`,
      );
    }
  }
}

/** The clone's name: `--name` checked (qcow2, free), else the next free `vm-<vmid>-disk-<n>.qcow2` (also linked clones). */
export function cloneName(target: Pick<CloneRequest['target'], 'storage' | 'kind' | 'vmid' | 'name' | 'existingNames'>): string {
  if (target.name === undefined) return nextFreeDiskName(target.kind, target.vmid, 'qcow2', target.existingNames);
  if (validateVolumeName(target.kind, target.vmid, target.name) !== 'qcow2') {
    throw new InvalidInputError(`clone name '${target.name}' is not a qcow2 volume name: a clone is always qcow2 (end the name in .qcow2)`);
  }
  if (target.existingNames.includes(target.name)) {
    throw new AlreadyExistsError(`volume ${formatVolid({ storage: target.storage, kind: target.kind, vmid: target.vmid, name: target.name })} already exists`);
  }
  return target.name;
}

/**
 * Guest data the view holds at most: what each layer of its chain defines (overlaps counted twice), plus a
 * linked clone's base, never more than the virtual size.
 */
function viewBytes(tree: VolumeTree, from: LayerNode): number {
  const chain = ancestry(tree, from.name).reduce((sum, node) => sum + node.definedBytes, 0);
  const base = from.base !== undefined || ancestry(tree, from.name).some((n) => n.base !== undefined) ? (tree.base?.usedBytes ?? 0) : 0;
  return Math.min(from.virtualSize, chain + base);
}
