/**
 * Helpers for the live tests (starting the VM: live-vm.ts): a guest writer that keeps writing patterns through
 * HMP `qemu-io -d <disk>` while operations run, a model of what every disk held after each write, and an
 * independent check that QEMU's view and the headers on disk agree.
 *
 * The writer numbers its writes; QEMU serves them one at a time, so a snapshot taken while it writes holds
 * exactly the first j writes for some j between the writes that had finished before the operation began and
 * those that had begun before it ended. `snapshotInstants` finds every j the layer's content allows; for a
 * VM-wide snapshot the sets of all disks must share a j: one instant for every disk.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile, readdir, readlink, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { queryBlock, queryJobs, type QmpClient } from '../../src/qmp/index.js';
import { guestWrite } from './qemu-harness.js';
import { BIN, BLOCK, assertManyPatterns, expectsFor, imageInfo, prng, runCommand, type Blocks, type TestStorage } from './helpers.js';
import type { LiveVm } from './live-vm.js';

// ---- the guest writer -----------------------------------------------------------------------------------------

export interface WriteRecord {
  seq: number;
  disk: number;
  block: number;
  /** Blocks written from `block` on. */
  span: number;
  pattern: number;
  startMs: number;
  endMs: number;
}

/** A window of time around an operation, and the writes that may or may not have happened before its instant. */
export interface Window {
  /** Writes [0, lo) had finished when the operation began. */
  lo: number;
  /** Writes [hi, ...) began after it ended. */
  hi: number;
}

export class GuestWriter {
  readonly writes: WriteRecord[] = [];
  readonly #initial: Blocks[];
  #running = false;
  #loop: Promise<void> | undefined;
  #error: Error | undefined;
  readonly #rng: ReturnType<typeof prng>;

  /**
   * `initial`: what each disk held before the VM started; writes go to blocks [0, blocks) of each disk.
   * `pauseMs`: idle time between two writes.
   */
  constructor(
    readonly live: LiveVm,
    initial: readonly Blocks[],
    /** `span`: 64 KiB blocks per write, aligned (2: whole 128 KiB qcow2 clusters). */
    readonly opts: { blocks: number; seed: number; pauseMs?: number; span?: number },
  ) {
    this.#initial = initial.map((b) => new Map(b));
    this.#rng = prng(opts.seed);
  }

  start(): void {
    assert.ok(!this.#running, 'the writer is already running');
    this.#running = true;
    this.#loop = (async () => {
      try {
        while (this.#running) {
          await this.writeOne();
          if ((this.opts.pauseMs ?? 0) > 0) await new Promise((r) => setTimeout(r, this.opts.pauseMs));
        }
      } catch (err) {
        this.#error = err instanceof Error ? err : new Error(String(err));
        this.#running = false;
      }
    })();
  }

  /** One write of a fresh pattern into a random block of a disk (round robin over the disks). */
  async writeOne(): Promise<WriteRecord> {
    const seq = this.writes.length;
    const disk = seq % this.live.disks.length;
    const span = this.opts.span ?? 1;
    const block = this.#rng.int(Math.floor(this.opts.blocks / span)) * span;
    const pattern = 1 + (seq % 253); // never 0x00 (unwritten) nor 0xfe/0xff
    const startMs = performance.now();
    await guestWrite(this.live.vm, { qdev: this.live.disks[disk] as string }, pattern, block * BLOCK, span * BLOCK);
    const rec = { seq, disk, block, span, pattern, startMs, endMs: performance.now() };
    this.writes.push(rec);
    return rec;
  }

  async stop(): Promise<void> {
    this.#running = false;
    await this.#loop;
    this.#loop = undefined;
    if (this.#error !== undefined) throw this.#error;
  }

  /** Rethrows a failure of the writer loop (call between operations). */
  check(): void {
    if (this.#error !== undefined) throw this.#error;
  }

  /** Runs `fn` and returns the writes that may have happened before its instant. */
  async window<T>(fn: () => Promise<T>): Promise<{ result: T; window: Window }> {
    const t0 = performance.now();
    const result = await fn();
    const t1 = performance.now();
    // A write still running when fn ended is recorded later: include every write begun before t1.
    await new Promise((r) => setTimeout(r, 50));
    const lo = this.writes.filter((w) => w.endMs < t0).length;
    const hi = this.writes.filter((w) => w.startMs < t1).length;
    return { result, window: { lo, hi } };
  }

  /** What disk `disk` holds after the first `j` writes. */
  stateAfter(disk: number, j: number): Blocks {
    const state = new Map(this.#initial[disk]);
    for (const w of this.writes.slice(0, j)) {
      if (w.disk === disk) for (let b = w.block; b < w.block + w.span; b++) state.set(b, w.pattern);
    }
    return state;
  }
}

// ---- checking content ---------------------------------------------------------------------------------------

/** The pattern byte of each 64 KiB block of an image read through its chain (-1: mixed bytes). */
export async function blockPatterns(path: string, totalBlocks: number, tmpDir: string): Promise<number[]> {
  const raw = join(tmpDir, `read-${Date.now()}-${Math.floor(Math.random() * 1e6)}.raw`);
  const r = await runCommand('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', path, raw]);
  assert.equal(r.code, 0, `qemu-img convert ${path}: ${r.stderr}`);
  try {
    const buf = await readFile(raw);
    const out: number[] = [];
    for (let b = 0; b < totalBlocks; b++) {
      const block = buf.subarray(b * BLOCK, (b + 1) * BLOCK);
      const first = block[0] ?? 0;
      out.push(block.every((x) => x === first) ? first : -1);
    }
    return out;
  } finally {
    await rm(raw, { force: true });
  }
}

/** Every j in the window for which the image holds exactly the state after j writes (on the blocks given). */
export async function snapshotInstants(
  writer: GuestWriter,
  disk: number,
  path: string,
  window: Window,
  totalBlocks: number,
  tmpDir: string,
): Promise<number[]> {
  const actual = await blockPatterns(path, totalBlocks, tmpDir);
  const fits: number[] = [];
  for (let j = window.lo; j <= window.hi; j++) {
    const state = writer.stateAfter(disk, j);
    if (actual.every((p, b) => p === (state.get(b) ?? 0))) fits.push(j);
  }
  return fits;
}

/** qemu-io pattern reads of several images against their expected blocks (one qemu-io process). */
export async function assertImages(items: readonly { path: string; blocks: Blocks; totalBlocks: number; context: string }[]): Promise<void> {
  await assertManyPatterns(items.map((i) => ({ path: i.path, expects: expectsFor(i.blocks, i.totalBlocks), context: i.context })));
}

// ---- QEMU's view against the disk, independently of volchain's own code ----------------------------------------

interface GraphNode {
  id: number;
  type: string;
  name: string;
}
interface GraphEdge {
  parent: number;
  child: number;
  name: string;
}

/** The chain on disk from a volume's file down, by the backing names in the headers. */
export async function diskChain(dir: string, volume: string): Promise<string[]> {
  const chain = [volume];
  for (;;) {
    const info = await imageInfo(join(dir, chain[chain.length - 1] as string));
    const backing = info['backing-filename'];
    if (backing === undefined) return chain;
    assert.ok(!backing.includes('/'), `backing names are relative layer names, got ${backing}`);
    assert.equal(info['backing-filename-format'], 'qcow2');
    chain.push(backing);
  }
}

/**
 * Checks, with x-debug-query-block-graph (edges by node id) and /proc/<qemu>/fd (the inodes QEMU holds),
 * that for every disk the chain QEMU runs on has the chain on disk's length and read-only flags, and that
 * the files QEMU holds open under the VM's image directory are exactly the files of those chains.
 */
export async function assertAgreement(client: QmpClient, pid: number, imagesDir: string, disks: readonly { id: string; volume: string }[]): Promise<void> {
  const graph = await client.execute<{ nodes: GraphNode[]; edges: GraphEdge[] }>('x-debug-query-block-graph');
  const named = await client.execute<{ 'node-name': string; ro: boolean; drv: string }[]>('query-named-block-nodes', { flat: true });
  const ro = new Map(named.map((n) => [n['node-name'], n.ro]));
  const byId = new Map(graph.nodes.map((n) => [n.id, n]));
  const child = (id: number, name: string): number | undefined => graph.edges.find((e) => e.parent === id && e.name === name)?.child;
  const blocks = await queryBlock(client);
  const wanted = new Set<string>();
  for (const d of disks) {
    const chainOnDisk = await diskChain(imagesDir, d.volume);
    const top = blocks.find((b) => b.qdev === d.id)?.inserted?.['node-name'];
    assert.ok(top !== undefined, `device ${d.id} has a medium`);
    const nodes: string[] = [];
    for (let at = graph.nodes.find((n) => n.name === top)?.id; at !== undefined; at = child(at, 'backing')) {
      nodes.push(byId.get(at)?.name ?? '?');
    }
    assert.equal(nodes.length, chainOnDisk.length, `${d.volume}: QEMU's chain ${nodes.join(' -> ')} vs headers ${chainOnDisk.join(' -> ')}`);
    nodes.forEach((n, i) => assert.equal(ro.get(n), i > 0, `${d.volume}: node ${n} at depth ${i} is ${ro.get(n) ? 'read-only' : 'writable'}`));
    for (const name of chainOnDisk) {
      const st = await stat(join(imagesDir, name));
      wanted.add(`${st.dev}:${st.ino}`);
    }
  }
  // Every file QEMU holds in the image directory, by inode (the names under /proc are stale after renames).
  const held = new Set<string>();
  const fdDir = `/proc/${pid}/fd`;
  for (const fd of await readdir(fdDir)) {
    try {
      const target = await readlink(join(fdDir, fd));
      if (!target.startsWith(`${imagesDir}/`)) continue;
      const st = await stat(join(fdDir, fd));
      held.add(`${st.dev}:${st.ino}`);
    } catch {
      // fd closed meanwhile
    }
  }
  assert.deepEqual([...held].sort(), [...wanted].sort(), 'QEMU holds exactly the files of the chains on disk');
}

// ---- the CLI in the background ------------------------------------------------------------------------------

export interface BackgroundCli {
  child: ChildProcess;
  done: Promise<{ code: number; signal: NodeJS.Signals | null; stdout: string; stderr: string }>;
}

/** Starts `volchain --config <cfg> ...args` without waiting for it (to interrupt it, or QEMU, meanwhile). */
export function spawnCli(storage: Pick<TestStorage, 'cfg'>, args: readonly string[], env: Record<string, string> = {}): BackgroundCli {
  const base: NodeJS.ProcessEnv = { ...process.env, LC_ALL: 'C' };
  for (const key of ['VOLCHAIN_FAIL_AT', 'VOLCHAIN_CRASH_AT', 'VOLCHAIN_CONFIG', 'VOLCHAIN_DEBUG', 'VOLCHAIN_JOB_SPEED', 'VOLCHAIN_LIVE_STREAM'])
    delete base[key];
  const child = spawn(process.execPath, [BIN, '--config', storage.cfg, ...args], { env: { ...base, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (t: string) => (stdout += t));
  child.stderr?.setEncoding('utf8').on('data', (t: string) => (stderr += t));
  const done = new Promise<{ code: number; signal: NodeJS.Signals | null; stdout: string; stderr: string }>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code: code ?? 128, signal, stdout, stderr }));
  });
  return { child, done };
}

/** Waits until QEMU reports a job whose progress reached `fraction` (and is not done); returns its id. */
export async function waitForJobProgress(
  client: QmpClient,
  fraction: number,
  timeoutMs = 60_000,
): Promise<{ id: string; type: string; current: number; total: number }> {
  const deadline = Date.now() + timeoutMs;
  const seen: string[] = [];
  for (;;) {
    const jobs = await queryJobs(client);
    const line = jobs.map((x) => `${x.type} ${x.status} ${x['current-progress']}/${x['total-progress']}`).join(', ');
    if (seen[seen.length - 1] !== line) seen.push(line);
    const j = jobs.find(
      (x) => x['total-progress'] > 0 && x['current-progress'] >= fraction * x['total-progress'] && x['current-progress'] < x['total-progress'],
    );
    if (j) return { id: j.id, type: j.type, current: j['current-progress'], total: j['total-progress'] };
    if (Date.now() > deadline) throw new Error(`no job reached ${fraction * 100}% within ${timeoutMs} ms (seen: ${seen.join(' | ')})`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
