/**
 * Benchmark (issue 17): bytes `volchain move` copies for a branched snapshot tree, against the sum of the
 * layers' allocated data (goal: at most 1.05 times) and against flattening copies (`qemu-img convert` of the
 * current state alone, which loses the snapshots, and of every view, which keeps them as full copies), in
 * the same run on the same tree. Run after building: `node dist/bench/move-bytes.js [virtual MiB]`.
 *
 * Tree on a dir storage (volchain's own alloc/snapshot/rollback): s1 (64 MiB written) <- s2 (16 MiB), and
 * s1 <- s3 (32 MiB) <- current (8 MiB data, 4 MiB zeroed over s1's data). The tree moves to a second dir
 * storage (a second directory of the same file system). Data bytes are read with `qemu-img map` (the
 * layer's own clusters with data, depth 0): the exact figure, whatever the file system's block accounting.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseStorageConfig } from '../src/config/index.js';
import { Volchain } from '../src/engine/volchain.js';
import { run } from '../src/tools/runner.js';

const MiB = 1024 * 1024;
const virtualMiB = Number(process.argv[2] ?? 1024);

/** Bytes with data that the image itself holds (not its backing chain). */
async function ownDataBytes(path: string): Promise<number> {
  const map = JSON.parse((await run('qemu-img', ['map', '-f', 'qcow2', '--output=json', path])).stdout) as { length: number; depth: number; data: boolean }[];
  return map.filter((e) => e.depth === 0 && e.data).reduce((sum, e) => sum + e.length, 0);
}

async function write(path: string, byte: number, offsetMiB: number, lenMiB: number): Promise<void> {
  // 1 MiB writes every 4 MiB: data spread over the disk as a guest's would be.
  const cmds: string[] = [];
  for (let i = 0; i < lenMiB; i++) cmds.push('-c', `write -P ${byte} ${(offsetMiB + i * 4) * MiB} ${MiB}`);
  await run('qemu-io', ['-f', 'qcow2', ...cmds, path]);
}

async function main(): Promise<void> {
  const root = await mkdtemp(join(tmpdir(), 'volchain-bench-move-'));
  try {
    const [a, b] = [join(root, 'a'), join(root, 'b')];
    await mkdir(a);
    await mkdir(b);
    const text = `dir: aa\n\tpath ${a}\n\tcontent images\n\tsnapshot-as-volume-chain 1\n\ndir: bb\n\tpath ${b}\n\tcontent images\n\tsnapshot-as-volume-chain 1\n`;
    const cfg = join(root, 'storage.cfg');
    await writeFile(cfg, text);
    const vc = new Volchain(parseStorageConfig(text, cfg));
    const volid = await vc.alloc('aa', 100, virtualMiB * MiB);
    const layer = (dir: string, name: string): string => join(dir, 'images', '100', name);
    const top = layer(a, 'vm-100-disk-0.qcow2');
    await write(top, 0x11, 0, 64);
    await vc.snapshotCreate(volid, 's1');
    await write(top, 0x22, 1, 16);
    await vc.snapshotCreate(volid, 's2');
    await vc.snapshotRollback(volid, 's1');
    await write(top, 0x33, 2, 32);
    await vc.snapshotCreate(volid, 's3');
    await write(top, 0x44, 3, 8);
    await run('qemu-io', ['-f', 'qcow2', '-c', `write -z 0 ${4 * MiB}`, top]);
    const names = ['snap-s1-vm-100-disk-0.qcow2', 'snap-s2-vm-100-disk-0.qcow2', 'snap-s3-vm-100-disk-0.qcow2', 'vm-100-disk-0.qcow2'];
    let allocated = 0;
    for (const n of names) allocated += await ownDataBytes(layer(a, n));

    // Flattening copies, before the move removes the source: the current state alone, and every view.
    let flatAll = 0;
    let flatTop = 0;
    let flatMs = 0;
    for (const n of names) {
      const out = join(root, `flat-${n}`);
      const t0 = performance.now();
      await run('qemu-img', ['convert', '-f', 'qcow2', '-O', 'qcow2', '-o', 'cluster_size=128k,extended_l2=on', layer(a, n), out]);
      const ms = performance.now() - t0;
      const bytes = await ownDataBytes(out);
      flatAll += bytes;
      if (n === 'vm-100-disk-0.qcow2') {
        flatTop = bytes;
        flatMs = ms;
      }
    }

    const t0 = performance.now();
    const plan = await vc.move(volid, 'bb');
    const moveMs = performance.now() - t0;
    let written = 0;
    for (const n of names) written += await ownDataBytes(layer(b, n));

    const mib = (n: number): string => `${(n / MiB).toFixed(1)} MiB`;
    console.log(`tree: ${virtualMiB} MiB virtual, 3 snapshots (two branches), ${names.length} layers`);
    console.log(`sum of the layers' allocated data:        ${mib(allocated)}`);
    console.log(`volchain move: planned bytes to copy      ${mib(plan.bytesMoved)} (${(plan.bytesMoved / allocated).toFixed(3)}x)`);
    console.log(
      `volchain move: data written on the target ${mib(written)} (${(written / allocated).toFixed(3)}x), ${moveMs.toFixed(0)} ms incl. compare of every view`,
    );
    console.log(`flattening copy of the current state:    ${mib(flatTop)} (${(flatTop / allocated).toFixed(3)}x; snapshots lost), ${flatMs.toFixed(0)} ms`);
    console.log(`flattening copy of every view:           ${mib(flatAll)} (${(flatAll / allocated).toFixed(3)}x; snapshots kept as full copies)`);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

await main();
