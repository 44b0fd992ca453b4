/**
 * The LVM backend's view of its volume group: the cached `lvs` report (one `lvs`/`vgs` for many primitives)
 * and the small LV changes every other part makes through it (create, remove, resize, activate, retag),
 * each keeping the cached report current or dropping it when an LVM command failed half-way.
 *
 * Report lifetime. Operations run under the VM's lock, so nobody else changes the VM's LVs meanwhile, and
 * this process keeps the report current for what it changes itself; a report never survives a hand-over of
 * the VM's lock (see reportFor).
 */
import { randomUUID } from 'node:crypto';
import { statSync } from 'node:fs';
import type { LvmStorage } from '../../config/index.js';
import { AlreadyExistsError, InvalidInputError, LockedError, NoSpaceError, NotFoundError } from '../../errors.js';
import { lvmLayerPath } from '../../naming/index.js';
import * as lvm from '../../tools/lvm.js';
import { measureFullyAllocated } from '../../tools/lvm-measure.js';
import { checkLvDevice } from './device.js';
import { vmidOfJournalLv, type JournalVolumeGroup } from './journal.js';
import { isVolchainDeletion, tagChanges } from './tags.js';

/** How long an `lvs` report may serve `statLayer` and the primitives (see the top of this file). */
export const REPORT_MAX_AGE_MS = 60_000;
/** A report this young is reused by a listing (list reads each volume right after listing the VG). */
export const LISTING_REUSE_MS = 1_000;
/** ... and by activate, which runs right after the tree was read (see activation.ts). */
export const ACTIVATE_REUSE_MS = 3_000;

export interface Report {
  vg: lvm.VgInfo;
  rows: Map<string, lvm.LvRow>;
  takenAtMs: number;
}

export class LvmVolumeGroup {
  /** The last report, or undefined after an LVM change failed (the VG may have changed in part). */
  report: Report | undefined;

  constructor(
    readonly definition: LvmStorage,
    /** The VM's lock file (rewritten by the engine on every acquisition and release). */
    private readonly lockFile: (vmid: number) => string,
    /** How its LVM commands run (the backend's settings: $VOLCHAIN_LVM_TRACE). */
    readonly how: lvm.LvmRunOptions,
  ) {}

  get id(): string {
    return this.definition.id;
  }

  get vg(): string {
    return this.definition.vgname;
  }

  path(lv: string): string {
    return lvmLayerPath(this.vg, lv);
  }

  // ---- the report -----------------------------------------------------------------------------------------

  /** A report taken now (stamped with the time the command started: anything later makes it old). */
  async refresh(): Promise<Report> {
    const startedAtMs = Date.now();
    const { vg, lvs } = await lvm.reportVg(this.vg, this.how);
    this.report = { vg, rows: new Map(lvs.map((r) => [r.name, r])), takenAtMs: startedAtMs };
    return this.report;
  }

  /** A report for a listing: new, unless one was taken a moment ago. */
  async forListing(): Promise<Report> {
    return this.recent(LISTING_REUSE_MS);
  }

  private async recent(maxAgeMs: number): Promise<Report> {
    if (this.report && Date.now() - this.report.takenAtMs <= maxAgeMs) return this.report;
    return this.refresh();
  }

  /**
   * A report for reading the LVs of `vmid`: the last one if young enough and the VM's lock file (which the
   * engine rewrites on every acquisition and release) has not changed since it was taken; else a new one.
   * So a report never outlives a lock hand-over: whatever another process did while holding the lock is
   * seen, and an operation always starts from an `lvs` taken after its own lock was acquired.
   */
  async reportFor(vmid: number, maxAgeMs: number): Promise<Report> {
    const report = this.report;
    if (report && Date.now() - report.takenAtMs <= maxAgeMs && !this.lockTouchedSince(vmid, report.takenAtMs)) return report;
    return this.refresh();
  }

  private lockTouchedSince(vmid: number, sinceMs: number): boolean {
    try {
      return statSync(this.lockFile(vmid)).mtimeMs >= sinceMs;
    } catch {
      return false; // no lock file yet: nobody has locked this VM here
    }
  }

  /** The last report if recent (this process keeps it current for what it changes), else a new one. */
  async fresh(): Promise<Report> {
    return this.recent(REPORT_MAX_AGE_MS);
  }

  /** The last report if still recent, without running `lvs` (undefined otherwise). */
  lastRecent(): Report | undefined {
    return this.report && Date.now() - this.report.takenAtMs <= REPORT_MAX_AGE_MS ? this.report : undefined;
  }

  // ---- checks ---------------------------------------------------------------------------------------------

  /** Runs an LVM change; on failure the cached report is dropped (the VG may have changed in part). */
  async mutating<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      const hint = err instanceof NoSpaceError && this.report ? wipeHint(this.report) : '';
      this.report = undefined;
      if (hint !== '') throw new NoSpaceError(`${(err as NoSpaceError).message}${hint}`, { cause: err });
      throw err;
    }
  }

  /** Activation must be exclusive: the VG is shared (storage option) or has a lock manager. */
  exclusive(report: Report): boolean {
    return this.definition.shared || lvm.hasLockManager(report.vg);
  }

  private activation(report: Report): 'ly' | 'ey' {
    return this.exclusive(report) ? 'ey' : 'ly';
  }

  requireRow(report: Report, name: string): lvm.LvRow {
    const row = report.rows.get(name);
    if (!row) throw new NotFoundError(`layer ${name} does not exist in VG ${this.vg} (storage '${this.id}')`);
    return row;
  }

  /** Before renaming an LV for zeroing: lvremove would refuse an open LV, zeroing would not. */
  refuseOpen(row: lvm.LvRow): void {
    if (row.open) {
      throw new LockedError(`${row.name} in VG ${this.vg} is open (in use, e.g. by a running VM): not removing it`);
    }
  }

  /** The fully-allocated size of a writable qcow2 layer of this virtual size, rounded up to an extent. */
  async fullSize(report: Report, virtualSizeBytes: number): Promise<number> {
    return lvm.roundUpTo(await measureFullyAllocated(virtualSizeBytes), report.vg.extentSizeBytes);
  }

  ensureFree(report: Report, bytes: number, what: string): void {
    const free = report.vg.freeBytes;
    if (bytes <= free) return;
    throw new NoSpaceError(
      `storage '${this.id}' (VG ${this.vg}): ${what} needs ${bytes} bytes, but only ${free} are free: ` + `${bytes - free} bytes missing${wipeHint(report)}`,
    );
  }

  checkDmName(lv: string): void {
    const dm = lvm.dmName(this.vg, lv);
    if (Buffer.byteLength(dm) > lvm.DM_NAME_MAX) {
      throw new InvalidInputError(
        `LV name ${lv} is too long for VG ${this.vg}: its device-mapper name ${dm} has ${Buffer.byteLength(dm)} ` +
          `characters, at most ${lvm.DM_NAME_MAX} are possible (use a shorter snapshot or volume name)`,
      );
    }
  }

  checkDevice(row: lvm.LvRow): void {
    checkLvDevice(this.path(row.name), this.vg, row.name, row.uuid.startsWith('new:') ? undefined : row.uuid);
  }

  // ---- changes --------------------------------------------------------------------------------------------

  async createLv(report: Report, name: string, sizeBytes: number, tags: string[], what: string, opts: { zeroStart?: boolean } = {}): Promise<void> {
    this.checkDmName(name);
    if (report.rows.has(name)) throw new AlreadyExistsError(`${name} already exists in VG ${this.vg} (storage '${this.id}')`);
    this.ensureFree(report, sizeBytes, `${what} (${sizeBytes} bytes as an LV)`);
    await this.mutating(() =>
      lvm.createLv(
        {
          vg: this.vg,
          name,
          sizeBytes,
          tags,
          activation: this.activation(report),
          extentSizeBytes: report.vg.extentSizeBytes,
          ...opts,
        },
        this.how,
      ),
    );
    const attr = '-wi-a-----';
    const row = { name, uuid: `new:${randomUUID()}`, sizeBytes, tags: [...tags], attr, active: true, open: false };
    report.rows.set(name, row);
    this.checkDevice(row);
    report.vg.freeBytes -= sizeBytes;
  }

  /** lvremove, tolerating an LV that is gone already. */
  async dropLv(name: string): Promise<void> {
    try {
      await this.mutating(() => lvm.removeLv(this.vg, name, this.how));
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err;
    }
    const report = this.report;
    const row = report?.rows.get(name);
    if (report && row) {
      report.rows.delete(name);
      report.vg.freeBytes += row.sizeBytes;
    }
  }

  async renameLv(report: Report, from: string, to: string): Promise<void> {
    await this.mutating(() => lvm.renameLv(this.vg, from, to, this.how));
    moveRow(report, from, to);
  }

  async resizeRow(report: Report, row: lvm.LvRow, sizeBytes: number): Promise<void> {
    await this.mutating(() => lvm.resizeLv(this.vg, row.name, row.sizeBytes, sizeBytes, { ...this.how, extentSizeBytes: report.vg.extentSizeBytes }));
    report.vg.freeBytes -= sizeBytes - row.sizeBytes;
    row.sizeBytes = sizeBytes;
  }

  async activateRows(report: Report, rows: readonly lvm.LvRow[]): Promise<void> {
    const inactive = rows.filter((r) => !r.active);
    if (inactive.length > 0) {
      await this.mutating(() =>
        lvm.activateLvs(
          this.vg,
          inactive.map((r) => r.name),
          this.activation(report),
          this.how,
        ),
      );
      for (const row of inactive) row.active = true;
    }
    // Every path about to be opened leads to its own LV (backends/lvm/device.ts), whoever made the /dev entry.
    for (const row of rows) this.checkDevice(row);
  }

  async deactivateRows(rows: readonly lvm.LvRow[]): Promise<void> {
    await this.mutating(() =>
      lvm.activateLvs(
        this.vg,
        rows.map((r) => r.name),
        'n',
        this.how,
      ),
    );
    for (const row of rows) row.active = false;
  }

  /** Rewrites volchain's tags of one LV to `wanted` in one lvchange; true when something changed. */
  async syncTags(row: lvm.LvRow, wanted: readonly string[], alsoRemove: readonly string[] = []): Promise<boolean> {
    const changes = tagChanges(row.tags, wanted);
    const add = changes.add;
    // `alsoRemove`: PVE's own tags (pve-vm-<vmid>, pve-<volume>) of a layer given to another VM (reassign).
    const remove = [...changes.remove, ...alsoRemove.filter((t) => row.tags.includes(t) && !wanted.includes(t))];
    if (add.length === 0 && remove.length === 0) return false;
    await this.mutating(() => lvm.changeTags(this.vg, row.name, add, remove, this.how));
    row.tags = [...row.tags.filter((t) => !remove.includes(t)), ...add];
    return true;
  }

  /** What the journal store (journal.ts) needs of the VG: journal LVs are made and read through this view. */
  journalView(): JournalVolumeGroup {
    return {
      vg: this.vg,
      storage: this.id,
      row: async (vmid, name) => (await this.reportFor(vmid, REPORT_MAX_AGE_MS)).rows.get(name),
      journalRows: async () => [...(await this.forListing()).rows.values()].filter((r) => vmidOfJournalLv(r.name) !== undefined),
      freshRow: async (name) => (await this.fresh()).rows.get(name),
      create: async (name, sizeBytes, tags) => {
        const report = await this.fresh();
        const size = lvm.roundUpTo(sizeBytes, report.vg.extentSizeBytes);
        await this.createLv(report, name, size, [...tags], 'the operation journal', { zeroStart: true });
        return this.requireRow(report, name);
      },
      activate: async (row) => this.activateRows(await this.fresh(), [row]),
      remove: (name) => this.dropLv(name),
      shared: async () => this.exclusive(await this.forListing()),
      path: (name) => this.path(name),
    };
  }
}

/** What a NoSpaceError adds while `del-` LVs still hold space that their wipe gives back. */
function wipeHint(report: Report): string {
  const doomed = [...report.rows.values()].filter(isVolchainDeletion);
  if (doomed.length === 0) return '';
  const bytes = doomed.reduce((sum, r) => sum + r.sizeBytes, 0);
  return (
    `; ${bytes} bytes of ${doomed.length} removed LV(s) are still being wiped (saferemove) and come free when ` +
    `that ends: 'volchain wipe --wait' waits for it`
  );
}

function moveRow(report: Report, from: string, to: string): void {
  const row = report.rows.get(from);
  if (!row) return;
  report.rows.delete(from);
  row.name = to;
  report.rows.set(to, row);
}
