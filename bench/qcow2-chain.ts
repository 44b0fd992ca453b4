/**
 * Benchmark: reading and validating a deep chain natively versus `qemu-img info --backing-chain`.
 * Run after building:
 *   node dist/bench/qcow2-chain.js [layers] [native runs] [qemu-img runs]
 *
 * Part 1 (qcow2 reader alone): a chain of `layers` qcow2 files (128k clusters, extended_l2) made with
 * qemu-img; walkChain (open, read and validate every header, follow the backing names) against
 * `qemu-img info --backing-chain --output=json -f qcow2` on the same top.
 *
 * Part 2 (the whole volchain reader path): a dir storage with one volume made by the engine itself
 * (Volchain.alloc + `layers` snapshotCreate calls, so the chain has layers+1 files), then in-process
 * Volchain.info(), snapshotList() (both read every layer's L1/L2 tables for byte counts) and list() of the
 * storage (headers only), against qemu-img on the same chain.
 *
 * Every figure is the median of many runs after warm-up, with a warm page cache (the files were just written
 * and read). The contenders are timed in alternating rounds (timeAlternating), so a change in the load of a
 * shared machine hits them alike; each in-process block starts after 40 ms of untimed runs, the time the
 * CPU needs to recover from the qemu-img process that ran just before. qemu-img includes its process start, which is what a qemu-img based tool
 * pays for every call.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseStorageConfig } from '../src/config/index.js';
import { Volchain } from '../src/engine/volchain.js';
import { walkChain } from '../src/qcow2/index.js';
import { run } from '../src/tools/runner.js';
import { ratio, show, timeAlternating, type Timing } from './qcow2-timing.js';

const layers = Number(process.argv[2] ?? 50);
const nativeRuns = Number(process.argv[3] ?? 1000);
const qemuRuns = Number(process.argv[4] ?? 30);
/** Untimed runs before each in-process block (see timeAlternating). */
const SETTLE_MS = 40;

const qemuInfoChain = (top: string) => run('qemu-img', ['info', '--backing-chain', '--output=json', '-f', 'qcow2', top]);

async function rawChain(dir: string): Promise<void> {
  const name = (i: number): string => `snap-l${String(i).padStart(3, '0')}-vm-100-disk-0.qcow2`;
  const TOP = 'vm-100-disk-0.qcow2';
  // Oldest first; the top is named like a volume, the rest like snapshot layers.
  const opts = ['-o', 'cluster_size=128k,extended_l2=on'];
  await run('qemu-img', ['create', '-q', '-f', 'qcow2', ...opts, join(dir, name(0)), '1G']);
  for (let i = 1; i < layers; i++) {
    const file = i === layers - 1 ? TOP : name(i);
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', ...opts, '-F', 'qcow2', '-b', name(i - 1), join(dir, file)]);
  }
  const top = join(dir, TOP);
  const policy = { isExpectedLayerName: (ref: string) => /^snap-l\d{3}-vm-100-disk-0\.qcow2$/.test(ref) };

  const chain = await walkChain(top, TOP, policy); // sanity check
  if (chain.length !== layers) throw new Error(`walkChain found ${chain.length} layers, expected ${layers}`);
  const info = JSON.parse((await qemuInfoChain(top)).stdout) as unknown[];
  if (info.length !== layers) throw new Error(`qemu-img found ${info.length} layers, expected ${layers}`);

  const [native, qemu] = (await timeAlternating(
    [
      { fn: () => walkChain(top, TOP, policy), perRound: Math.ceil(nativeRuns / qemuRuns), settleMs: SETTLE_MS },
      { fn: () => qemuInfoChain(top), perRound: 1, warmup: 3 },
    ],
    qemuRuns,
  )) as [Timing, Timing];
  console.log(`\n1. qcow2 reader: chain of ${layers} layers made by qemu-img (128k clusters, extended_l2)`);
  console.log(show('walkChain (native, validated, in-process)', native));
  console.log(show('qemu-img info --backing-chain --output=json', qemu));
  console.log(ratio('ratio qemu-img / walkChain', qemu, native));
}

async function engineChain(dir: string): Promise<void> {
  const storagePath = join(dir, 'storage');
  const config = parseStorageConfig(`dir: bench\n\tpath ${storagePath}\n\tcontent images\n\tsnapshot-as-volume-chain 1\n`, join(dir, 'storage.cfg'));
  const vc = new Volchain(config);
  const volid = await vc.alloc('bench', 100, '1G');
  for (let i = 1; i <= layers; i++) await vc.snapshotCreate(volid, `s${String(i).padStart(3, '0')}`);
  const path = await vc.path(volid);
  const name = path.slice(path.lastIndexOf('/') + 1);

  const listing = await vc.snapshotList(volid);
  if (listing.snapshots.length !== layers) throw new Error(`snapshotList found ${listing.snapshots.length} snapshots`);
  const chain = await walkChain(path, name, { isExpectedLayerName: (ref) => ref.startsWith('snap-') && ref.endsWith(name) });
  if (chain.length !== layers + 1) throw new Error(`walkChain found ${chain.length} layers, expected ${layers + 1}`);
  const info = JSON.parse((await qemuInfoChain(path)).stdout) as unknown[];
  if (info.length !== layers + 1) throw new Error(`qemu-img found ${info.length} layers, expected ${layers + 1}`);

  const perRound = Math.ceil(nativeRuns / qemuRuns);
  const engineRuns = Math.max(1, Math.ceil(perRound / 4));
  const [walk, listT, infoT, snapT, qemu] = (await timeAlternating(
    [
      { fn: () => walkChain(path, name, { isExpectedLayerName: (ref) => ref.startsWith('snap-') }), perRound, settleMs: SETTLE_MS },
      { fn: () => vc.list('bench'), perRound: engineRuns, settleMs: SETTLE_MS },
      { fn: () => vc.info(volid), perRound: engineRuns, settleMs: SETTLE_MS },
      { fn: () => vc.snapshotList(volid), perRound: engineRuns, settleMs: SETTLE_MS },
      { fn: () => qemuInfoChain(path), perRound: 1, warmup: 3 },
    ],
    qemuRuns,
  )) as [Timing, Timing, Timing, Timing, Timing];
  console.log(`\n2. volchain reader path: dir storage, ${volid} with ${layers} snapshots (${layers + 1} layers, made by the engine)`);
  console.log(show('walkChain (qcow2 reader alone)', walk));
  console.log(show('Volchain.list(storage) (headers only)', listT));
  console.log(show('Volchain.info(volid) (headers + L1/L2 allocation)', infoT));
  console.log(show('Volchain.snapshotList(volid) (same reads + tree)', snapT));
  console.log(show('qemu-img info --backing-chain --output=json', qemu));
  console.log(ratio('ratio qemu-img / walkChain', qemu, walk));
  console.log(ratio('ratio qemu-img / list()', qemu, listT));
  console.log(ratio('ratio qemu-img / info()', qemu, infoT));
  console.log(ratio('ratio qemu-img / snapshotList()', qemu, snapT));
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'volchain-bench-chain-'));
  try {
    console.log(
      `node ${process.version}, ${String((await run('qemu-img', ['--version'])).stdout.split('\n')[0])}, ${cpus().length} CPUs, load ${loadavg()
        .map((l) => l.toFixed(1))
        .join(' ')}`,
    );
    await rawChain(dir);
    await engineChain(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
