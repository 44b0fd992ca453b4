/**
 * Planning `clone --linked` (pure): a new qcow2 volume of VM `vmid` whose bottom is a template's base volume
 * on the same storage, as PVE's clone_image makes one on dir (issue 17). The base is only read; the clone holds
 * only what its guest writes. Made under a temporary name so the clone's name never holds a half-made image:
 *   1. create-linked  new qcow2 `<tmp>` backed by the base (`-F` its format)   undo: remove <tmp>
 *   2. rename         <tmp> -> <name>                                          undo: rename back
 * A crash in step 1 leaves at most <tmp> (no volume): repair redoes it (remove, create again) and renames. A
 * crash in step 2 is finished by repair: a whole clone.
 */
import { AlreadyExistsError, InvalidInputError } from '../../errors.js';
import type { Plan } from '../../model/plan.js';
import { formatVolid, temporaryLayerName, type BaseVolume } from '../../naming/index.js';
import { cloneName } from './clone.js';
import type { CopyTarget } from './copy-target.js';

export interface LinkedCloneRequest {
  /** The template's base volume (checked by the backend's inspectBase) and its volid. */
  base: BaseVolume & { volid: string; virtualSize: number };
  /** The clone's VM and name on the base's storage (no data is copied: no space figures). */
  target: Pick<CopyTarget, 'storage' | 'kind' | 'vmid' | 'name' | 'existingNames'>;
}

export function planLinkedClone(req: LinkedCloneRequest): Plan {
  const { base, target } = req;
  if (target.vmid === base.vmid) {
    // PVE clones a template into another VM only, and volchain refuses to read a disk backed by its own VM's base.
    throw new InvalidInputError(`a linked clone of ${base.volid} must belong to another VM than its template ${base.vmid}`);
  }
  const name = cloneName(target);
  const tmp = temporaryLayerName(target.kind, name, 'linked');
  if (target.existingNames.includes(tmp)) {
    throw new AlreadyExistsError(`${tmp} is left from an interrupted linked clone into ${target.storage}: run 'volchain repair' first`);
  }
  // dir: PVE's `<basevmid>/<basename>/<vmid>/<name>`; where volids are the layer name alone, the base is not in it.
  const volid = formatVolid({
    storage: target.storage,
    kind: target.kind,
    vmid: target.vmid,
    name,
    base: { vmid: base.vmid, name: base.name, format: base.format },
  });
  return {
    operation: 'linked-clone',
    volid,
    vmid: target.vmid,
    newVolid: volid,
    summary: `create the linked clone ${volid} of the template's base volume ${base.volid} (qcow2, ${base.virtualSize} bytes virtual; the base is only read)`,
    bytesMoved: 0,
    steps: [
      { kind: 'create-linked', layer: tmp, baseVmid: base.vmid, baseName: base.name, sizeBytes: base.virtualSize },
      { kind: 'rename', from: tmp, to: name },
    ],
  };
}
