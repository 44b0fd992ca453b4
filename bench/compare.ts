/**
 * The goal table of issue 16 in one run: every row timed against its reference in the same run, printed with
 * the goal beside each figure and whether it is met. Run after building:
 *   npm run bench -- compare [rounds=10] [list sizes for peak RSS=1000,10000]
 *
 * Rows (whole processes are fresh `node` processes; medians over `rounds` alternating rounds, one run of each
 * contender per round, so load changes on a shared machine hit all alike):
 *   - `volchain --version` against `node -e 0`: ≤ 1.25 ×;
 *   - `volchain info --json` and `snapshot list --json` of a 51-layer chain (alloc + 50 snapshots, 1 GiB, dir
 *     storage, made by the library): ≤ `node -e 0` + 40 ms; `qemu-img info -U --backing-chain` shown beside;
 *   - `volchain snapshot create` on dir (a fresh 1 GiB volume each round, `sync`ed before each timed call):
 *     the CLI ≤ `node -e 0` + 2 × PVE 9's bare sequence, the library call ≤ 1.5 × it. The bare sequence is
 *     test/fixtures/pve-dir-commands.ts volumeSnapshot (rename, then `qemu-img create -F qcow2 -b … -o
 *     extended_l2=on,cluster_size=128k,preallocation=metadata`), run the same way on a fresh image;
 *   - `volchain list --json` of 1,000 volumes (1,600 files: every fifth volume has 3 snapshots; small qcow2
 *     files, sparse copies of one qemu-img image with the backing name rewritten): ≤ 250 ms; `Volchain.list()`
 *     in-process ≤ 100 ms;
 *   - the LVM scenario (bench/lvm-ops.ts, one repetition) ≤ 1.0 × PVE 9's bare sequence, only with
 *     VOLCHAIN_TEST_VG set (a VG it may fill; see lvm-ops.ts); otherwise the row says "skipped: needs LVM";
 *   - peak RSS of `volchain list --json` at each list size (default 1,000 and 10,000 volumes; ~16 files per
 *     10 volumes, a few KiB of disk each, all removed afterwards): < 150 MiB at 10,000, and per-volume growth
 *     between the sizes (linear means the same KiB per volume at both).
 * Exit status 0 whether goals are met or not (the table says); non-zero only when the bench itself failed.
 */
import { execFile, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, open, readFile, rm, statfs, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { parseStorageConfig } from '../src/config/index.js';
import { Volchain } from '../src/engine/volchain.js';
import * as pve from '../test/fixtures/pve-dir-commands.js';
import { rewriteQcow2Header } from '../test/fixtures/qcow2-craft.js';
import { timeAlternating, type Timing } from './qcow2-timing.js';

const ROUNDS = Math.max(3, Number(process.argv[2] ?? 10));
const RSS_SIZES = (process.argv[3] ?? '1000,10000')
  .split(',')
  .map(Number)
  .filter((n) => n > 0);
const REPO = resolve(import.meta.dirname, '..', '..'); // this file runs as dist/bench/compare.js
const CLI = join(REPO, 'bin', 'volchain.js');
const execFileP = promisify(execFile);
/** Preloaded into a measured process: prints its max RSS (KiB) on stderr as it exits. */
const REPORT_RSS = "process.on('exit', () => process.stderr.write('volchain-bench-maxrss ' + process.resourceUsage().maxRSS + '\\n'));";

async function proc(cmd: string, args: string[]): Promise<{ stdout: string; stderr: string }> {
  return execFileP(cmd, args, { maxBuffer: 256 << 20 });
}
const loadText = (): string =>
  loadavg()
    .map((l) => l.toFixed(1))
    .join(' ');
const ms = (t: number): string => `${t.toFixed(t >= 100 ? 0 : 1)} ms`;
const spread = (t: Timing): string => `${ms(t.median)} (p10–p90 ${t.p10.toFixed(0)}–${t.p90.toFixed(0)})`;

interface Row {
  what: string;
  volchain: string;
  reference: string;
  goal: string;
  figure: string;
  met: boolean | undefined;
}
const rows: Row[] = [];
const verdict = (met: boolean | undefined): string => (met === undefined ? '–' : met ? 'met' : 'not met');

/** A dir storage `id` under `dir` (config file beside it) and a Volchain over it. */
async function dirStorage(dir: string, id: string): Promise<{ cfg: string; path: string; vc: Volchain }> {
  const path = join(dir, id);
  const cfg = join(dir, `${id}.cfg`);
  const text = `dir: ${id}\n\tpath ${path}\n\tcontent images\n\tsnapshot-as-volume-chain 1\n`;
  await writeFile(cfg, text);
  return { cfg, path, vc: new Volchain(parseStorageConfig(text, cfg)) };
}

// ---- start-up, info, snapshot list -------------------------------------------------------------------------

async function startupRows(dir: string): Promise<void> {
  const { cfg, vc } = await dirStorage(dir, 'chain');
  const volid = await vc.alloc('chain', 100, '1G');
  for (let i = 1; i <= 50; i++) await vc.snapshotCreate(volid, `s${String(i).padStart(3, '0')}`);
  const top = await vc.path(volid);
  const cli = (args: string[]) => () => proc(process.execPath, [CLI, '--config', cfg, ...args]);
  const [node, version, info, snaps, qemu] = (await timeAlternating(
    [
      () => proc(process.execPath, ['-e', '0']),
      () => proc(process.execPath, [CLI, '--version']),
      cli(['info', '--json', volid]),
      cli(['snapshot', 'list', '--json', volid]),
      () => proc('qemu-img', ['info', '-U', '--backing-chain', '--output=json', top]),
    ].map((fn) => ({ fn, perRound: 1, warmup: 2 })),
    ROUNDS,
  )) as [Timing, Timing, Timing, Timing, Timing];
  const r = version.median / node.median;
  rows.push({
    what: '`volchain --version`',
    volchain: spread(version),
    reference: `node -e 0: ${spread(node)}`,
    goal: '≤ 1.25 × node -e 0',
    figure: `${r.toFixed(2)} ×`,
    met: r <= 1.25,
  });
  for (const [what, t] of [
    ['`volchain info --json`, 51 layers', info],
    ['`volchain snapshot list --json`, 51 layers', snaps],
  ] as const) {
    const over = t.median - node.median;
    rows.push({
      what,
      volchain: spread(t),
      reference: `node -e 0: ${ms(node.median)}; qemu-img info --backing-chain: ${ms(qemu.median)}`,
      goal: '≤ node -e 0 + 40 ms',
      figure: `node -e 0 + ${over.toFixed(0)} ms`,
      met: over <= 40,
    });
  }
}

// ---- snapshot create on dir --------------------------------------------------------------------------------

/** The median of `xs` (ms) as a Timing. */
function timing(xs: number[]): Timing {
  const s = [...xs].sort((a, b) => a - b);
  const at = (q: number): number => s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? NaN;
  return { median: at(0.5), p10: at(0.1), p90: at(0.9), runs: s.length };
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  spawnSync('sync'); // nothing of the preparation (or of the previous contender) left for this call's fsyncs
  const started = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - started) / 1e6;
}

async function snapshotCreateRows(dir: string): Promise<void> {
  const { cfg, path, vc } = await dirStorage(dir, 'create');
  const storage: pve.PveDirStorage = { id: 'create', path, chain: true };
  const bareVol: pve.PveVolume = { vmid: 300, name: 'vm-300-disk-0.qcow2' };
  const samples: Record<'lib' | 'cli' | 'bare' | 'node', number[]> = { lib: [], cli: [], bare: [], node: [] };
  for (let round = -1; round < ROUNDS; round++) {
    // A fresh 1 GiB volume per contender, made as each side makes its volumes (volchain alloc; PVE alloc_image).
    const libVol = await vc.alloc('create', 100, '1G');
    const cliVol = await vc.alloc('create', 200, '1G');
    await pve.allocImage(storage, bareVol.vmid, 'qcow2', bareVol.name, 1024 * 1024);
    const contenders: [keyof typeof samples, () => Promise<unknown>][] = [
      ['lib', () => vc.snapshotCreate(libVol, 's1')],
      ['cli', () => proc(process.execPath, [CLI, '--config', cfg, 'snapshot', 'create', cliVol, 's1'])],
      ['bare', () => pve.volumeSnapshot(storage, bareVol, 's1')],
      ['node', () => proc(process.execPath, ['-e', '0'])],
    ];
    // Rotating order, so that no contender always runs right after the same other one.
    for (let k = 0; k < contenders.length; k++) {
      const [key, fn] = contenders[(k + Math.max(0, round)) % contenders.length] as (typeof contenders)[number];
      const t = await timed(fn);
      if (round >= 0) samples[key].push(t); // round -1 warms up
    }
    await vc.free(libVol);
    await vc.free(cliVol);
    await rm(pve.imagesDir(storage, bareVol.vmid), { recursive: true, force: true });
  }
  const [lib, cli, bare, node] = [timing(samples.lib), timing(samples.cli), timing(samples.bare), timing(samples.node)];
  const libRatio = lib.median / bare.median;
  rows.push({
    what: '`snapshot create` (dir, 1 GiB), library call',
    volchain: spread(lib),
    reference: `PVE 9 bare sequence: ${spread(bare)}`,
    goal: '≤ 1.5 × bare',
    figure: `${libRatio.toFixed(2)} × bare`,
    met: libRatio <= 1.5,
  });
  const budget = node.median + 2 * bare.median;
  rows.push({
    what: '`volchain snapshot create` (dir, 1 GiB), CLI',
    volchain: spread(cli),
    reference: `node -e 0: ${ms(node.median)}; bare: ${ms(bare.median)}`,
    goal: '≤ node -e 0 + 2 × bare',
    figure: `node -e 0 + ${((cli.median - node.median) / bare.median).toFixed(2)} × bare (budget ${ms(budget)})`,
    met: cli.median <= budget,
  });
}

// ---- listing -----------------------------------------------------------------------------------------------

/** Writes `bytes` to `path` as a sparse file: only its non-zero 4 KiB blocks take disk space. */
async function writeSparse(path: string, bytes: Buffer): Promise<void> {
  const fh = await open(path, 'wx');
  try {
    for (let at = 0; at < bytes.length; at += 4096) {
      const block = bytes.subarray(at, Math.min(bytes.length, at + 4096));
      if (block.some((b) => b !== 0)) await fh.write(block, 0, block.length, at);
    }
    await fh.truncate(bytes.length);
  } finally {
    await fh.close();
  }
}

/** `volumes` volumes over volumes/10 VMs; every fifth has snapshots s1 ← s2 ← s3. Returns the file count. */
async function buildListing(dir: string, storagePath: string, volumes: number): Promise<number> {
  const base = join(dir, 'template-base.qcow2');
  const overlay = join(dir, 'template-overlay.qcow2');
  if (!existsSync(base)) {
    await proc('qemu-img', ['create', '-q', '-f', 'qcow2', base, '1G']);
    await proc('qemu-img', ['create', '-q', '-f', 'qcow2', '-u', '-F', 'qcow2', '-b', 'placeholder.qcow2', overlay, '1G']);
  }
  const baseBytes = await readFile(base);
  const overlayBytes = await readFile(overlay);
  let files = 0;
  for (let i = 0; i < volumes; i++) {
    const vmid = 100 + Math.floor(i / 10);
    const name = `vm-${vmid}-disk-${i % 10}.qcow2`;
    const images = join(storagePath, 'images', String(vmid));
    if (i % 10 === 0) await mkdir(images, { recursive: true });
    if (i % 5 !== 0) {
      await writeSparse(join(images, name), baseBytes);
      files++;
      continue;
    }
    const layer = (s: string): string => `snap-${s}-${name}`;
    await writeSparse(join(images, layer('s1')), baseBytes);
    await writeSparse(join(images, layer('s2')), rewriteQcow2Header(overlayBytes, { backingFile: layer('s1') }));
    await writeSparse(join(images, layer('s3')), rewriteQcow2Header(overlayBytes, { backingFile: layer('s2') }));
    await writeSparse(join(images, name), rewriteQcow2Header(overlayBytes, { backingFile: layer('s3') }));
    files += 4;
  }
  return files;
}

async function maxRssMiB(args: string[]): Promise<number> {
  const r = await proc(process.execPath, ['--import', `data:text/javascript,${encodeURIComponent(REPORT_RSS)}`, ...args]);
  const m = /^volchain-bench-maxrss (\d+)$/m.exec(r.stderr);
  if (!m) throw new Error(`no max RSS reported: ${r.stderr}`);
  return Number(m[1]) / 1024;
}

async function listRows(dir: string): Promise<void> {
  const { cfg, path, vc } = await dirStorage(dir, 'list');
  await buildListing(dir, path, 1000);
  const listed = await vc.list('list');
  if (listed.length !== 1000 || listed.filter((v) => v.snapshots?.length === 3).length !== 200) {
    throw new Error(`list() found ${listed.length} volumes, ${listed.filter((v) => v.snapshots?.length === 3).length} with 3 snapshots`);
  }
  const [cli, node, lib] = (await timeAlternating(
    [
      { fn: () => proc(process.execPath, [CLI, '--config', cfg, 'list', 'list', '--json']), perRound: 1, warmup: 2 },
      { fn: () => proc(process.execPath, ['-e', '0']), perRound: 1, warmup: 2 },
      { fn: () => vc.list('list'), perRound: 3, warmup: 5 },
    ],
    ROUNDS,
  )) as [Timing, Timing, Timing];
  rows.push({
    what: '`volchain list --json`, 1,000 volumes',
    volchain: spread(cli),
    reference: `node -e 0: ${ms(node.median)}`,
    goal: '≤ 250 ms',
    figure: ms(cli.median),
    met: cli.median <= 250,
  });
  rows.push({
    what: '`Volchain.list()` in-process, 1,000 volumes',
    volchain: spread(lib),
    reference: '–',
    goal: '≤ 100 ms',
    figure: ms(lib.median),
    met: lib.median <= 100,
  });
}

async function rssRows(dir: string): Promise<void> {
  const node = await maxRssMiB(['-e', '0']);
  const perVolume: [number, number, number][] = [];
  for (const size of RSS_SIZES) {
    const fsInfo = await statfs(dir);
    const needBytes = size * 1.6 * 64 * 1024; // a few KiB per sparse file, with a wide margin
    if (fsInfo.bavail * fsInfo.bsize < needBytes + 1024 ** 3) {
      rows.push({
        what: `peak RSS of \`list --json\`, ${size} volumes`,
        volchain: 'skipped: not enough free disk',
        reference: '–',
        goal: '–',
        figure: '–',
        met: undefined,
      });
      continue;
    }
    const sub = join(dir, `rss-${size}`);
    await mkdir(sub);
    const { cfg, path } = await dirStorage(sub, 'rss');
    const files = await buildListing(dir, path, size);
    const runs = [];
    for (let i = 0; i < 3; i++) runs.push(await maxRssMiB([CLI, '--config', cfg, 'list', 'rss', '--json']));
    const rss = timing(runs).median;
    const kib = ((rss - node) * 1024) / size;
    perVolume.push([size, kib, rss]);
    const at10k = size >= 10000;
    rows.push({
      what: `peak RSS of \`list --json\`, ${size} volumes (${files} files)`,
      volchain: `${rss.toFixed(1)} MiB (median of 3)`,
      reference: `node -e 0: ${node.toFixed(1)} MiB`,
      goal: at10k ? '< 150 MiB at 10,000' : 'linear growth',
      figure: `${kib.toFixed(1)} KiB per volume above node -e 0`,
      met: at10k ? rss < 150 : undefined,
    });
    await rm(sub, { recursive: true, force: true });
  }
  if (perVolume.length >= 2) {
    const [[a, ka, ra], [b, kb, rb]] = [perVolume[0], perVolume[perVolume.length - 1]] as [[number, number, number], [number, number, number]];
    rows.push({
      what: `RSS growth ${a} → ${b} volumes`,
      volchain: `${(((rb - ra) * 1024) / (b - a)).toFixed(1)} KiB per added volume`,
      reference: '–',
      goal: 'linear (per-volume cost not rising)',
      figure: `above node -e 0: ${ka.toFixed(1)} → ${kb.toFixed(1)} KiB per volume`,
      met: kb <= ka * 1.25,
    });
  }
}

// ---- LVM ---------------------------------------------------------------------------------------------------

async function lvmRow(): Promise<void> {
  const vg = process.env.VOLCHAIN_TEST_VG;
  if (vg === undefined || vg === '') {
    rows.push({
      what: 'LVM scenario (bench/lvm-ops.ts)',
      volchain: 'skipped: needs LVM (VOLCHAIN_TEST_VG)',
      reference: '–',
      goal: '≤ 1.0 × PVE 9 bare',
      figure: '–',
      met: undefined,
    });
    return;
  }
  const r = spawnSync(process.execPath, [join(REPO, 'dist', 'bench', 'lvm-ops.js')], {
    env: { ...process.env, BENCH_REPS: '1' },
    encoding: 'utf8',
    maxBuffer: 64 << 20,
  });
  const m = /^\| \*\*whole scenario\*\* \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|/m.exec(r.stdout);
  if (r.status !== 0 || !m) throw new Error(`bench/lvm-ops.ts failed (status ${String(r.status)}): ${r.stderr.slice(-2000)}`);
  const ratio = Number(m[3]);
  rows.push({
    what: `LVM scenario (bench/lvm-ops.ts, VG ${vg})`,
    volchain: `${m[1] ?? '?'} ms`,
    reference: `PVE 9 bare: ${m[2] ?? '?'} ms`,
    goal: '≤ 1.0 × PVE 9 bare',
    figure: `${ratio.toFixed(2)} ×`,
    met: ratio <= 1.0,
  });
}

// ---- main --------------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'volchain-bench-compare-'));
  process.env.VOLCHAIN_STATE_DIR = join(dir, 'state'); // the CLI children inherit it: nothing lands in /var/lib
  const started = performance.now();
  const qemu = (await proc('qemu-img', ['--version'])).stdout.split('\n')[0] ?? '';
  console.log(`volchain bench compare: node ${process.version}, ${qemu}, ${cpus().length} CPUs, ${ROUNDS} rounds; load at start ${loadText()}`);
  try {
    await startupRows(dir);
    await snapshotCreateRows(dir);
    await listRows(dir);
    await rssRows(dir);
    await lvmRow();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  console.log(`\n| what | volchain (median, p10–p90) | reference, same run | goal | figure | |`);
  console.log('|---|---|---|---|---|---|');
  for (const r of rows) console.log(`| ${r.what} | ${r.volchain} | ${r.reference} | ${r.goal} | ${r.figure} | ${verdict(r.met)} |`);
  const judged = rows.filter((r) => r.met !== undefined);
  console.log(
    `\n${judged.filter((r) => r.met).length} of ${judged.length} goals met; ${((performance.now() - started) / 1000).toFixed(0)} s; load at end ${loadText()}`,
  );
}

await main();
