/** Planning `snapshot rollback` to any snapshot (pure): newer snapshots stay as a branch unless purged. */
import { NotSupportedError } from '../../errors.js';
import { temporaryLayerName } from '../../naming/index.js';
import { refuseDeeperChain } from '../read/layer-guard.js';
import type { Plan, Step } from '../../model/plan.js';
import { descendants, type VolumeTree } from '../read/volume-tree.js';
import { guarded, requireSnapshot, requireSnapshottable, type PlanContext } from './rules.js';

export interface RollbackOptions {
  purgeNewer?: boolean;
}

export function planSnapshotRollback(tree: VolumeTree, ctx: PlanContext, snapshot: string, opts: RollbackOptions = {}): Plan {
  requireSnapshottable(tree);
  const target = requireSnapshot(tree, ctx, snapshot);
  const base = { operation: 'snapshot-rollback' as const, volid: tree.volid, vmid: tree.volume.vmid, snapshot, bytesMoved: 0 };
  if (!target) {
    if (opts.purgeNewer) throw new NotSupportedError('--purge-newer needs snapshot-as-volume-chain storage (internal snapshots form no tree)');
    return guarded(tree, {
      ...base,
      summary: `revert ${tree.volid} to internal snapshot '${snapshot}'`,
      steps: [{ kind: 'internal-snapshot', layer: tree.current, action: 'apply', name: snapshot }],
    });
  }
  refuseDeeperChain(tree, target.name, `rollback to '${snapshot}'`);
  const tmp = temporaryLayerName(ctx.kind, tree.volume.name, 'rollback');
  const steps: Step[] = [
    { kind: 'create-overlay', layer: tmp, backing: target.name, sizeBytes: target.virtualSize },
    // Point of no return: what the current layer held since the last snapshot is discarded here.
    { kind: 'replace', from: tmp, to: tree.current },
  ];
  const purged = opts.purgeNewer ? descendants(tree, target.name).filter((l) => l.name !== tree.current) : [];
  for (const node of purged) steps.push({ kind: 'remove', layer: node.name });
  const keep = purged.length > 0 ? `, deleting ${purged.length} newer snapshot(s)` : '';
  return guarded(tree, {
    ...base,
    summary: `discard the current state of ${tree.volid} and continue from snapshot '${snapshot}'${keep}`,
    steps,
  });
}
