/**
 * `export` / `import` across storage types on real LVM (VM ids 7541–7544 only): a dir volume with a branched
 * snapshot tree (a zero in s2 hiding s1's data) is exported and imported as qcow2 LVs (dir → LVM), and that LVM
 * volume is exported and imported back into files (LVM → dir). Every view is compared with its source
 * (`qemu-img compare`) and read back by pattern; each LV is checked clean and carries its VM's tag; a truncated
 * stream into LVM is refused and leaves no LV of its VM.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { createReadStream } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { createWriteStream } from 'node:fs';
import { join } from 'node:path';
import type { Volchain } from '../../src/engine/volchain.js';
import { VolchainError } from '../../src/errors.js';
import { checkClean, runCommand } from '../integration/helpers.js';
import { MiB, VG, cleanupState, assertSameView, lvmAndDirStorages, lvs, mustLv, qemuIo, removeVmLvs, requireVg, type Io } from './helpers.js';

const VMIDS = [7541, 7542, 7543];
const SIZE = 16 * MiB;
let dirRoot: string | undefined;

after(async () => {
  if (VG === '') return;
  await removeVmLvs(VMIDS);
  await cleanupState();
  if (dirRoot !== undefined) await rm(dirRoot, { recursive: true, force: true });
});

const VIEWS: Record<string, Io[]> = {
  s1: [
    { byte: 0xa1, offset: 0, len: MiB },
    { byte: 0, offset: MiB, len: MiB },
  ],
  s2: [
    { byte: 0, offset: 0, len: 64 * 1024 },
    { byte: 0xa1, offset: 64 * 1024, len: MiB - 64 * 1024 },
    { byte: 0xb2, offset: MiB, len: MiB },
  ],
  s3: [
    { byte: 0xa1, offset: 0, len: MiB },
    { byte: 0xc3, offset: 2 * MiB, len: MiB },
  ],
  current: [
    { byte: 0xa1, offset: 0, len: MiB },
    { byte: 0xc3, offset: 2 * MiB, len: MiB },
    { byte: 0xd4, offset: 3 * MiB, len: MiB },
  ],
};

async function exportTo(vc: Volchain, volid: string, file: string): Promise<void> {
  const out = createWriteStream(file);
  await vc.exportChain(volid, out);
  await new Promise<void>((resolve, reject) => {
    out.once('error', reject);
    out.end(() => resolve());
  });
}

test('export a branched dir chain, import it into LVM, export that and import it back into files: every view equal', async () => {
  requireVg();
  const { vc, root, dir } = await lvmAndDirStorages('volchain-lvm-export-');
  dirRoot = root;
  const dirLayer = (vmid: number, view: string): string =>
    join(dir, 'images', String(vmid), view === 'current' ? `vm-${vmid}-disk-0.qcow2` : `snap-${view}-vm-${vmid}-disk-0.qcow2`);
  const lvLayer = (view: string): string => `/dev/${VG}/${view === 'current' ? 'vm-7541-disk-0.qcow2' : `snap_vm-7541-disk-0_${view}.qcow2`}`;

  // The source: s1 <- s2 (zeroing 64 KiB of s1's data), s1 <- s3 <- current, on dir (VM 7541).
  const src = await vc.alloc('dd', 7541, SIZE);
  const top = dirLayer(7541, 'current');
  await qemuIo(top, [], [{ byte: 0xa1, offset: 0, len: MiB }]);
  await vc.snapshotCreate(src, 's1');
  await qemuIo(top, [], [{ byte: 0xb2, offset: MiB, len: MiB }]);
  const z = await runCommand('qemu-io', ['-f', 'qcow2', '-c', `write -z 0 ${64 * 1024}`, top]);
  assert.equal(z.code, 0, z.stderr);
  await vc.snapshotCreate(src, 's2');
  await vc.snapshotRollback(src, 's1');
  await qemuIo(top, [], [{ byte: 0xc3, offset: 2 * MiB, len: MiB }]);
  await vc.snapshotCreate(src, 's3');
  await qemuIo(top, [], [{ byte: 0xd4, offset: 3 * MiB, len: MiB }]);

  // dir -> LVM
  const stream = join(dirRoot, 'a.vcx');
  await exportTo(vc, src, stream);
  const plan = await vc.importChain('tvg', 7541, createReadStream(stream));
  assert.equal(plan.volid, 'tvg:vm-7541-disk-0.qcow2');
  for (const [view, reads] of Object.entries(VIEWS)) {
    await assertSameView(dirLayer(7541, view), lvLayer(view), `dir -> LVM ${view}`);
    await qemuIo(lvLayer(view), reads, [], `LVM ${view}`);
    await checkClean(lvLayer(view));
    const row = await mustLv(lvLayer(view).split('/').pop() ?? '');
    assert.ok(row.tags.includes('pve-vm-7541'), `${row.name} carries its VM's tag: ${row.tags.join(',')}`);
  }
  const listing = await vc.snapshotList('tvg:vm-7541-disk-0.qcow2');
  assert.deepEqual(
    listing.snapshots.map((s) => [s.name, s.parent]),
    [
      ['s1', null],
      ['s2', 's1'],
      ['s3', 's1'],
    ],
  );

  // LVM -> dir (VM 7542)
  const back = join(dirRoot, 'b.vcx');
  await exportTo(vc, 'tvg:vm-7541-disk-0.qcow2', back);
  // The same tree with the same deltas: each layer's data and zero bytes, whatever storage they come from.
  const shape = async (volid: string): Promise<unknown> =>
    (await vc.exportChain(volid, undefined, { dryRun: true })).manifest.layers.map((l) => [l.snapshot, l.parent, l.dataBytes, l.zeroBytes]);
  assert.deepEqual(await shape('tvg:vm-7541-disk-0.qcow2'), await shape(src), 'the LVM export carries the same layers');
  await vc.importChain('dd', 7542, createReadStream(back));
  for (const view of Object.keys(VIEWS)) await assertSameView(lvLayer(view), dirLayer(7542, view), `LVM -> dir ${view}`);

  // A truncated stream into LVM (VM 7543): refused (exit 8), no LV of the VM left.
  const whole = await readFile(stream);
  await writeFile(join(dirRoot, 'cut.vcx'), whole.subarray(0, whole.length - 100));
  await assert.rejects(
    vc.importChain('tvg', 7543, createReadStream(join(dirRoot, 'cut.vcx'))),
    (err: unknown) => err instanceof VolchainError && err.exitStatus === 8,
  );
  assert.deepEqual(
    (await lvs()).map((r) => r.name).filter((n) => n.includes('7543')),
    [],
    'no LV of VM 7543 after the refused import',
  );
});
