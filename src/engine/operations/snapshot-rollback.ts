/**
 * Snapshot rollback, of one volume (`snapshot rollback`) or of every disk of a VM (`vm rollback`): refused
 * while the VM runs (engine/live/snapshot.ts refuseLiveRollback), planned by planSnapshotRollback
 * (engine/planners/snapshot-rollback.ts) under the branch policy (engine/plan/branch-policy.ts), executed under a journal.
 */
import type { Plan } from '../../model/plan.js';
import { validateSnapshotName } from '../../naming/index.js';
import { refuseLiveRollback } from '../live/snapshot.js';
import { refuseNewBranch } from '../plan/branch-policy.js';
import { planSnapshotRollback } from '../planners/snapshot-rollback.js';
import { vmTarget } from '../read/vm-disks.js';
import { mutateVolume, type VolumePlanner } from '../session/mutate.js';
import type { Session } from '../session/session.js';
import type { CallOptions } from './types.js';
import { vmOperation, type VmWideOptions } from './vm-wide.js';

export interface RollbackCallOptions {
  purgeNewer?: boolean;
}

export async function snapshotRollback(session: Session, volid: string, snapshot: string, opts: CallOptions & RollbackCallOptions = {}): Promise<Plan> {
  validateSnapshotName(snapshot);
  await refuseLiveRollback(session, { volid }, opts);
  return mutateVolume(session, volid, 'snapshot rollback', opts, rollbackPlanner(session, snapshot, opts));
}

export async function vmRollback(
  session: Session,
  vmidText: string | number,
  snapshot: string,
  opts: VmWideOptions & RollbackCallOptions = {},
): Promise<Plan[]> {
  validateSnapshotName(snapshot);
  await refuseLiveRollback(session, vmTarget(vmidText, opts), opts);
  return vmOperation(session, vmidText, opts, { operation: 'vm rollback', plan: rollbackPlanner(session, snapshot, opts), walkBackOnFailure: false });
}

function rollbackPlanner(session: Session, snapshot: string, opts: RollbackCallOptions): VolumePlanner {
  return (tree, ctx) => refuseNewBranch(session.keepBranches, tree, planSnapshotRollback(tree, ctx, snapshot, { purgeNewer: opts.purgeNewer ?? false }));
}
