/**
 * Space and crashes on thick LVM: frozen layers are shrunk to their data and grown back before a commit
 * lands in them, also after a resize made the newer layers bigger (PVE bug 7094); saferemove (wiping in the
 * foreground here; background wipes: wipe.test.ts) zeroes before removing, and a run killed midway (SIGKILL)
 * is finished by repair or by the next listing; a rollback killed inside replaceLayer (lvrename cannot
 * replace) is finished by repair.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { checkClean } from '../integration/helpers.js';
import {
  BLOCK,
  MiB,
  requireVg,
  VG,
  cleanupState,
  crashingCli,
  fullLvSize,
  lv,
  lvmStorage,
  lvs,
  mustLv,
  qemuIo,
  readsZero,
  removeVmLvs,
  shOk,
} from './helpers.js';

const VMIDS = [7302, 7303, 7304, 7305];
after(async () => {
  if (VG === '') return; // nothing was created without a VG
  await removeVmLvs(VMIDS);
  await cleanupState();
});

test('resize after snapshots, then delete each: shrunk older layers are grown before a commit lands in them', async () => {
  requireVg();
  const s = await lvmStorage();
  const name = 'vm-7302-disk-0.qcow2';
  const path = s.path(name);
  const small = 8 * MiB;
  const big = 24 * MiB;
  const volid = await s.vc.alloc(s.id, 7302, small);
  await qemuIo(path, [], [{ byte: 0x51, offset: 0, len: 4 * MiB }]);
  await s.vc.snapshotCreate(volid, 'sa');
  await qemuIo(path, [], [{ byte: 0x52, offset: 4 * MiB, len: 2 * MiB }]);
  await s.vc.snapshotCreate(volid, 'sb');
  const fullSmall = await fullLvSize(small);
  assert.ok((await mustLv(s.snapLayer(name, 'sa'))).sizeBytes < fullSmall, 'sa was shrunk to its data');
  await s.vc.resize(volid, big);
  const fullBig = await fullLvSize(big);
  assert.equal((await mustLv(name)).sizeBytes, fullBig, 'the current LV grew with the disk');
  await qemuIo(path, [], [{ byte: 0x53, offset: 20 * MiB, len: BLOCK }]);
  const expected = [
    { byte: 0x51, offset: 0, len: 4 * MiB },
    { byte: 0x52, offset: 4 * MiB, len: 2 * MiB },
    { byte: 0, offset: 6 * MiB, len: 14 * MiB },
    { byte: 0x53, offset: 20 * MiB, len: BLOCK },
    { byte: 0, offset: 20 * MiB + BLOCK, len: big - 20 * MiB - BLOCK },
  ];
  // sb's only child is the current layer, which holds one block: committed into sb's (8 MiB, shrunk) layer,
  // which must first grow to the fully-allocated size of 24 MiB.
  const plan = await s.vc.snapshotDelete(volid, 'sb');
  assert.match(plan.summary, /commit-child/, plan.summary);
  await qemuIo(path, expected, [], 'after deleting sb');
  assert.equal((await mustLv(name)).sizeBytes, fullBig, 'the merged layer is a full writable layer');
  assert.equal((await s.vc.info(volid)).virtualSize, big);
  await s.vc.snapshotDelete(volid, 'sa');
  await qemuIo(path, expected, [], 'after deleting sa');
  assert.equal((await mustLv(name)).sizeBytes, fullBig);
  // The merged current layer still takes a disk written to its last byte.
  await qemuIo(path, [], [{ byte: 0x54, offset: 0, len: big }], 'fill');
  await checkClean(path);
  await s.vc.free(volid);
});

test('saferemove: renamed to del-, zeroed, removed; a run killed midway is finished by repair or by list', async () => {
  requireVg();
  const s = await lvmStorage({ id: 'tsafe', saferemove: true, wipe: 'foreground' });
  // 1. Killed right after the rename, inside the remove step: the data is still there under del-, with the
  //    volume's tags; repair finishes the free, and the wipe after it (the VM's lock released) removes the LV.
  const a = await s.vc.alloc(s.id, 7303, 8 * MiB, { format: 'raw' });
  await shOk('qemu-io', ['-f', 'raw', '-c', `write -P 0x5e 0 ${MiB}`, s.path('vm-7303-disk-0')]);
  await crashingCli(s.cfg, ['free', a], 'remove-renamed');
  assert.equal(await lv('vm-7303-disk-0'), undefined);
  const left = await mustLv('del-vm-7303-disk-0');
  assert.ok(left.tags.includes('pve-vm-7303') && left.tags.includes('volchain.vol.vm-7303-disk-0'), `tags kept: ${left.tags.join(',')}`);
  assert.equal(await readsZero(`/dev/${VG}/${left.name}`, MiB), false, 'the data is still there until the wipe');
  const repaired = await s.vc.repair({ volid: a });
  assert.ok(repaired.length > 0);
  assert.equal(await lv('del-vm-7303-disk-0'), undefined, 'wiped and removed after the repair');
  assert.deepEqual(await s.vc.list(s.id, { vmid: 7303 }), [], 'not listed');

  // 2. The free completes (its step only renames); the wipe after it is killed after zeroing, before the
  //    lvremove: the LV holds only zeroes, and the next list finishes it.
  const b = await s.vc.alloc(s.id, 7304, 8 * MiB);
  await qemuIo(s.path('vm-7304-disk-0.qcow2'), [], [{ byte: 0x6f, offset: 0, len: MiB }]);
  await crashingCli(s.cfg, ['free', b], 'wipe-zeroed');
  const doomed = await mustLv('del-vm-7304-disk-0.qcow2');
  assert.ok(await readsZero(`/dev/${VG}/${doomed.name}`, doomed.sizeBytes), 'zeroed before removal');
  const waiting = (await s.vc.pendingRemovals()).find((w) => w.layer === doomed.name);
  assert.equal(waiting?.state, 'waiting', 'status: its wiper died');
  assert.equal(waiting?.doneBytes, doomed.sizeBytes, 'status: zeroed completely');
  await s.vc.list(s.id, { vmid: 7304 });
  assert.equal(await lv('del-vm-7304-disk-0.qcow2'), undefined, 'list finished the removal');
  assert.deepEqual(
    (await lvs()).filter((r) => r.name.includes('vm-7304-')),
    [],
  );
});

test('a rollback killed between removing the old top and renaming the new one is finished by repair', async () => {
  requireVg();
  const s = await lvmStorage({ id: 'tcrash' });
  const name = 'vm-7305-disk-0.qcow2';
  const volid = await s.vc.alloc(s.id, 7305, 8 * MiB);
  await qemuIo(s.path(name), [], [{ byte: 0xc1, offset: 0, len: BLOCK }]);
  await s.vc.snapshotCreate(volid, 'sa');
  await qemuIo(s.path(name), [], [{ byte: 0xc2, offset: 0, len: BLOCK }]);
  // lvrename cannot replace an LV: replaceLayer removes the old top, then renames the new one.
  await crashingCli(s.cfg, ['snapshot', 'rollback', volid, 'sa'], 'replace-removed');
  assert.equal(await lv(name), undefined, 'the old top is gone');
  assert.ok(await lv('volchain-tmp-rollback-vm-7305-disk-0.qcow2'), 'the new top still has its temporary name');
  await s.vc.repair({ volid });
  assert.equal(await lv('volchain-tmp-rollback-vm-7305-disk-0.qcow2'), undefined);
  await qemuIo(s.path(name), [{ byte: 0xc1, offset: 0, len: BLOCK }], [], 'rolled back to sa after repair');
  assert.deepEqual(
    (await s.vc.snapshotList(volid)).snapshots.map((x) => x.name),
    ['sa'],
  );
  await s.vc.free(volid);
});
