/**
 * Sizing of thick LVs (DESIGN.md section 4). A thick LV cannot grow on demand, so:
 * - every writable qcow2 layer (a volume's current layer, a new top) is an LV of the fully-allocated size
 *   `qemu-img measure` gives for its virtual size, rounded up to the VG's extent: a guest that writes its
 *   whole disk never meets ENOSPC;
 * - a raw volume's LV is its virtual size rounded up to an extent (the LV size is the disk size);
 * - free space is checked in bytes before every lvcreate/lvextend; NoSpaceError says how much is missing;
 * - a frozen layer (a snapshot) is never written again, so `settleFrozen` shrinks its LV to the image's end
 *   (`qemu-img check` image-end-offset, rounded up to an extent); `prepareGrow` grows it back to the fully
 *   allocated size before anything writes into it (commit into it, or a rebase that copies data into it).
 *   The space a volume's snapshots take is `snapshotBytes` in `list`/`info`, next to `fullSizeSnapshotBytes`
 *   (the same layers at full size, as PVE 9 keeps them); a dry run of a snapshot shows both ways (space.ts).
 */
import type { ImageFormat } from '../../naming/index.js';
import * as lvm from '../../tools/lvm.js';
import * as qemuImg from '../../tools/qemu-img.js';
import { isQcow2Lv } from './lv-records.js';
import type { LvmVolumeGroup } from './vg.js';

export class LvmSizing {
  constructor(
    private readonly vg: LvmVolumeGroup,
    /** Shrink layers that became snapshots (off next to PVE, which commits into them without growing them). */
    private readonly shrinkFrozen: boolean,
    /** Refreshes the tags of a layer whose image qemu-img rewrote (activation.ts). */
    private readonly layerChanged: (vmid: number, layerName: string) => Promise<void>,
  ) {}

  async prepareGrow(layerName: string, sizeBytes: number): Promise<void> {
    const report = await this.vg.fresh();
    const row = this.vg.requireRow(report, layerName);
    const target = isQcow2Lv(layerName) ? await this.vg.fullSize(report, sizeBytes) : lvm.roundUpTo(sizeBytes, report.vg.extentSizeBytes);
    if (row.sizeBytes >= target) return;
    this.vg.ensureFree(report, target - row.sizeBytes, `growing ${layerName} to ${target} bytes`);
    await this.vg.resizeRow(report, row, target);
  }

  async settleFrozen(layerName: string): Promise<void> {
    if (!isQcow2Lv(layerName) || !this.shrinkFrozen) return;
    const report = await this.vg.fresh();
    const row = this.vg.requireRow(report, layerName);
    await this.vg.activateRows(report, [row]);
    const check = await qemuImg.checkImage(this.vg.path(layerName));
    const target = frozenSize(row.sizeBytes, check, report.vg.extentSizeBytes);
    if (target >= row.sizeBytes) return;
    await this.vg.resizeRow(report, row, target);
  }

  /** Full size of a writable layer (as createOverlay and prepareGrow make it), for space figures. */
  async fullLayerBytes(virtualSizeBytes: number): Promise<number> {
    return this.vg.fullSize(await this.vg.fresh(), virtualSizeBytes);
  }

  /**
   * What settleFrozen would shrink the layer to, read without changing anything: undefined for an inactive
   * LV (reading its image would need an activation).
   */
  async frozenLayerBytes(layerName: string): Promise<number | undefined> {
    const report = await this.vg.fresh();
    const row = report.rows.get(layerName);
    if (!row || !isQcow2Lv(layerName) || !this.shrinkFrozen) return row?.sizeBytes;
    if (!row.active) return undefined;
    const check = await qemuImg.checkImage(this.vg.path(layerName));
    return frozenSize(row.sizeBytes, check, report.vg.extentSizeBytes);
  }

  async resizeLayer(vmid: number, layerName: string, format: ImageFormat, sizeBytes: number): Promise<void> {
    const report = await this.vg.fresh();
    const row = this.vg.requireRow(report, layerName);
    if (format === 'raw') {
      // A raw LV's size is the disk's size: prepareGrow did the resize (rounded up to an extent).
      if (row.sizeBytes < sizeBytes) await this.prepareGrow(layerName, sizeBytes);
      return;
    }
    await this.vg.activateRows(report, [row]);
    await qemuImg.resizeImage(this.vg.path(layerName), 'qcow2', sizeBytes);
    await this.layerChanged(vmid, layerName);
  }
}

/**
 * The LV size of a frozen layer: its image end (from `qemu-img check`) rounded up to an extent, never more
 * than it has. Only a clean image's end offset is trustworthy; otherwise the layer keeps its size.
 */
function frozenSize(sizeBytes: number, check: qemuImg.CheckResult, extentSizeBytes: number): number {
  if (check.corruptions > 0 || check.imageEndOffset === undefined) return sizeBytes;
  return Math.min(sizeBytes, lvm.roundUpTo(check.imageEndOffset, extentSizeBytes));
}
