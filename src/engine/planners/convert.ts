/**
 * Planning `convert` (a raw volume becomes a qcow2 volume) and `template` (a volume becomes a template's base
 * volume), pure: the tree read under the VM's lock and the names the VM has on the storage in, the plan out.
 *
 * convert: copy to a temporary, prove the copy, switch names, and only then remove the raw volume. Whatever
 * step a crash interrupts, one complete volume keeps a volume name: before the rename the raw volume (the
 * temporary is no volume: repair redoes the copy, or removes a stray one), after it the verified qcow2 volume
 * (repair finishes the removal of the raw one). The new name is the one PVE gives a qcow2 volume of the same
 * disk: dir `vm-100-disk-0.raw` -> `vm-100-disk-0.qcow2`, LVM `vm-100-disk-0` -> `vm-100-disk-0.qcow2`.
 *
 * template: as PVE's create_base, rename `vm-<vmid>-<rest>` to `base-<vmid>-<rest>`, then protect it.
 */
import { AlreadyExistsError, InvalidInputError, NotSupportedError, PendingOperationError } from '../../errors.js';
import type { Plan } from '../../model/plan.js';
import { formatVolid, namingScheme, parseBaseName, temporaryLayerName, validateVolumeName, type StorageKind } from '../../naming/index.js';
import { layer, snapshotLayers, type VolumeTree } from '../read/volume-tree.js';
import { guarded, refuseTemplate, type PlanContext } from './rules.js';

/** The name a raw volume's qcow2 form has: the raw name's format suffix (dir `.raw`, LVM none) replaced. */
export function convertedVolumeName(kind: StorageKind, rawName: string): string {
  const scheme = namingScheme(kind);
  const rawSuffix = scheme.diskName('', 'raw');
  const stem = rawSuffix === '' ? rawName : rawName.slice(0, -rawSuffix.length);
  return scheme.diskName(stem, 'qcow2');
}

export interface ConvertRequest {
  /** Every layer name of the VM on the storage (the new name must be free). */
  names: readonly string[];
  /** Bytes the copy needs on the storage (shown in the summary; checked against free space before). */
  neededBytes: number;
}

export function planConvert(tree: VolumeTree, ctx: PlanContext, req: ConvertRequest): Plan {
  const { volume } = tree;
  if (volume.format !== 'raw') {
    throw new InvalidInputError(`${tree.volid} is already a ${volume.format} volume: nothing to convert (it can take snapshots as it is)`);
  }
  refuseTemplate(tree, 'convert it');
  refuseLeftovers(tree);
  const current = layer(tree, tree.current);
  if (current.virtualSize <= 0 || current.virtualSize % 512 !== 0) {
    throw new NotSupportedError(
      `${tree.volid} is ${current.virtualSize} bytes long, not a whole number of 512-byte sectors: qcow2 cannot hold exactly that size`,
    );
  }
  const newName = convertedVolumeName(ctx.kind, volume.name);
  validateVolumeName(ctx.kind, volume.vmid, newName);
  const newVolid = formatVolid({ ...volume, name: newName });
  if (req.names.includes(newName)) {
    throw new AlreadyExistsError(`cannot convert ${tree.volid}: ${newVolid} already exists`, { fields: { volid: tree.volid, target: newVolid } });
  }
  const tmp = temporaryLayerName(ctx.kind, newName, 'convert');
  if (req.names.includes(tmp)) {
    throw new PendingOperationError(`an interrupted convert of ${tree.volid} left ${tmp} behind; run 'volchain repair ${tree.volid}'`);
  }
  const bytes = current.definedBytes;
  return {
    operation: 'convert',
    volid: tree.volid,
    vmid: volume.vmid,
    newVolid,
    summary: `copy raw ${tree.volid} into qcow2 ${newVolid} (needs ${req.neededBytes} bytes free), verify the copy, then remove the raw volume`,
    bytesMoved: bytes,
    steps: [
      // The copy under a temporary name: no volume name shows a half copy.
      { kind: 'convert', from: volume.name, layer: tmp, sizeBytes: current.virtualSize, bytes },
      { kind: 'verify', layer: tmp, against: volume.name, bytes },
      // From here the qcow2 volume exists under its name; the raw volume goes only after that.
      { kind: 'rename', from: tmp, to: newName },
      { kind: 'remove', layer: volume.name },
    ],
  };
}

export function planTemplate(tree: VolumeTree, ctx: PlanContext, names: readonly string[]): Plan {
  const { volume } = tree;
  if (volume.template) throw new InvalidInputError(`${tree.volid} is a template's base volume already`);
  if (tree.base) {
    throw new NotSupportedError(
      `${tree.volid} is a linked clone of ${tree.base.volid}: volchain makes templates of independent volumes only (a full clone first)`,
    );
  }
  refuseLeftovers(tree);
  const snapshots = snapshotLayers(tree).map((l) => l.snapshot ?? l.name);
  const internal = layer(tree, tree.current).header?.internalSnapshots.map((s) => s.name) ?? [];
  if (snapshots.length + internal.length > 0) {
    // PVE (qemu-server's template) refuses a VM with snapshots: a base volume is one read-only layer.
    throw new NotSupportedError(
      `${tree.volid} has snapshots (${[...snapshots, ...internal].join(', ')}): a template's base volume has none, as in PVE; delete them first`,
    );
  }
  const baseName = `base-${volume.name.slice('vm-'.length)}`;
  parseBaseName(baseName, volume.vmid);
  const newVolid = formatVolid({ storage: volume.storage, kind: ctx.kind, vmid: volume.vmid, name: baseName });
  if (names.includes(baseName)) {
    throw new AlreadyExistsError(`cannot make ${tree.volid} a template: ${newVolid} already exists`, { fields: { volid: tree.volid, target: newVolid } });
  }
  // The layer guard refuses a layer QEMU marked corrupt: it would be set in stone as a base (engine/read/layer-guard.ts).
  return guarded(tree, {
    operation: 'template',
    volid: tree.volid,
    vmid: volume.vmid,
    newVolid,
    summary: `rename ${tree.volid} to the base volume ${newVolid} and make it read-only`,
    bytesMoved: 0,
    steps: [
      { kind: 'rename', from: volume.name, to: baseName },
      { kind: 'protect', layer: baseName },
    ],
  });
}

function refuseLeftovers(tree: VolumeTree): void {
  if (tree.leftovers.length > 0) {
    throw new PendingOperationError(
      `${tree.volid} has leftovers of an interrupted operation (${tree.leftovers.join(', ')}); run 'volchain repair ${tree.volid}'`,
    );
  }
}
