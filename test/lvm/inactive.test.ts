/**
 * Reading without activating, and a disk filled to its last byte: `list`, `info` and `snapshot list` on a
 * shared VG read inactive chains from the LV tags alone; tags that drifted from the qcow2 headers are caught
 * before a plan made from them runs; a guest writing 100% of its disk (also above a snapshot) never meets
 * ENOSPC inside its LV.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { VolchainError } from '../../src/errors.js';
import * as lvmTools from '../../src/tools/lvm.js';
import { checkClean } from '../integration/helpers.js';
import { BLOCK, MiB, requireVg, VG, cleanupState, fullLvSize, lvmStorage, lvs, mustLv, qemuIo, removeVmLvs } from './helpers.js';

const VMIDS = [7105, 7301];
after(async () => {
  if (VG === '') return; // nothing was created without a VG
  await removeVmLvs(VMIDS);
  await cleanupState();
});

test('list, info and snapshot list on a shared VG read inactive chains from the LV tags without activating', async () => {
  requireVg();
  const local = await lvmStorage();
  const volid = await local.vc.alloc(local.id, 7105, 16 * MiB);
  const path = local.path('vm-7105-disk-0.qcow2');
  await qemuIo(path, [], [{ byte: 0xa1, offset: 0, len: BLOCK }]);
  await local.vc.snapshotCreate(volid, 'one');
  await qemuIo(path, [], [{ byte: 0xa2, offset: BLOCK, len: BLOCK }]);
  await local.vc.snapshotCreate(volid, 'two');
  await local.vc.snapshotRollback(volid, 'one'); // a branch: current and 'two' both grow from 'one'
  const expected = await local.vc.snapshotList(volid);
  await local.vc.backend(local.id).deactivate(7105, ['vm-7105-disk-0.qcow2']);

  const shared = await lvmStorage({ id: 'tshared', shared: true });
  const sharedVolid = shared.volid('vm-7105-disk-0.qcow2');
  const listing = await shared.vc.snapshotList(sharedVolid);
  assert.deepEqual(
    listing.snapshots.map(({ name, parent, children, virtualSize }) => ({ name, parent, children, virtualSize })),
    expected.snapshots.map(({ name, parent, children, virtualSize }) => ({ name, parent, children, virtualSize })),
  );
  assert.equal(listing.current.parent, 'one');
  // The data in each layer needs its L2 tables: unknown here, never the LV size passed off as data.
  assert.ok(
    expected.snapshots.every((x) => typeof x.definedBytes === 'number' && x.definedBytes > 0),
    JSON.stringify(expected),
  );
  assert.deepEqual(
    [listing.current, ...listing.snapshots].map((x) => x.definedBytes),
    [null, null, null],
  );
  const info = await shared.vc.info(sharedVolid);
  assert.equal(info.virtualSize, 16 * MiB);
  assert.deepEqual(info.snapshots, ['one', 'two']);
  assert.equal((await shared.vc.list(shared.id, { vmid: 7105 })).length, 1);
  const active = (await lvs()).filter((r) => r.name.includes('vm-7105-') && r.active).map((r) => r.name);
  assert.deepEqual(active, [], 'reading activated nothing');

  // An operation activates the whole chain (exclusively on a shared VG), checks the tags against the
  // headers, and works.
  await shared.vc.snapshotCreate(sharedVolid, 'three');
  for (const r of (await lvs()).filter((x) => x.name.includes('vm-7105-'))) assert.ok(r.active, `${r.name} active`);
  await qemuIo(
    path,
    [
      { byte: 0xa1, offset: 0, len: BLOCK },
      { byte: 0, offset: BLOCK, len: BLOCK },
    ],
    [],
    'after rollback to one + snapshot three',
  );

  // Tags that lie (here: the current layer's parent) are caught once the LVs are active: the plan made
  // from them is refused, the tags are corrected, and the next run works.
  const backend = shared.vc.backend(shared.id);
  await backend.deactivate(7105, ['vm-7105-disk-0.qcow2']);
  const top = await mustLv('vm-7105-disk-0.qcow2');
  const parentTag = top.tags.find((t) => t.startsWith('volchain.parent.'));
  assert.equal(parentTag, 'volchain.parent.snap_vm-7105-disk-0_three.qcow2');
  await lvmTools.changeTags(VG, top.name, ['volchain.parent.snap_vm-7105-disk-0_two.qcow2'], [parentTag]);
  const fresh = await lvmStorage({ id: 'tshared', shared: true });
  assert.equal((await fresh.vc.snapshotList(sharedVolid)).current.parent, 'two', 'read from the (wrong) tags');
  await assert.rejects(
    fresh.vc.snapshotDelete(sharedVolid, 'three'),
    (e: unknown) => e instanceof VolchainError && e.code === 'CORRUPT_IMAGE' && e.message.includes('run the command again'),
  );
  assert.ok((await mustLv('vm-7105-disk-0.qcow2')).tags.includes(parentTag), 'tag corrected from the header');
  assert.equal((await fresh.vc.snapshotList(sharedVolid)).current.parent, 'three');
  await fresh.vc.snapshotDelete(sharedVolid, 'three');
  await qemuIo(
    path,
    [
      { byte: 0xa1, offset: 0, len: BLOCK },
      { byte: 0, offset: BLOCK, len: BLOCK },
    ],
    [],
    'after deleting three',
  );
  await fresh.vc.free(sharedVolid);
});

test('a guest writing 100% of the disk, also above a snapshot, never runs out of LV space', async () => {
  requireVg();
  const s = await lvmStorage();
  const size = 32 * MiB;
  const volid = await s.vc.alloc(s.id, 7301, size);
  const path = s.path('vm-7301-disk-0.qcow2');
  await qemuIo(path, [], [{ byte: 0x77, offset: 0, len: size }], 'fill the base');
  await checkClean(path);
  await s.vc.snapshotCreate(volid, 'full');
  const frozen = await mustLv(s.snapLayer('vm-7301-disk-0.qcow2', 'full'));
  assert.equal(frozen.sizeBytes, await fullLvSize(size), 'a full image has nothing to give back');
  // Every cluster of the new top is allocated afresh.
  await qemuIo(path, [{ byte: 0x77, offset: 0, len: size }], [{ byte: 0x78, offset: 0, len: size }], 'fill the top');
  await checkClean(path);
  await qemuIo(path, [{ byte: 0x78, offset: 0, len: size }], [], 'top');
  await s.vc.free(volid);
});
