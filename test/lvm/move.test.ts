/**
 * `move` across storage types on real LVM: a small branched tree (s1 <- s2, s1 <- current) moves from dir to
 * LVM, is reassigned there to another VM id, moves to a second VG (LVM -> LVM), then from LVM back to dir under
 * a third VM id; every view
 * is compared (`qemu-img compare`) with a twin tree that stays on dir, every new layer checks clean, the LVs
 * carry their VM's tag and the source is gone. One crash in the middle of the copies onto LVM, then repair: no LV left, the source intact.
 * VM ids 7521-7528 only; assertions only about this file's LVs (other files run beside it on the VG).
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { BIN, checkClean, runCommand } from '../integration/helpers.js';
import { MiB, VG, VG2, cleanupState, assertSameView, lvmAndDirStorages, lvs, mustLv, qemuIo, removeVmLvs, requireVg, requireVg2 } from './helpers.js';

const VMIDS = [7521, 7522, 7523, 7524, 7525];
const SIZE = 8 * MiB;
let dirRoot: string | undefined;

after(async () => {
  if (VG === '') return;
  await removeVmLvs(VMIDS);
  if (VG2 !== '') await removeVmLvs(VMIDS, VG2);
  await cleanupState();
  if (dirRoot !== undefined) await rm(dirRoot, { recursive: true, force: true });
});

test('move dir -> LVM, LVM -> LVM (another VG) and LVM -> dir carries a branched tree; a crash mid-copy is walked back by repair', async () => {
  requireVg();
  requireVg2();
  const { vc, cfg, root, dir } = await lvmAndDirStorages('volchain-lvm-move-', { secondVg: true });
  dirRoot = root;
  const dirFile = (vmid: number, view: string): string =>
    join(dir, 'images', String(vmid), view === 'current' ? `vm-${vmid}-disk-0.qcow2` : `snap-${view}-vm-${vmid}-disk-0.qcow2`);
  const lvFile = (vmid: number, view: string, vgName = VG): string =>
    `/dev/${vgName}/${view === 'current' ? `vm-${vmid}-disk-0.qcow2` : `snap_vm-${vmid}-disk-0_${view}.qcow2`}`;

  // The same tree for VM 7521 (the reference, never moved) and for the VMs that move.
  const makeTree = async (vmid: number): Promise<string> => {
    const volid = await vc.alloc('dd', vmid, SIZE);
    const top = dirFile(vmid, 'current');
    await qemuIo(top, [], [{ byte: 0xa1, offset: 0, len: MiB }]);
    await vc.snapshotCreate(volid, 's1');
    await qemuIo(top, [], [{ byte: 0xb2, offset: MiB, len: MiB }]);
    await vc.snapshotCreate(volid, 's2');
    await vc.snapshotRollback(volid, 's1');
    await qemuIo(top, [], [{ byte: 0xc3, offset: 2 * MiB, len: MiB }]);
    const z = await runCommand('qemu-io', ['-f', 'qcow2', '-c', 'write -z 0 256k', top]);
    assert.equal(z.code, 0, z.stderr);
    return volid;
  };
  await makeTree(7521);
  const views = ['s1', 's2', 'current'];

  // dir -> LVM
  const moved = await vc.move(await makeTree(7522), 'tvg');
  assert.equal(moved.newVolid, 'tvg:vm-7522-disk-0.qcow2');
  for (const view of views) {
    await assertSameView(dirFile(7521, view), lvFile(7522, view), `dir -> LVM, view ${view}`);
    await checkClean(lvFile(7522, view));
    const row = await mustLv(lvFile(7522, view).split('/').pop() ?? '');
    assert.ok(row.tags.includes('pve-vm-7522'), `${row.name} carries its VM's tag: ${row.tags.join(',')}`);
  }
  await qemuIo(lvFile(7522, 'current'), [
    { byte: 0, offset: 0, len: 256 * 1024 },
    { byte: 0xa1, offset: 256 * 1024, len: MiB - 256 * 1024 },
    { byte: 0, offset: MiB, len: MiB },
    { byte: 0xc3, offset: 2 * MiB, len: MiB },
  ]);
  assert.deepEqual(await readdir(join(dir, 'images', '7522')).catch(() => []), [], 'the dir source is gone');
  assert.deepEqual((await vc.snapshotList('tvg:vm-7522-disk-0.qcow2')).snapshots.map((x) => x.name).sort(), ['s1', 's2']);

  // Reassign on LVM to VM 7525: LVs renamed and retagged, headers relinked, no copy.
  const reassigned = await vc.move('tvg:vm-7522-disk-0.qcow2', 'tvg', { vmid: 7525 });
  assert.equal(reassigned.newVolid, 'tvg:vm-7525-disk-0.qcow2');
  for (const view of views) {
    await assertSameView(dirFile(7521, view), lvFile(7525, view), `reassigned on LVM, view ${view}`);
    const row = await mustLv(lvFile(7525, view).split('/').pop() ?? '');
    assert.ok(row.tags.includes('pve-vm-7525') && !row.tags.includes('pve-vm-7522'), `${row.name} is tagged for VM 7525 only: ${row.tags.join(',')}`);
  }
  assert.deepEqual(
    (await lvs()).map((row) => row.name).filter((n) => n.includes('vm-7522-')),
    [],
    'no LV keeps the old names',
  );

  // LVM -> LVM, to the second VG: every layer copied once more, the source LVs gone from the first VG.
  const across = await vc.move('tvg:vm-7525-disk-0.qcow2', 'tvg2');
  assert.equal(across.newVolid, 'tvg2:vm-7525-disk-0.qcow2');
  for (const view of views) {
    await assertSameView(dirFile(7521, view), lvFile(7525, view, VG2), `LVM -> LVM, view ${view}`);
    await checkClean(lvFile(7525, view, VG2));
    const row = (await lvs(VG2)).find((r) => r.name === lvFile(7525, view, VG2).split('/').pop());
    assert.ok(row?.tags.includes('pve-vm-7525'), `${lvFile(7525, view, VG2)} exists in ${VG2}, tagged for VM 7525`);
  }
  assert.deepEqual(
    (await lvs()).map((r) => r.name).filter((n) => n.includes('vm-7525-')),
    [],
    'the source LVs are gone from the first VG',
  );
  assert.deepEqual((await vc.snapshotList('tvg2:vm-7525-disk-0.qcow2')).snapshots.map((x) => x.name).sort(), ['s1', 's2']);

  // LVM -> dir, to VM 7523
  const back = await vc.move('tvg2:vm-7525-disk-0.qcow2', 'dd', { vmid: 7523 });
  assert.equal(back.newVolid, 'dd:7523/vm-7523-disk-0.qcow2');
  for (const view of views) {
    await assertSameView(dirFile(7521, view), dirFile(7523, view), `LVM -> dir, view ${view}`);
    await checkClean(dirFile(7523, view));
  }
  assert.deepEqual(
    (await lvs(VG2)).map((r) => r.name).filter((n) => n.includes('vm-7525-')),
    [],
    'the LVM source is gone',
  );

  // A crash in the middle of the copies onto LVM (the second layer started), then repair: no copy left.
  const source = await makeTree(7524);
  const r = await runCommand(process.execPath, [BIN, '--config', cfg, 'move', source, 'tvg'], {
    env: { ...process.env, LC_ALL: 'C', VOLCHAIN_CRASH_AT: 'move:2:started', VOLCHAIN_WIPE: 'foreground' },
  });
  assert.equal(r.code, 128, `the CLI should have died: ${r.stderr}`);
  assert.ok(
    (await lvs()).some((row) => row.name === 'snap_vm-7524-disk-0_s1.qcow2'),
    'the first copy was made before the crash',
  );
  await vc.repair({ volid: 'tvg:vm-7524-disk-0.qcow2' });
  assert.deepEqual(
    (await lvs()).map((row) => row.name).filter((n) => n.includes('vm-7524-')),
    [],
    'repair removed every copy',
  );
  for (const view of views) await assertSameView(dirFile(7521, view), dirFile(7524, view), `source view ${view} after the crash`);
});
