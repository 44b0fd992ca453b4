/**
 * Planning reassign (pure): `move <volid> <same storage> --vmid N` gives a volume, with every snapshot layer,
 * to another VM on the same storage without copying data, as PVE's rename_volume does (Plugin.pm: the
 * snapshot files renamed with the volume and each backing name rewritten with `qemu-img rebase -u`;
 * LVMPlugin.pm: lvrename and the VM tag). Steps, each journaled and undone or redone by repair:
 *   1. reassign-layer  every layer renamed to the new VM's name for it     undo: rename back
 *   2. relink          every layer with a parent gets the parent's new      undo: the old name back
 *                      name in its header (`qemu-img rebase -u`)
 * Between 1 and 2 the headers name parents by their old names: the chain only reads whole again once every
 * relink ran. A crash anywhere is finished by repair (every step can be redone; its effect is checked first).
 * A linked clone's bottom layer keeps its `../<basevmid>/base-…` reference: images/<newvmid> is a sibling
 * directory, so the reference still names the same base.
 */
import { AlreadyExistsError, InvalidInputError, NotSupportedError } from '../../errors.js';
import type { Plan, Step } from '../../model/plan.js';
import {
  formatVolid,
  nextFreeDiskName,
  parseVolumeName,
  snapshotLayerName,
  validateVolumeName,
  type ImageFormat,
  type StorageKind,
} from '../../naming/index.js';
import { layer, type LayerNode, type VolumeTree } from '../read/volume-tree.js';

export interface ReassignRequest {
  tree: VolumeTree;
  storage: string;
  kind: StorageKind;
  newVmid: number;
  /** Every layer name VM `newVmid` already has on the storage. */
  existingNames: readonly string[];
}

/**
 * The volume's name in VM `newVmid`: the same disk number or suffix (`vm-<old>-disk-3` -> `vm-<new>-disk-3`)
 * when that name is free there, else the next free `vm-<newVmid>-disk-<n>`, as PVE's reassign picks a free
 * name. Shared with move to another storage with --vmid.
 */
export function nameForVmid(kind: StorageKind, name: string, format: ImageFormat, newVmid: number, existing: readonly string[]): string {
  const { vmid } = parseVolumeName(kind, name);
  const same = `vm-${newVmid}-${name.slice(`vm-${vmid}-`.length)}`;
  let candidate: string | undefined;
  try {
    validateVolumeName(kind, newVmid, same);
    candidate = same;
  } catch {
    // a name too long for the new id, say: take the next free number instead
  }
  if (candidate !== undefined && !existing.includes(candidate)) return candidate;
  return nextFreeDiskName(kind, newVmid, format, existing);
}

/** Every layer of the tree from the roots down: each layer after its parent. */
export function parentsFirst(tree: VolumeTree): LayerNode[] {
  const roots = [...tree.layers.values()].filter((l) => l.parent === undefined || !tree.layers.has(l.parent));
  const out: LayerNode[] = [];
  const visit = (node: LayerNode): void => {
    out.push(node);
    for (const child of [...node.children].sort()) visit(layer(tree, child));
  };
  for (const root of roots.sort((a, b) => a.name.localeCompare(b.name))) visit(root);
  return out;
}

/** The name each layer of `tree` takes as a layer of volume `newName` (the current layer: the volume's name). */
export function renamedLayers(tree: VolumeTree, kind: StorageKind, newName: string): Map<string, string> {
  const names = new Map<string, string>();
  for (const node of tree.layers.values()) {
    names.set(node.name, node.snapshot === undefined ? newName : snapshotLayerName(kind, newName, node.snapshot));
  }
  return names;
}

/** Refuses (exit 4) when one of the names the moved layers take exists already where they go. */
export function refuseTakenNames(names: Iterable<string>, existing: readonly string[], where: string): void {
  const taken = [...names].filter((n) => existing.includes(n));
  if (taken.length > 0) throw new AlreadyExistsError(`${taken.join(', ')} already exist(s) ${where}: nothing was moved`);
}

export function planReassign(req: ReassignRequest): Plan {
  const { tree } = req;
  const from = tree.volume;
  if (from.template === true)
    throw new NotSupportedError(`${tree.volid} is a template's base volume: linked clones depend on its name, so it is not reassigned`);
  if (req.newVmid === from.vmid) throw new InvalidInputError(`${tree.volid} belongs to VM ${from.vmid} already: give another --vmid, or another storage`);
  const newName = nameForVmid(req.kind, from.name, from.format, req.newVmid, req.existingNames);
  const names = renamedLayers(tree, req.kind, newName);
  refuseTakenNames(names.values(), req.existingNames, `for VM ${req.newVmid} on storage '${req.storage}'`);
  const newVolid = formatVolid({ storage: req.storage, kind: req.kind, vmid: req.newVmid, name: newName, ...(from.base ? { base: from.base } : {}) });
  const order = parentsFirst(tree);
  const nameOf = (n: string): string => names.get(n) ?? n;
  const steps: Step[] = order.map((node) => ({
    kind: 'reassign-layer',
    vmid: from.vmid,
    name: node.name,
    newVmid: req.newVmid,
    newName: nameOf(node.name),
    volume: newName,
  }));
  for (const node of order) {
    if (node.parent === undefined) continue;
    steps.push({ kind: 'relink', vmid: req.newVmid, name: nameOf(node.name), parent: nameOf(node.parent), oldParent: node.parent, volume: newName });
  }
  return {
    operation: 'reassign',
    volid: tree.volid,
    vmid: from.vmid,
    newVolid,
    summary: `give ${tree.volid} with its ${order.length - 1} snapshot layer(s) to VM ${req.newVmid} as ${newVolid} (renames only, no data copied)`,
    steps,
    bytesMoved: 0,
    move: { source: tree.volid, target: newVolid, layers: order.length, bytesToCopy: 0, spaceNeededBytes: 0, freeBytes: 0 },
  };
}
