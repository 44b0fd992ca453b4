/**
 * Benchmark: wall time and subprocesses per operation on LVM storage (each LVM command reads the VG's
 * metadata and takes its locks, so the count matters more than anything else). Needs a VG to work in:
 *   VOLCHAIN_TEST_VG=<vg> node dist/bench/lvm-ops.js [virtual size MiB]
 * or, on a kernel without device-mapper:
 *   VM_DISKS=2G bash scripts/lvm-vm/run-in-vm.sh \
 *     'pvcreate -q /dev/vdb && vgcreate -q vgb /dev/vdb && VOLCHAIN_TEST_VG=vgb node dist/bench/lvm-ops.js'
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseStorageConfig } from '../src/config/index.js';
import { Volchain } from '../src/engine/volchain.js';
import { observeCommands } from '../src/tools/runner.js';

const vg = process.env.VOLCHAIN_TEST_VG;
if (!vg) {
  console.error('VOLCHAIN_TEST_VG must name a volume group to work in');
  process.exit(2);
}
const sizeMiB = Number(process.argv[2] ?? 64);

async function main(): Promise<void> {
  process.env.VOLCHAIN_STATE_DIR = await mkdtemp(join(tmpdir(), 'volchain-bench-'));
  const text = `lvm: bench\n\tvgname ${vg as string}\n\tcontent images\n\tsnapshot-as-volume-chain 1\n`;
  const vc = new Volchain(parseStorageConfig(text, 'bench.cfg'));
  let commands: string[] = [];
  const stop = observeCommands((argv) => commands.push(argv[0] === 'qemu-img' ? `qemu-img ${argv[1] ?? ''}` : argv[0] ?? '?'));
  const rows: string[] = [];
  const time = async (what: string, fn: () => Promise<unknown>): Promise<void> => {
    commands = [];
    const t0 = Date.now();
    await fn();
    const counts = new Map<string, number>();
    for (const c of commands) counts.set(c, (counts.get(c) ?? 0) + 1);
    const detail = [...counts].map(([c, n]) => `${c}×${n}`).join(' ');
    rows.push(`${what.padEnd(28)} ${String(Date.now() - t0).padStart(6)} ms  ${String(commands.length).padStart(3)} cmds  ${detail}`);
  };
  let volid = '';
  await time('alloc', async () => (volid = await vc.alloc('bench', 9901, `${sizeMiB}M`)));
  await time('snapshot create s1', () => vc.snapshotCreate(volid, 's1'));
  await time('snapshot create s2', () => vc.snapshotCreate(volid, 's2'));
  await time('snapshot create s3', () => vc.snapshotCreate(volid, 's3'));
  await time('snapshot list', () => vc.snapshotList(volid));
  await time('list', () => vc.list('bench', { vmid: 9901 }));
  await time('rollback s2', () => vc.snapshotRollback(volid, 's2'));
  await time('delete s1 (one child)', () => vc.snapshotDelete(volid, 's1'));
  await time('delete s2 (two children)', () => vc.snapshotDelete(volid, 's2'));
  await time('resize +64M', () => vc.resize(volid, `${sizeMiB + 64}M`));
  await time('free', () => vc.free(volid));
  stop();
  console.log(`LVM operations on VG ${vg as string}, ${sizeMiB} MiB qcow2 volume`);
  for (const r of rows) console.log(r);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
