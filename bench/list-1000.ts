/**
 * Benchmark: `volchain list` of a dir storage holding 1,000 volumes, against what a qemu-img based tool pays
 * for the same listing (one `qemu-img info --backing-chain --output=json` per volume). Run after building:
 *   node dist/bench/list-1000.js [volumes] [vmids] [cli runs] [library runs] [qemu-img volumes]
 *
 * Layout: `volumes` qcow2 volumes spread evenly over `vmids` VMs (vm-<vmid>-disk-<n>.qcow2, 1 GiB virtual);
 * every fifth volume has three snapshots (layers snap-s1- ← snap-s2- ← snap-s3- ← current), so the storage
 * holds volumes + 3 * volumes/5 qcow2 files. The files are made fast: one base image and one overlay image
 * come from qemu-img; every layer is a copy of one of them, with the overlay's backing name rewritten in
 * its header (the same bytes `qemu-img rebase -u` would write). A sample of chains is checked with qemu-img
 * before timing, so the storage is valid for qemu-img as much as for volchain.
 *
 * Timed (medians, warm page cache): the CLI in a fresh process (`node bin/volchain.js list`, text and
 * --json), the library's Volchain.list() in-process, and qemu-img per volume, in alternating rounds (each
 * round runs every volchain variant and qemu-img on a slice of the volumes), so a change in the load of a
 * shared machine hits both sides alike. By default qemu-img runs on every volume once (about 20 s on an idle
 * machine); pass a smaller `qemu-img volumes` to time a sample and extrapolate.
 */
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseStorageConfig } from '../src/config/index.js';
import { Volchain } from '../src/engine/volchain.js';
import { rewriteQcow2Header } from '../test/fixtures/qcow2-craft.js';
import { run } from '../src/tools/runner.js';
import { ratio, show, timeAlternating, type Timing } from './qcow2-timing.js';

const volumeCount = Number(process.argv[2] ?? 1000);
const vmidCount = Number(process.argv[3] ?? 100);
const cliRuns = Number(process.argv[4] ?? 15);
const libRuns = Number(process.argv[5] ?? 30);
const qemuVolumes = Math.min(volumeCount, Number(process.argv[6] ?? volumeCount));

const STORAGE = 'bench';
/** Preloaded into a measured process: prints its max RSS (KiB) on stderr as it exits. */
const REPORT_RSS = "process.on('exit', () => process.stderr.write('volchain-bench-maxrss ' + process.resourceUsage().maxRSS + '\\n'));";
const SNAPSHOTS = ['s1', 's2', 's3'];
const repoRoot = resolve(import.meta.dirname, '..', '..');

interface Volume {
  vmid: number;
  name: string;
  /** Path of the current layer. */
  path: string;
  snapshots: number;
}

async function buildStorage(dir: string, storagePath: string): Promise<Volume[]> {
  const base = join(dir, 'template-base.qcow2');
  const overlay = join(dir, 'template-overlay.qcow2');
  await run('qemu-img', ['create', '-q', '-f', 'qcow2', base, '1G']);
  // A placeholder backing name, written without opening it (-u); each copy gets its real name below.
  await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-u', '-F', 'qcow2', '-b', 'placeholder.qcow2', overlay, '1G']);
  const overlayBytes = await readFile(overlay);

  const volumes: Volume[] = [];
  const perVm = Math.ceil(volumeCount / vmidCount);
  for (let i = 0; i < volumeCount; i++) {
    const vmid = 100 + Math.floor(i / perVm);
    const name = `vm-${vmid}-disk-${i % perVm}.qcow2`;
    const imagesDir = join(storagePath, 'images', String(vmid));
    if (i % perVm === 0) await mkdir(imagesDir, { recursive: true });
    const path = join(imagesDir, name);
    const snapshots = i % 5 === 0 ? SNAPSHOTS.length : 0;
    if (snapshots === 0) {
      await copyFile(base, path);
    } else {
      const layer = (s: string): string => `snap-${s}-${name}`;
      await copyFile(base, join(imagesDir, layer(SNAPSHOTS[0]!)));
      for (let s = 1; s < SNAPSHOTS.length; s++) {
        await writeFile(join(imagesDir, layer(SNAPSHOTS[s]!)), rewriteQcow2Header(overlayBytes, { backingFile: layer(SNAPSHOTS[s - 1]!) }));
      }
      await writeFile(path, rewriteQcow2Header(overlayBytes, { backingFile: layer(SNAPSHOTS[SNAPSHOTS.length - 1]!) }));
    }
    volumes.push({ vmid, name, path, snapshots });
  }
  return volumes;
}

const qemuInfoChain = (path: string) => run('qemu-img', ['info', '--backing-chain', '--output=json', '-f', 'qcow2', path]);

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'volchain-bench-list-'));
  try {
    const storagePath = join(dir, 'storage');
    const configPath = join(dir, 'storage.cfg');
    const configText = `dir: ${STORAGE}\n\tpath ${storagePath}\n\tcontent images\n\tsnapshot-as-volume-chain 1\n`;
    await writeFile(configPath, configText);

    const started = process.hrtime.bigint();
    const volumes = await buildStorage(dir, storagePath);
    const files = volumes.reduce((n, v) => n + 1 + v.snapshots, 0);
    const buildMs = Number(process.hrtime.bigint() - started) / 1e6;
    console.log(
      `node ${process.version}, ${String((await run('qemu-img', ['--version'])).stdout.split('\n')[0])}, ${cpus().length} CPUs, load ${loadavg()
        .map((l) => l.toFixed(1))
        .join(' ')}`,
    );
    console.log(
      `dir storage: ${volumes.length} volumes over ${vmidCount} VMs, ${volumes.filter((v) => v.snapshots > 0).length} of them ` +
        `with ${SNAPSHOTS.length} snapshots; ${files} qcow2 files (built in ${(buildMs / 1000).toFixed(1)} s)`,
    );

    // Sanity: qemu-img agrees the chains are what volchain will read, and volchain lists every volume.
    for (const v of volumes.slice(0, 10)) {
      const chain = JSON.parse((await qemuInfoChain(v.path)).stdout) as unknown[];
      if (chain.length !== v.snapshots + 1) throw new Error(`qemu-img sees ${chain.length} layers in ${v.path}`);
    }
    const vc = new Volchain(parseStorageConfig(configText, configPath));
    const listed = await vc.list(STORAGE);
    if (listed.length !== volumes.length) throw new Error(`list() found ${listed.length} volumes, expected ${volumes.length}`);
    const withSnaps = listed.filter((v) => v.snapshots?.length === SNAPSHOTS.length).length;
    if (withSnaps !== volumes.filter((v) => v.snapshots > 0).length) throw new Error(`list() found ${withSnaps} volumes with snapshots`);

    const cli = (json: boolean) => () =>
      run(process.execPath, [join(repoRoot, 'bin', 'volchain.js'), '--config', configPath, 'list', STORAGE, ...(json ? ['--json'] : [])]);
    // The baseline: one qemu-img per volume, one after another, as a qemu-img based listing would do. It is
    // spread over the rounds (a slice of the volumes per round), alternating with the volchain runs, so both
    // sides see the same machine load.
    const sample = volumes.slice(0, qemuVolumes);
    const rounds = cliRuns;
    const perVolume: number[] = [];
    let slice = 0;
    const qemuSlice = async (): Promise<void> => {
      const from = Math.floor((slice * sample.length) / rounds);
      const to = Math.floor(((slice + 1) * sample.length) / rounds);
      slice++;
      for (const v of sample.slice(from, to)) {
        const t = process.hrtime.bigint();
        await qemuInfoChain(v.path);
        perVolume.push(Number(process.hrtime.bigint() - t) / 1e6);
      }
    };
    for (const v of sample.slice(0, 5)) await qemuInfoChain(v.path); // warm-up
    const [cliText, cliJson, nodeStart, lib] = (await timeAlternating(
      [
        { fn: cli(false), perRound: 1, warmup: 2 },
        { fn: cli(true), perRound: 1, warmup: 2 },
        { fn: () => run(process.execPath, ['-e', '0']), perRound: 1, warmup: 2 },
        { fn: () => vc.list(STORAGE), perRound: Math.max(1, Math.ceil(libRuns / rounds)), warmup: 5 },
        { fn: qemuSlice, perRound: 1, warmup: 0 },
      ],
      rounds,
    )) as [Timing, Timing, Timing, Timing];
    const sampleMs = perVolume.reduce((a, b) => a + b, 0);
    const qemuTotalMs = (sampleMs / sample.length) * volumes.length;
    perVolume.sort((a, b) => a - b);
    const qemuTotal: Timing = { median: qemuTotalMs, p10: NaN, p90: NaN, runs: 1 };

    const W = 58;
    console.log('');
    console.log(show('volchain list (CLI process, text)', cliText, W));
    console.log(show('volchain list --json (CLI process)', cliJson, W));
    console.log(show('  of which: node start alone (node -e 0)', nodeStart, W));
    console.log(show('Volchain.list() in-process', lib, W));
    console.log(
      `${'qemu-img info --backing-chain, once per volume'.padEnd(W)} ${qemuTotalMs.toFixed(1).padStart(9)} ms  ` +
        `(${sample.length === volumes.length ? 'all' : `${sample.length} timed, extrapolated to`} ${volumes.length} volumes; ` +
        `median ${String(perVolume[perVolume.length >> 1]?.toFixed(1))} ms per volume)`,
    );
    console.log(ratio('ratio qemu-img / CLI list', qemuTotal, cliText, W));
    console.log(ratio('ratio qemu-img / CLI list --json', qemuTotal, cliJson, W));
    console.log(ratio('ratio qemu-img / Volchain.list()', qemuTotal, lib, W));
    console.log(`${'Volchain.list() per volume'.padEnd(W)} ${((lib.median / volumes.length) * 1000).toFixed(1).padStart(9)} µs`);

    // Peak memory (issue 16: under 150 MiB at 10,000 volumes, growing linearly): the max RSS each process
    // reports at exit, median of three, against node -e 0's in the same run.
    const rssOf = async (args: string[]): Promise<number> => {
      const r = await run(process.execPath, ['--import', `data:text/javascript,${encodeURIComponent(REPORT_RSS)}`, ...args]);
      const m = /^volchain-bench-maxrss (\d+)$/m.exec(r.stderr);
      if (!m) throw new Error(`no max RSS reported: ${r.stderr}`);
      return Number(m[1]) / 1024;
    };
    const med3 = async (args: string[]): Promise<number> => {
      const v = [await rssOf(args), await rssOf(args), await rssOf(args)].sort((a, b) => a - b);
      return v[1] ?? NaN;
    };
    const rssList = await med3([join(repoRoot, 'bin', 'volchain.js'), '--config', configPath, 'list', STORAGE, '--json']);
    const rssNode = await med3(['-e', '0']);
    console.log(`${'peak RSS: volchain list --json (CLI process)'.padEnd(W)} ${rssList.toFixed(1).padStart(9)} MiB`);
    console.log(`${'peak RSS: node -e 0'.padEnd(W)} ${rssNode.toFixed(1).padStart(9)} MiB`);
    console.log(`${'peak RSS above node -e 0, per volume'.padEnd(W)} ${(((rssList - rssNode) * 1024) / volumes.length).toFixed(2).padStart(9)} KiB`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
