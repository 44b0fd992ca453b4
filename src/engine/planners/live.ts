/**
 * Pure planners for snapshot operations on a volume that a running QEMU has open. They build on the
 * offline planners (same names on disk, same strategy choice with the same byte counts) and add the steps
 * QEMU must take, with the node names read from QEMU's view (engine/live/match.ts).
 *
 * Create S: the new top is made and renamed into place exactly as offline, *then* opened in QEMU under its
 * final name and switched in (blockdev-snapshot; all disks in one transaction). Until that switch the guest
 * keeps writing into the old top, which by then is already called snap-S: the snapshot holds the disk's
 * state at the instant of the switch. Everything before the switch can be undone; from the switch on,
 * repair rolls forward.
 *
 * Delete S (S on the current chain; otherwise QEMU reads nothing that changes and the plan is the offline
 * one), with the offline planner's cheaper strategy:
 * - rebase-children: block-stream into S's child on the chain (base-node = S's parent, backing-file = the
 *   parent's name), offline safe rebases of the other children (branches QEMU does not have open), then
 *   close S's nodes and remove its layer. A cancelled stream changes no one's view: the plan is undone.
 * - commit-child: block-commit of S's only child into S (job-complete when the child is the active layer,
 *   with the guest paused for the pivot, see engine/plan/live-steps.ts), close the child's nodes, and S's layer takes
 *   the child's name. S is written into, which is allowed only because S is being deleted: a cancelled
 *   commit leaves S holding part of its child's data, so the journal stays and repair finishes the delete.
 * Either way nothing but S's own state is ever at stake before the job completes: the parent is never
 * written, and every other layer keeps its view.
 *
 * On a graph PVE 9 started (LiveDisk.pveDrive), both plans end with the steps that leave PVE's node names
 * (engine/live/pve-graph.ts).
 */
import { NotFoundError, NotSupportedError } from '../../errors.js';
import { layerNodeNames } from '../../qmp/blockdev.js';
import type { LiveStep, Plan, Step } from '../../model/plan.js';
import { planSnapshotCreate } from './snapshot-create.js';
import { planSnapshotDelete } from './snapshot-delete.js';
import type { PlanContext } from './rules.js';
import { pveRename, pveWriterSwap } from '../live/pve-graph.js';
import { findSnapshot, layer, type VolumeTree } from '../read/volume-tree.js';

/** QEMU's nodes for the layers of a volume's current chain (from engine/live/match.ts), by layer name today. */
export interface LiveDisk {
  storage: string;
  /** QMP socket the plan acts through (recorded in the plan for repair). */
  socket: string;
  nodes: ReadonlyMap<string, { node: string; protocolNode: string | undefined }>;
  /** The guest was running when planned: a pivot pauses it and resumes it afterwards. */
  guestRunning: boolean;
  /** block-stream is safe on this QEMU and chain (see planLiveSnapshotDelete); else jobs are commits only. */
  streamSafe: boolean;
  /**
   * The outermost filter above the top (PVE's throttle node `drive-<id>`), if any: block-commit needs a root
   * node as its `device`, and below a filter the top is none.
   */
  rootFilter?: string;
  /** PVE's drive id when `rootFilter` is PVE's throttle node: the plan then leaves PVE's node names (engine/live/pve-graph.ts). */
  pveDrive?: string;
  /** A linked clone's base volume node at the bottom of QEMU's chain (engine/live/clone.ts): a stream's base-node onto it. */
  baseNode?: string;
}

/**
 * Node names for a top created live. Unique per creation (`nonce`): the name of the layer it opens (the
 * volume's name) is taken by the node of the old top, which stays open as the snapshot layer.
 */
export function liveTopNodeNames(storage: string, layerName: string, nonce: string): { format: string; protocol: string } {
  return layerNodeNames(storage, `${layerName}\0live\0${nonce}`);
}

function nodeOf(disk: LiveDisk, tree: VolumeTree, layerName: string): { node: string; protocolNode: string | undefined } {
  const n = disk.nodes.get(layerName);
  if (!n) throw new NotFoundError(`QEMU has no node for layer ${layerName} of ${tree.volid}`);
  return n;
}

export function planLiveSnapshotCreate(tree: VolumeTree, ctx: PlanContext, snapshot: string, disk: LiveDisk, nonce: string): Plan {
  if (!ctx.volumeChain) {
    throw new NotSupportedError(
      `${tree.volid} keeps internal snapshots (storage without snapshot-as-volume-chain): volchain takes those only with the VM stopped`,
    );
  }
  const offline = planSnapshotCreate(tree, ctx, snapshot);
  const [create, renameTop, renameTmp, ...rest] = offline.steps;
  if (create?.kind !== 'create-overlay' || renameTop?.kind !== 'rename' || renameTmp?.kind !== 'rename' || rest.some((s) => s.kind !== 'freeze')) {
    throw new Error(`unexpected offline snapshot plan for ${tree.volid}`);
  }
  const top = nodeOf(disk, tree, tree.current);
  const names = liveTopNodeNames(disk.storage, tree.current, nonce);
  const steps: Step[] = [
    create,
    renameTop,
    renameTmp,
    { kind: 'qmp-open', layer: tree.current, node: names.format, protocolNode: names.protocol },
    // Point of no return: from here the guest writes into the new top.
    { kind: 'qmp-snapshot', layer: renameTop.to, node: top.node, overlay: names.format },
    ...rest,
  ];
  if (disk.pveDrive !== undefined) {
    // PVE's graph: the old top is snapshot S's layer now, the new top the current layer (engine/live/pve-graph.ts).
    steps.push(pveRename(tree, disk.pveDrive, renameTop.to, snapshot, top));
    const x = liveTopNodeNames(disk.storage, `${tree.current}\0swap`, nonce);
    steps.push(...pveWriterSwap(tree, ctx, disk, disk.pveDrive, { node: names.format, protocolNode: names.protocol }, x));
  }
  return {
    ...offline,
    summary: `${offline.summary}, switching the running VM onto the new top`,
    steps,
    live: { socket: disk.socket },
  };
}

export function planLiveSnapshotDelete(tree: VolumeTree, ctx: PlanContext, snapshot: string, disk: LiveDisk): Plan {
  if (!ctx.volumeChain) {
    throw new NotSupportedError(
      `${tree.volid} keeps internal snapshots (storage without snapshot-as-volume-chain): volchain deletes those only with the VM stopped`,
    );
  }
  const offline = planSnapshotDelete(tree, ctx, snapshot);
  const target = findSnapshot(tree, snapshot);
  // Not on the chain QEMU has open: QEMU only reads layers below it, which the plan never writes.
  if (!target || !disk.nodes.has(target.name)) return offline;

  const snap = nodeOf(disk, tree, target.name);
  const root = nodeOf(disk, tree, tree.current);
  const chainChild = target.children.find((c) => disk.nodes.has(c));
  if (chainChild === undefined) throw new Error(`snapshot ${snapshot} of ${tree.volid} is on QEMU's chain but none of its children is`);
  const child = layer(tree, chainChild);
  const childNode = nodeOf(disk, tree, chainChild);
  const branches = target.children.filter((c) => c !== chainChild);
  const close = (layerName: string, n: { node: string; protocolNode: string | undefined }): LiveStep => ({
    kind: 'qmp-close',
    layer: layerName,
    nodes: n.protocolNode !== undefined ? [n.node, n.protocolNode] : [n.node],
  });
  // Branches (children QEMU does not have open) are rebased offline either way.
  // The clone's oldest layer S has no parent in the tree but the base volume below it (never written: the
  // children are rebased or streamed onto the base, as the offline planner does).
  const ontoBase = target.parent === undefined && target.base !== undefined && tree.base !== undefined;
  const onto = target.parent ?? target.base ?? null;
  const ontoFormat = ontoBase && tree.base ? { ontoFormat: tree.base.volume.format === 'raw' ? ('raw' as const) : ('qcow2' as const) } : {};
  const branchRebases: Step[] = branches.map((b) => ({ kind: 'rebase', layer: b, from: target.name, onto, bytes: target.definedBytes, ...ontoFormat }));

  const offlineCommits = offline.steps.some((s) => s.kind === 'commit');
  // QEMU before 8.2 aborts when block-stream's copy-on-read meets qcow2 subclusters (extended_l2, which every
  // image volchain creates has; fixed upstream by "block: align CoR requests to subclusters"): there, the
  // branches are rebased first and the child on the chain is committed into the snapshot instead.
  const commit = offlineCommits || !disk.streamSafe;
  const steps: Step[] = [];
  let bytesMoved = offline.bytesMoved;
  const strategies = [...(offline.strategies ?? [])];
  if (commit) {
    steps.push(...branchRebases);
    steps.push({ kind: 'grow', layer: target.name, sizeBytes: Math.max(child.virtualSize, target.virtualSize) });
    const active = chainChild === tree.current;
    const job = jobId('commit', snap.node);
    steps.push({
      kind: 'qmp-commit',
      top: chainChild,
      topNode: childNode.node,
      base: target.name,
      baseNode: snap.node,
      rootNode: disk.rootFilter ?? root.node,
      active,
      bytes: child.definedBytes,
      jobId: job,
    });
    if (active) {
      steps.push({
        kind: 'qmp-pivot',
        top: chainChild,
        topNode: childNode.node,
        base: target.name,
        baseNode: snap.node,
        jobId: job,
        resume: disk.guestRunning,
      });
      steps.push({ kind: 'qmp-resume', resume: disk.guestRunning });
    }
    steps.push(close(chainChild, childNode));
    // Point of no return as offline: the merged layer takes the child's name.
    steps.push({ kind: 'replace', from: target.name, to: chainChild });
    if (child.snapshot !== undefined) steps.push({ kind: 'freeze', layer: chainChild });
    if (disk.pveDrive !== undefined) {
      // PVE's graph: the snapshot's nodes now hold the child's layer under the child's name (engine/live/pve-graph.ts).
      const swap = liveTopNodeNames(disk.storage, `${tree.current}\0swap`, job);
      if (active) steps.push(...pveWriterSwap(tree, ctx, disk, disk.pveDrive, snap, swap, target.name));
      else steps.push(pveRename(tree, disk.pveDrive, chainChild, child.snapshot, snap, target.name));
    }
    if (!offlineCommits) {
      bytesMoved = branches.length * target.definedBytes + child.definedBytes;
      strategies.push({
        strategy: 'rebase-branches-commit-child',
        valid: true,
        bytesMoved,
        reason:
          `this QEMU (before 8.2) crashes when block-stream copies into qcow2 images with subclusters: rebases the ${branches.length} ` +
          `other child layer(s) offline, then commits ${chainChild} (${child.definedBytes} bytes) into the snapshot's layer`,
      });
    }
  } else {
    steps.push({
      kind: 'qmp-stream',
      layer: chainChild,
      node: childNode.node,
      from: target.name,
      onto,
      baseNode: target.parent !== undefined ? nodeOf(disk, tree, target.parent).node : ontoBase ? baseNodeOf(disk, tree) : null,
      bytes: target.definedBytes,
      jobId: jobId('stream', childNode.node),
      ...ontoFormat,
    });
    steps.push(...branchRebases);
    steps.push(close(target.name, snap));
    steps.push({ kind: 'remove', layer: target.name });
  }
  // Storages whose layers grow on demand need no grow/freeze steps (as the offline planners do).
  if (ctx.fixedSizeLayers === false) {
    const kept = steps.filter((s) => s.kind !== 'grow' && s.kind !== 'freeze');
    steps.splice(0, steps.length, ...kept);
  }
  const how = commit ? 'block-commit' : 'block-stream';
  const strategy = offlineCommits ? 'commit-child' : commit ? 'rebase-branches-commit-child' : 'rebase-children';
  return {
    ...offline,
    summary: `delete snapshot '${snapshot}' of ${tree.volid} by ${strategy}, live through ${how}`,
    steps,
    bytesMoved,
    strategies,
    live: { socket: disk.socket },
  };
}

/** QEMU's node of a clone's base volume: a stream onto the base needs it (else it would copy the base's data). */
function baseNodeOf(disk: LiveDisk, tree: VolumeTree): string {
  if (disk.baseNode === undefined) throw new NotFoundError(`QEMU has no node for the base volume of ${tree.volid}`);
  return disk.baseNode;
}

/** Job ids name the node they work on: one job per node at a time, and `query-jobs` says whose it is. */
function jobId(kind: 'stream' | 'commit', node: string): string {
  return `volchain-${kind}-${node}`;
}
