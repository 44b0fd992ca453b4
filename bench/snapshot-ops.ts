/**
 * Snapshot operations benchmark (issue 4).
 *
 * Times volchain's snapshot create / rollback / delete on a dir storage with snapshot-as-volume-chain, both as
 * a library call inside this process and as the CLI process users run (`node bin/volchain.js ...`), against
 * the bare command sequence Proxmox VE 9 runs for the same offline operation (pve-storage Plugin.pm, called
 * through qemu-server), all measured in this run on identically prepared images. Then compares the bytes a
 * snapshot delete moves with the minimum possible.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/snapshot-ops.js
 *
 * Environment: BENCH_REPS (repetitions per operation and variant, default 5), BENCH_DIR (parent directory of
 * the scratch storage, default the OS temp dir; it must be a real disk file system to mean anything),
 * BENCH_KEEP=1 (keep the scratch directory).
 *
 * Every measured run starts from a fresh copy of one template chain (copied and synced outside the timed
 * section), so every variant sees the same files, the same page-cache state and no pending writeback.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, open, readdir, rename as renameAsync, rm, stat, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseStorageConfig } from '../src/config/index.js';
import type { EngineEvent } from '../src/engine/run/step-rules.js';
import type { Plan } from '../src/model/plan.js';
import { DEFAULT_LOCK_TIMEOUT_MS, acquireLock } from '../src/engine/session/lock.js';
import { Volchain } from '../src/engine/volchain.js';
import * as pve from '../test/fixtures/pve-dir-commands.js';
import type { PveDirStorage, PveVolume } from '../test/fixtures/pve-dir-commands.js';

// ---- fixed parameters -------------------------------------------------------------------------------------

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..'); // this file runs as dist/bench/*.js
const CLI = join(REPO, 'bin', 'volchain.js');
const REPS = Math.max(1, Number(process.env.BENCH_REPS ?? 5));
const STORAGE = 'bench';
const VMID = 100;
const VOL = 'vm-100-disk-0.qcow2';
const VOLID = `${STORAGE}:${VMID}/${VOL}`;
const QEMU_IMG = pve.QEMU_IMG;

/** Layer file of snapshot `snap` (PVE Plugin.pm get_snap_name: "snap-$snapname-$name"), or of the volume. */
function layerName(snap: string): string {
  return pve.getSnapName({ vmid: VMID, name: VOL }, snap);
}

// ---- the data written into the chain ---------------------------------------------------------------------
//
// Template chain: snap-s1 <- snap-s2 <- snap-s3 <- vm-100-disk-0.qcow2 (current). Every 4 MiB write has its
// own pattern byte, so no range of one layer equals the same range of another (the byte accounting below
// relies on that). Offsets are chosen so that each layer hides part of the ones below and leaves the rest.

interface Chunk {
  offset: number;
  pattern: number;
}
const CHUNK = 4 * MiB;
const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

/** Base data, frozen as s1: 64 x 4 MiB = 256 MiB, one chunk every 16 MiB over the 1 GiB disk. */
const BASE_WRITES: Chunk[] = range(64).map((i) => ({ offset: i * 16 * MiB, pattern: 0x01 + i }));
/** Frozen as s2 (a small layer): one chunk over base data, one over a hole. */
const S2_WRITES: Chunk[] = [
  { offset: 0, pattern: 0x41 },
  { offset: 8 * MiB, pattern: 0x42 },
];
/** Frozen as s3: 16 chunks = 64 MiB, every 64 MiB, alternately over base data and over holes. */
const S3_WRITES: Chunk[] = range(16).map((j) => ({ offset: j * 64 * MiB + (j % 2 === 1 ? 8 * MiB : 0), pattern: 0x50 + j }));
/** Left in the current layer: 16 MiB, two chunks over s3's data, two over holes. */
const CURRENT_WRITES: Chunk[] = [
  { offset: 0, pattern: 0x70 },
  { offset: 72 * MiB, pattern: 0x71 },
  { offset: 520 * MiB, pattern: 0x72 },
  { offset: 1000 * MiB, pattern: 0x73 },
];
/** Written on the new branch after a rollback to s2 (for the two-children delete). */
const BRANCH_WRITES: Chunk[] = [
  { offset: 8 * MiB, pattern: 0x80 },
  { offset: 200 * MiB, pattern: 0x81 },
];

// ---- small utilities --------------------------------------------------------------------------------------

const now = (): number => performance.now();

interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Starts one process (argv array, no shell), waits for it, and fails on a non-zero exit status. */
function exec(command: string, args: readonly string[], okCodes: readonly number[] = [0]): Promise<ExecResult> {
  const t0 = now();
  return new Promise((resolvePromise, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', reject);
    child.on('close', (code) => {
      const result = {
        code: code ?? -1,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
        ms: now() - t0,
      };
      if (okCodes.includes(result.code)) resolvePromise(result);
      else reject(new Error(`${command} ${args.join(' ')} exited ${result.code}: ${result.stderr || result.stdout}`));
    });
  });
}

/** Bare command log of the current bare run: which command took how long (for the breakdown). */
let commandLog: { what: string; ms: number }[] | undefined;

pve.observeCommands((what, took) => commandLog?.push({ what, ms: took }));

const loadText = (): string =>
  loadavg()
    .map((x) => x.toFixed(2))
    .join(' / ');

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}
const min = (xs: number[]): number => Math.min(...xs);
const ms = (x: number): string => (x >= 100 ? x.toFixed(0) : x.toFixed(1));
const mib = (bytes: number): string => `${(bytes / MiB).toFixed(bytes % MiB === 0 ? 0 : 2)} MiB`;

/**
 * This process's I/O counters. Linux adds a reaped child's counters to its parent's (wait_task_zombie), so
 * the deltas also cover every qemu-img started by the library or by the bare sequence, and the CLI process
 * with all of its children. `wchar` = bytes handed to write(2)/pwrite(2) and friends.
 */
function ioCounters(): { wchar: number } {
  const fields = new Map(
    readFileSync('/proc/self/io', 'utf8')
      .trim()
      .split('\n')
      .map((line) => {
        const [k, v] = line.split(':');
        return [k?.trim() ?? '', Number(v)] as const;
      }),
  );
  return { wchar: fields.get('wchar') ?? 0 };
}

/** Allocated bytes (st_blocks) of every file in the images directory, by inode (names change under renames). */
async function allocationByInode(dir: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const name of await readdir(dir)) {
    const st = await stat(join(dir, name), { bigint: true });
    if (st.isFile()) out.set(`${st.ino}`, Number(st.blocks * 512n));
  }
  return out;
}

/** Bytes by which files grew (new files count whole): a lower bound of data written into the layers. */
function allocationGrowth(before: Map<string, number>, after: Map<string, number>): number {
  let grown = 0;
  for (const [ino, bytes] of after) grown += Math.max(0, bytes - (before.get(ino) ?? 0));
  return grown;
}

async function qemuIoWrite(path: string, chunks: Chunk[]): Promise<void> {
  const args = ['-f', 'qcow2'];
  for (const c of chunks) args.push('-c', `write -P 0x${c.pattern.toString(16)} ${c.offset} ${CHUNK}`);
  args.push(path);
  const r = await exec('qemu-io', args);
  const wrote = (r.stdout.match(/^wrote /gm) ?? []).length;
  if (wrote !== chunks.length) throw new Error(`qemu-io wrote ${wrote} of ${chunks.length} chunks into ${path}: ${r.stdout}${r.stderr}`);
}

/** Reads each chunk back from the view of `path` and checks its pattern. */
async function qemuIoVerify(path: string, chunks: Chunk[]): Promise<void> {
  const args = ['-r', '-f', 'qcow2'];
  for (const c of chunks) args.push('-c', `read -P 0x${c.pattern.toString(16)} ${c.offset} ${CHUNK}`);
  args.push(path);
  const r = await exec('qemu-io', args);
  if (/verification failed/i.test(r.stdout + r.stderr) || (r.stdout.match(/^read /gm) ?? []).length !== chunks.length) {
    throw new Error(`pattern check failed on ${path}: ${r.stdout}${r.stderr}`);
  }
}

// ---- scratch storage --------------------------------------------------------------------------------------

interface Scratch {
  root: string;
  /** Template storage path (never touched after it is built). */
  template: string;
  /** Storage path every measured run works on (a fresh copy of the template each time). */
  work: string;
  cfgPath: string;
  cfgText: string;
}

async function makeScratch(): Promise<Scratch> {
  const root = await mkdtemp(join(process.env.BENCH_DIR ?? tmpdir(), 'volchain-bench-'));
  const work = join(root, 'work');
  const cfgPath = join(root, 'storage.cfg');
  // The dir default for preallocation (metadata) applies to volchain as to PVE (preallocation_cmd_opt).
  const cfgText = `dir: ${STORAGE}\n\tpath ${work}\n\tcontent images\n\tsnapshot-as-volume-chain 1\n`;
  await writeFile(cfgPath, cfgText);
  return { root, template: join(root, 'template'), work, cfgPath, cfgText };
}

const images = (storagePath: string): string => join(storagePath, 'images', String(VMID));

/** Builds the template chain with volchain itself, in the work path, then moves it aside. */
async function buildTemplate(s: Scratch): Promise<void> {
  const vc = new Volchain(parseStorageConfig(s.cfgText, s.cfgPath));
  const volid = await vc.alloc(STORAGE, VMID, GiB);
  if (volid !== VOLID) throw new Error(`alloc returned ${volid}, expected ${VOLID}`);
  const top = join(images(s.work), VOL);
  await qemuIoWrite(top, BASE_WRITES);
  await vc.snapshotCreate(VOLID, 's1');
  await qemuIoWrite(top, S2_WRITES);
  await vc.snapshotCreate(VOLID, 's2');
  await qemuIoWrite(top, S3_WRITES);
  await vc.snapshotCreate(VOLID, 's3');
  await qemuIoWrite(top, CURRENT_WRITES);
  await renameAsync(s.work, s.template);
}

/**
 * A fresh copy of the template in the work path, written back to disk before anything is timed. With
 * `shareBase`, the big base layer (snap-s1, 256 MiB of data) is a reflink of the template's where the file
 * system has them (a hard link is refused by the dir backend as a layer shared outside its VM directory), for
 * operations that only read it. runTrial's base fingerprint check stops the bench if the template changed.
 */
async function freshWork(s: Scratch, shareBase = false): Promise<void> {
  await rm(s.work, { recursive: true, force: true });
  if (!shareBase) {
    await exec('cp', ['-a', '--sparse=always', s.template, s.work]);
  } else {
    await mkdir(images(s.work), { recursive: true });
    await exec('cp', ['-a', join(s.template, '.volchain'), join(s.work, '.volchain')]);
    for (const name of await readdir(images(s.template))) {
      const from = join(images(s.template), name);
      // The dir backend refuses a layer hard-linked outside its VM directory (safe-fs.ts), so the base is
      // shared as a reflink where the file system has them, else copied.
      if (name === layerName('s1')) await exec('cp', ['-a', '--reflink=auto', '--sparse=always', from, join(images(s.work), name)]);
      else await exec('cp', ['-a', '--sparse=always', from, join(images(s.work), name)]);
    }
  }
  await exec('sync', []);
}

async function baseFingerprint(s: Scratch): Promise<string> {
  const st = await stat(join(images(s.template), layerName('s1')), { bigint: true });
  return `${st.size}:${st.blocks}:${st.mtimeNs}`;
}

// ---- the bare Proxmox VE 9 sequences -----------------------------------------------------------------------
//
// test/fixtures/pve-dir-commands.ts holds PVE 9's commands (pve-storage Plugin.pm / Common.pm, reached from
// qemu-server for a VM that is not running), each function named after its Perl function; its command
// observer feeds the bare column's breakdown. Not reproduced: Perl start-up, pmxcfs config locks and writes,
// the VM config update; so this column is a lower bound of what PVE takes.

/** The bench storage and volume as PVE's functions see them, given the images directory of VM 100. */
function pveAt(dir: string): { storage: PveDirStorage; vol: PveVolume } {
  return { storage: { id: STORAGE, path: dirname(dirname(dir)), chain: true }, vol: { vmid: VMID, name: VOL } };
}

function pveSnapshotCreate(dir: string, snap: string): Promise<void> {
  const { storage, vol } = pveAt(dir);
  return pve.volumeSnapshot(storage, vol, snap);
}

/**
 * qemu-server's rollback of one disk (two volume_rollback_is_possible checks, then volume_snapshot_rollback).
 * Returns whether PVE would have allowed it; the commands run either way (an older snapshot is refused by
 * PVE, the row then shows what the same mechanics cost).
 */
async function pveSnapshotRollback(dir: string, snap: string): Promise<boolean> {
  const { storage, vol } = pveAt(dir);
  let allowed = true;
  for (let i = 0; i < 2; i++) {
    await pve.volumeRollbackIsPossible(storage, vol, snap).catch(() => {
      allowed = false;
    });
  }
  await pve.snapshotRollback(storage, vol, snap, { unchecked: true });
  return allowed;
}

function pveSnapshotDelete(dir: string, snap: string): Promise<'commit' | 'rebase'> {
  const { storage, vol } = pveAt(dir);
  return pve.volumeSnapshotDelete(storage, vol, snap);
}

// ---- operations measured ----------------------------------------------------------------------------------

interface OpSpec {
  key: string;
  label: string;
  lib: (vc: Volchain, opts: { onEvent: (e: EngineEvent) => void }) => Promise<Plan>;
  cli: string[];
  bare: (dir: string) => Promise<unknown>;
  /** Writes into snap-s1 (so the trial needs its own copy of it). */
  writesBase?: boolean;
  /** PVE refuses this operation; the bare column shows the cost of its commands anyway. */
  pveRefuses?: boolean;
  /** Afterwards: layer in work whose view must equal the view of a layer of the template. */
  sameView: [string, string][];
  /** Afterwards: layers that must be gone. */
  gone: string[];
}

const OPS: OpSpec[] = [
  {
    key: 'create',
    label: 'snapshot create (4th snapshot)',
    lib: (vc, o) => vc.snapshotCreate(VOLID, 's4', o),
    cli: ['snapshot', 'create', VOLID, 's4'],
    bare: (dir) => pveSnapshotCreate(dir, 's4'),
    sameView: [
      [layerName('s4'), VOL],
      [VOL, VOL],
      [layerName('s3'), layerName('s3')],
    ],
    gone: [],
  },
  {
    key: 'rollback-newest',
    label: 'rollback to newest (s3)',
    lib: (vc, o) => vc.snapshotRollback(VOLID, 's3', o),
    cli: ['snapshot', 'rollback', VOLID, 's3'],
    bare: (dir) => pveSnapshotRollback(dir, 's3'),
    sameView: [[VOL, layerName('s3')]],
    gone: [],
  },
  {
    key: 'rollback-older',
    label: 'rollback to older (s1)',
    lib: (vc, o) => vc.snapshotRollback(VOLID, 's1', o),
    cli: ['snapshot', 'rollback', VOLID, 's1'],
    bare: (dir) => pveSnapshotRollback(dir, 's1'),
    pveRefuses: true,
    sameView: [
      [VOL, layerName('s1')],
      [layerName('s3'), layerName('s3')],
    ],
    gone: [],
  },
  {
    key: 'delete-oldest',
    label: 'delete oldest (s1, child s2 8 MiB)',
    lib: (vc, o) => vc.snapshotDelete(VOLID, 's1', o),
    cli: ['snapshot', 'delete', VOLID, 's1'],
    bare: (dir) => pveSnapshotDelete(dir, 's1'),
    writesBase: true,
    sameView: [
      [layerName('s2'), layerName('s2')],
      [VOL, VOL],
    ],
    gone: [layerName('s1')],
  },
  {
    key: 'delete-middle',
    label: 'delete middle (s2, child s3 64 MiB)',
    lib: (vc, o) => vc.snapshotDelete(VOLID, 's2', o),
    cli: ['snapshot', 'delete', VOLID, 's2'],
    bare: (dir) => pveSnapshotDelete(dir, 's2'),
    sameView: [
      [layerName('s3'), layerName('s3')],
      [VOL, VOL],
    ],
    gone: [layerName('s2')],
  },
  {
    key: 'delete-newest',
    label: 'delete newest (s3, child current 16 MiB)',
    lib: (vc, o) => vc.snapshotDelete(VOLID, 's3', o),
    cli: ['snapshot', 'delete', VOLID, 's3'],
    bare: (dir) => pveSnapshotDelete(dir, 's3'),
    sameView: [
      [VOL, VOL],
      [layerName('s2'), layerName('s2')],
    ],
    gone: [layerName('s3')],
  },
];

type Variant = 'lib' | 'cli' | 'bare';
const VARIANTS: Variant[] = ['lib', 'cli', 'bare'];

interface Trial {
  ms: number;
  wchar: number;
  allocGrowth: number;
  /** lib: step timeline; bare: command timeline. */
  timeline: { what: string; ms: number }[];
}

async function checkResult(s: Scratch, op: OpSpec, variant: Variant): Promise<void> {
  const dir = images(s.work);
  for (const gone of op.gone) {
    if (existsSync(join(dir, gone))) throw new Error(`${op.key}/${variant}: ${gone} still exists`);
  }
  for (const [workLayer, templateLayer] of op.sameView) {
    const r = await exec(QEMU_IMG, ['compare', '-q', '-f', 'qcow2', '-F', 'qcow2', join(dir, workLayer), join(images(s.template), templateLayer)], [0, 1]);
    if (r.code !== 0) throw new Error(`${op.key}/${variant}: ${workLayer} does not show what ${templateLayer} showed`);
  }
  const check = await exec(QEMU_IMG, ['check', '-q', '-f', 'qcow2', join(dir, VOL)], [0, 3]);
  if (check.code !== 0) throw new Error(`${op.key}/${variant}: qemu-img check of the current layer: ${check.stdout}${check.stderr}`);
}

async function runTrial(s: Scratch, op: OpSpec, variant: Variant, verify: boolean): Promise<Trial> {
  const baseBefore = op.writesBase ? undefined : await baseFingerprint(s);
  await freshWork(s, !op.writesBase);
  const dir = images(s.work);
  const vc = new Volchain(parseStorageConfig(s.cfgText, s.cfgPath));
  const timeline: { what: string; ms: number }[] = [];
  const allocBefore = await allocationByInode(dir);
  const io0 = ioCounters();
  let elapsed: number;
  if (variant === 'lib') {
    // Step timeline from the engine's events: 'step' fires after the journal recorded the step as started,
    // 'step-done' after it recorded it as done, so each step's figure includes one journal write.
    const marks: { t: number; e: EngineEvent }[] = [];
    const t0 = now();
    const plan = await op.lib(vc, { onEvent: (e) => marks.push({ t: now(), e }) });
    elapsed = now() - t0;
    let last = t0;
    for (const { t, e } of marks) {
      if (e.type === 'step') timeline.push({ what: e.index === 0 ? 'lock+read+plan+2 journal writes' : 'journal', ms: t - last });
      if (e.type === 'step-done') timeline.push({ what: `${plan.steps[e.index]?.kind ?? '?'} (+journal)`, ms: t - last });
      if (e.type !== 'progress') last = t;
    }
    timeline.push({ what: 'journal end + unlock', ms: t0 + elapsed - last });
  } else if (variant === 'cli') {
    const t0 = now();
    await exec(process.execPath, [CLI, '--config', s.cfgPath, ...op.cli]);
    elapsed = now() - t0;
  } else {
    commandLog = timeline;
    const t0 = now();
    await op.bare(dir);
    elapsed = now() - t0;
    commandLog = undefined;
  }
  const io1 = ioCounters();
  const allocAfter = await allocationByInode(dir);
  if (baseBefore !== undefined && (await baseFingerprint(s)) !== baseBefore) {
    throw new Error(`${op.key}/${variant} wrote into the base layer shared with the template: mark it writesBase`);
  }
  if (verify) await checkResult(s, op, variant);
  return {
    ms: elapsed,
    wchar: io1.wchar - io0.wchar,
    allocGrowth: allocationGrowth(allocBefore, allocAfter),
    timeline,
  };
}

// ---- exact byte accounting from qemu-img map --------------------------------------------------------------

interface MapEntry {
  start: number;
  length: number;
  depth: number;
  present: boolean;
  zero: boolean;
}

async function layerMap(path: string): Promise<MapEntry[]> {
  const r = await exec(QEMU_IMG, ['map', '--output=json', '-f', 'qcow2', path]);
  return JSON.parse(r.stdout) as MapEntry[];
}

function entryAt(map: MapEntry[], offset: number): MapEntry {
  let lo = 0;
  let hi = map.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if ((map[mid] as MapEntry).start <= offset) lo = mid;
    else hi = mid - 1;
  }
  return map[lo] as MapEntry;
}

/** Sum of the lengths of the segments (cut at every boundary of every map) where `pred` holds. */
function measure(maps: MapEntry[][], pred: (at: (m: MapEntry[]) => MapEntry) => boolean): number {
  const cuts = new Set<number>();
  for (const m of maps) for (const e of m) cuts.add(e.start).add(e.start + e.length);
  const points = [...cuts].sort((a, b) => a - b);
  let total = 0;
  for (let i = 0; i + 1 < points.length; i++) {
    const a = points[i] as number;
    const b = points[i + 1] as number;
    if (pred((m) => entryAt(m, a))) total += b - a;
  }
  return total;
}

/** The layer itself defines this range (data or explicit zeroes), as opposed to showing its backing. */
const own = (e: MapEntry): boolean => e.present && e.depth === 0;
/** The layer's view reads zeroes here. */
const readsZero = (e: MapEntry): boolean => e.zero || !e.present;

/*
 * Minimum bytes for deleting snapshot S (parent P, children C1..Ck): the guest bytes that must change layer
 * so that every remaining layer still shows exactly what it showed before. Two placements are possible:
 *
 *  - rebase-children (always valid): each child Ci must receive the ranges S defines and Ci does not (Ci reads
 *    them through S today and would read P's view instead), except where both read the same content.
 *    bytes = sum over i of |own(S) \ own(Ci)|, leaving out ranges where S reads zero and so does P's view.
 *  - commit-child (valid only with exactly one child C; S's layer then takes C's name): S's layer must receive
 *    every range C defines, except where C reads zero and S's view already reads zero.
 *    bytes = |own(C)| minus those zero ranges.
 *  - committing S into P is not a valid placement: P's layer is a snapshot and must keep P's state.
 *
 * The minimum possible is the smallest of the valid placements. "Same content" is only detected for zeroes:
 * every written chunk has its own pattern, so two layers never hold equal non-zero data at the same offset.
 * This is the byte count a perfect tool would copy; qemu-img's safe rebase copies exactly it (it compares
 * old and new backing content), qemu-img commit copies every range the child defines.
 */
interface DeleteBytes {
  rebaseChildren: number;
  commitChild: number | undefined;
}

async function exactDeleteBytes(dir: string, snap: string, parent: string | undefined, children: string[]): Promise<DeleteBytes> {
  const sMap = await layerMap(join(dir, layerName(snap)));
  const pMap = parent !== undefined ? await layerMap(join(dir, layerName(parent))) : undefined;
  let rebaseChildren = 0;
  for (const child of children) {
    const cMap = await layerMap(join(dir, layerName(child)));
    const maps = pMap ? [sMap, cMap, pMap] : [sMap, cMap];
    rebaseChildren += measure(maps, (at) => {
      const s = at(sMap);
      if (!own(s) || own(at(cMap))) return false;
      const parentReadsZero = pMap ? readsZero(at(pMap)) : true;
      return !(s.zero && parentReadsZero);
    });
  }
  let commitChild: number | undefined;
  if (children.length === 1) {
    const cMap = await layerMap(join(dir, layerName(children[0] as string)));
    commitChild = measure([cMap, sMap], (at) => {
      const c = at(cMap);
      return own(c) && !(c.zero && readsZero(at(sMap)));
    });
  }
  return { rebaseChildren, commitChild };
}

// ---- main -------------------------------------------------------------------------------------------------

interface Row {
  op: OpSpec;
  trials: Record<Variant, Trial[]>;
}

/**
 * The cost of one durable journal write as the journal does it (write a temp file, fsync it, rename it over
 * the record, fsync the directory), timed alone to say how much of a volchain run the journal takes.
 */
async function journalWriteCost(dir: string): Promise<number> {
  await mkdir(dir, { recursive: true });
  const xs: number[] = [];
  for (let i = 0; i < 9; i++) {
    const t0 = now();
    const fh = await open(join(dir, 'j.tmp'), 'w');
    await fh.writeFile(JSON.stringify({ i, pad: 'x'.repeat(1500) }));
    await fh.sync();
    await fh.close();
    await renameAsync(join(dir, 'j.tmp'), join(dir, 'j.json'));
    const d = await open(dir, 'r');
    await d.sync();
    await d.close();
    xs.push(now() - t0);
  }
  await rm(dir, { recursive: true, force: true });
  return median(xs);
}

function printTimeline(title: string, trials: Trial[]): void {
  // The run with the median total time, step by step.
  const sorted = [...trials].sort((a, b) => a.ms - b.ms);
  const t = sorted[Math.floor((sorted.length - 1) / 2)] as Trial;
  const parts = t.timeline.map((x) => `${x.what} ${ms(x.ms)}`).join(' | ');
  console.log(`  ${title.padEnd(5)} ${ms(t.ms).padStart(6)} ms = ${parts}`);
}

async function main(): Promise<void> {
  const s = await makeScratch();
  try {
    await runBench(s);
  } finally {
    // Also after a failure: nothing of the scratch storage stays behind unless asked for.
    if (process.env.BENCH_KEEP !== '1') await rm(s.root, { recursive: true, force: true });
  }
}

async function runBench(s: Scratch): Promise<void> {
  const started = now();
  const { stdout: qemuVersion } = await exec(QEMU_IMG, ['--version']);
  console.log('# volchain snapshot operations benchmark (issue 4)');
  console.log(
    `machine: ${cpus().length} x ${cpus()[0]?.model ?? '?'}, KVM ${existsSync('/dev/kvm') ? 'present' : 'absent'}; ` +
      `node ${process.version}; ${String(qemuVersion.split('\n')[0])}; scratch ${s.root}`,
  );
  console.log(
    `date: ${new Date().toISOString()}; repetitions per cell: ${REPS} (fresh copy of the template chain each); ` +
      `load average at start ${loadText()} (other work on the machine shows up as noise)`,
  );

  const t0 = now();
  await buildTemplate(s);
  console.log(
    `template: 1 GiB qcow2 (cluster_size=128k, extended_l2=on, preallocation=metadata) via volchain alloc; ` +
      `chain snap-s1 (256 MiB written) <- snap-s2 (8 MiB) <- snap-s3 (64 MiB) <- current (16 MiB); built in ${ms(now() - t0)} ms`,
  );

  // Fixed costs that explain the columns.
  const nodeStart: number[] = [];
  const cliStart: number[] = [];
  const qemuImgStart: number[] = [];
  for (let i = 0; i < 3; i++) {
    nodeStart.push((await exec(process.execPath, ['-e', '0'])).ms);
    cliStart.push((await exec(process.execPath, [CLI, '--version'])).ms);
    qemuImgStart.push((await exec(QEMU_IMG, ['--version'])).ms);
  }
  await freshWork(s);
  const journalMs = await journalWriteCost(join(s.work, '.bench-journal-probe'));
  const lockMs: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t = now();
    const lock = await acquireLock(join(s.work, '.bench-lock-probe', 'probe.lock'), 'bench', DEFAULT_LOCK_TIMEOUT_MS);
    await lock.release();
    lockMs.push(now() - t);
  }
  await rm(join(s.work, '.bench-lock-probe'), { recursive: true, force: true });
  const vc0 = new Volchain(parseStorageConfig(s.cfgText, s.cfgPath));
  const dryRuns: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t = now();
    await vc0.snapshotDelete(VOLID, 's2', { dryRun: true });
    dryRuns.push(now() - t);
  }
  console.log('fixed costs (medians):');
  console.log(
    `  process start: node -e 0 ${ms(median(nodeStart))} ms; node bin/volchain.js --version ${ms(median(cliStart))} ms; ` +
      `qemu-img --version ${ms(median(qemuImgStart))} ms`,
  );
  console.log(
    `  volchain internals: VM lock taken+released (flock child process) ${ms(median(lockMs))} ms; one durable journal ` +
      `write (write+fsync+rename+fsync dir) ${ms(journalMs)} ms; read+validate the 4 headers and L2 tables and plan ` +
      `(delete dry run) ${ms(median(dryRuns))} ms`,
  );

  // ---- timings ----
  const rows: Row[] = OPS.map((op) => ({ op, trials: { lib: [], cli: [], bare: [] } }));
  for (let rep = 0; rep < REPS; rep++) {
    for (const row of rows) {
      // Rotate the order of the variants from one repetition to the next.
      for (let k = 0; k < VARIANTS.length; k++) {
        const variant = VARIANTS[(k + rep) % VARIANTS.length] as Variant;
        row.trials[variant].push(await runTrial(s, row.op, variant, rep === 0));
      }
    }
    process.stderr.write(`repetition ${rep + 1}/${REPS} done (${((now() - started) / 1000).toFixed(0)} s)\n`);
  }

  console.log('\n## Timings (ms; median over the repetitions, min in parentheses)\n');
  console.log('| operation | volchain library | volchain CLI | bare PVE 9 sequence | library / PVE | CLI / PVE |');
  console.log('|---|---:|---:|---:|---:|---:|');
  for (const { op, trials } of rows) {
    const m = (v: Variant): number => median(trials[v].map((t) => t.ms));
    const n = (v: Variant): number => min(trials[v].map((t) => t.ms));
    const bare = m('bare');
    const mark = op.pveRefuses ? ' ¹' : '';
    console.log(
      `| ${op.label} | ${ms(m('lib'))} (${ms(n('lib'))}) | ${ms(m('cli'))} (${ms(n('cli'))}) | ` +
        `${ms(bare)} (${ms(n('bare'))})${mark} | ${(m('lib') / bare).toFixed(2)} | ${(m('cli') / bare).toFixed(2)} |`,
    );
  }
  console.log('\n¹ PVE 9 refuses a rollback to a snapshot that is not the newest; the figure is the cost of its');
  console.log('  commands (two chain checks, unlink, create) had it gone ahead. volchain keeps s2 and s3 as a branch.');

  console.log('\nWhere the time goes (the median run of each; lib = engine events, bare = each command):');
  for (const { op, trials } of rows) {
    console.log(op.label);
    printTimeline('lib', trials.lib);
    printTimeline('bare', trials.bare);
  }

  // ---- bytes moved by delete ----
  console.log('\n## Snapshot delete: bytes moved versus the minimum possible\n');
  interface ByteCase {
    label: string;
    plan: Plan;
    exact: DeleteBytes;
    pve: { strategy: string; bytes: number } | undefined;
    actualLib: Trial;
    actualBare: Trial | undefined;
  }
  const cases: ByteCase[] = [];
  // [operation key, snapshot deleted, its parent, its children] in the template chain.
  const deleteRows: [string, string, string | undefined, string[]][] = [
    ['delete-oldest', 's1', undefined, ['s2']],
    ['delete-middle', 's2', 's1', ['s3']],
    ['delete-newest', 's3', 's2', ['current']],
  ];
  for (const [key, snap, parent, children] of deleteRows) {
    const row = rows.find((r) => r.op.key === key) as Row;
    await freshWork(s);
    const vc = new Volchain(parseStorageConfig(s.cfgText, s.cfgPath));
    const plan = await vc.snapshotDelete(VOLID, snap, { dryRun: true });
    const exact = await exactDeleteBytes(images(s.work), snap, parent, children);
    // PVE's fixed rule (Plugin.pm volume_snapshot_delete): the first snapshot by committing its child, any
    // other by rebasing its child onto its parent.
    const pve =
      parent === undefined ? { strategy: 'commit-child', bytes: exact.commitChild ?? NaN } : { strategy: 'rebase-children', bytes: exact.rebaseChildren };
    cases.push({ label: row.op.label, plan, exact, pve, actualLib: row.trials.lib[0] as Trial, actualBare: row.trials.bare[0] });
  }

  // Two children: roll back to s2 (s3 stays as a branch), write on the new branch, delete s2.
  {
    await freshWork(s);
    const dir = images(s.work);
    const vc = new Volchain(parseStorageConfig(s.cfgText, s.cfgPath));
    await vc.snapshotRollback(VOLID, 's2');
    await qemuIoWrite(join(dir, VOL), BRANCH_WRITES);
    await exec('sync', []);
    const plan = await vc.snapshotDelete(VOLID, 's2', { dryRun: true });
    const exact = await exactDeleteBytes(dir, 's2', 's1', ['s3', 'current']);
    const allocBefore = await allocationByInode(dir);
    const io0 = ioCounters();
    const t = now();
    await vc.snapshotDelete(VOLID, 's2');
    const elapsed = now() - t;
    const io1 = ioCounters();
    const trial: Trial = {
      ms: elapsed,
      wchar: io1.wchar - io0.wchar,
      allocGrowth: allocationGrowth(allocBefore, await allocationByInode(dir)),
      timeline: [],
    };
    // s3 still shows s2's chunk at 8 MiB, the new branch s2's chunk at 0 and its own writes.
    await qemuIoVerify(join(dir, layerName('s3')), [S2_WRITES[1] as Chunk, S3_WRITES[0] as Chunk]);
    await qemuIoVerify(join(dir, VOL), [S2_WRITES[0] as Chunk, ...BRANCH_WRITES, BASE_WRITES[1] as Chunk]);
    if (existsSync(join(dir, layerName('s2')))) throw new Error('two-children delete left snap-s2 behind');
    cases.push({
      label: 'delete s2 with two children (s3, current) after rollback to s2',
      plan,
      exact,
      pve: undefined,
      actualLib: trial,
      actualBare: undefined,
    });
  }

  const exactOf = (c: ByteCase, name: string): number | undefined => (name === 'rebase-children' ? c.exact.rebaseChildren : c.exact.commitChild);
  console.log('Planner figures come from a dry run (estimates from the layers\' L2 tables); "exact" is what that');
  console.log('placement must move (qemu-img map of the layers, see the comment above exactDeleteBytes).\n');
  console.log(
    '| delete | volchain chose: estimate / exact | alternative: estimate / exact | PVE 9 fixed strategy: exact | minimum possible | chosen = minimum? |',
  );
  console.log('|---|---|---|---|---|---|');
  for (const c of cases) {
    const chosenName = c.plan.steps.some((step) => step.kind === 'commit') ? 'commit-child' : 'rebase-children';
    const chosenExact = exactOf(c, chosenName) ?? NaN;
    const alternative = (c.plan.strategies ?? []).find((o) => o.strategy !== chosenName);
    const altText = !alternative
      ? '-'
      : alternative.valid
        ? `${alternative.strategy}: ${mib(alternative.bytesMoved)} / ${mib(exactOf(c, alternative.strategy) ?? NaN)}`
        : `${alternative.strategy}: not valid (${alternative.reason})`;
    const valid = [c.exact.rebaseChildren, ...(c.exact.commitChild !== undefined ? [c.exact.commitChild] : [])];
    const minimum = Math.min(...valid);
    const pveText = c.pve ? `${c.pve.strategy}: ${mib(c.pve.bytes)}` : 'cannot (PVE rolls back only to the newest and deletes only in a linear chain)';
    console.log(
      `| ${c.label} | ${chosenName}: ${mib(c.plan.bytesMoved)} / ${mib(chosenExact)} | ${altText} | ${pveText} | ` +
        `${mib(minimum)} | ${chosenExact === minimum ? 'yes' : `no (+${mib(chosenExact - minimum)})`} |`,
    );
  }

  console.log('\nActually written during the delete (first repetition): wchar = bytes passed to write calls by the');
  console.log('process and all its children (data, qcow2 metadata, journal); growth = sum of st_blocks growth of the');
  console.log('layer files (lower bound: overwriting allocated clusters does not grow a file).\n');
  console.log('| delete | volchain: wchar / growth | bare PVE 9: wchar / growth |');
  console.log('|---|---|---|');
  for (const c of cases) {
    const lib = `${mib(c.actualLib.wchar)} / ${mib(c.actualLib.allocGrowth)}`;
    const bare = c.actualBare ? `${mib(c.actualBare.wchar)} / ${mib(c.actualBare.allocGrowth)}` : '-';
    console.log(`| ${c.label} | ${lib} | ${bare} |`);
  }
  const twoChildren = cases[cases.length - 1] as ByteCase;
  console.log(`\nThe two-children delete (volchain library, one run) took ${ms(twoChildren.actualLib.ms)} ms.`);

  console.log(`\nbench finished in ${((now() - started) / 1000).toFixed(1)} s; load average at the end ${loadText()}`);
}

await main();
