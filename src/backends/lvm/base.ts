/**
 * Template base LVs and linked clones on thick LVM: volchain's own extension (PVE offers neither), allowed only
 * on the storages $VOLCHAIN_LVM_TEMPLATES names (settings.ts: PVE's LVM plugin lists no `base-` LV, so a PVE
 * user could free a base without seeing its clones).
 *
 * - `volchain template`: the volume's LV is renamed `base-<vmid>-….qcow2`, its tags rewritten to the new name
 *   (as the backend tags every layer: tags.ts), then made read-only (`lvchange -p r`): nothing writes it again,
 *   not even by mistake through its /dev path.
 * - `clone --linked`: a full-size qcow2 LV of the clone's VM, created and activated as every layer is
 *   (exclusive on a shared VG), whose header names the base LV by its name (resolved in the same VG, like a
 *   snapshot layer's parent) with `-F qcow2`; its tags record the base as its parent.
 * - Activation of a base: shared and read-only (`lvchange -asy` on a shared VG: every host running a clone
 *   needs it at once; `-ay` on a local VG); the LV's read-only permission makes every activation read-only.
 * - `free` of a base (once no clone is left: engine/read/templates.ts): made writable again first, since
 *   saferemove zeroes it.
 */
import { NotFoundError, UnsafeImageError } from '../../errors.js';
import { parseLvmBaseName, type BaseVolume } from '../../naming/index.js';
import { readQcow2Header, validateLayerHeader } from '../../qcow2/index.js';
import * as lvm from '../../tools/lvm.js';
import { createBackedImage } from '../../tools/qemu-img-backed.js';
import type { BaseInfo } from '../backend.js';
import { layerTags, trustedLayerTags } from './tags.js';
import type { LvmVolumeGroup, Report } from './vg.js';

/** lv_attr's second character: `r` read-only, `w` writable. */
const readOnly = (row: lvm.LvRow): boolean => row.attr.charAt(1) === 'r';

/** Activates base LV `row` shared (a shared VG) or locally; its permission makes the activation read-only. */
export async function activateBase(vg: LvmVolumeGroup, report: Report, row: lvm.LvRow): Promise<void> {
  if (!row.active) {
    await vg.mutating(() => lvm.activateLvs(vg.vg, [row.name], vg.exclusive(report) ? 'sy' : 'ly', vg.how));
    row.active = true;
  }
  vg.checkDevice(row);
}

/**
 * The base LV a clone's bottom layer names, checked: a `base-<vmid>-….qcow2` LV of this VG whose header (read
 * when it is active here, or activated on a VG only this host uses) is a plain base: version 3, no backing of
 * its own. On a shared VG an inactive base is known from its tags (never activated just to be listed, PVE bug 6819).
 */
export async function inspectLvmBase(vg: LvmVolumeGroup, base: BaseVolume): Promise<BaseInfo> {
  if (parseLvmBaseName(base.name, base.vmid) === undefined) throw new UnsafeImageError(base.name, 'is not a base LV name of this VG');
  const report = await vg.fresh();
  const row = report.rows.get(base.name);
  if (!row) throw new NotFoundError(`base volume ${vg.id}:${base.name} does not exist in VG ${vg.vg}`);
  const path = vg.path(base.name);
  if (!row.active && vg.exclusive(report)) {
    const virtualSize = trustedLayerTags(row).virtualSize;
    if (virtualSize === undefined) throw new UnsafeImageError(base.name, 'is inactive here and carries no recorded size: activate it to read it');
    return { path, virtualSize, usedBytes: row.sizeBytes, identity: row.uuid };
  }
  await activateBase(vg, report, row);
  const header = await readQcow2Header(path, base.name);
  validateLayerHeader(base.name, header, { base: true, isExpectedLayerName: () => false });
  return { path, virtualSize: header.virtualSize, usedBytes: row.sizeBytes, identity: row.uuid };
}

/**
 * A volume just renamed to base LV `name` (the template plan's rename ran before): its tags say so, then it
 * becomes read-only. Harmless to repeat. If we die between the two, the base is writable until repair redoes this.
 */
export async function protectLvmBase(vg: LvmVolumeGroup, vmid: number, name: string): Promise<void> {
  const report = await vg.fresh();
  const row = vg.requireRow(report, name);
  const virtualSize = trustedLayerTags(row).virtualSize ?? (row.active ? (await readQcow2Header(vg.path(name), name)).virtualSize : undefined);
  await vg.syncTags(row, layerTags(vmid, { volume: name, parent: null, ...(virtualSize !== undefined ? { virtualSize } : {}) }));
  if (!readOnly(row)) {
    await vg.mutating(() => lvm.lvm('lvchange', ['-p', 'r', '--', `${vg.vg}/${name}`], `base LV ${name} in VG ${vg.vg}`, vg.how));
    row.attr = `${row.attr.charAt(0)}r${row.attr.slice(2)}`;
  }
}

/** Before a base LV is removed (no clone left): writable again, so that saferemove can zero it. */
export async function unprotectLvmBase(vg: LvmVolumeGroup, name: string): Promise<void> {
  const row = (await vg.fresh()).rows.get(name);
  if (!row || !readOnly(row)) return;
  await vg.mutating(() => lvm.lvm('lvchange', ['-p', 'rw', '--', `${vg.vg}/${name}`], `base LV ${name} in VG ${vg.vg}`, vg.how));
  row.attr = `${row.attr.charAt(0)}w${row.attr.slice(2)}`;
}

/**
 * A linked clone's first layer `layerName` (a temporary of the clone's volume) of VM `vmid`: a full-size LV,
 * tagged with the base as its parent, whose header names base LV `base` with -F qcow2. Nothing is left when it fails.
 */
export async function createLvmLinkedClone(
  vg: LvmVolumeGroup,
  vmid: number,
  layerName: string,
  volume: string,
  base: BaseVolume,
  sizeBytes: number,
): Promise<void> {
  await inspectLvmBase(vg, base);
  const report = await vg.fresh();
  // qemu-img opens the base to check it: active here (shared, read-only) before the clone is made.
  await activateBase(vg, report, vg.requireRow(report, base.name));
  const lvSize = await vg.fullSize(report, sizeBytes);
  await vg.createLv(report, layerName, lvSize, layerTags(vmid, { volume, parent: base.name, virtualSize: sizeBytes }), `linked clone ${layerName}`);
  try {
    await createBackedImage(vg.path(layerName), base.name, 'qcow2', sizeBytes, undefined);
  } catch (err) {
    await vg.dropLv(layerName);
    throw err;
  }
}
