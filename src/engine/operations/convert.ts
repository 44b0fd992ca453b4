/**
 * `convert` (a raw volume becomes a qcow2 volume that can take snapshots) and `template` (a volume becomes a
 * template's base volume, as PVE's create_base makes one): offline only, planned by engine/planners/convert.ts
 * and executed under the VM's lock with a journal (session/mutate.ts), so `repair` finishes either after a crash.
 * Both change the volume's volid: the plan's `newVolid` says the new one. The VM's config is not edited.
 */
import { statfs } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Backend } from '../../backends/backend.js';
import { InvalidInputError, NoSpaceError, NotSupportedError } from '../../errors.js';
import type { Plan } from '../../model/plan.js';
import { formatSize, type VolumeRef } from '../../naming/index.js';
import { measureRawAsQcow2 } from '../../tools/qemu-img-convert.js';
import { planConvert, planTemplate } from '../planners/convert.js';
import { noBaseVolumesError } from '../read/templates.js';
import { mutateVolume } from '../session/mutate.js';
import { refuseMissingVolume } from '../session/refusals.js';
import { refuseRunningVm } from '../session/running-vm.js';
import type { Session } from '../session/session.js';
import type { CallOptions } from './types.js';

export interface ConvertOptions extends CallOptions {
  /** The format to convert to: qcow2, the only one (and the default). */
  format?: string;
}

export async function convert(session: Session, volid: string, opts: ConvertOptions = {}): Promise<Plan> {
  const format = opts.format ?? 'qcow2';
  if (format !== 'qcow2') throw new InvalidInputError(`cannot convert to format '${format}': volchain converts raw volumes to qcow2 only`);
  const { backend, volume } = session.resolve(volid);
  if (volume.format === 'qcow2') {
    throw new InvalidInputError(`${volid} is already a qcow2 volume: nothing to convert (it can take snapshots as it is)`);
  }
  if (!backend.capabilities.formats.includes('qcow2')) {
    throw new NotSupportedError(`storage '${backend.id}' holds no qcow2 volumes: set 'snapshot-as-volume-chain 1' on it first (as Proxmox VE 9 requires)`);
  }
  await refuseMissingVolume(backend, volume.vmid, volume.name, volid);
  await refuseRunning(session, volume.vmid, opts.qmp, volid, 'convert');
  const neededBytes = await spaceForCopy(backend, volume);
  const names = await backend.listLayerNames(volume.vmid);
  // The names are read before the lock; a volume of the new name made meanwhile makes the rename fail, and
  // the executor then removes the copy: nothing changed.
  return mutateVolume(session, volid, 'convert', opts, (tree, ctx) => planConvert(tree, ctx, { names, neededBytes }));
}

export async function template(session: Session, volid: string, opts: CallOptions = {}): Promise<Plan> {
  const { backend, volume } = session.resolve(volid);
  // PVE's LVM plugin: "can't create base images in lvm storage"; and PVE lists no `base-` LV of thick LVM.
  if (!backend.capabilities.baseVolumes) throw noBaseVolumesError(backend.id);
  if (volume.format === 'raw' && backend.capabilities.fixedSizeLayers) {
    // LVM templates (opt-in) are qcow2 LVs only: a raw `base-<vmid>-…` LV would carry no format in its name.
    throw new NotSupportedError(`${volid} is a raw LV: templates on LVM are qcow2 volumes only; convert it first ('volchain convert ${volid} --format qcow2')`);
  }
  await refuseMissingVolume(backend, volume.vmid, volume.name, volid);
  await refuseRunning(session, volume.vmid, opts.qmp, volid, 'template');
  const names = await backend.listLayerNames(volume.vmid);
  return mutateVolume(session, volid, 'template', opts, (tree, ctx) => planTemplate(tree, ctx, names));
}

/**
 * Both operations need the VM stopped (as PVE's template conversion and a disk's format conversion do): a
 * running QEMU writes the volume while it is copied, and holds its file open under the name they change.
 * Refused with exit 6 (session/running-vm.ts), before the lock.
 */
function refuseRunning(session: Session, vmid: number, qmp: string | undefined, volid: string, operation: 'convert' | 'template'): Promise<void> {
  return refuseRunningVm(session.settings, qmp, {
    vmid,
    operation,
    volid,
    why:
      operation === 'convert'
        ? 'its guest writes the raw volume while it would be copied, and QEMU holds it open under the name convert replaces'
        : 'QEMU holds the volume open under the name template changes, and a base volume must not be written',
    hint: `stop the VM, then ${operation} the volume`,
  });
}

/**
 * Bytes the qcow2 copy needs, checked against the storage's free space before anything is written. Fixed-size
 * layers (LVM): an LV for a fully written image (the backend checks the VG's free space before its lvcreate,
 * the copy's first command). Files: what `qemu-img measure` says the copy of this raw image takes, against the
 * file system's free space now.
 */
async function spaceForCopy(backend: Backend, volume: VolumeRef): Promise<number> {
  const path = backend.layerPath(volume.vmid, volume.name);
  if (backend.capabilities.fixedSizeLayers) {
    const st = await backend.statLayer(volume.vmid, volume.name);
    return backend.fullLayerBytes(st?.recorded?.virtualSize ?? st?.usedBytes ?? 0);
  }
  const needed = await measureRawAsQcow2(path);
  const fs = await statfs(dirname(path));
  const free = fs.bavail * fs.bsize;
  if (needed > free) {
    throw new NoSpaceError(
      `cannot convert ${volume.storage}:${volume.volname}: the qcow2 copy needs ${formatSize(needed)} (${needed} bytes) but ${dirname(path)} has ` +
        `${formatSize(free)} free: ${needed - free} bytes missing`,
    );
  }
  return needed;
}
