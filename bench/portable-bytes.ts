/**
 * Benchmark (issue 17): bytes `volchain export` writes for a branched snapshot tree, against the sum of the
 * data its layers allocate (the goal: at most 1.05x) and against a flattening copy (`qemu-img convert` of the
 * top, which keeps only the current state and loses every snapshot), measured in the same run. Run after
 * building:
 *   node dist/bench/portable-bytes.js [virtual MiB] [seed]
 *
 * The chain (1 GiB virtual by default, dir storage, volchain's qcow2 options): s1 with 48 MiB in 256 KiB
 * pieces; s2 on s1 overwriting 8 MiB and zeroing 4 MiB of it; rollback to s1; s3 with 16 MiB in 64 KiB
 * pieces; the current layer with 4 MiB of 4 KiB guest writes (subclusters of the extended L2). Offsets are
 * pseudo-random from the seed; the data is pattern bytes (nothing is compressed, so it does not matter).
 * "Allocated data" of a layer is what `qemu-img map` says the layer itself holds (depth 0, data); the layer
 * files' own sizes on disk (`du`) are shown too. Also timed: the export (to a file) and the import of it.
 */
import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { ownExtents } from '../src/tools/qemu-layer-io.js';

const virtualMiB = Number(process.argv[2] ?? 1024);
let seed = Number(process.argv[3] ?? 17);
const MiB = 1024 * 1024;
const BIN = resolve(import.meta.dirname, '..', '..', 'bin', 'volchain.js');

/** mulberry32: 32-bit integer arithmetic only (a float LCG loses precision and cycles early). */
function rand(n: number): number {
  seed = (seed + 0x6d2b79f5) | 0;
  let x = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
  return ((x ^ (x >>> 14)) >>> 0) % n;
}

function sh(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env: { ...process.env, LC_ALL: 'C' }, maxBuffer: 64 * MiB });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** qemu-io writes of `total` bytes in `piece`-byte pieces at random piece-aligned offsets (`-z`: zeroes). */
function scatter(path: string, total: number, piece: number, byte: number, zero = false): void {
  const args = ['-f', 'qcow2'];
  for (let done = 0; done < total; done += piece) {
    const at = rand(Math.floor((virtualMiB * MiB) / piece)) * piece;
    args.push('-c', zero ? `write -z ${at} ${piece}` : `write -P ${(byte + done / piece) % 250} ${at} ${piece}`);
    if (args.length > 4000) {
      sh('qemu-io', [...args, path]);
      args.length = 2;
    }
  }
  if (args.length > 2) sh('qemu-io', [...args, path]);
}

async function onDisk(path: string): Promise<number> {
  return (await stat(path)).blocks * 512;
}

function ms(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e6;
}

const root = await mkdtemp(join(tmpdir(), 'volchain-bench-portable-'));
try {
  const a = join(root, 'a');
  const b = join(root, 'b');
  await mkdir(a);
  await mkdir(b);
  const cfg = join(root, 'storage.cfg');
  await writeFile(
    cfg,
    `dir: aa\n\tpath ${a}\n\tcontent images\n\tsnapshot-as-volume-chain 1\n\ndir: bb\n\tpath ${b}\n\tcontent images\n\tsnapshot-as-volume-chain 1\n`,
  );
  const vc = (...args: string[]): string => sh(process.execPath, [BIN, '--config', cfg, ...args]);
  const volid = 'aa:100/vm-100-disk-0.qcow2';
  const dir = join(a, 'images', '100');
  const top = join(dir, 'vm-100-disk-0.qcow2');
  vc('alloc', 'aa', '100', `${virtualMiB}M`);
  scatter(top, 48 * MiB, 256 * 1024, 1);
  vc('snapshot', 'create', volid, 's1');
  scatter(top, 8 * MiB, 128 * 1024, 60);
  scatter(top, 4 * MiB, 128 * 1024, 0, true);
  vc('snapshot', 'create', volid, 's2');
  vc('snapshot', 'rollback', volid, 's1');
  scatter(top, 16 * MiB, 64 * 1024, 90);
  vc('snapshot', 'create', volid, 's3');
  scatter(top, 4 * MiB, 4096, 120);

  const layers = ['snap-s1-vm-100-disk-0.qcow2', 'snap-s2-vm-100-disk-0.qcow2', 'snap-s3-vm-100-disk-0.qcow2', 'vm-100-disk-0.qcow2'];
  let allocated = 0;
  let zeroes = 0;
  let files = 0;
  for (const layer of layers) {
    const own = await ownExtents(join(dir, layer));
    allocated += own.filter((e) => e.kind === 'data').reduce((s, e) => s + e.length, 0);
    zeroes += own.filter((e) => e.kind === 'zero').reduce((s, e) => s + e.length, 0);
    files += await onDisk(join(dir, layer));
  }

  const out = join(root, 'chain.vcx');
  let t = process.hrtime.bigint();
  vc('export', volid, '-o', out);
  const exportMs = ms(t);
  const streamBytes = (await stat(out)).size;
  t = process.hrtime.bigint();
  vc('import', 'bb', '200', '-i', out);
  const importMs = ms(t);
  const flat = join(root, 'flat.qcow2');
  t = process.hrtime.bigint();
  sh('qemu-img', ['convert', '-f', 'qcow2', '-O', 'qcow2', '-o', 'cluster_size=128k,extended_l2=on', top, flat]);
  const flatMs = ms(t);
  const flatBytes = await onDisk(flat);
  const flatData = (await ownExtents(flat)).filter((e) => e.kind === 'data').reduce((s, e) => s + e.length, 0);
  // The import is the proof that the bytes counted are the whole tree.
  for (const view of ['s1', 's2', 's3']) {
    sh('qemu-img', [
      'compare',
      '-f',
      'qcow2',
      '-F',
      'qcow2',
      join(dir, `snap-${view}-vm-100-disk-0.qcow2`),
      join(b, 'images', '200', `snap-${view}-vm-200-disk-0.qcow2`),
    ]);
  }
  sh('qemu-img', ['compare', '-f', 'qcow2', '-F', 'qcow2', top, join(b, 'images', '200', 'vm-200-disk-0.qcow2')]);

  const m = (n: number): string => `${(n / MiB).toFixed(2)} MiB`;
  console.log(`chain: ${virtualMiB} MiB virtual, 4 layers (3 snapshots, two branches), seed ${process.argv[3] ?? 17}`);
  console.log(`| what | bytes | vs allocated data |`);
  console.log(`|---|---|---|`);
  console.log(`| layers' allocated data (qemu-img map, depth 0) | ${m(allocated)} (+ ${m(zeroes)} of zero clusters, no data) | 1.000x |`);
  console.log(`| layer files on disk (du) | ${m(files)} | ${(files / allocated).toFixed(3)}x |`);
  console.log(`| volchain export stream (whole tree) | ${m(streamBytes)} (${streamBytes} bytes) | ${(streamBytes / allocated).toFixed(4)}x |`);
  console.log(
    `| qemu-img convert of the top (current state only, no snapshots) | ${m(flatBytes)} on disk, ${m(flatData)} data | ${(flatBytes / allocated).toFixed(3)}x |`,
  );
  console.log(`times: export ${exportMs.toFixed(0)} ms, import ${importMs.toFixed(0)} ms, qemu-img convert of the top ${flatMs.toFixed(0)} ms`);
  if (streamBytes > 1.05 * allocated) {
    console.error(`export wrote ${(streamBytes / allocated).toFixed(4)}x the allocated data: above the 1.05x goal`);
    process.exitCode = 1;
  }
} finally {
  await rm(root, { recursive: true, force: true });
}
