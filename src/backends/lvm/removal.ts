/**
 * saferemove (storage option), as PVE does it (rename in the operation, a forked worker zeroes and removes).
 * `removeLayer` (and `replaceLayer` for the old `to`) only renames the LV to `del-<lv>`, keeping volchain's
 * tags (an untagged LV made by PVE gets `volchain.removing` first): the volume is gone for everyone at once
 * and the step ends quickly. If `del-<lv>` still exists (an earlier removal of that name is still being
 * wiped) the name is `del-<n>-<lv>`. The engine takes `deferredRemovals` once the VM's lock is released and
 * has them finished (`finishRemovals`), by default in a detached `volchain wipe` process (or in the
 * foreground, engine/run/wipe.ts): zeroing in chunks (`blkdiscard --zeroout -o -l`, else `dd` with O_DIRECT; at
 * most `saferemove_throughput` bytes/s when set), each flushed and then recorded in a progress file, then
 * `lvremove`. A per-LV flock (held also by the zeroing command, so a wiper killed mid-chunk keeps others
 * out until that chunk ends) keeps two wipers off one LV; a wipe that was killed continues at the recorded
 * offset. A `del-` LV with volchain's tags that nobody wipes (its wiper or the renaming run died) is handed
 * out by the next `deferredRemovals` that sees it: after `list` and after every operation on its VM; `volchain
 * wipe` finishes it at any time. `del-` LVs made by PVE itself (no volchain tags) are left to PVE.
 */
import { hostname } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { AlreadyExistsError, InvalidInputError, LockedError, VolchainError, asVolchainError } from '../../errors.js';
import * as lvm from '../../tools/lvm.js';
import type { FinishedRemoval, FinishRemovalsOptions, FinishRemovalsResult, PendingRemoval } from '../backend.js';
import { withFileLock } from './flock.js';
import { ofVm, vmidsOfLv } from './lv-records.js';
import { REMOVING_TAG, TAG_PREFIX, deletionName, isVolchainDeletion } from './tags.js';
import type { LvmVolumeGroup, Report } from './vg.js';
import {
  chunkSizeFor,
  listWipeProgress,
  parseThroughput,
  planChunks,
  readWipeProgress,
  removeWipeProgress,
  resumeOffset,
  throttleDelayMs,
  wiperAlive,
  writeWipeProgress,
  type WipeProgress,
} from './wipe.js';

export class LvmRemovals {
  /** `del-` LVs renamed (or found unfinished) here, to be wiped once the operation is over. */
  private readonly deferred = new Set<string>();

  constructor(
    private readonly vg: LvmVolumeGroup,
    /**
     * Wipe locks, progress files and the background wiper's log: one directory per VG next to the storages'
     * state directories (two storage entries may name one VG; one LV must never get two wipers).
     */
    private readonly wipeDirOf: () => string,
    /** The test hook VOLCHAIN_LVM_CRASH_AT at `point` (crash.ts, with the backend's settings). */
    private readonly crashPoint: (point: string) => void,
  ) {}

  private get wipeDir(): string {
    return this.wipeDirOf();
  }

  /**
   * saferemove's first half, inside the operation: renames the LV to a free `del-` name, keeping its tags (an
   * LV without volchain tags, made by PVE, gets REMOVING_TAG first so that a wiper knows it), and leaves the
   * zeroing and lvremove for after the operation (deferredRemovals).
   */
  async renameForRemoval(report: Report, name: string): Promise<string> {
    const row = this.vg.requireRow(report, name);
    this.vg.refuseOpen(row);
    let doomed = deletionName(name);
    for (let attempt = 1; report.rows.has(doomed); attempt++) {
      // An earlier removal of the same name is still being wiped (or is PVE's): take the next name, not wait.
      if (attempt > 99)
        throw new AlreadyExistsError(`cannot rename ${name} for removal: ${deletionName(name)} and 99 more names are taken in VG ${this.vg.vg}`);
      doomed = deletionName(name, attempt);
    }
    if (!row.tags.some((t) => t.startsWith(TAG_PREFIX))) {
      await this.vg.mutating(() => lvm.changeTags(this.vg.vg, name, [REMOVING_TAG], [], this.vg.how));
      row.tags = [...row.tags, REMOVING_TAG];
    }
    await this.vg.renameLv(report, name, doomed);
    this.deferred.add(doomed);
    return doomed;
  }

  async deferredRemovals(vmid?: number): Promise<string[]> {
    // The last report only (no lvs here): the operation or listing that just ran keeps it current.
    const report = this.vg.lastRecent();
    for (const row of report?.rows.values() ?? []) {
      if (!isVolchainDeletion(row) || this.deferred.has(row.name) || !ofVm(row, vmid)) continue;
      // Left by a run that died (before its wipe began, or while wiping): unless a wiper works on it now.
      const progress = await readWipeProgress(this.wipeDir, row.name);
      if (!progress || !wiperAlive(progress)) this.deferred.add(row.name);
    }
    const out = [...this.deferred].filter((name) => ofVm({ name, tags: report?.rows.get(name)?.tags ?? [] }, vmid));
    for (const name of out) this.deferred.delete(name);
    return out;
  }

  async finishRemovals(opts: FinishRemovalsOptions = {}): Promise<FinishRemovalsResult> {
    const report = await this.vg.refresh();
    const names = [...report.rows.values()]
      .filter((r) => isVolchainDeletion(r) && ofVm(r, opts.vmid) && (opts.layers === undefined || opts.layers.includes(r.name)))
      .map((r) => r.name);
    const out: FinishRemovalsResult = { finished: [], busy: [], waited: [] };
    const failures: { name: string; error: VolchainError }[] = [];
    for (const name of names) {
      try {
        await this.wipe(name, opts, out);
      } catch (err) {
        const error = asVolchainError(err);
        opts.log?.(`${name}: ${error.message}`);
        failures.push({ name, error });
      }
    }
    const first = failures[0];
    if (first) {
      throw new VolchainError(
        first.error.code,
        `could not finish removing ${failures.map((f) => `${f.name} (${f.error.message})`).join('; ')} in VG ${this.vg.vg}; ` +
          `the LV stays until 'volchain wipe' finishes it`,
        { cause: first.error },
      );
    }
    return out;
  }

  async pendingRemovals(): Promise<PendingRemoval[]> {
    const files = await listWipeProgress(this.wipeDir);
    let rows: lvm.LvRow[];
    try {
      rows = [...(await this.vg.refresh()).rows.values()].filter(isVolchainDeletion);
    } catch {
      // The VG cannot be read here (e.g. not on this host): what the progress files say is all there is.
      return files.filter((p) => p.vg === this.vg.vg).map((p) => this.toPending(p));
    }
    return rows.map((row) =>
      this.toPending(
        files.find((p) => p.lv === row.name),
        row,
      ),
    );
  }

  removalLog(): string {
    return join(this.wipeDir, 'wipe.log');
  }

  /** Zeroes and removes one `del-` LV under its wipe lock; with `wait`, also one another process holds. */
  private async wipe(name: string, opts: FinishRemovalsOptions, out: FinishRemovalsResult): Promise<void> {
    const lockPath = join(this.wipeDir, `${name}.lock`);
    let done: FinishedRemoval | undefined;
    const attempt = async (): Promise<boolean> =>
      (await withFileLock(lockPath, false, async (_waited, fd) => {
        done = await this.wipeLocked(name, fd, opts);
        return true;
      })) === true;
    if (await attempt()) {
      if (done) out.finished.push(done);
      return;
    }
    let seen = this.toPending(await readWipeProgress(this.wipeDir, name), { name, uuid: '', sizeBytes: 0, tags: [] });
    if (!opts.wait) {
      out.busy.push(seen);
      return;
    }
    // Another process wipes it: follow its progress until it lets go, then finish whatever it left (it died).
    for (;;) {
      await sleep(1000);
      if (await attempt()) break;
      const progress = await readWipeProgress(this.wipeDir, name);
      if (progress) {
        seen = this.toPending(progress);
        opts.onProgress?.(seen);
      }
    }
    if (done) out.finished.push(done);
    else out.waited.push({ ...seen, doneBytes: seen.totalBytes, state: 'waiting' });
  }

  private async wipeLocked(name: string, fd: number, opts: FinishRemovalsOptions): Promise<FinishedRemoval | undefined> {
    const dir = this.wipeDir;
    const vg = this.vg.vg;
    const report = await this.vg.refresh(); // whoever held the lock before may have changed the VG
    const row = report.rows.get(name);
    if (!row) await removeWipeProgress(dir, name); // finished by another process
    if (!row || !isVolchainDeletion(row)) return undefined;
    if (row.open) throw new LockedError(`${name} in VG ${vg} is open (in use): not wiping it`);
    let throughput: number | undefined;
    try {
      throughput = parseThroughput(this.vg.definition.options.saferemove_throughput);
    } catch (err) {
      throw new InvalidInputError(`storage '${this.vg.id}': ${asVolchainError(err).message}`);
    }
    const from = resumeOffset(await readWipeProgress(dir, name), row);
    const now = new Date().toISOString();
    const progress: WipeProgress = {
      lv: name,
      vg,
      storage: this.vg.id,
      uuid: row.uuid,
      totalBytes: row.sizeBytes,
      doneBytes: from,
      pid: process.pid,
      host: hostname(),
      startedAt: now,
      updatedAt: now,
    };
    await writeWipeProgress(dir, progress);
    opts.onProgress?.(this.toPending(progress, row));
    opts.log?.(
      `zeroing ${name} in VG ${vg} (${row.sizeBytes} bytes${from > 0 ? `, continuing at ${from}` : ''}` +
        `${throughput !== undefined ? `, at most ${throughput} bytes/s` : ''})`,
    );
    if (from < row.sizeBytes) {
      await this.vg.activateRows(report, [row]);
      const path = this.vg.path(name);
      const started = Date.now();
      for (const chunk of planChunks(row.sizeBytes, from, chunkSizeFor(throughput))) {
        // The zeroing command gets the lock's descriptor: if we die, the lock stays until it ends too.
        progress.method = await lvm.zeroRange(path, chunk.offset, chunk.length, {
          shareFd: fd,
          ...(progress.method === 'dd' ? { prefer: 'dd' as const } : {}),
        });
        // Recorded only once on stable storage, so that a resumed wipe never skips a range.
        await lvm.flushDevice(path);
        progress.doneBytes = chunk.offset + chunk.length;
        progress.updatedAt = new Date().toISOString();
        await writeWipeProgress(dir, progress);
        opts.onProgress?.(this.toPending(progress, row));
        this.crashPoint('wipe-chunk');
        const pause = throttleDelayMs(progress.doneBytes - from, Date.now() - started, throughput);
        if (pause > 0 && progress.doneBytes < row.sizeBytes) await sleep(pause);
      }
    }
    this.crashPoint('wipe-zeroed');
    await this.vg.dropLv(name);
    await removeWipeProgress(dir, name);
    opts.log?.(`removed ${name} from VG ${vg}${progress.method ? ` (zeroed with ${progress.method})` : ''}`);
    return { storage: this.vg.id, layer: name, vmid: vmidsOfLv(row)[0] ?? null, bytes: row.sizeBytes, resumedFromBytes: from };
  }

  /** A removal as status shows it: the LV (when known) with what its progress file says about it. */
  private toPending(progress: WipeProgress | undefined, row?: { name: string; uuid: string; sizeBytes: number; tags: readonly string[] }): PendingRemoval {
    const name = row?.name ?? progress?.lv ?? '';
    const alive = progress !== undefined && wiperAlive(progress);
    // A file about an earlier LV of the same name says nothing about this one, unless its wiper runs now.
    const p = progress && (row === undefined || row.uuid === '' || progress.uuid === row.uuid || alive) ? progress : undefined;
    return {
      storage: this.vg.id,
      layer: name,
      path: this.vg.path(name),
      vmid: vmidsOfLv({ name, tags: row?.tags ?? [] })[0] ?? null,
      totalBytes: row && row.sizeBytes > 0 ? row.sizeBytes : (p?.totalBytes ?? 0),
      doneBytes: p?.doneBytes ?? 0,
      state: alive ? 'running' : 'waiting',
      pid: p?.pid ?? null,
      host: p?.host ?? null,
      startedAt: p?.startedAt ?? null,
      updatedAt: p?.updatedAt ?? null,
    };
  }
}
