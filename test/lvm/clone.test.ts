/**
 * `clone` across storage types on real LVM: a dir volume's current state and a snapshot into new qcow2 LVs
 * (dir → LVM), and an LVM volume's current state and a snapshot into files (LVM → dir). Every clone is
 * compared with its source view (`qemu-img compare`), read back by pattern and checked clean; a clone LV is
 * sized for a fully written image, tagged for its VM, and no temporary LV is left.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Volchain } from '../../src/engine/volchain.js';
import { checkClean } from '../integration/helpers.js';
import { MiB, VG, cleanupState, fullLvSize, assertSameView, lvmAndDirStorages, lvs, mustLv, qemuIo, removeVmLvs, requireVg } from './helpers.js';

const VMIDS = [7511, 7512];
const SIZE = 16 * MiB;
let dirRoot: string | undefined;

after(async () => {
  if (VG === '') return; // nothing was created without a VG
  await removeVmLvs(VMIDS);
  await cleanupState();
  if (dirRoot !== undefined) await rm(dirRoot, { recursive: true, force: true });
});

/** One Volchain seeing the test VG (`tvg`) and a dir storage (`dd`) in a temporary directory. */
async function mixedStorages(): Promise<{ vc: Volchain; dir: string; lvmPath: (lv: string) => string; dirPath: (vmid: number, name: string) => string }> {
  const { vc, root, dir } = await lvmAndDirStorages('volchain-lvm-clone-');
  dirRoot = root;
  return {
    vc,
    dir,
    lvmPath: (lv) => `/dev/${VG}/${lv}`,
    dirPath: (vmid, name) => join(dir, 'images', String(vmid), name),
  };
}

test('clone dir -> LVM and LVM -> dir: each view compared with its clone', async () => {
  requireVg();
  const { vc, lvmPath, dirPath } = await mixedStorages();

  // dir -> LVM: a dir volume with snapshot s1, its current state and s1 cloned into VM 7511's LVs.
  const dirVolid = await vc.alloc('dd', 7511, SIZE);
  const dirTop = dirPath(7511, 'vm-7511-disk-0.qcow2');
  const dirSnap = dirPath(7511, 'snap-s1-vm-7511-disk-0.qcow2');
  await qemuIo(dirTop, [], [{ byte: 0xa1, offset: 0, len: 2 * MiB }]);
  await vc.snapshotCreate(dirVolid, 's1');
  await qemuIo(dirTop, [], [{ byte: 0xb2, offset: 4 * MiB, len: MiB }]);
  const toLvm = await vc.clone(dirVolid, 'tvg', 7511);
  assert.equal(toLvm.volid, 'tvg:vm-7511-disk-0.qcow2');
  const toLvmSnap = await vc.clone(dirVolid, 'tvg', 7511, { snapshot: 's1' });
  assert.equal(toLvmSnap.volid, 'tvg:vm-7511-disk-1.qcow2');
  await assertSameView(dirTop, lvmPath('vm-7511-disk-0.qcow2'), 'dir current -> LVM');
  await assertSameView(dirSnap, lvmPath('vm-7511-disk-1.qcow2'), 'dir s1 -> LVM');
  await qemuIo(lvmPath('vm-7511-disk-0.qcow2'), [
    { byte: 0xa1, offset: 0, len: 2 * MiB },
    { byte: 0xb2, offset: 4 * MiB, len: MiB },
  ]);
  await qemuIo(lvmPath('vm-7511-disk-1.qcow2'), [
    { byte: 0xa1, offset: 0, len: 2 * MiB },
    { byte: 0, offset: 4 * MiB, len: MiB },
  ]);
  for (const lv of ['vm-7511-disk-0.qcow2', 'vm-7511-disk-1.qcow2']) {
    await checkClean(lvmPath(lv));
    const row = await mustLv(lv);
    assert.equal(row.sizeBytes, await fullLvSize(SIZE), `${lv} is sized for a fully written image`);
    assert.ok(row.tags.includes('pve-vm-7511'), `${lv} carries its VM's tag: ${row.tags.join(',')}`);
  }

  // LVM -> dir: an LVM volume with snapshot s1, its current state and s1 cloned into VM 7512's files.
  const lvVolid = await vc.alloc('tvg', 7512, SIZE);
  const lvTop = lvmPath('vm-7512-disk-0.qcow2');
  await qemuIo(lvTop, [], [{ byte: 0xc3, offset: MiB, len: MiB }]);
  await vc.snapshotCreate(lvVolid, 's1');
  await qemuIo(lvTop, [], [{ byte: 0xd4, offset: 8 * MiB, len: MiB }]);
  await vc.clone(lvVolid, 'dd', 7512);
  await vc.clone(lvVolid, 'dd', 7512, { snapshot: 's1' });
  await assertSameView(lvTop, dirPath(7512, 'vm-7512-disk-0.qcow2'), 'LVM current -> dir');
  await assertSameView(lvmPath('snap_vm-7512-disk-0_s1.qcow2'), dirPath(7512, 'vm-7512-disk-1.qcow2'), 'LVM s1 -> dir');
  await qemuIo(dirPath(7512, 'vm-7512-disk-1.qcow2'), [
    { byte: 0xc3, offset: MiB, len: MiB },
    { byte: 0, offset: 8 * MiB, len: MiB },
  ]);
  await checkClean(dirPath(7512, 'vm-7512-disk-0.qcow2'));

  const names = (await lvs()).map((r) => r.name);
  assert.deepEqual(
    names.filter((n) => n.includes('volchain-tmp') && /vm-751[12]-/.test(n)), // this file's: other files run beside it on the VG
    [],
    'no temporary LV is left',
  );
  assert.deepEqual((await vc.list('tvg', { vmid: 7511 })).map((v) => v.volid).sort(), ['tvg:vm-7511-disk-0.qcow2', 'tvg:vm-7511-disk-1.qcow2']);
});
