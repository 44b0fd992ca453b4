/**
 * Activation and the metadata recorded in tags (backends/lvm/tags.ts). Every layer carries tags:
 * `pve-vm-<vmid>`, its volume, its parent's LV name and its virtual size. `stat` reports them as `recorded`
 * and says whether the LV is active here (`readable`), so `list`, `info` and `snapshot list` read a chain
 * from `lvs` alone, without activating anything (on a shared VG another host may hold the LVs). Active
 * layers are read from their qcow2 headers (the truth), and `activate` (run by the executor before every
 * plan) checks the tags against the headers, corrects drift, and refuses a plan that was made from drifted
 * tags. On a VG that is not shared, a layer that carries no tags (made by PVE) and is inactive is activated
 * to be read: nothing else can read it, and activation on a local VG is invisible to other hosts.
 *
 * `activate(vmid, layers)` activates every layer of the volumes named (a chain is only usable whole); on a
 * shared VG exclusively (`lvchange -aey`), which is what keeps two hosts off one volume with lvmlockd.
 */
import { CorruptImageError } from '../../errors.js';
import { parseBaseBackingRef, snapshotOfLayerName } from '../../naming/index.js';
import { readQcow2Header, validateLayerHeader, type Qcow2Header } from '../../qcow2/index.js';
import type * as lvm from '../../tools/lvm.js';
import type { LayerStat } from '../backend.js';
import { activateBase } from './base.js';
import { isQcow2Lv, recordOf } from './lv-records.js';
import { attributeLayers } from './owners.js';
import { isVolumeLv, layerTags, layersOfVolumes, trustedLayerTags, volumesOfLv } from './tags.js';
import { ACTIVATE_REUSE_MS, REPORT_MAX_AGE_MS, type LvmVolumeGroup, type Report } from './vg.js';

export class LvmActivation {
  /** Layers `stat` reported as unreadable (a plan may have been made from their tags). */
  private readonly servedFromTags = new Set<string>();

  constructor(
    private readonly vg: LvmVolumeGroup,
    /** Linked clones of template base LVs are allowed on this storage ($VOLCHAIN_LVM_TEMPLATES: base.ts). */
    private readonly bases = false,
  ) {}

  async stat(vmid: number, layerName: string): Promise<LayerStat | undefined> {
    const report = await this.vg.reportFor(vmid, REPORT_MAX_AGE_MS);
    const row = report.rows.get(layerName);
    if (!row) return undefined;
    const stat: LayerStat = { usedBytes: row.sizeBytes, identity: row.uuid };
    const recorded = recordOf(row);
    if (recorded) stat.recorded = recorded;
    if (!row.active) {
      if (!recorded && !this.vg.exclusive(report)) {
        // A layer without tags (made by PVE) on a VG only this host uses: activate it to read its header.
        await this.vg.activateRows(report, [row]);
      } else {
        stat.readable = false;
        this.servedFromTags.add(layerName);
      }
    }
    if (row.active) this.vg.checkDevice(row);
    return stat;
  }

  async layerChanged(vmid: number, layerName: string): Promise<void> {
    const report = await this.vg.fresh();
    const row = report.rows.get(layerName);
    if (!row?.active || !isQcow2Lv(layerName)) return;
    const header = await readQcow2Header(this.vg.path(layerName), layerName);
    const volume = trustedLayerTags(row).volume ?? soleVolume(row, report);
    const wanted = layerTags(vmid, {
      ...(volume !== undefined ? { volume } : {}),
      parent: header.backingFile ?? null,
      virtualSize: header.virtualSize,
    });
    await this.vg.syncTags(row, wanted);
  }

  async activate(vmid: number, layerNames: readonly string[]): Promise<void> {
    // Called when a plan starts (right after the tree was read under the VM's lock) and before a step is
    // redone (repair, possibly long after another process changed the VG): only a report taken moments ago
    // is trusted here.
    const report = await this.vg.reportFor(vmid, ACTIVATE_REUSE_MS);
    // Every LV the names could belong to is activated and its header read; then the headers decide which
    // of them are the volumes' own (backends/lvm/owners.ts: a name may fit two volumes), and an LV activated only
    // to be read that turned out to be another volume's is deactivated again (if we die before that, it
    // stays active: harmless, the state PVE's own activation by --select leaves).
    const candidates = membersOf(report, vmid, layerNames).members;
    const wasInactive = new Set(candidates.filter((r) => !r.active).map((r) => r.name));
    await this.vg.activateRows(report, candidates);
    const { headers, unreadable } = await this.readHeaders(candidates);
    const parentOf = new Map([...headers].map(([name, h]) => [name, h.backingFile ?? null]));
    const { members, volumeOf } = membersOf(report, vmid, layerNames, parentOf);
    const foreign = candidates.filter((r) => wasInactive.has(r.name) && !members.includes(r));
    if (foreign.length > 0) await this.vg.deactivateRows(foreign);
    throwIfNeeded(unreadable, members, parentOf);
    const drifted: string[] = [];
    for (const row of members) {
      const header = headers.get(row.name);
      if (header === undefined) continue;
      const volume = volumeOf.get(row.name);
      validateLayerHeader(row.name, header, {
        // A snapshot layer name of the same volume (it may not exist yet: a new top names its parent first).
        isExpectedLayerName: (ref) => volume !== undefined && snapshotOfLayerName('lvm', volume, ref) !== undefined,
        // A linked clone's bottom layer names a template's base LV (opt-in storages only).
        ...(this.bases ? { baseFormat: (ref: string) => parseBaseBackingRef(ref, 'lvm')?.format } : {}),
      });
      const before = recordOf(row);
      const wanted = layerTags(vmid, {
        ...(volume !== undefined ? { volume } : {}),
        parent: header.backingFile ?? null,
        virtualSize: header.virtualSize,
      });
      if (await this.vg.syncTags(row, wanted)) {
        if (before && wasInactive.has(row.name) && this.servedFromTags.has(row.name)) drifted.push(row.name);
      }
    }
    for (const row of members) this.servedFromTags.delete(row.name);
    // A linked clone's chain ends in a base LV: active too (shared, read-only: base.ts), or QEMU cannot open it.
    if (this.bases) {
      const bases = new Set([...parentOf.values()].filter((p): p is string => p !== null && parseBaseBackingRef(p, 'lvm') !== undefined));
      for (const name of bases) {
        const row = report.rows.get(name);
        if (row) await activateBase(this.vg, report, row);
      }
    }
    if (drifted.length > 0) {
      throw new CorruptImageError(
        drifted.join(', '),
        `the chain recorded in the LV tags did not match the qcow2 headers (the tags are corrected now); ` +
          'the plan was made from the tags, so nothing was done: run the command again',
      );
    }
  }

  async deactivate(vmid: number, layerNames: readonly string[]): Promise<void> {
    const report = await this.vg.fresh();
    // Which of the active LVs are the volumes' own is read from their headers (a name may fit two volumes).
    const { headers, unreadable } = await this.readHeaders(membersOf(report, vmid, layerNames).members.filter((r) => r.active));
    const parentOf = new Map([...headers].map(([name, h]) => [name, h.backingFile ?? null]));
    const members = membersOf(report, vmid, layerNames, parentOf).members;
    throwIfNeeded(unreadable, members, parentOf);
    const active = members.filter((r) => r.active);
    if (active.length === 0) return;
    await this.vg.deactivateRows(active);
  }

  /**
   * The qcow2 headers of `rows`. One that cannot be read is kept aside instead of failing at once: a name may
   * fit another volume too, and that volume's broken layer must not stop an operation on this one.
   */
  private async readHeaders(rows: readonly lvm.LvRow[]): Promise<{ headers: Map<string, Qcow2Header>; unreadable: Map<string, unknown> }> {
    const headers = new Map<string, Qcow2Header>();
    const unreadable = new Map<string, unknown>();
    for (const row of rows) {
      if (!isQcow2Lv(row.name)) continue;
      try {
        headers.set(row.name, await readQcow2Header(this.vg.path(row.name), row.name));
      } catch (err) {
        unreadable.set(row.name, err);
      }
    }
    return { headers, unreadable };
  }
}

/**
 * Fails with the read error of a header the volumes need: one of their own layers, or a layer one of them
 * names as its backing (an ambiguous LV that could not be attributed because it could not be read).
 */
function throwIfNeeded(unreadable: ReadonlyMap<string, unknown>, members: readonly lvm.LvRow[], parentOf: ReadonlyMap<string, string | null>): void {
  const needed = new Set(members.flatMap((r) => [r.name, parentOf.get(r.name) ?? '']));
  for (const [name, err] of unreadable) if (needed.has(name)) throw err;
}

/**
 * Every layer of the volumes the named layers belong to, with the volume of each. Without `parentOf` (the
 * backing LV of each LV whose header was read) a name that fits two volumes counts for both, with no volume
 * (the candidates to read); with it, such an LV goes to the volume whose chain its header joins, or to none.
 */
function membersOf(
  report: Report,
  vmid: number,
  layerNames: readonly string[],
  parentOf?: ReadonlyMap<string, string | null>,
): { members: lvm.LvRow[]; volumeOf: Map<string, string> } {
  const rows = [...report.rows.values()];
  const volumeNames = rows.map((r) => r.name).filter((n) => isVolumeLv(n, vmid));
  const volumes = new Set<string>();
  for (const name of layerNames) {
    const row = report.rows.get(name);
    const candidates = row ? volumesOfLv(row, volumeNames) : volumesOfLv({ name, tags: [] }, volumeNames);
    for (const v of candidates) if (isVolumeLv(v, vmid)) volumes.add(v);
  }
  const members = layersOfVolumes(rows, volumes);
  // A volume whose current layer is renamed away (a temporary) still owns its layers.
  const allVolumes = [...new Set([...volumeNames, ...volumes])];
  if (parentOf !== undefined) {
    const owners = attributeLayers(new Map(members.map((r) => [r.name, volumesOfLv(r, allVolumes)])), parentOf);
    const named = new Set(layerNames.flatMap((n) => owners.get(n) ?? (report.rows.has(n) ? [] : volumesOfLv({ name: n, tags: [] }, allVolumes))));
    const own = members.filter((r) => named.has(owners.get(r.name) ?? ''));
    return { members: own, volumeOf: new Map(own.map((r) => [r.name, owners.get(r.name) as string])) };
  }
  const volumeOf = new Map<string, string>();
  for (const row of members) {
    const owners = volumesOfLv(row, allVolumes).filter((v) => volumes.has(v));
    if (owners.length === 1) volumeOf.set(row.name, owners[0] as string);
  }
  return { members, volumeOf };
}

/** The one volume an untagged LV can belong to, judged by the names in the report. */
function soleVolume(row: lvm.LvRow, report: Report): string | undefined {
  const owners = volumesOfLv(
    row,
    [...report.rows.keys()].filter((n) => isVolumeLv(n)),
  );
  return owners.length === 1 ? owners[0] : undefined;
}
