/**
 * Helpers for the real-data acceptance tests: temporary dir storages, the CLI as a subprocess, and qemu-io /
 * qemu-img probes that prove what each layer holds. Nothing here is faked: every image is a real qcow2 (or
 * raw) file, written and read by QEMU's own tools.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, mkdtemp, open, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseStorageConfig } from '../../src/config/index.js';
import { Volchain } from '../../src/engine/volchain.js';

/** Repository root (this file runs as dist/test/integration/helpers.js). */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
export const BIN = join(ROOT, 'bin', 'volchain.js');

export const KiB = 1024;
export const MiB = 1024 * KiB;
/** Granularity of every pattern the tests write: a 64 KiB block (half a qcow2 cluster). */
export const BLOCK = 64 * KiB;

// ---- storages -------------------------------------------------------------------------------------------

export interface TestStorage {
  /** Temporary directory holding the config file and the storage. */
  root: string;
  /** The storage's `path` (images live in <path>/images/<vmid>/). */
  path: string;
  cfg: string;
  id: string;
  chain: boolean;
  vc: Volchain;
  volid(vmid: number, name: string): string;
  /** File of a volume's current layer, or of snapshot `snap`'s layer. */
  layer(vmid: number, name: string, snap?: string): string;
  cleanup(): Promise<void>;
}

/**
 * A fresh dir storage in a temporary directory. `chain` (default true) sets snapshot-as-volume-chain 1;
 * without it, snapshots are qcow2 internal snapshots. Preallocation is left at the dir default (metadata).
 */
export async function makeStorage(opts: { chain?: boolean; id?: string } = {}): Promise<TestStorage> {
  const chain = opts.chain ?? true;
  // Storage ids need at least two characters (PVE parse_id), so the brief's `t` became `tst`.
  const id = opts.id ?? 'tst';
  const root = await mkdtemp(join(tmpdir(), 'volchain-it-'));
  const path = join(root, 'store');
  const cfg = join(root, 'storage.cfg');
  const text = [`dir: ${id}`, `\tpath ${path}`, '\tcontent images', ...(chain ? ['\tsnapshot-as-volume-chain 1'] : []), ''].join('\n');
  await writeFile(cfg, text);
  const vc = new Volchain(parseStorageConfig(text, cfg));
  return {
    root,
    path,
    cfg,
    id,
    chain,
    vc,
    volid: (vmid, name) => `${id}:${vmid}/${name}`,
    layer: (vmid, name, snap) => join(path, 'images', String(vmid), snap === undefined ? name : `snap-${snap}-${name}`),
    cleanup: async () => {
      // VOLCHAIN_IT_KEEP=1 keeps the storage for a post-mortem look.
      if (process.env.VOLCHAIN_IT_KEEP === '1') console.log(`# kept test storage ${root}`);
      else await rm(root, { recursive: true, force: true });
    },
  };
}

// ---- subprocesses ---------------------------------------------------------------------------------------

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command (argv, no shell) and collects its output; never rejects on a non-zero exit. */
export function runCommand(command: string, args: readonly string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<RunResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(command, args, { env: opts.env ?? process.env, cwd: opts.cwd ?? ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      resolvePromise({
        code: code ?? (signal ? 128 : 1),
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
      });
    });
  });
}

/** Environment for the CLI: the test hooks are cleared unless a test sets them explicitly. */
function cliEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, LC_ALL: 'C' };
  for (const key of ['VOLCHAIN_FAIL_AT', 'VOLCHAIN_CRASH_AT', 'VOLCHAIN_CONFIG', 'VOLCHAIN_DEBUG']) delete env[key];
  return { ...env, ...extra };
}

/** `node bin/volchain.js --config <cfg> ...args`. */
export function cli(storage: Pick<TestStorage, 'cfg'>, args: readonly string[], opts: { env?: Record<string, string> } = {}): Promise<RunResult> {
  return runCommand(process.execPath, [BIN, '--config', storage.cfg, ...args], { env: cliEnv(opts.env) });
}

/** The CLI call must succeed; returns stdout. */
export async function cliOk(storage: Pick<TestStorage, 'cfg'>, args: readonly string[], opts: { env?: Record<string, string> } = {}): Promise<string> {
  const r = await cli(storage, args, opts);
  assert.equal(r.code, 0, `volchain ${args.join(' ')} failed with ${r.code}: ${r.stderr}${r.stdout}`);
  return r.stdout;
}

/** The CLI call with --json must succeed; returns the parsed document. */
export async function cliJson<T = Record<string, unknown>>(storage: Pick<TestStorage, 'cfg'>, args: readonly string[]): Promise<T> {
  const out = await cliOk(storage, [...args, '--json']);
  try {
    return JSON.parse(out) as T;
  } catch (err) {
    assert.fail(`volchain ${args.join(' ')} --json printed no JSON: ${String(err)}\n${out}`);
  }
}

/**
 * The CLI call must fail with a one-line message on stderr (`volchain: ...`), nothing on stdout; `code` is the
 * expected exit status when given, `match` a pattern the message must contain. Returns the message.
 */
export async function cliFails(
  storage: Pick<TestStorage, 'cfg'>,
  args: readonly string[],
  expect: { code?: number; match?: RegExp; env?: Record<string, string> } = {},
): Promise<string> {
  const r = await cli(storage, args, expect.env ? { env: expect.env } : {});
  const what = `volchain ${args.join(' ')}`;
  assert.notEqual(r.code, 0, `${what} should have failed but exited 0: ${r.stdout}`);
  if (expect.code !== undefined) assert.equal(r.code, expect.code, `${what}: exit status (stderr: ${r.stderr})`);
  const lines = r.stderr.split('\n').filter((l) => l.length > 0);
  assert.equal(lines.length, 1, `${what}: expected one line on stderr, got ${JSON.stringify(r.stderr)}`);
  const line = lines[0] ?? '';
  assert.match(line, /^volchain: \S/, `${what}: stderr line`);
  assert.equal(r.stdout, '', `${what}: nothing on stdout after an error`);
  if (expect.match) assert.match(line, expect.match, `${what}: message`);
  return line;
}

async function qemu(tool: 'qemu-io' | 'qemu-img', args: readonly string[]): Promise<RunResult> {
  return runCommand(tool, args, { env: { ...process.env, LC_ALL: 'C' } });
}

// ---- patterns -------------------------------------------------------------------------------------------

const hex = (byte: number): string => `0x${byte.toString(16).padStart(2, '0')}`;

/** Writes `len` bytes of `byte` at `offset` through the qcow2 driver (the chain stays intact). */
export async function writePattern(path: string, byte: number, offset: number, len: number, format: 'qcow2' | 'raw' = 'qcow2'): Promise<void> {
  const r = await qemu('qemu-io', ['-f', format, '-c', `write -P ${hex(byte)} ${offset} ${len}`, path]);
  assert.equal(r.code, 0, `qemu-io write ${hex(byte)} ${offset}+${len} on ${path}: ${r.stderr}${r.stdout}`);
  assert.doesNotMatch(r.stdout + r.stderr, /failed|error/i, `qemu-io write on ${path}`);
}

/** Several writes into one image in one qemu-io run. */
export async function writePatterns(path: string, writes: readonly Expect[], format: 'qcow2' | 'raw' = 'qcow2'): Promise<void> {
  if (writes.length === 0) return;
  const args = ['-f', format];
  for (const w of writes) args.push('-c', `write -P ${hex(w.byte)} ${w.offset} ${w.len}`);
  const r = await qemu('qemu-io', [...args, path]);
  const done = r.stdout.split('\n').filter((l) => /^wrote \d+\/\d+ bytes at offset \d+$/.test(l)).length;
  assert.ok(r.code === 0 && done === writes.length, `qemu-io writes on ${path}: ${done}/${writes.length} done, exit ${r.code}: ${r.stderr}`);
}

export interface Expect {
  byte: number;
  offset: number;
  len: number;
}

/**
 * Reads the image read-only (with its backing chain, i.e. the state this layer stands for) and verifies every
 * expected range. Fails on a non-zero exit or any "Pattern verification failed".
 */
export async function assertPatterns(path: string, expects: readonly Expect[], context = '', format: 'qcow2' | 'raw' = 'qcow2'): Promise<void> {
  await assertManyPatterns([{ path, expects, context, format }]);
}

/**
 * Like assertPatterns for many images at once: one qemu-io process opens each image read-only in turn
 * (`open -r -o driver=<fmt>`, so nothing is probed), reads its ranges and closes it. Output is matched back to
 * the reads in order: qemu-io prints "read N/N bytes at offset X" after every completed read, preceded by
 * "Pattern verification failed ..." when the data differs.
 */
export async function assertManyPatterns(
  items: readonly { path: string; expects: readonly Expect[]; context: string; format?: 'qcow2' | 'raw' }[],
): Promise<void> {
  const args: string[] = [];
  const reads: { item: number; expect: Expect }[] = [];
  items.forEach((it, item) => {
    if (it.path.includes(',') || /^\s|\s$/.test(it.path)) throw new Error(`cannot pass ${it.path} to qemu-io's open command`);
    args.push('-c', `open -r -o driver=${it.format ?? 'qcow2'} ${it.path}`);
    for (const e of chunked(it.expects)) {
      args.push('-c', `read -P ${hex(e.byte)} ${e.offset} ${e.len}`);
      reads.push({ item, expect: e });
    }
    args.push('-c', 'close');
  });
  if (reads.length === 0) return;
  const r = await qemu('qemu-io', args);
  const failed = new Set<number>();
  let index = 0;
  for (const line of r.stdout.split('\n')) {
    if (line.startsWith('Pattern verification failed')) failed.add(index);
    else if (/^read \d+\/\d+ bytes at offset \d+$/.test(line)) index++;
  }
  const problems: string[] = [];
  for (const i of [...failed].sort((a, b) => a - b)) {
    const read = reads[i];
    if (!read) continue;
    const it = items[read.item];
    problems.push(
      `${it?.context ?? ''}: ${it?.path ?? ''} lacks ${hex(read.expect.byte)} at blocks ${read.expect.offset / BLOCK}..${(read.expect.offset + read.expect.len) / BLOCK - 1}`,
    );
  }
  if (index !== reads.length) {
    const stuck = reads[index];
    problems.push(
      `qemu-io completed ${index} of ${reads.length} reads (stopped in ${stuck ? (items[stuck.item]?.path ?? '') : '?'}): ${r.stderr.trim().split('\n').slice(0, 3).join(' | ')}`,
    );
  }
  if (problems.length > 0 || r.code !== 0 || r.stderr.trim() !== '') {
    assert.fail(
      `wrong data:\n  ${problems.join('\n  ')}\n  (qemu-io exit ${r.code}${r.stderr.trim() ? `, stderr: ${r.stderr.trim().split('\n')[0] ?? ''}` : ''})`,
    );
  }
}

/**
 * Splits reads into pieces of at most one block: qemu-io allocates a fresh buffer per read, and buffers above
 * glibc's mmap threshold (128 KiB) are new mappings every time, whose page faults made long reads ~3x slower.
 */
function chunked(expects: readonly Expect[]): Expect[] {
  const out: Expect[] = [];
  for (const e of expects) {
    for (let at = e.offset; at < e.offset + e.len; at += BLOCK) out.push({ byte: e.byte, offset: at, len: Math.min(BLOCK, e.offset + e.len - at) });
  }
  return out;
}

export async function assertPattern(path: string, byte: number, offset: number, len: number, format: 'qcow2' | 'raw' = 'qcow2'): Promise<void> {
  await assertPatterns(path, [{ byte, offset, len }], '', format);
}

/**
 * A disk's expected content as 64 KiB blocks: `blocks` maps block index to pattern byte, every other block of
 * the first `totalBlocks` must read as zeroes. Runs of equal bytes become one read.
 */
export function expectsFor(blocks: ReadonlyMap<number, number>, totalBlocks: number, blockSize = BLOCK): Expect[] {
  const out: Expect[] = [];
  for (let i = 0; i < totalBlocks;) {
    const byte = blocks.get(i) ?? 0;
    let j = i + 1;
    while (j < totalBlocks && (blocks.get(j) ?? 0) === byte) j++;
    out.push({ byte, offset: i * blockSize, len: (j - i) * blockSize });
    i = j;
  }
  return out;
}

export async function assertBlocks(path: string, blocks: ReadonlyMap<number, number>, totalBlocks: number, context = ''): Promise<void> {
  await assertPatterns(path, expectsFor(blocks, totalBlocks), context);
}

// ---- structure ------------------------------------------------------------------------------------------

/** `qemu-img check -f qcow2` must exit 0 (no corruption, no leak). */
export async function checkClean(path: string): Promise<void> {
  const r = await qemu('qemu-img', ['check', '-f', 'qcow2', path]);
  assert.equal(r.code, 0, `qemu-img check ${path} exited ${r.code}: ${(r.stdout + r.stderr).trim()}`);
}

export interface ImageInfo {
  'virtual-size': number;
  format: string;
  'backing-filename'?: string;
  'backing-filename-format'?: string;
  'format-specific'?: { data?: { 'extended-l2'?: boolean; compat?: string } };
  'cluster-size'?: number;
}

/** `qemu-img info --output=json` of one file (no chain, no probing). */
export async function imageInfo(path: string, format: 'qcow2' | 'raw' = 'qcow2'): Promise<ImageInfo> {
  const r = await qemu('qemu-img', ['info', '-U', '-f', format, '--output=json', path]);
  assert.equal(r.code, 0, `qemu-img info ${path}: ${r.stderr}`);
  return JSON.parse(r.stdout) as ImageInfo;
}

/** Every file in <storage>/images/<any vmid>/ (or only images/<vmid>/): the qcow2 ones (by magic) must check clean. Returns how many. */
export async function checkAllLayers(storagePath: string, vmid?: number): Promise<number> {
  const files = (await listImageFiles(storagePath)).filter((f) => vmid === undefined || f.startsWith(join(storagePath, 'images', String(vmid), '/')));
  const qcow2: string[] = [];
  for (const file of files) {
    if (await isQcow2(file)) qcow2.push(file);
  }
  await inParallel(qcow2, 3, async (file) => {
    // A file with the same inode, size and mtime as when it last checked clean is the same clean file
    // (a rename keeps all three): checking it again proves nothing new and costs a process.
    const st = await stat(file, { bigint: true });
    const key = `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}`;
    if (cleanFiles.get(file) === key) return;
    await checkClean(file);
    cleanFiles.set(file, key);
  });
  return qcow2.length;
}

const cleanFiles = new Map<string, string>();

/** All regular files under <storage>/images/<vmid>/ (hidden temporaries included). */
export async function listImageFiles(storagePath: string): Promise<string[]> {
  const images = join(storagePath, 'images');
  let vmids: string[];
  try {
    vmids = await readdir(images);
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const vmid of vmids.sort()) {
    for (const name of (await readdir(join(images, vmid))).sort()) out.push(join(images, vmid, name));
  }
  return out;
}

async function isQcow2(file: string): Promise<boolean> {
  const fh = await open(file, 'r');
  try {
    const buf = Buffer.alloc(4);
    await fh.read(buf, 0, 4, 0);
    return buf.toString('latin1') === 'QFI\xfb';
  } finally {
    await fh.close();
  }
}

/** Runs `fn` over `items` with at most `limit` at a time. */
export async function inParallel<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const item = items[next++] as T;
      await fn(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

// ---- "nothing changed" ----------------------------------------------------------------------------------

export interface TreeEntry {
  path: string;
  type: 'file' | 'dir' | 'other';
  size: number;
  sha256: string;
}

/**
 * Full listing of `dir`: every entry (hidden ones too) with its type, size and the sha256 of its bytes.
 * Lock files (.volchain/locks/*.lock) are left out: taking a VM's lock may create its empty lock file, which
 * is the lock mechanism itself, not a change to any volume. The operation journal is included.
 */
export async function snapshotOf(dir: string): Promise<TreeEntry[]> {
  const out: TreeEntry[] = [];
  const walk = async (at: string): Promise<void> => {
    let names: string[];
    try {
      names = (await readdir(at)).sort();
    } catch {
      return;
    }
    for (const name of names) {
      const full = join(at, name);
      const rel = relative(dir, full);
      if (/^\.volchain\/locks\/[^/]+\.lock$/.test(rel)) continue;
      const st = await lstat(full);
      if (st.isDirectory()) {
        if (rel === '.volchain/locks') continue;
        out.push({ path: rel, type: 'dir', size: 0, sha256: '' });
        await walk(full);
      } else if (st.isFile()) {
        out.push({ path: rel, type: 'file', size: st.size, sha256: await sha256File(full) });
      } else {
        out.push({ path: rel, type: 'other', size: st.size, sha256: '' });
      }
    }
  };
  await walk(dir);
  return out;
}

function sha256File(path: string): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const hash = createHash('sha256');
    createReadStream(path)
      .on('data', (chunk) => hash.update(chunk))
      .on('error', reject)
      .on('end', () => resolvePromise(hash.digest('hex')));
  });
}

export function assertSameTree(before: readonly TreeEntry[], after: readonly TreeEntry[], context: string): void {
  const fmt = (e: TreeEntry): string => `${e.type} ${e.path} ${e.size} ${e.sha256.slice(0, 16)}`;
  assert.deepEqual(after.map(fmt), before.map(fmt), `${context}: the storage changed on disk`);
}

// ---- randomness -----------------------------------------------------------------------------------------

/** mulberry32: a tiny seeded PRNG, so a failing random run can be replayed from its printed seed. */
export function prng(seed: number): { next(): number; int(n: number): number; pick<T>(items: readonly T[]): T } {
  let a = seed >>> 0;
  const next = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number): number => Math.floor(next() * n);
  return { next, int, pick: (items) => items[int(items.length)] as (typeof items)[number] };
}

// ---- a model of one volume's snapshot tree --------------------------------------------------------------

export type Blocks = Map<number, number>;

/**
 * What a volume must hold: the pattern byte of each 64 KiB block of the current disk and of every snapshot,
 * and the tree (each snapshot's parent, and the snapshot the current layer continues from).
 */
export class ChainModel {
  current: Blocks = new Map();
  currentParent: string | null = null;
  readonly snaps = new Map<string, { blocks: Blocks; parent: string | null }>();

  write(block: number, byte: number, count = 1): void {
    for (let i = 0; i < count; i++) {
      if (byte === 0) this.current.delete(block + i);
      else this.current.set(block + i, byte);
    }
  }

  create(name: string): void {
    this.snaps.set(name, { blocks: new Map(this.current), parent: this.currentParent });
    this.currentParent = name;
  }

  /** Rollback keeps newer snapshots (a branch) unless `purgeNewer`, which drops every descendant of `name`. */
  rollback(name: string, purgeNewer = false): void {
    const target = this.get(name);
    if (purgeNewer) {
      const newer = [...this.snaps.keys()].filter((other) => this.ancestors(other).includes(name));
      for (const other of newer) this.snaps.delete(other);
    }
    this.current = new Map(target.blocks);
    this.currentParent = name;
  }

  delete(name: string): void {
    const { parent } = this.get(name);
    for (const snap of this.snaps.values()) if (snap.parent === name) snap.parent = parent;
    if (this.currentParent === name) this.currentParent = parent;
    this.snaps.delete(name);
  }

  /** Children of a snapshot, `current` standing for the current layer; sorted as the listing sorts them. */
  children(name: string): string[] {
    const out = [...this.snaps.entries()].filter(([, s]) => s.parent === name).map(([n]) => n);
    if (this.currentParent === name) out.push('current');
    return out;
  }

  names(): string[] {
    return [...this.snaps.keys()].sort();
  }

  get(name: string): { blocks: Blocks; parent: string | null } {
    const snap = this.snaps.get(name);
    if (!snap) throw new Error(`model has no snapshot ${name}`);
    return snap;
  }

  private ancestors(name: string): string[] {
    const out: string[] = [];
    for (let at = this.get(name).parent; at !== null; at = this.get(at).parent) out.push(at);
    return out;
  }
}

/**
 * Proves that a volume on a volume-chain storage matches `model`: the snapshot names and tree the library
 * lists, the files in images/<vmid> (nothing but the volume and its snapshot layers), every snapshot layer's
 * content and the current content (each read through its backing chain), `qemu-img check` on every file of
 * the VM, and no unfinished operation in the journal.
 */
export async function verifyVolume(
  s: TestStorage,
  vmid: number,
  name: string,
  model: ChainModel,
  totalBlocks: number,
  context: string,
  opts: { full?: boolean } = {},
): Promise<void> {
  const volid = s.volid(vmid, name);
  const listing = await s.vc.snapshotList(volid);
  const listed = [...listing.snapshots].sort((a, b) => (a.name < b.name ? -1 : 1));
  assert.deepEqual(
    listed.map((e) => e.name),
    model.names(),
    `${context}: snapshot names of ${volid}`,
  );
  assert.deepEqual(
    listed.map((e) => ({ name: e.name, parent: e.parent, children: [...e.children].sort() })),
    model.names().map((n) => ({ name: n, parent: model.get(n).parent, children: model.children(n).sort() })),
    `${context}: snapshot tree of ${volid}`,
  );
  assert.equal(listing.current.parent, model.currentParent, `${context}: parent of the current layer of ${volid}`);

  const dir = join(s.path, 'images', String(vmid));
  const files = (await readdir(dir)).filter((f) => f === name || f.endsWith(`-${name}`) || f.includes(`-${name}`)).sort();
  const expected = [name, ...model.names().map((n) => `snap-${n}-${name}`)].sort();
  assert.deepEqual(files, expected, `${context}: files of ${volid}`);

  // Content: every layer is read through its chain, unless neither it nor any layer below it changed since it
  // was last read with the same expectation. The chain is the one just asserted against the model (read
  // from the headers), and a file keeps device, inode, size and mtime only while nobody writes it (mtime
  // moves on every write or rename target; the reads before took far longer than the clock's granularity),
  // so an unchanged key means unchanged data. VOLCHAIN_IT_FULL=1 or `full` reads everything regardless.
  const full = opts.full === true || process.env.VOLCHAIN_IT_FULL === '1';
  const ancestry = (snap: string | null): string[] => {
    const out: string[] = [];
    for (let at = snap; at !== null; at = model.get(at).parent) out.push(s.layer(vmid, name, at));
    return out;
  };
  const items = [
    { path: s.layer(vmid, name), blocks: model.current, chain: [s.layer(vmid, name), ...ancestry(model.currentParent)], what: 'current' },
    ...model.names().map((n) => ({ path: s.layer(vmid, name, n), blocks: model.get(n).blocks, chain: ancestry(n), what: `snapshot ${n}` })),
  ];
  const toRead: { path: string; expects: Expect[]; context: string; key: string }[] = [];
  for (const item of items) {
    const expects = expectsFor(item.blocks, totalBlocks);
    const stats = await Promise.all(item.chain.map((p) => stat(p, { bigint: true })));
    const key = JSON.stringify([expects, item.chain, stats.map((st) => `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}`)]);
    if (!full && verifiedLayers.get(item.path) === key) continue;
    toRead.push({ path: item.path, expects, context: `${context}: ${item.what} of ${volid}`, key });
  }
  await assertManyPatterns(toRead);
  for (const r of toRead) verifiedLayers.set(r.path, r.key);
  await checkAllLayers(s.path, vmid);
  assert.deepEqual(await s.vc.status(), [], `${context}: no unfinished operation`);
}

/** Layers whose content was proven, with the key (expectation + chain files' identity) it was proven for. */
const verifiedLayers = new Map<string, string>();
