/**
 * `clone` across storage types on real LVM: a dir volume's current state and a snapshot into new qcow2 LVs
 * (dir → LVM), and an LVM volume's current state and a snapshot into files (LVM → dir). Every clone is
 * compared with its source view (`qemu-img compare`), read back by pattern and checked clean; a clone LV is
 * sized for a fully written image, tagged for its VM, and no temporary LV is left.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseStorageConfig } from '../../src/config/index.js';
import { Volchain } from '../../src/engine/volchain.js';
import { checkClean, runCommand } from '../integration/helpers.js';
import { MiB, VG, cleanupState, fullLvSize, lvmStorage, lvs, mustLv, qemuIo, removeVmLvs, requireVg } from './helpers.js';

const VMIDS = [7511, 7512];
const SIZE = 16 * MiB;
let dirRoot: string | undefined;

after(async () => {
  if (VG === '') return; // nothing was created without a VG
  await removeVmLvs(VMIDS);
  await cleanupState();
  if (dirRoot !== undefined) await rm(dirRoot, { recursive: true, force: true });
});

async function compare(a: string, b: string, context: string): Promise<void> {
  const r = await runCommand('qemu-img', ['compare', '-f', 'qcow2', '-F', 'qcow2', a, b]);
  assert.equal(r.code, 0, `${context}: qemu-img compare ${a} ${b}: ${r.stdout}${r.stderr}`);
}

/** One Volchain seeing the test VG (`tvg`) and a dir storage (`dd`) in a temporary directory. */
async function mixedStorages(): Promise<{ vc: Volchain; dir: string; lvmPath: (lv: string) => string; dirPath: (vmid: number, name: string) => string }> {
  await lvmStorage(); // sets VOLCHAIN_STATE_DIR for locks and journals of the LVM storage
  dirRoot = await mkdtemp(join(tmpdir(), 'volchain-lvm-clone-'));
  const dir = join(dirRoot, 'store');
  await mkdir(dir);
  const text = [
    `lvm: tvg`,
    `\tvgname ${VG}`,
    '\tcontent images',
    '\tsnapshot-as-volume-chain 1',
    '',
    'dir: dd',
    `\tpath ${dir}`,
    '\tcontent images',
    '\tsnapshot-as-volume-chain 1',
    '',
  ].join('\n');
  const cfg = join(dirRoot, 'storage.cfg');
  await writeFile(cfg, text);
  return {
    vc: new Volchain(parseStorageConfig(text, cfg), { wipe: 'foreground' }),
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
  await compare(dirTop, lvmPath('vm-7511-disk-0.qcow2'), 'dir current -> LVM');
  await compare(dirSnap, lvmPath('vm-7511-disk-1.qcow2'), 'dir s1 -> LVM');
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
  await compare(lvTop, dirPath(7512, 'vm-7512-disk-0.qcow2'), 'LVM current -> dir');
  await compare(lvmPath('snap_vm-7512-disk-0_s1.qcow2'), dirPath(7512, 'vm-7512-disk-1.qcow2'), 'LVM s1 -> dir');
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
