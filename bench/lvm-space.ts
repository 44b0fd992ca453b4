/**
 * Benchmark: VG space taken by a 10 GiB qcow2 disk with 5 snapshots, each taken after changing 5% of the
 * disk, with volchain (frozen layers shrunk to their data) versus full-size layers as Proxmox VE 9 allocates
 * them (every layer an LV of the fully-allocated size), in the same run on the same VG.
 *
 * The volchain side is real: volchain allocates the disk, qemu-io writes 5% (in distinct regions) before each
 * `snapshot create`, and the space is what `lvs` reports for the volume's LVs. The PVE side creates the same
 * chain as PVE 9 lays it out (same LV names and sizes, qcow2 overlays via qemu-img); a thick LV's size does
 * not depend on what is written into it, so no data is written there.
 *
 *   VOLCHAIN_TEST_VG=<vg with >= 75 GiB free> node dist/bench/lvm-space.js [disk GiB] [snapshots] [percent]
 * or, on a kernel without device-mapper (a sparse 80 GiB scratch disk in a QEMU guest):
 *   VM_DISKS=80G VM_TIMEOUT=3000 bash scripts/lvm-vm/run-in-vm.sh \
 *     'pvcreate -q /dev/vdb && vgcreate -q vgb /dev/vdb && VOLCHAIN_TEST_VG=vgb node dist/bench/lvm-space.js'
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseStorageConfig } from '../src/config/index.js';
import { Volchain } from '../src/engine/volchain.js';
import * as lvm from '../src/tools/lvm.js';
import { measureFullyAllocated } from '../src/tools/lvm-measure.js';
import * as qemuImg from '../src/tools/qemu-img.js';
import { run } from '../src/tools/runner.js';

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;
const vg = process.env.VOLCHAIN_TEST_VG ?? '';
const diskGiB = Number(process.argv[2] ?? 10);
const snapshots = Number(process.argv[3] ?? 5);
const percent = Number(process.argv[4] ?? 5);

function gib(bytes: number): string {
  return `${(bytes / GiB).toFixed(2)} GiB`;
}

async function volumeLvs(prefixTest: (name: string) => boolean): Promise<lvm.LvRow[]> {
  return (await lvm.listLvs(vg)).filter((r) => prefixTest(r.name));
}

async function main(): Promise<void> {
  if (vg === '') throw new Error('VOLCHAIN_TEST_VG must name a volume group to work in');
  process.env.VOLCHAIN_STATE_DIR = await mkdtemp(join(tmpdir(), 'volchain-bench-'));
  const size = diskGiB * GiB;
  const chunk = Math.floor((size * percent) / 100 / MiB) * MiB;
  const text = `lvm: bench\n\tvgname ${vg}\n\tcontent images\n\tsnapshot-as-volume-chain 1\n`;
  const vc = new Volchain(parseStorageConfig(text, 'bench.cfg'));
  const extent = (await lvm.showVg(vg)).extentSizeBytes;
  const full = lvm.roundUpTo(await measureFullyAllocated(size), extent);
  const freeBefore = (await lvm.showVg(vg)).freeBytes;

  // volchain
  const started = Date.now();
  const volid = await vc.alloc('bench', 9801, size);
  const path = `/dev/${vg}/vm-9801-disk-0.qcow2`;
  for (let i = 1; i <= snapshots; i++) {
    // Region i: 5% of the disk, distinct from the others, so each snapshot layer holds its own 5%.
    await run('qemu-io', ['-f', 'qcow2', '-c', `write -P ${i} ${i * chunk} ${chunk}`, path]);
    await vc.snapshotCreate(volid, `s${i}`);
  }
  const seconds = (Date.now() - started) / 1000;
  const ours = await volumeLvs((n) => n.includes('vm-9801-disk-0'));
  const oursBytes = ours.reduce((sum, r) => sum + r.sizeBytes, 0);
  const info = await vc.info(volid);

  // Proxmox VE 9: the same chain, every layer a full-size LV.
  const pveName = (i: number): string => (i > snapshots ? 'vm-9802-disk-0.qcow2' : `snap_vm-9802-disk-0_s${i}.qcow2`);
  for (let i = 1; i <= snapshots + 1; i++) {
    const name = pveName(i);
    await lvm.createLv({ vg, name, sizeBytes: full, tags: ['pve-vm-9802'], activation: 'ly' });
    const dev = `/dev/${vg}/${name}`;
    if (i === 1) await qemuImg.createImage(dev, 'qcow2', size, undefined);
    else await qemuImg.createOverlay(dev, pveName(i - 1), size);
  }
  const pve = await volumeLvs((n) => n.includes('vm-9802-disk-0'));
  const pveBytes = pve.reduce((sum, r) => sum + r.sizeBytes, 0);
  const freeAfter = (await lvm.showVg(vg)).freeBytes;

  console.log(
    `${diskGiB} GiB qcow2 disk, ${snapshots} snapshots, ${percent}% of the disk (${chunk / MiB} MiB) changed before each; VG ${vg}, extent ${extent / MiB} MiB`,
  );
  console.log(`writable layer (fully-allocated, rounded to an extent): ${gib(full)}`);
  console.log('volchain layers:');
  for (const r of ours.sort((a, b) => a.name.localeCompare(b.name))) console.log(`  ${r.name.padEnd(34)} ${gib(r.sizeBytes)}`);
  console.log(
    `volchain total:   ${gib(oursBytes)} (snapshots ${gib(info.chainUsedBytes - info.usedBytes)}); ${seconds.toFixed(1)} s for alloc + writes + snapshots`,
  );
  console.log(`PVE 9 full-size:  ${gib(pveBytes)} (${snapshots + 1} x ${gib(full)})`);
  console.log(`saved:            ${gib(pveBytes - oursBytes)} (${((1 - oursBytes / pveBytes) * 100).toFixed(1)}%)`);
  console.log(`VG free before/after both: ${gib(freeBefore)} / ${gib(freeAfter)} (used ${gib(freeBefore - freeAfter)} = ${gib(oursBytes + pveBytes)})`);

  await vc.free(volid);
  await run('lvremove', ['-f', ...pve.map((r) => `${vg}/${r.name}`)], { env: { PATH: `${process.env.PATH ?? ''}:/sbin:/usr/sbin` } });
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
