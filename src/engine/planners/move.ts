/**
 * Planning `move` to another storage (pure): the volume with its whole snapshot tree, branches included, each
 * layer copied once as a delta onto its already-copied parent (not flattened), the source removed only once
 * every copy was checked. Two plans, each journaled on its own storage:
 *   move (target)        1..n    copy-layer    each layer, parents first                 undo: remove it
 *                        n+1..2n verify-layer  header, qemu-img check, and the view of     undo: nothing
 *                                              every layer (every snapshot) compared
 *   move-finish (source) 1..n    remove        each source layer, leaves first            no undo
 * The finish plan's journal is written on the source before the move's journal is removed (the executor's
 * beforeFinish), so a crash finds one or both records. Crash before that point: repair walks the move back
 * (the copies removed, step-rules.ts walkedBackOnRepair), the source intact. After it (the point of no
 * return): repair finishes removing the source; the target is whole and verified.
 * A linked clone's bottom layer is copied with its base's data (its whole view): the copy stands alone.
 */
import { CorruptImageError, NoSpaceError, NotSupportedError } from '../../errors.js';
import type { CopySource, Plan, Step } from '../../model/plan.js';
import { formatSize, formatVolid } from '../../naming/index.js';
import { ancestry, type LayerNode, type VolumeTree } from '../read/volume-tree.js';
import { nameForVmid, parentsFirst, refuseTakenNames, renamedLayers } from './reassign.js';
import type { CopyTarget } from './copy-target.js';

export interface MoveRequest {
  tree: VolumeTree;
  /** Path of a source layer (its backend's, never taken from input). */
  layerPath: (name: string) => string;
  target: CopyTarget;
}

export function planMove(req: MoveRequest): Plan {
  const { tree, target } = req;
  const from = tree.volume;
  if (from.template === true)
    throw new NotSupportedError(`${tree.volid} is a template's base volume: linked clones depend on it where it is, so it is not moved`);
  if (from.format !== 'qcow2') {
    throw new NotSupportedError(
      `${tree.volid} is a raw volume: move carries qcow2 chains; use 'volchain clone' then 'volchain free', or 'volchain convert' first`,
    );
  }
  const newName = target.vmid === from.vmid ? from.name : nameForVmid(target.kind, from.name, 'qcow2', target.vmid, target.existingNames);
  const names = renamedLayers(tree, target.kind, newName);
  refuseTakenNames(names.values(), target.existingNames, `on storage '${target.storage}' for VM ${target.vmid}`);
  const order = parentsFirst(tree);
  for (const node of order) {
    if (node.header?.corrupt === true) {
      throw new CorruptImageError(
        node.name,
        `is marked corrupt by QEMU, and volchain never copies out of such a layer; repair it first with 'qemu-img check -r all -f qcow2 ${node.path}'`,
      );
    }
  }
  const newVolid = formatVolid({ storage: target.storage, kind: target.kind, vmid: target.vmid, name: newName });
  const nameOf = (n: string): string => names.get(n) ?? n;
  const copies: Step[] = [];
  const checks: Step[] = [];
  let bytesToCopy = 0;
  let spaceNeededBytes = 0;
  let peak = 0;
  for (const node of order) {
    const source: CopySource = {
      volid: tree.volid,
      ...(node.snapshot !== undefined ? { snapshot: node.snapshot } : {}),
      layer: node.name,
      path: req.layerPath(node.name),
      format: 'qcow2',
    };
    const backing = node.parent !== undefined ? nameOf(node.parent) : null;
    const bytes = backing === null ? wholeViewBytes(tree, node) : node.definedBytes;
    bytesToCopy += bytes;
    const frozen = node.snapshot !== undefined;
    spaceNeededBytes += target.spaceNeeded(node.virtualSize, bytes, frozen);
    // A snapshot layer is written full-size first (LVM) and shrunk after its copy: one at a time.
    if (frozen) peak = Math.max(peak, target.spaceNeeded(node.virtualSize, bytes, false) - target.spaceNeeded(node.virtualSize, bytes, true));
    copies.push({ kind: 'copy-layer', layer: nameOf(node.name), backing, source, sizeBytes: node.virtualSize, bytes, volume: newName });
    checks.push({ kind: 'verify-layer', layer: nameOf(node.name), backing, source });
  }
  spaceNeededBytes += peak;
  if (spaceNeededBytes > target.freeBytes) {
    throw new NoSpaceError(
      `storage '${target.storage}' has ${formatSize(target.freeBytes)} free, but moving ${tree.volid} with its ${order.length - 1} snapshot layer(s) ` +
        `needs ${formatSize(spaceNeededBytes)} (${spaceNeededBytes} bytes): ${spaceNeededBytes - target.freeBytes} bytes missing`,
    );
  }
  const finish: Plan = {
    operation: 'move-finish',
    volid: tree.volid,
    vmid: from.vmid,
    newVolid,
    summary: `remove ${tree.volid} and its snapshot layers from storage '${from.storage}': the copy ${newVolid} is verified`,
    steps: [...order].reverse().map((node) => ({ kind: 'remove', layer: node.name })),
    bytesMoved: 0,
  };
  return {
    operation: 'move',
    volid: newVolid,
    vmid: target.vmid,
    newVolid,
    summary:
      `move ${tree.volid} with ${order.length - 1} snapshot layer(s) to ${newVolid}: ${order.length} layer(s) copied as deltas ` +
      `(${bytesToCopy} bytes), every view compared, then the source removed`,
    steps: [...copies, ...checks],
    bytesMoved: bytesToCopy,
    move: { source: tree.volid, target: newVolid, layers: order.length, bytesToCopy, spaceNeededBytes, freeBytes: target.freeBytes, finish },
  };
}

/** A bottom layer's copy holds its whole view: its own data plus a linked clone's base, never more than the virtual size. */
function wholeViewBytes(tree: VolumeTree, node: LayerNode): number {
  const own = ancestry(tree, node.name).reduce((sum, n) => sum + n.definedBytes, 0);
  return Math.min(node.virtualSize, own + (node.base !== undefined ? (tree.base?.usedBytes ?? 0) : 0));
}
