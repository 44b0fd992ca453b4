/**
 * Snapshot create, of one volume (`snapshot create`) or of every disk of a VM (`vm snapshot`): live through
 * QEMU when the VM runs (engine/live/snapshot.ts), else planned by planSnapshotCreate
 * (engine/planners/snapshot-create.ts) and executed under a journal (engine/run/executor.ts).
 */
import type { Plan } from '../../model/plan.js';
import { validateSnapshotName } from '../../naming/index.js';
import { liveSnapshotCreate } from '../live/snapshot.js';
import { planSnapshotCreate } from '../planners/snapshot-create.js';
import { vmTarget } from '../read/vm-disks.js';
import { mutateVolume } from '../session/mutate.js';
import type { Session } from '../session/session.js';
import type { CallOptions } from './types.js';
import { vmOperation, type VmWideOptions } from './vm-wide.js';

export async function snapshotCreate(session: Session, volid: string, snapshot: string, opts: CallOptions = {}): Promise<Plan> {
  validateSnapshotName(snapshot);
  const live = await liveSnapshotCreate(session, { volid }, snapshot, opts);
  if (live) return live[0] as Plan;
  return mutateVolume(session, volid, 'snapshot create', opts, (tree, ctx) => planSnapshotCreate(tree, ctx, snapshot));
}

/**
 * Snapshot of all disks at once: every disk is planned first (so bad input fails before anything
 * changes), then each is executed; if one fails, the disks already done get their snapshot taken back
 * (their plans walked back through the journaled undo: run/vm-undo.ts).
 */
export async function vmSnapshot(session: Session, vmidText: string | number, snapshot: string, opts: VmWideOptions = {}): Promise<Plan[]> {
  validateSnapshotName(snapshot);
  const live = await liveSnapshotCreate(session, vmTarget(vmidText, opts), snapshot, opts);
  if (live) return live;
  return vmOperation(session, vmidText, opts, {
    operation: 'vm snapshot',
    plan: (tree, ctx) => planSnapshotCreate(tree, ctx, snapshot),
    walkBackOnFailure: true,
  });
}
