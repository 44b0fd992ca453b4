/**
 * `alloc` (a new volume: one layer, no journal needed, under the VM's lock so that two allocations never pick
 * one free name) and `free` (the volume and its whole chain: planFree, executed under a journal).
 */
import { defaultAllocFormat } from '../../config/index.js';
import { InvalidInputError, NotSupportedError } from '../../errors.js';
import type { Plan } from '../../model/plan.js';
import { formatVolid, nextFreeDiskName, parseSize, parseVmid, validateVolumeName, type ImageFormat } from '../../naming/index.js';
import { planFree } from '../planners/volume.js';
import { refuseFreeOfUsedBase } from '../read/templates.js';
import { mutateVolume } from '../session/mutate.js';
import type { Session } from '../session/session.js';
import { withVmLocked } from '../session/vm-lock.js';
import type { CallOptions } from './types.js';

export async function alloc(
  session: Session,
  storage: string,
  vmidText: string | number,
  size: string | number,
  opts: { name?: string; format?: ImageFormat } = {},
): Promise<string> {
  const vmid = typeof vmidText === 'number' ? vmidText : parseVmid(vmidText);
  const sizeBytes = typeof size === 'number' ? size : parseSize(size);
  if (sizeBytes % 512 !== 0) throw new InvalidInputError(`size ${sizeBytes} is not a multiple of 512 bytes`);
  const backend = session.backend(storage);
  if (opts.format && !backend.capabilities.formats.includes(opts.format)) {
    throw new NotSupportedError(`storage '${storage}' cannot hold ${opts.format} volumes`);
  }
  let format: ImageFormat = opts.format ?? (opts.name === undefined ? defaultAllocFormat(backend.definition) : 'qcow2');
  if (opts.name !== undefined) {
    const named = validateVolumeName(backend.kind, vmid, opts.name);
    if (opts.format && named !== opts.format) {
      throw new InvalidInputError(`name '${opts.name}' says ${named} but --format says ${opts.format}`);
    }
    format = named;
  }
  return withVmLocked(session.locks, [backend], vmid, 'alloc', async () => {
    const existing = await backend.listLayerNames(vmid);
    const name = opts.name ?? nextFreeDiskName(backend.kind, vmid, format, existing);
    await backend.createImage(vmid, name, format, sizeBytes);
    return formatVolid({ storage, kind: backend.kind, vmid, name });
  });
}

export async function free(session: Session, volid: string, opts: CallOptions = {}): Promise<Plan> {
  const { backend, volume } = session.resolve(volid);
  await refuseFreeOfUsedBase(backend, volume, volid);
  // Again under the base's VM lock: `clone --linked` makes clones holding that lock (operations/clone-linked.ts).
  return mutateVolume(
    session,
    volid,
    'free',
    opts,
    (tree) => planFree(tree),
    () => refuseFreeOfUsedBase(backend, volume, volid),
  );
}
