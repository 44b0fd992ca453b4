/**
 * `move <volid> <target-storage> [--vmid N]` (issue 17): a volume with its whole snapshot tree to another
 * storage (engine/planners/move.ts: every layer copied once as a delta, every view compared, then the source
 * removed), or, on the same storage with another VM id, reassigned in place (engine/planners/reassign.ts:
 * renames and header rewrites, no copy). The new volid is the plan's `newVolid`; the VM configuration is
 * not edited (README says how to update it).
 *
 * Locks: the source VM's and the target VM's (clone.ts withBothLocks, lock-file order), each refusing over an
 * unfinished operation (exit 7). A VM that runs (its QMP socket answers) is refused (exit 6): its guest writes
 * the current layer while it would be copied or renamed.
 */
import { InvalidInputError, NotSupportedError, PendingOperationError, VolchainError } from '../../errors.js';
import type { Plan } from '../../model/plan.js';
import { parseVmid } from '../../naming/index.js';
import { planMove } from '../planners/move.js';
import { planReassign } from '../planners/reassign.js';
import { executePlan } from '../run/executor.js';
import { Journal } from '../run/journal.js';
import { readTree } from '../session/read-tree.js';
import { refuseMissingVolume, refusePending } from '../session/refusals.js';
import type { Session } from '../session/session.js';
import { refuseRunningSource, withBothLocks } from './clone.js';
import { measureCopyTarget } from './copy-target.js';
import type { CallOptions } from './types.js';

export interface MoveOptions extends CallOptions {
  /** Give the volume to this VM: on the same storage a reassign in place, on another the copy's owner. */
  vmid?: string | number;
}

export async function move(session: Session, volid: string, targetStorage: string, opts: MoveOptions = {}): Promise<Plan> {
  const { backend: source, volume } = session.resolve(volid);
  const target = session.backend(targetStorage);
  const newVmid = opts.vmid === undefined ? volume.vmid : typeof opts.vmid === 'number' ? opts.vmid : parseVmid(opts.vmid);
  const sameStorage = target.id === source.id;
  if (sameStorage && newVmid === volume.vmid) {
    throw new InvalidInputError(`${volid} is on storage '${targetStorage}' already: give another storage, or --vmid to reassign it to another VM there`);
  }
  if (!sameStorage && !(target.capabilities.volumeChain && target.capabilities.formats.includes('qcow2'))) {
    throw new NotSupportedError(
      `storage '${targetStorage}' cannot hold qcow2 volume chains (it needs 'snapshot-as-volume-chain 1'): a moved volume keeps its snapshots as layers`,
    );
  }
  const operation = sameStorage ? 'reassign' : 'move';
  await refuseRunningSource(session, volume.vmid, volid, opts.qmp, operation);

  const plan = async (): Promise<Plan> => {
    const tree = await readTree(source, volume, { allocation: true });
    if (sameStorage) return planReassign({ tree, storage: target.id, kind: target.kind, newVmid, existingNames: await target.listLayerNames(newVmid) });
    return planMove({
      tree,
      layerPath: (name) => source.layerPath(volume.vmid, name),
      target: await measureCopyTarget(
        target,
        newVmid,
        [...tree.layers.values()].map((l) => l.virtualSize),
      ),
    });
  };

  if (opts.dryRun) {
    await refusePending(source, volume.vmid);
    await refusePending(target, newVmid);
    return plan();
  }
  // Bad input (no such volume, a name taken, too little space) leaves no trace, not even a lock file:
  // planned once before the locks, and again under them.
  await refuseMissingVolume(source, volume.vmid, volume.name, volid);
  await plan().catch((err: unknown) => {
    if (!(err instanceof PendingOperationError)) throw err;
  });
  const run = async (): Promise<Plan> => {
    // LVM: every layer of the chain active here, so the plan judges their headers and qemu-img reads them.
    await source.activate(volume.vmid, [volume.name]);
    const p = await plan();
    const events = opts.onEvent ? { onEvent: opts.onEvent } : {};
    if (p.operation === 'reassign') {
      // If we die in here, the journal (on this storage, with the old VM id) is finished forward by repair.
      await executePlan(source, p, { hooks: session.settings.hooks, ...events });
      return p;
    }
    const finish = p.move?.finish;
    if (!finish) throw new VolchainError('INTERNAL', 'a move plan without its finish plan');
    let finishJournal: Journal | undefined;
    // If we die in the copy or its checks, repair walks the move back: the copies go, the source stays.
    await executePlan(target, p, {
      hooks: session.settings.hooks,
      ...events,
      // The point of no return: every copy verified, the source's removal journaled on the source before
      // the move's own journal goes (a crash in between leaves both records: repair ends the move's, whose
      // steps are all done, and finishes the removal).
      beforeFinish: async () => {
        finishJournal = await Journal.begin(source.journal(), source.id, finish);
      },
    });
    if (!finishJournal) throw new VolchainError('INTERNAL', 'the move finished without journaling the removal of its source');
    await executePlan(source, finish, { hooks: session.settings.hooks, journal: finishJournal, ...events });
    return p;
  };
  return withBothLocks(session, { backend: source, vmid: volume.vmid }, { backend: target, vmid: newVmid }, run, operation);
}
