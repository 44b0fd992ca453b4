/**
 * Snapshot delete, of one volume (`snapshot delete`) or of every disk of a VM (`vm delsnapshot`): live through
 * QEMU when the VM runs (engine/live/snapshot.ts), else planned by planSnapshotDelete
 * (engine/planners/snapshot-delete.ts: rebase the children or commit the one child, whichever moves fewer bytes) and
 * executed under a journal (engine/run/executor.ts).
 */
import type { Plan } from '../../model/plan.js';
import { validateSnapshotName } from '../../naming/index.js';
import { liveSnapshotDelete } from '../live/snapshot.js';
import { planSnapshotDelete } from '../planners/snapshot-delete.js';
import { vmTarget } from '../read/vm-disks.js';
import { mutateVolume } from '../session/mutate.js';
import type { Session } from '../session/session.js';
import type { CallOptions } from './types.js';
import { vmOperation, type VmWideOptions } from './vm-wide.js';

export async function snapshotDelete(session: Session, volid: string, snapshot: string, opts: CallOptions = {}): Promise<Plan> {
  validateSnapshotName(snapshot);
  const live = await liveSnapshotDelete(session, { volid }, snapshot, opts);
  if (live) return live[0] as Plan;
  return mutateVolume(session, volid, 'snapshot delete', opts, (tree, ctx) => planSnapshotDelete(tree, ctx, snapshot));
}

export async function vmDeleteSnapshot(session: Session, vmidText: string | number, snapshot: string, opts: VmWideOptions = {}): Promise<Plan[]> {
  validateSnapshotName(snapshot);
  const live = await liveSnapshotDelete(session, vmTarget(vmidText, opts), snapshot, opts);
  if (live) return live;
  return vmOperation(session, vmidText, opts, {
    operation: 'vm delsnapshot',
    plan: (tree, ctx) => planSnapshotDelete(tree, ctx, snapshot),
    walkBackOnFailure: false,
  });
}
