/**
 * Volume lifecycle on real thick LVM: exact LV sizes, tags, listing that hides layers, free-space errors,
 * `disk-1` beside `disk-11`.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { NoSpaceError } from '../../src/errors.js';
import { measureFullyAllocated } from '../../src/tools/lvm-measure.js';
import * as lvmTools from '../../src/tools/lvm.js';
import { BLOCK, MiB, requireVg, VG, cleanupState, fullLvSize, lv, lvmStorage, lvs, mustLv, qemuIo, removeVmLvs, shOk, vg } from './helpers.js';

const VMIDS = [7101, 7102, 7103, 7106, 7107];
after(async () => {
  if (VG === '') return; // nothing was created without a VG
  await removeVmLvs(VMIDS);
  await cleanupState();
});

test('alloc sizes a qcow2 LV for the fully written image, tags it, and free removes it', async () => {
  requireVg();
  const s = await lvmStorage();
  const size = 64 * MiB;
  const volid = await s.vc.alloc(s.id, 7101, size);
  assert.equal(volid, `${s.id}:vm-7101-disk-0.qcow2`);
  const row = await mustLv('vm-7101-disk-0.qcow2');
  const extent = (await vg()).extentSizeBytes;
  assert.equal(row.sizeBytes, lvmTools.roundUpTo(await measureFullyAllocated(size), extent), 'LV = measure rounded up to an extent');
  assert.ok(row.sizeBytes > size, 'room for the metadata of a fully written image');
  assert.ok(row.active, 'lvcreate -aly activates it');
  assert.ok(row.tags.includes('pve-vm-7101'), `tags: ${row.tags.join(',')}`);
  assert.ok(row.tags.includes('pve-vm-7101-disk-0.qcow2'), "PVE 9's per-volume tag on a qcow2 volume");
  assert.ok(row.tags.includes('volchain.vol.vm-7101-disk-0.qcow2'));
  assert.ok(row.tags.includes('volchain.noparent'));
  assert.ok(row.tags.includes(`volchain.size.${size}`));
  const auto = await shOk('lvs', ['--noheadings', '-o', 'autoactivation', `${VG}/vm-7101-disk-0.qcow2`]);
  assert.equal(auto.trim(), '', '--setautoactivation n');

  const info = await s.vc.info(volid);
  assert.equal(info.virtualSize, size);
  assert.equal(info.usedBytes, row.sizeBytes);
  assert.equal(info.path, `/dev/${VG}/vm-7101-disk-0.qcow2`);
  assert.equal(await s.vc.path(volid), `/dev/${VG}/vm-7101-disk-0.qcow2`);

  // A raw volume: the LV is the disk, rounded up to an extent.
  const raw = await s.vc.alloc(s.id, 7101, 10 * MiB + 512, { format: 'raw' });
  assert.equal(raw, `${s.id}:vm-7101-disk-1`);
  const rawRow = await mustLv('vm-7101-disk-1');
  assert.ok(!rawRow.tags.some((t) => t.startsWith('pve-vm-7101-disk')), `PVE tags raw volumes with the VM only: ${rawRow.tags.join(',')}`);
  assert.equal(rawRow.sizeBytes, lvmTools.roundUpTo(10 * MiB + 512, extent));
  assert.equal((await s.vc.info(raw)).virtualSize, rawRow.sizeBytes);
  await s.vc.resize(raw, rawRow.sizeBytes + 3 * MiB);
  assert.equal((await mustLv('vm-7101-disk-1')).sizeBytes, lvmTools.roundUpTo(rawRow.sizeBytes + 3 * MiB, extent));

  await s.vc.snapshotCreate(volid, 'first');
  const listed = await s.vc.list(s.id, { vmid: 7101 });
  assert.deepEqual(
    listed.map((v) => v.volid),
    [volid, raw],
    'snapshot layers are not volumes',
  );
  assert.deepEqual(listed[0]?.snapshots, ['first']);
  const snapRow = await mustLv('snap_vm-7101-disk-0_first.qcow2');
  assert.ok(snapRow.tags.includes('pve-vm-7101-disk-0.qcow2'), "a snapshot layer keeps its volume's tag");
  assert.ok((await mustLv('vm-7101-disk-0.qcow2')).tags.includes('pve-vm-7101-disk-0.qcow2'), 'so does the new top');
  assert.equal(listed[0]?.chainUsedBytes, (listed[0]?.usedBytes ?? 0) + snapRow.sizeBytes, 'space used by the snapshots = chain - current');

  await s.vc.free(volid);
  await s.vc.free(raw);
  const left = (await lvs()).filter((r) => r.name.includes('vm-7101-'));
  assert.deepEqual(
    left.map((r) => r.name),
    [],
    'free removes every layer',
  );
});

test('alloc says how many bytes are missing when the VG is too small, and creates nothing', async () => {
  requireVg();
  const s = await lvmStorage();
  // The whole VG as virtual size: with qcow2 metadata it can never fit, whatever other tests do meanwhile.
  const size = (await vg()).sizeBytes;
  const err = await s.vc.alloc(s.id, 7102, size).then(
    async (volid) => {
      await s.vc.free(volid);
      assert.fail('a qcow2 volume as big as the whole VG cannot fit');
    },
    (e: unknown) => e,
  );
  assert.ok(err instanceof NoSpaceError, String(err));
  const missing = Number(/(\d+) bytes missing/.exec(err.message)?.[1]);
  assert.ok(missing >= (await fullLvSize(size)) - size, err.message);
  assert.match(err.message, /needs \d+ bytes, but only \d+ are free/);
  assert.equal(await lv('vm-7102-disk-0.qcow2'), undefined);
});

test('disk-1 and disk-11 side by side: operations on one never touch the other', async () => {
  requireVg();
  const s = await lvmStorage();
  const one = await s.vc.alloc(s.id, 7103, 8 * MiB, { name: 'vm-7103-disk-1.qcow2' });
  const eleven = await s.vc.alloc(s.id, 7103, 8 * MiB, { name: 'vm-7103-disk-11.qcow2' });
  await qemuIo(s.path('vm-7103-disk-1.qcow2'), [], [{ byte: 0x11, offset: 0, len: BLOCK }]);
  await qemuIo(s.path('vm-7103-disk-11.qcow2'), [], [{ byte: 0x1b, offset: 0, len: BLOCK }]);
  await s.vc.snapshotCreate(one, 'sa');
  await s.vc.snapshotCreate(eleven, 'sa');
  assert.deepEqual(
    (await s.vc.snapshotList(one)).snapshots.map((x) => x.name),
    ['sa'],
  );
  assert.deepEqual(
    (await s.vc.snapshotList(eleven)).snapshots.map((x) => x.name),
    ['sa'],
  );
  assert.deepEqual(
    (await s.vc.list(s.id, { vmid: 7103 })).map((v) => v.volid),
    [one, eleven],
  );

  const backend = s.vc.backend(s.id);
  await backend.deactivate(7103, ['vm-7103-disk-1.qcow2']);
  const rows = new Map((await lvs()).map((r) => [r.name, r]));
  assert.equal(rows.get('vm-7103-disk-1.qcow2')?.active, false);
  assert.equal(rows.get('snap_vm-7103-disk-1_sa.qcow2')?.active, false);
  assert.equal(rows.get('vm-7103-disk-11.qcow2')?.active, true, 'disk-11 stays active');
  assert.equal(rows.get('snap_vm-7103-disk-11_sa.qcow2')?.active, true);
  await backend.activate(7103, ['vm-7103-disk-1.qcow2']);
  assert.equal((await mustLv('snap_vm-7103-disk-1_sa.qcow2')).active, true, 'activation takes the whole chain');

  await s.vc.free(one);
  const names = (await lvs())
    .map((r) => r.name)
    .filter((n) => n.includes('vm-7103-'))
    .sort();
  assert.deepEqual(names, ['snap_vm-7103-disk-11_sa.qcow2', 'vm-7103-disk-11.qcow2']);
  await qemuIo(s.path('vm-7103-disk-11.qcow2'), [{ byte: 0x1b, offset: 0, len: BLOCK }], [], 'disk-11 after freeing disk-1');
  await s.vc.free(eleven);
});

test("a volume PVE reassigned to another VM (rename_volume: lvrename + PVE's tags) is read by its new name, not volchain's stale tags", async () => {
  requireVg();
  const s = await lvmStorage();
  const volid = await s.vc.alloc(s.id, 7106, 16 * MiB);
  await qemuIo(s.path('vm-7106-disk-0.qcow2'), [], [{ byte: 0x61, offset: 0, len: BLOCK }]);
  await s.vc.deactivate(volid);
  // PVE's LVMPlugin::rename_volume, as it runs for `qm disk move --target-vmid` on a volume without snapshots.
  await shOk('lvrename', [VG, 'vm-7106-disk-0.qcow2', 'vm-7107-disk-0.qcow2']);
  await shOk('lvchange', [
    '--addtag',
    'pve-vm-7107',
    '--deltag',
    'pve-vm-7106',
    '--addtag',
    'pve-vm-7107-disk-0.qcow2',
    '--deltag',
    'pve-vm-7106-disk-0.qcow2',
    `${VG}/vm-7107-disk-0.qcow2`,
  ]);
  const fresh = await lvmStorage(); // nothing cached: the inactive LV is known from lvs alone
  const moved = fresh.volid('vm-7107-disk-0.qcow2');
  assert.deepEqual(
    (await fresh.vc.list(fresh.id, { vmid: 7106 })).map((v) => v.volid),
    [],
  );
  const listed = await fresh.vc.list(fresh.id, { vmid: 7107 });
  assert.deepEqual(
    listed.map((v) => [v.volid, v.snapshots]),
    [[moved, []]],
  );
  await fresh.vc.snapshotCreate(moved, 'moved1');
  const snap = await mustLv('snap_vm-7107-disk-0_moved1.qcow2');
  for (const row of [snap, await mustLv('vm-7107-disk-0.qcow2')]) {
    assert.ok(row.tags.includes('volchain.vol.vm-7107-disk-0.qcow2'), `${row.name}: ${row.tags.join(',')}`);
    assert.ok(!row.tags.some((t) => t.includes('7106')), `${row.name}: no stale tag left: ${row.tags.join(',')}`);
    assert.ok(row.tags.includes('pve-vm-7107-disk-0.qcow2') && row.tags.includes('pve-vm-7107'));
  }
  await qemuIo(fresh.path('vm-7107-disk-0.qcow2', 'moved1'), [{ byte: 0x61, offset: 0, len: BLOCK }]);
  await qemuIo(fresh.path('vm-7107-disk-0.qcow2'), [{ byte: 0x61, offset: 0, len: BLOCK }]);
  await fresh.vc.free(moved);
});
