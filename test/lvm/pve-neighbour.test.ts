/**
 * Next to Proxmox VE on one VG: PVE deletes the oldest snapshot by `qemu-img commit` of its child into the
 * snapshot's LV without growing that LV (LVMPlugin::volume_snapshot_delete), so volchain's shrunk frozen layers
 * are a hazard there. With frozen layers kept full size (the default when the config is /etc/pve/storage.cfg,
 * forced here with shrinkFrozen: 'no'), PVE's own delete of a snapshot volchain made keeps every byte; with
 * the shrink, the same PVE sequence fails for lack of space, as the README warns.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { BLOCK, MiB, VG, cleanupState, fullLvSize, lvmStorage, mustLv, qemuIo, removeVmLvs, requireVg, shOk } from './helpers.js';
import { PveLvm } from './pve-lvm-commands.js';

const VMIDS = [7601, 7602];
after(async () => {
  if (VG === '') return;
  await removeVmLvs(VMIDS);
  await cleanupState();
});

/** PVE 9's bare command sequence for deleting snapshot `snap` (pve-lvm-commands.ts: the first one is a commit into it). */
async function pveDeleteFirstSnapshot(volume: string, snap: string): Promise<void> {
  assert.equal(await new PveLvm(VG).snapshotDelete(volume, snap), 'commit');
}

const SIZE = 32 * MiB;
/** The snapshot holds one block; the child then writes 24 MiB, far more than a shrunk snapshot LV has room for. */
const SNAP_DATA = { byte: 0x11, offset: 0, len: BLOCK };
const CHILD_DATA = { byte: 0x22, offset: 4 * MiB, len: 24 * MiB };

test("frozen layers kept full size: PVE's delete of the first snapshot (commit into it) keeps every byte", async () => {
  requireVg();
  const s = await lvmStorage({ shrinkFrozen: 'no' });
  const volume = 'vm-7601-disk-0.qcow2';
  const volid = await s.vc.alloc(s.id, 7601, SIZE);
  await qemuIo(s.path(volume), [], [SNAP_DATA]);
  const plan = (await s.vc.snapshotCreate(volid, 'first', { dryRun: true })) as { space?: { releasedBytes: number | null } };
  assert.equal(plan.space?.releasedBytes, 0, 'the dry run promises no shrink');
  await s.vc.snapshotCreate(volid, 'first');
  const snapLv = s.snapLayer(volume, 'first');
  assert.equal((await mustLv(snapLv)).sizeBytes, await fullLvSize(SIZE), 'the snapshot layer keeps its full size');
  await qemuIo(s.path(volume), [], [CHILD_DATA]);

  await pveDeleteFirstSnapshot(volume, 'first');
  await qemuIo(s.path(volume), [SNAP_DATA, CHILD_DATA, { byte: 0, offset: 28 * MiB, len: 4 * MiB }]);
  await shOk('qemu-img', ['check', '-f', 'qcow2', s.path(volume)]);
  const listed = await (await lvmStorage({ shrinkFrozen: 'no' })).vc.list(s.id, { vmid: 7601 });
  assert.deepEqual(
    listed.map((v) => [v.volid, v.snapshots]),
    [[volid, []]],
    'volchain reads what PVE left',
  );
  await s.vc.free(volid);
});

test('frozen layers shrunk (volchain alone on the VG): the same PVE sequence runs out of space in the snapshot LV', async () => {
  requireVg();
  const s = await lvmStorage({ shrinkFrozen: 'yes' });
  const volume = 'vm-7602-disk-0.qcow2';
  const volid = await s.vc.alloc(s.id, 7602, SIZE);
  await qemuIo(s.path(volume), [], [SNAP_DATA]);
  await s.vc.snapshotCreate(volid, 'first');
  const snapLv = s.snapLayer(volume, 'first');
  assert.ok((await mustLv(snapLv)).sizeBytes < (await fullLvSize(SIZE)), 'shrunk to its data');
  await qemuIo(s.path(volume), [], [CHILD_DATA]);
  await assert.rejects(
    pveDeleteFirstSnapshot(volume, 'first'),
    /No space left|Input\/output error|error while writing|could not/i,
    'the commit cannot fit into the shrunk LV',
  );
  // The current state survives (the child still holds what was being committed); the snapshot's own LV was
  // overwritten in place: "The state of first is now invalid" (PVE's words). Hence full size next to PVE.
  await qemuIo(s.path(volume), [SNAP_DATA, CHILD_DATA]);
});
