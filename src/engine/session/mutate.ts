/**
 * One mutating call on one volume, the same for every operation: resolve the volid, refuse over an
 * unfinished operation, read the chain under the VM's lock, plan (a pure planner the operation passes in),
 * execute the plan under a journal (engine/run/executor.ts). A dry run plans without the lock and returns
 * the plan with its space estimate, changing nothing.
 */
import type { Plan } from '../../model/plan.js';
import type { PlanContext } from '../planners/rules.js';
import { readVolumeTree, type VolumeTree } from '../read/volume-tree.js';
import { withSpace } from '../read/space-figures.js';
import { executePlan } from '../run/executor.js';
import { pendingOperations } from '../run/journal.js';
import type { CallOptions } from '../operations/types.js';
import { readTree } from './read-tree.js';
import { refusePending } from './refusals.js';
import type { Session } from './session.js';
import { withVmLocked } from './vm-lock.js';

/** A pure planner: the volume's chain (read under the lock) in, the plan out. */
export type VolumePlanner = (tree: VolumeTree, ctx: PlanContext) => Plan;

export async function mutateVolume(
  session: Session,
  volid: string,
  operation: string,
  opts: CallOptions,
  plan: VolumePlanner,
  /** A refusal that must hold under the VM's lock (free of a base: no linked clone made meanwhile). */
  checkLocked?: () => Promise<void>,
): Promise<Plan> {
  const { backend, volume } = session.resolve(volid);
  if (opts.dryRun) {
    // What the real run would say: it refuses over an unfinished operation (exit 7).
    await refusePending(backend, volume.vmid);
    const tree = await readTree(backend, volume);
    return withSpace(backend, tree, plan(tree, session.planContext(backend)));
  }
  // A command refused for a volume that is not there leaves no trace (not even the VM's lock file). When
  // the storage cannot be looked at now, the locked path below reports why, as before. A volume missing
  // while an operation on its VM is journaled may only be mid-operation (a snapshot create renames the top
  // away for a moment): then the locked path waits for that operation instead of refusing over it.
  if (!(await backend.statLayer(volume.vmid, volume.name).catch(() => true)) && (await pendingOperations(backend, { vmid: volume.vmid })).length === 0) {
    await readTree(backend, volume);
  }
  return withVmLocked(session.locks, [backend], volume.vmid, operation, async () => {
    await checkLocked?.();
    const p = plan(await readVolumeTree(backend, volume), session.planContext(backend));
    // If we die in here, the journal executePlan writes first says what repair finishes.
    await executePlan(backend, p, { hooks: session.settings.hooks, ...(opts.onEvent ? { onEvent: opts.onEvent } : {}) });
    return p;
  });
}
