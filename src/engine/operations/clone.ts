/**
 * `clone`: a full, independent copy of a volume's current state or of one snapshot's view, as a new qcow2
 * volume (no snapshots) of VM `vmid` on any storage (dir or LVM, the source's or another). Read → pure
 * planner (engine/planners/clone.ts) → executor, journaled on the target storage.
 *
 * Locks: the target VM's (the new volume's name is chosen and taken under it, as alloc does) and the source
 * VM's (no snapshot operation may change the chain while it is read), taken in lock-file order so two clones
 * in opposite directions never wait for each other; one lock when both are the same file. An unfinished
 * operation on either VM refuses the clone (exit 7). A source whose VM runs is refused unless a snapshot is
 * cloned: a running guest writes into the current layer while it is read, so the copy would not be one
 * instant, whereas a snapshot layer is frozen.
 */
import type { Backend } from '../../backends/backend.js';
import { InvalidInputError, NotSupportedError, PendingOperationError } from '../../errors.js';
import type { Plan } from '../../model/plan.js';
import { parseVmid, validateSnapshotName } from '../../naming/index.js';
import { planClone } from '../planners/clone.js';
import { measureCopyTarget } from './copy-target.js';
import { executePlan } from '../run/executor.js';
import { readTree } from '../session/read-tree.js';
import { refuseMissingVolume, refusePending } from '../session/refusals.js';
import { refuseRunningVm } from '../session/running-vm.js';
import type { Session } from '../session/session.js';
import { withVmLocked } from '../session/vm-lock.js';
import type { CallOptions } from './types.js';

export interface CloneOptions extends CallOptions {
  /** Copy this snapshot's view instead of the current state. */
  snapshot?: string;
  /** The new volume's name; default: the next free `vm-<vmid>-disk-<n>.qcow2` on the target. */
  name?: string;
}

export async function clone(session: Session, volid: string, targetStorage: string, vmidText: string | number, opts: CloneOptions = {}): Promise<Plan> {
  const vmid = typeof vmidText === 'number' ? vmidText : parseVmid(vmidText);
  if (opts.snapshot !== undefined) validateSnapshotName(opts.snapshot);
  const { backend: source, volume } = session.resolve(volid);
  const target = session.backend(targetStorage);
  if (!target.capabilities.formats.includes('qcow2')) {
    throw new NotSupportedError(`storage '${targetStorage}' cannot hold qcow2 volumes (LVM needs 'snapshot-as-volume-chain 1'): a clone is always qcow2`);
  }
  if (opts.name !== undefined && (typeof opts.name !== 'string' || opts.name === '')) throw new InvalidInputError('--name needs a volume name');
  if (opts.snapshot === undefined) await refuseRunningSource(session, volume.vmid, volid, opts.qmp);

  const plan = async (): Promise<Plan> => {
    const tree = await readTree(source, volume, { allocation: true });
    return planClone({
      tree,
      layerPath: (name) => source.layerPath(volume.vmid, name),
      ...(opts.snapshot !== undefined ? { snapshot: opts.snapshot } : {}),
      target: await measureCopyTarget(
        target,
        vmid,
        [...tree.layers.values()].map((l) => l.virtualSize),
        opts.name,
      ),
    });
  };

  if (opts.dryRun) {
    // What the real run would say: it refuses over an unfinished operation on either VM (exit 7).
    await refusePending(source, volume.vmid);
    await refusePending(target, vmid);
    return plan();
  }
  // A clone refused for bad input (no such volume or snapshot, a name taken, too little space) leaves no
  // trace, not even a lock file: planned once before the locks, and again under them. A chain in the middle
  // of another operation is left to the locked path, which waits for it.
  await refuseMissingVolume(source, volume.vmid, volume.name, volid);
  await plan().catch((err: unknown) => {
    if (!(err instanceof PendingOperationError)) throw err;
  });
  return withBothLocks(session, { backend: source, vmid: volume.vmid }, { backend: target, vmid }, async () => {
    // LVM: every layer of the source's chain active on this host, so that the plan judges their headers
    // (not only their tags: engine/read/volume-tree.ts validates each) and qemu-img can read the view.
    await source.activate(volume.vmid, [volume.name]);
    const p = await plan();
    // If we die in here, the journal on the target says what repair does: before the final rename it
    // removes the temporary copy (no clone), after it the clone is whole.
    await executePlan(target, p, { hooks: session.settings.hooks, ...(opts.onEvent ? { onEvent: opts.onEvent } : {}) });
    return p;
  });
}

/**
 * Runs `fn` holding both VMs' locks (each refusing over an unfinished operation of its VM), in lock-file order;
 * one lock when source and target share the file (the same VM on storages naming one place).
 */
export async function withBothLocks<T>(
  session: Session,
  a: { backend: Backend; vmid: number },
  b: { backend: Backend; vmid: number },
  fn: () => Promise<T>,
  operation = 'clone',
): Promise<T> {
  const [first, second] = a.backend.lockFile(a.vmid) <= b.backend.lockFile(b.vmid) ? [a, b] : [b, a];
  const lock = <R>(side: { backend: Backend; vmid: number }, inner: () => Promise<R>): Promise<R> =>
    withVmLocked(session.locks, [side.backend], side.vmid, operation, inner);
  if (first.backend.lockFile(first.vmid) === second.backend.lockFile(second.vmid)) {
    return lock(first, async () => {
      await refusePending(second.backend, second.vmid);
      return fn();
    });
  }
  return lock(first, () => lock(second, fn));
}

/**
 * Refuses (exit 6, session/running-vm.ts) when QEMU runs the source's VM: its guest writes the current layer
 * while it would be read (clone, move), or QEMU holds open the layers a reassign renames.
 */
export async function refuseRunningSource(
  session: Session,
  vmid: number,
  volid: string,
  qmp: string | undefined,
  operation: 'clone' | 'move' | 'reassign' = 'clone',
): Promise<void> {
  await refuseRunningVm(session.settings, qmp, {
    vmid,
    operation,
    volid,
    why:
      operation === 'reassign'
        ? 'its QEMU holds open the layers a reassign renames, and its guest writes the current one'
        : 'its guest writes the current layer while it would be read, so the copy would hold no one instant',
    hint: operation === 'clone' ? 'stop the VM, or take a snapshot and clone that (--snapshot), which is frozen' : `stop the VM, then ${operation} the volume`,
  });
}
