/**
 * `clone --linked`: a new qcow2 volume of VM `vmid` backed by a template's base volume of the same storage, as
 * PVE's clone_image makes one on dir (issue 17). Read → pure planner (engine/planners/clone-linked.ts) →
 * executor, journaled for the new volume's VM.
 *
 * Locks: the base's VM (so that `free` of the base, which checks for clones under that lock, cannot remove it
 * while the clone is being made) and the new volume's VM (its name is chosen and taken under it), in lock-file
 * order (operations/clone.ts withBothLocks). An unfinished operation on either VM refuses the clone (exit 7).
 */
import { InvalidInputError, NotSupportedError } from '../../errors.js';
import type { Plan } from '../../model/plan.js';
import { parseVmid, type BaseVolume } from '../../naming/index.js';
import { planLinkedClone } from '../planners/clone-linked.js';
import { noBaseVolumesError } from '../read/templates.js';
import { executePlan } from '../run/executor.js';
import { refuseMissingVolume, refusePending } from '../session/refusals.js';
import type { Session } from '../session/session.js';
import { withBothLocks } from './clone.js';
import type { CallOptions } from './types.js';

export interface LinkedCloneOptions extends CallOptions {
  /** The new volume's name; default: the next free `vm-<vmid>-disk-<n>.qcow2`. */
  name?: string;
}

export async function linkedClone(
  session: Session,
  baseVolid: string,
  targetStorage: string,
  vmidText: string | number,
  opts: LinkedCloneOptions = {},
): Promise<Plan> {
  const vmid = typeof vmidText === 'number' ? vmidText : parseVmid(vmidText);
  if (opts.name !== undefined && (typeof opts.name !== 'string' || opts.name === '')) throw new InvalidInputError('--name needs a volume name');
  const { backend, volume } = session.resolve(baseVolid);
  const target = session.backend(targetStorage);
  if (target.id !== backend.id) {
    // PVE's clone_image too: the clone's header names the base by a path inside the storage.
    throw new NotSupportedError(
      `a linked clone stays on its base's storage: ${baseVolid} is on '${backend.id}', not '${targetStorage}'; ` +
        `clone it to '${targetStorage}' without --linked (a full copy), or give '${backend.id}' as the target`,
    );
  }
  if (!backend.capabilities.baseVolumes) throw noBaseVolumesError(backend.id);
  if (!backend.capabilities.formats.includes('qcow2')) {
    throw new NotSupportedError(`storage '${backend.id}' cannot hold qcow2 volumes (LVM needs 'snapshot-as-volume-chain 1'): a linked clone is qcow2`);
  }
  if (!volume.template) {
    // PVE: "clone_image only works on base images".
    throw new InvalidInputError(
      `${baseVolid} is not a template's base volume: a linked clone is made from one (make it with 'volchain template ${baseVolid}', ` +
        'or copy the volume without --linked)',
    );
  }
  const base: BaseVolume = { vmid: volume.vmid, name: volume.name, format: volume.format };

  const plan = async (): Promise<Plan> => {
    // Checked as a linked clone's chain checks its base: a plain base volume of this storage (exit 8 otherwise).
    const info = await backend.inspectBase(base);
    return planLinkedClone({
      base: { ...base, volid: baseVolid, virtualSize: info.virtualSize },
      target: {
        storage: backend.id,
        kind: backend.kind,
        vmid,
        ...(opts.name !== undefined ? { name: opts.name } : {}),
        existingNames: await backend.listLayerNames(vmid),
      },
    });
  };

  if (opts.dryRun) {
    await refusePending(backend, volume.vmid);
    await refusePending(backend, vmid);
    return plan();
  }
  // Refused for bad input (no such base, a name taken) before any lock: no trace, not even a lock file.
  await refuseMissingVolume(backend, volume.vmid, volume.name, baseVolid);
  await plan();
  return withBothLocks(session, { backend, vmid: volume.vmid }, { backend, vmid }, async () => {
    const p = await plan();
    // If we die in here, the journal for VM `vmid` says what repair does: create the temporary clone layer
    // again and rename it, or finish the rename.
    await executePlan(backend, p, { hooks: session.settings.hooks, ...(opts.onEvent ? { onEvent: opts.onEvent } : {}) });
    return p;
  });
}
