/**
 * Journal records as JSON files in a directory (dir storage: `<path>/.volchain/journal`, on the storage
 * itself, so another host that mounts a shared storage sees them). Each write is durable: temp file, fsync,
 * rename, fsync of the directory. On a full file system a reserve file (reserve.ts) gives the write its room.
 *
 * The directory is data anyone with access may have damaged: a file that is not a valid record (bad JSON, a
 * truncated write by another tool, a wrong shape) is renamed `<name>.bad` beside it and skipped, never
 * deleted, so that one bad file does not stop every command on the storage; `status` names it.
 */
import { link, mkdir, open, readdir, readFile, rename, rm, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { NoSpaceError } from '../errors.js';
import type { JournalLeftover, JournalRecord, JournalStore, ListJournalOptions } from './record.js';
import { ensureReserve, isNoSpace, releaseReserve, reservePath } from './reserve.js';
import { journalRecordProblem } from './validate.js';

const TEMP_SUFFIX = '.json.tmp';
const BAD_SUFFIX = '.bad';

export class FileJournalStore implements JournalStore {
  constructor(readonly location: string) {}

  async save(record: JournalRecord): Promise<void> {
    try {
      await this.write(record);
    } catch (err) {
      if (!isNoSpace(err)) throw err;
      // Full: the reserve's blocks become free, and the write gets them. Nothing was changed by the failed
      // attempt (write() removes its temp file), so trying again is the same write.
      if (!(await releaseReserve(this.reserve))) throw this.noSpace(err);
      try {
        await this.write(record);
      } catch (again) {
        throw isNoSpace(again) ? this.noSpace(again) : again;
      }
    }
    await ensureReserve(this.reserve);
  }

  async remove(record: JournalRecord): Promise<void> {
    try {
      await rm(this.pathOf(record.id));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    await fsyncDir(this.location);
  }

  async list(opts: ListJournalOptions = {}): Promise<JournalRecord[]> {
    // Every command that may change a VM lists its journals first (the refusal over unfinished operations):
    // that is where a storage gets its reserve before it can fill up, also one made before reserves existed.
    await this.makeRoom();
    const records: JournalRecord[] = [];
    for (const name of (await this.names()).filter((n) => n.endsWith('.json')).sort()) {
      const record = await this.read(name);
      if (record && (opts.vmid === undefined || record.plan.vmid === opts.vmid)) records.push(record);
    }
    return records;
  }

  /** Drops temp files of VM `vmid`'s journal writes a crash interrupted (under that VM's lock). */
  async sweep(vmid: number, dryRun: boolean): Promise<string[]> {
    const out: string[] = [];
    for (const leftover of await this.leftovers()) {
      if (leftover.kind !== 'temp' || leftover.vmid !== vmid) continue;
      // Only a writer holding the VM's lock writes this temp file, and we hold that lock: it is a crash's.
      // The record's previous version (or none, if the crash hit its first write) is what counts.
      out.push(`temp file ${leftover.path} of an interrupted journal write`);
      if (!dryRun) await rm(leftover.path, { force: true });
    }
    if (out.length > 0 && !dryRun) await fsyncDir(this.location);
    return out;
  }

  async containerVmids(): Promise<number[]> {
    const vmids = (await this.leftovers()).filter((l) => l.kind === 'temp').map((l) => l.vmid);
    return [...new Set(vmids.filter((v): v is number => v !== null))];
  }

  async leftovers(): Promise<JournalLeftover[]> {
    const out: JournalLeftover[] = [];
    for (const name of (await this.names()).sort()) {
      const kind = name.endsWith(BAD_SUFFIX) ? 'set-aside' : name.endsWith(TEMP_SUFFIX) ? 'temp' : undefined;
      if (kind) out.push({ path: join(this.location, name), kind, vmid: vmidOfName(name) });
    }
    return out;
  }

  private get reserve(): string {
    return reservePath(this.location);
  }

  /** The journal directory and the reserve beside it, best effort (a read-only storage can still be listed). */
  private async makeRoom(): Promise<void> {
    try {
      await mkdir(this.location, { recursive: true });
    } catch {
      return;
    }
    await ensureReserve(this.reserve);
  }

  private async write(record: JournalRecord): Promise<void> {
    await makeDir(this.location);
    const path = this.pathOf(record.id);
    const tmp = `${path}.tmp`;
    const fh = await open(tmp, 'w');
    try {
      await fh.writeFile(JSON.stringify(record, null, 2) + '\n');
      await fh.sync();
    } catch (err) {
      // The previous version of the record stays valid; don't leave a torn copy beside it.
      await fh.close();
      await rm(tmp, { force: true });
      throw err;
    }
    await fh.close();
    // Crash here: `<id>.json.tmp` stays beside the previous version; status names it, repair removes it.
    await rename(tmp, path);
    await fsyncDir(this.location);
  }

  /** A record file's record, or undefined when it is gone or was set aside. */
  private async read(name: string): Promise<JournalRecord | undefined> {
    const path = join(this.location, name);
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return undefined; // finished while we listed
      if (code !== 'EISDIR') throw err;
      await this.setAside(path);
      return undefined;
    }
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      value = undefined;
    }
    // A record must also be the one its name says: remove() finds it by id, and a record it cannot find
    // would come back after every repair.
    const problem = value === undefined ? 'not JSON' : journalRecordProblem(value);
    if (problem === undefined && (value as JournalRecord).id === name.slice(0, -'.json'.length)) return value as JournalRecord;
    await this.setAside(path);
    return undefined;
  }

  /**
   * Renames a file that is not a usable record to `<name>.bad` (`<name>.<n>.bad` when that exists), never
   * over another file. Crash states: link before unlink, so for a moment both names exist, and a crash
   * there leaves the original to be set aside again next time (as `<name>.1.bad`). A file another process
   * set aside (or removed) first is simply gone.
   */
  private async setAside(path: string): Promise<void> {
    for (let n = 0; n < 100; n++) {
      const target = n === 0 ? `${path}${BAD_SUFFIX}` : `${path}.${n}${BAD_SUFFIX}`;
      try {
        await link(path, target);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'EEXIST') continue;
        if (code === 'ENOENT') return;
        if (code === 'EPERM' && n === 0) {
          // A directory (no hard links to those): it can only be renamed, onto a name nothing holds.
          await rename(path, target).catch(() => undefined);
          return;
        }
        throw err;
      }
      await unlink(path).catch((e: unknown) => {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      });
      await fsyncDir(this.location);
      return;
    }
  }

  private async names(): Promise<string[]> {
    try {
      return await readdir(this.location);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
  }

  private noSpace(err: unknown): NoSpaceError {
    return new NoSpaceError(
      `no space left on the storage for the operation journal in ${this.location} (${(err as Error).message}); ` +
        'free some space on that file system (files volchain does not manage) and try again',
    );
  }

  private pathOf(id: string): string {
    return join(this.location, `${id}.json`);
  }
}

/** The VM id a journal file's name starts with (`<vmid>-<time>-<random>.json...`), if any. */
function vmidOfName(name: string): number | null {
  const m = /^([1-9][0-9]{2,8})-/.exec(name);
  return m ? Number(m[1]) : null;
}

/**
 * Creates the journal directory one level at a time, so that each failure keeps its own errno (on a full
 * file system a recursive mkdir reported ENOENT for the journal directory, which read as "not found").
 */
async function makeDir(dir: string): Promise<void> {
  for (const d of [dirname(dir), dir]) {
    try {
      await mkdir(d);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EEXIST') continue;
      if (code === 'ENOENT' && d === dirname(dir)) {
        await mkdir(d, { recursive: true });
        continue;
      }
      throw err;
    }
  }
}

async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
