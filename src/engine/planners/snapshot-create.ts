/** Planning `snapshot create` (pure): DESIGN.md section 3. */
import { AlreadyExistsError } from '../../errors.js';
import { snapshotLayerName, temporaryLayerName, validateSnapshotName } from '../../naming/index.js';
import { refuseDeeperChain } from '../read/layer-guard.js';
import type { Plan } from '../../model/plan.js';
import { findSnapshot, layer, type VolumeTree } from '../read/volume-tree.js';
import { guarded, internalSnapshotNames, requireSnapshottable, sizing, type PlanContext } from './rules.js';

export function planSnapshotCreate(tree: VolumeTree, ctx: PlanContext, snapshot: string): Plan {
  validateSnapshotName(snapshot);
  requireSnapshottable(tree);
  const base = { operation: 'snapshot-create' as const, volid: tree.volid, vmid: tree.volume.vmid, snapshot, bytesMoved: 0 };
  const current = layer(tree, tree.current);
  if (!ctx.volumeChain) {
    const clash = internalSnapshotNames(tree).find((n) => n.toLowerCase() === snapshot.toLowerCase());
    if (clash !== undefined) throw new AlreadyExistsError(`snapshot '${clash}' of ${tree.volid} already exists`);
    return guarded(tree, {
      ...base,
      summary: `take internal snapshot '${snapshot}' of ${tree.volid}`,
      steps: [{ kind: 'internal-snapshot', layer: tree.current, action: 'create', name: snapshot }],
    });
  }
  const clash = findSnapshot(tree, snapshot);
  if (clash)
    throw new AlreadyExistsError(
      `snapshot '${clash.snapshot ?? snapshot}' of ${tree.volid} already exists${clash.snapshot !== snapshot ? ' (names that differ only in case are refused)' : ''}`,
    );
  refuseDeeperChain(tree, tree.current, `snapshot create '${snapshot}'`);
  const frozen = snapshotLayerName(ctx.kind, tree.volume.name, snapshot);
  // With '-' in snapshot names one layer name can fit two volumes (layer-names.ts): never take another's.
  if (tree.foreignLayers?.includes(frozen)) {
    throw new AlreadyExistsError(
      `snapshot '${snapshot}' of ${tree.volid} would be layer ${frozen}, which another volume's chain already uses: choose another name`,
    );
  }
  const tmp = temporaryLayerName(ctx.kind, tree.volume.name, 'create');
  return guarded(tree, {
    ...base,
    summary: `freeze the current layer of ${tree.volid} as ${frozen} and continue on a new empty top`,
    steps: sizing(ctx, [
      // The overlay names the frozen layer before it exists (-u), so the two renames below complete it.
      { kind: 'create-overlay', layer: tmp, backing: frozen, sizeBytes: current.virtualSize },
      { kind: 'rename', from: tree.current, to: frozen },
      { kind: 'rename', from: tmp, to: tree.current },
      { kind: 'freeze', layer: frozen },
    ]),
  });
}
