/**
 * The operation journal: one JSON file per running operation in the storage's state directory, rewritten
 * durably (write temp, fsync, rename, fsync directory) before and after each step, so that after a crash
 * `repair` knows exactly which step was running. It lives on the storage itself, so another host that
 * mounts a shared storage sees it too.
 */
import { randomUUID } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, rm } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { Plan } from './plan.js';

export interface JournalRecord {
  id: string;
  storage: string;
  host: string;
  pid: number;
  startedAt: string;
  plan: Plan;
  /** Steps finished, in order. */
  completedSteps: number;
  /** Index of the step started but not yet known to be finished, if any. */
  runningStep: number | null;
  /** Set when the executor stopped on an error it could not undo. */
  error?: string;
  /** Shared by the journals of one VM-wide operation (one per disk). */
  group?: string;
}

export function journalDir(stateDir: string): string {
  return join(stateDir, 'journal');
}

export class Journal {
  private constructor(
    private readonly dir: string,
    readonly record: JournalRecord,
  ) {}

  static async begin(stateDir: string, storage: string, plan: Plan, group?: string): Promise<Journal> {
    const dir = journalDir(stateDir);
    await mkdir(dir, { recursive: true });
    const record: JournalRecord = {
      id: `${plan.vmid}-${Date.now()}-${randomUUID().slice(0, 8)}`,
      storage,
      host: hostname(),
      pid: process.pid,
      startedAt: new Date().toISOString(),
      plan,
      completedSteps: 0,
      runningStep: null,
      ...(group !== undefined ? { group } : {}),
    };
    const journal = new Journal(dir, record);
    await journal.persist();
    return journal;
  }

  get path(): string {
    return join(this.dir, `${this.record.id}.json`);
  }

  async stepStarted(index: number): Promise<void> {
    this.record.runningStep = index;
    await this.persist();
  }

  async stepDone(index: number): Promise<void> {
    this.record.runningStep = null;
    this.record.completedSteps = index + 1;
    await this.persist();
  }

  async fail(message: string): Promise<void> {
    this.record.error = message;
    await this.persist();
  }

  async finish(): Promise<void> {
    await removeJournal(this.dir, this.record.id);
  }

  private async persist(): Promise<void> {
    const tmp = `${this.path}.tmp`;
    const fh = await open(tmp, 'w');
    try {
      await fh.writeFile(JSON.stringify(this.record, null, 2) + '\n');
      await fh.sync();
    } catch (err) {
      // The previous version of the journal stays valid; don't leave a torn copy beside it.
      await fh.close();
      await rm(tmp, { force: true });
      throw err;
    }
    await fh.close();
    await rename(tmp, this.path);
    await fsyncDir(this.dir);
  }
}

export async function removeJournal(dir: string, id: string): Promise<void> {
  await rm(join(dir, `${id}.json`), { force: true });
  await fsyncDir(dir);
}

async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Unfinished operations recorded in a storage's state directory (optionally only those of one VM). */
export async function pendingOperations(stateDir: string, vmid?: number): Promise<JournalRecord[]> {
  const dir = journalDir(stateDir);
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const records: JournalRecord[] = [];
  for (const name of names.filter((n) => n.endsWith('.json')).sort()) {
    const record = JSON.parse(await readFile(join(dir, name), 'utf8')) as JournalRecord;
    if (vmid === undefined || record.plan.vmid === vmid) records.push(record);
  }
  return records;
}
