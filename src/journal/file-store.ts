/**
 * Journal records as JSON files in a directory (dir storage: `<path>/.volchain/journal`, on the storage
 * itself, so another host that mounts a shared storage sees them). Each write is durable: temp file, fsync,
 * rename, fsync of the directory.
 */
import { mkdir, open, readdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { JournalRecord, JournalStore, ListJournalOptions } from './record.js';

export class FileJournalStore implements JournalStore {
  constructor(readonly location: string) {}

  async save(record: JournalRecord): Promise<void> {
    await mkdir(this.location, { recursive: true });
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
    await rename(tmp, path);
    await fsyncDir(this.location);
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
    let names: string[];
    try {
      names = await readdir(this.location);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    const records: JournalRecord[] = [];
    for (const name of names.filter((n) => n.endsWith('.json')).sort()) {
      let text: string;
      try {
        text = await readFile(join(this.location, name), 'utf8');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue; // finished while we listed
        throw err;
      }
      const record = JSON.parse(text) as JournalRecord;
      if (opts.vmid === undefined || record.plan.vmid === opts.vmid) records.push(record);
    }
    return records;
  }

  private pathOf(id: string): string {
    return join(this.location, `${id}.json`);
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
