/**
 * saferemove's wipe of `del-` LVs, the parts that need no LVM: how the zeroing is cut into chunks, how fast
 * it may go (PVE's `saferemove_throughput`), and the small progress file a wiper keeps per LV so that
 * `volchain status` can show it and a wipe that was killed continues where it stopped.
 *
 * The progress file `<lv>.json` lives next to the LV's wipe lock in `<state root>/.wipe/<vg>/` (keyed by the
 * VG, not the storage: two storage entries naming one VG must not wipe one LV twice). It is written after
 * each chunk, and only after that chunk was flushed to the device, so `doneBytes` never claims more than is
 * really zeroed; it names the LV's uuid, and a wipe continues from `doneBytes` only for that very LV.
 */
import { randomUUID } from 'node:crypto';
import { readdir, readFile, rename, rm, writeFile, mkdir } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { InvalidInputError } from '../../errors.js';

const MiB = 1024 * 1024;
/** Chunk of one `blkdiscard --zeroout` call without a throughput limit (PVE zeroes in 32 MiB steps). */
export const DEFAULT_WIPE_CHUNK_BYTES = 128 * MiB;

/** What a wiper records about the LV it zeroes. */
export interface WipeProgress {
  lv: string;
  vg: string;
  storage: string;
  /** The LV's uuid: progress is only ever resumed on the same LV. */
  uuid: string;
  totalBytes: number;
  /** Bytes from the start of the LV that are zeroed and flushed. */
  doneBytes: number;
  pid: number;
  host: string;
  startedAt: string;
  updatedAt: string;
  method?: 'blkdiscard' | 'dd';
}

export interface Chunk {
  offset: number;
  length: number;
}

/** The ranges that zero `[fromBytes, totalBytes)` in chunks of `chunkBytes` (the last may be shorter). */
export function planChunks(totalBytes: number, fromBytes: number, chunkBytes: number): Chunk[] {
  for (const [what, n] of [
    ['total', totalBytes],
    ['start', fromBytes],
    ['chunk', chunkBytes],
  ] as const) {
    if (!Number.isSafeInteger(n) || n < 0 || n % 512 !== 0) throw new InvalidInputError(`wipe ${what} ${n} is not a multiple of 512 bytes`);
  }
  if (chunkBytes === 0) throw new InvalidInputError('wipe chunk size must not be 0');
  const out: Chunk[] = [];
  for (let offset = Math.min(fromBytes, totalBytes); offset < totalBytes; offset += chunkBytes) {
    out.push({ offset, length: Math.min(chunkBytes, totalBytes - offset) });
  }
  return out;
}

/**
 * PVE's `saferemove_throughput`: bytes per second, optionally with `k`, `m` or `g` (powers of 1024), as cstream's
 * `-t` took it (a negative value, PVE's old default `-10485760`, limits by its absolute value). undefined for
 * no limit (absent or 0).
 */
export function parseThroughput(value: string | undefined): number | undefined {
  if (value === undefined || value.trim() === '') return undefined;
  const m = /^(-?\d+)([kmg])?$/i.exec(value.trim());
  if (!m) throw new InvalidInputError(`saferemove_throughput must be bytes per second with an optional k, m or g, got '${value}'`);
  const units: Partial<Record<string, number>> = { k: 1024, m: MiB, g: 1024 * MiB };
  const unit = units[(m[2] ?? '').toLowerCase()] ?? 1;
  const bytes = Math.abs(Number(m[1])) * unit;
  if (!Number.isSafeInteger(bytes)) throw new InvalidInputError(`saferemove_throughput '${value}' is too large`);
  return bytes === 0 ? undefined : bytes;
}

/** Chunk size for a throughput limit: about one second of it (so progress moves), 1 MiB to the default. */
export function chunkSizeFor(throughput: number | undefined): number {
  if (throughput === undefined) return DEFAULT_WIPE_CHUNK_BYTES;
  return Math.min(DEFAULT_WIPE_CHUNK_BYTES, Math.max(MiB, Math.floor(throughput / MiB) * MiB));
}

/** Milliseconds to pause so that `bytes` done since `elapsedMs` ago stay within `throughput` per second. */
export function throttleDelayMs(bytes: number, elapsedMs: number, throughput: number | undefined): number {
  if (throughput === undefined) return 0;
  return Math.max(0, Math.ceil((bytes / throughput) * 1000 - elapsedMs));
}

/** Where a wipe starts: the recorded progress when it is about this very LV (same uuid and size), else 0. */
export function resumeOffset(progress: WipeProgress | undefined, lv: { uuid: string; sizeBytes: number }): number {
  if (!progress || progress.uuid !== lv.uuid || progress.totalBytes !== lv.sizeBytes) return 0;
  return progress.doneBytes;
}

/** A progress file's content, or undefined when it is not one (torn, foreign, inconsistent). */
export function parseWipeProgress(text: string): WipeProgress | undefined {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof v !== 'object' || v === null) return undefined;
  const o = v as Record<string, unknown>;
  const str = (k: string): boolean => typeof o[k] === 'string' && o[k] !== '';
  const count = (k: string): boolean => Number.isSafeInteger(o[k]) && (o[k] as number) >= 0;
  if (!['lv', 'vg', 'storage', 'uuid', 'host', 'startedAt', 'updatedAt'].every(str)) return undefined;
  if (!['totalBytes', 'doneBytes', 'pid'].every(count)) return undefined;
  if ((o.doneBytes as number) > (o.totalBytes as number)) return undefined;
  if (o.method !== undefined && o.method !== 'blkdiscard' && o.method !== 'dd') return undefined;
  const p: WipeProgress = {
    lv: o.lv as string,
    vg: o.vg as string,
    storage: o.storage as string,
    uuid: o.uuid as string,
    totalBytes: o.totalBytes as number,
    doneBytes: o.doneBytes as number,
    pid: o.pid as number,
    host: o.host as string,
    startedAt: o.startedAt as string,
    updatedAt: o.updatedAt as string,
  };
  if (o.method !== undefined) p.method = o.method;
  return p;
}

/** True while the wiper that wrote `p` still runs (same host, pid alive). */
export function wiperAlive(p: Pick<WipeProgress, 'pid' | 'host'>): boolean {
  if (p.host !== hostname() || p.pid <= 0) return false;
  try {
    process.kill(p.pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function progressFile(dir: string, lv: string): string {
  return join(dir, `${lv}.json`);
}

export async function readWipeProgress(dir: string, lv: string): Promise<WipeProgress | undefined> {
  try {
    const p = parseWipeProgress(await readFile(progressFile(dir, lv), 'utf8'));
    return p?.lv === lv ? p : undefined;
  } catch {
    return undefined;
  }
}

/** Every progress file in `dir` (unreadable ones skipped). */
export async function listWipeProgress(dir: string): Promise<WipeProgress[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const out: WipeProgress[] = [];
  for (const name of names.filter((n) => n.endsWith('.json')).sort()) {
    const p = await readWipeProgress(dir, name.slice(0, -'.json'.length));
    if (p) out.push(p);
  }
  return out;
}

/** Replaces the progress file whole (temp file, rename): a reader never sees half of it. */
export async function writeWipeProgress(dir: string, p: WipeProgress): Promise<void> {
  await mkdir(dir, { recursive: true });
  const tmp = join(dir, `.${p.lv}.${randomUUID()}.tmp`);
  await writeFile(tmp, JSON.stringify(p) + '\n');
  await rename(tmp, progressFile(dir, p.lv));
}

export async function removeWipeProgress(dir: string, lv: string): Promise<void> {
  await rm(progressFile(dir, lv), { force: true });
}
