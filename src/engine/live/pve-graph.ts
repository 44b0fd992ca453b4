/**
 * After a live snapshot or delete on a VM whose graph is PVE 9's (a `throttle` node `drive-<id>` on top: PVE
 * started it, or `qemu-args --drive-id` opened it), QEMU's graph must be what PVE would leave after the same
 * operation, so that PVE's own later live operations on the VM find their nodes (qemu-server VolumeChain.pm
 * computes node names, it never looks them up): every layer L of the chain as a format node
 * f<hash(drive, L's snapshot, volid)> on a file node e<same hash> opened under L's file name today (pve-names.ts).
 *
 * What PVE 9 does, and what it leaves (qemu-server VolumeChain.pm, Blockdev.pm; pve-storage Plugin.pm):
 * - snapshot S: rename the current file to snap-S-<vol>, create a new current file backed by it, reopen the
 *   old top under f/e(S) on the renamed file (blockdev_replace: blockdev-add, reopen the throttle onto it,
 *   detach the old nodes), then blockdev-add f/e(current) and blockdev-snapshot. Graph: throttle ->
 *   f(current) -> f(S) -> f(older)...
 * - delete a snapshot with a parent (middle or newest): block-stream into its child; no node changes name.
 * - delete the oldest S with child C: block-commit C into S, rename S's file to C's, reopen S's layer under
 *   f/e(C) on the file's new name (blockdev_replace), detach the old nodes.
 * blockdev_replace opens a second read-write node on the file of the layer the guest writes into. QEMU 7.2
 * (Debian 12) refuses that ("Failed to get "write" lock": the open node holds the file's write lock), and a
 * node's file name cannot change without opening the file again. So volchain never reopens the layer the
 * guest writes into in place; it renames only layers below the top (qmp-rename, read-only opens coexist),
 * and moves the guest off a wrongly named top through a short-lived overlay ("writer swap"):
 *   create overlay X (temporary name, backed by the current layer) -> open it -> blockdev-snapshot onto X ->
 *   the old top, now below X, gets its PVE names (qmp-rename) -> active block-commit of X into it, pivot with
 *   the guest paused (as every volchain active commit) -> close X, remove its file.
 * X holds only what the guest wrote during the swap. Every step has its crash story in engine/plan/live-steps.ts: from
 * the first switch on, repair rolls forward; without QEMU, the pivot's offline equivalent commits X into the
 * current layer and the last step removes X.
 */
import { temporaryLayerName } from '../../naming/index.js';
import { parsePveTopNodeName, pveLayerNodeNames } from '../../qmp/pve-names.js';
import type { LiveStep } from '../../model/plan.js';
import type { Step } from '../../model/plan.js';
import type { PlanContext } from '../planners/rules.js';
import type { VolumeTree } from '../read/volume-tree.js';

/** The PVE drive id when the chain's outermost filter is PVE's throttle node `drive-<id>`, else undefined. */
export function pveDriveOf(rootFilter: string | undefined): string | undefined {
  return rootFilter === undefined ? undefined : parsePveTopNodeName(rootFilter);
}

interface SwapDisk {
  storage: string;
  rootFilter?: string;
  guestRunning: boolean;
}

/**
 * Moves the guest from the top node `writer` (the current layer, under node names that are not PVE's) onto
 * nodes named as PVE names the current layer, opened under the volume's file name.
 */
export function pveWriterSwap(
  tree: VolumeTree,
  ctx: PlanContext,
  disk: SwapDisk,
  driveId: string,
  writer: { node: string; protocolNode: string | undefined },
  xNames: { format: string; protocol: string },
  /** The layer name the writer's nodes were opened under, when that is not the volume's name (see qmp-rename). */
  openedAs?: string,
): Step[] {
  const x = temporaryLayerName(ctx.kind, tree.volume.name, 'swap');
  const current = tree.layers.get(tree.current);
  const to = pveLayerNodeNames(driveId, tree.volid);
  const jobId = `volchain-commit-${xNames.format}`;
  const root = disk.rootFilter ?? writer.node;
  const steps: (Step | LiveStep)[] = [
    { kind: 'create-overlay', layer: x, backing: tree.current, sizeBytes: current?.virtualSize ?? 0 },
    { kind: 'qmp-open', layer: x, node: xNames.format, protocolNode: xNames.protocol },
    { kind: 'qmp-snapshot', layer: tree.current, node: writer.node, overlay: xNames.format },
    { kind: 'qmp-rename', layer: tree.current, node: writer.node, protocolNode: writer.protocolNode, to, ...(openedAs !== undefined ? { openedAs } : {}) },
    { kind: 'qmp-commit', top: x, topNode: xNames.format, base: tree.current, baseNode: to.format, rootNode: root, active: true, bytes: 0, jobId },
    { kind: 'qmp-pivot', top: x, topNode: xNames.format, base: tree.current, baseNode: to.format, jobId, resume: disk.guestRunning },
    { kind: 'qmp-resume', resume: disk.guestRunning },
    { kind: 'qmp-close', layer: x, nodes: [xNames.format, xNames.protocol] },
    { kind: 'remove', layer: x },
  ];
  return steps;
}

/** PVE's names for a layer below the top that volchain renamed (it is `layer` today, snapshot `snapshot`). */
export function pveRename(
  tree: VolumeTree,
  driveId: string,
  layer: string,
  snapshot: string | undefined,
  old: { node: string; protocolNode: string | undefined },
  /** The name the old nodes were opened under, when the plan renamed the layer away from it and that name is free. */
  openedAs?: string,
): LiveStep {
  return {
    kind: 'qmp-rename',
    layer,
    node: old.node,
    protocolNode: old.protocolNode,
    to: pveLayerNodeNames(driveId, tree.volid, snapshot),
    ...(openedAs !== undefined ? { openedAs } : {}),
  };
}
