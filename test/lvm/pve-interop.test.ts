/**
 * LVM interop with Proxmox VE 9 both ways, on a real VG (run in the test guest, see helpers.ts):
 * - volchain on chains PVE made: PVE's own command lines (pve-lvm-commands.ts, never volchain) make a volume
 *   with hyphenated snapshots (`pre-up`, `a-b-c`), next to a cloud-init and a state LV; volchain lists it,
 *   snapshots it, rolls back (newest and older), deletes the first, a middle and the newest snapshot; and
 *   (VM 7708) resizes a PVE-made volume with its snapshots, then frees it with saferemove, beside another volume;
 * - PVE's bare sequences on chains volchain made: snapshot, rollback, delete first/middle/newest, resize and
 *   free, with frozen layers at full size (volchain's default when the config is /etc/pve/storage.cfg), with
 *   shrunk frozen layers (volchain alone on a VG), and on a branched tree left by a volchain rollback to an
 *   older snapshot;
 * - a layer name that fits two volumes (`snap_vm-<id>-disk-0_pre_up.qcow2`: disk-0's `pre_up` or
 *   disk-0_pre's `up`), made by PVE, belongs to the chain its headers join.
 * Every cell checks the data of every layer left (qemu-io patterns, one 64 KiB block per write) and
 * `qemu-img check`. The README's interop matrix (LVM rows) reports these cells.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  BLOCK,
  MiB,
  VG,
  blockReads,
  cleanupState,
  fullLvSize,
  lv,
  lvmStorage,
  lvs,
  qemuIo,
  removeVmLvs,
  requireVg,
  sh,
  shOk,
  type LvmTestStorage,
} from './helpers.js';
import { PveLvm } from './pve-lvm-commands.js';

const VMIDS = [7701, 7702, 7703, 7704, 7705, 7706, 7707, 7708];
after(async () => {
  if (VG === '') return;
  await removeVmLvs(VMIDS);
  await cleanupState();
});

const SIZE = 16 * MiB;
const TOTAL = SIZE / BLOCK;
type View = Record<number, number>;

/** Writes one 64 KiB block of `byte` at block `block` into the layer at `path`. */
async function put(path: string, block: number, byte: number): Promise<void> {
  await qemuIo(path, [], [{ byte, offset: block * BLOCK, len: BLOCK }]);
}

/** Every layer named in `views` ('current' or a snapshot) shows exactly its blocks (zeroes elsewhere) and checks clean. */
async function checkViews(s: LvmTestStorage, volume: string, views: Record<string, View>, context: string, total = TOTAL): Promise<void> {
  for (const [snap, view] of Object.entries(views)) {
    const path = s.path(volume, snap === 'current' ? undefined : snap);
    await qemuIo(path, blockReads(new Map(Object.entries(view).map(([b, v]) => [Number(b), v])), total), [], `${context}: ${snap}`);
    await shOk('qemu-img', ['check', '-f', 'qcow2', path]);
  }
}

async function snapshotNames(s: LvmTestStorage, volume: string): Promise<string[]> {
  return (await s.vc.snapshotList(s.volid(volume))).snapshots.map((e) => e.name).sort();
}

async function layersOf(vmid: number): Promise<string[]> {
  return (await lvs())
    .filter((r) => r.tags.includes(`pve-vm-${vmid}`))
    .map((r) => r.name)
    .sort();
}

test('a chain PVE made (hyphenated snapshots, cloud-init and state LVs): volchain lists, snapshots, rolls back and deletes', async () => {
  requireVg();
  const pve = new PveLvm(VG, { zeroNewLvs: true });
  const s = await lvmStorage({ shrinkFrozen: 'no' });
  const vol = 'vm-7701-disk-0.qcow2';
  assert.equal(await pve.alloc(7701, SIZE), vol);
  await put(s.path(vol), 0, 0x11);
  await pve.snapshotCreate(7701, vol, 'pre-up');
  await put(s.path(vol), 1, 0x22);
  await pve.snapshotCreate(7701, vol, 'a-b-c');
  await put(s.path(vol), 2, 0x33);
  await pve.snapshotCreate(7701, vol, 'third');
  await put(s.path(vol), 0, 0x44);
  // PVE's cloud-init drive and a vmstate volume (raw LVs, alloc_image with fmt raw: no pve-<name> tag).
  await pve.lvcreate('vm-7701-cloudinit', 4096, ['pve-vm-7701']);
  await pve.lvcreate('vm-7701-state-pre-up', 4096, ['pve-vm-7701']);

  const listed = await s.vc.list(s.id, { vmid: 7701 });
  assert.deepEqual(listed.map((v) => [v.volid, v.problem]).sort(), [
    [s.volid('vm-7701-cloudinit'), null],
    [s.volid(vol), null],
    [s.volid('vm-7701-state-pre-up'), null],
  ]);
  assert.deepEqual(await snapshotNames(s, vol), ['a-b-c', 'pre-up', 'third']);

  const views: Record<string, View> = {
    'pre-up': { 0: 0x11 },
    'a-b-c': { 0: 0x11, 1: 0x22 },
    third: { 0: 0x11, 1: 0x22, 2: 0x33 },
    current: { 0: 0x44, 1: 0x22, 2: 0x33 },
  };
  await s.vc.snapshotCreate(s.volid(vol), 'vc-1');
  views['vc-1'] = { ...views.current };
  await put(s.path(vol), 3, 0x55);
  views.current = { ...views.current, 3: 0x55 };
  await checkViews(s, vol, views, 'after volchain snapshot vc-1');

  await s.vc.snapshotRollback(s.volid(vol), 'vc-1');
  views.current = { ...views['vc-1'] };
  await checkViews(s, vol, { current: views.current }, 'rollback to the newest');
  await s.vc.snapshotRollback(s.volid(vol), 'a-b-c');
  views.current = { ...views['a-b-c'] };
  await put(s.path(vol), 4, 0x66);
  views.current[4] = 0x66;
  await checkViews(s, vol, views, 'rollback to an older snapshot (the newer ones stay)');

  await s.vc.snapshotDelete(s.volid(vol), 'pre-up'); // the first
  delete views['pre-up'];
  await checkViews(s, vol, views, 'delete the first snapshot');
  await s.vc.snapshotDelete(s.volid(vol), 'third'); // a middle one: parent a-b-c, child vc-1
  delete views.third;
  await checkViews(s, vol, views, 'delete a middle snapshot');
  await s.vc.snapshotDelete(s.volid(vol), 'vc-1'); // the newest
  delete views['vc-1'];
  await checkViews(s, vol, views, 'delete the newest snapshot');
  assert.deepEqual(await snapshotNames(s, vol), ['a-b-c']);

  // PVE reads and frees what volchain left.
  const info = await pve.volumeSnapshotInfo(vol);
  assert.deepEqual([...info.keys()].sort(), ['a-b-c', 'current']);
  await pve.free(vol);
  assert.deepEqual(await layersOf(7701), ['vm-7701-cloudinit', 'vm-7701-state-pre-up'], 'no layer of the volume left');
});

test('volchain resizes and frees a chain PVE made (untagged full-size layers), with saferemove, beside another volume', async () => {
  requireVg();
  const pve = new PveLvm(VG, { zeroNewLvs: true });
  const s = await lvmStorage({ id: 'tpvers', shrinkFrozen: 'no', saferemove: true, wipe: 'foreground' });
  const vol = await pve.alloc(7708, SIZE);
  const other = await pve.alloc(7708, SIZE);
  assert.deepEqual([vol, other], ['vm-7708-disk-0.qcow2', 'vm-7708-disk-1.qcow2']);
  await put(s.path(vol), 0, 0x11);
  await pve.snapshotCreate(7708, vol, 'pre-up');
  await put(s.path(vol), 1, 0x22);
  await pve.snapshotCreate(7708, vol, 'second');
  await put(s.path(vol), 2, 0x33);
  await put(s.path(other), 3, 0x44);
  const snapLvs = [s.snapLayer(vol, 'pre-up'), s.snapLayer(vol, 'second')];
  const sizesBefore = await Promise.all(snapLvs.map(async (name) => (await lv(name))?.sizeBytes));

  const grown = SIZE + 8 * MiB;
  await s.vc.resize(s.volid(vol), grown);
  const listing = await s.vc.snapshotList(s.volid(vol));
  assert.equal(listing.current.virtualSize, grown, 'the virtual size grew');
  assert.equal(await pve.fileSizeInfo(s.path(vol)), grown, 'PVE reads the new size');
  // volchain's rule: the writable layer's LV is measured for the new size; frozen layers are not touched.
  assert.equal((await lv(vol))?.sizeBytes, await fullLvSize(grown), 'the current LV is sized for the new virtual size');
  assert.deepEqual(await Promise.all(snapLvs.map(async (name) => (await lv(name))?.sizeBytes)), sizesBefore, "the snapshots' LVs keep their size");
  // The grown tail reads as zeroes and takes writes.
  await put(s.path(vol), TOTAL + 1, 0x55);
  const views: Record<string, View> = { 'pre-up': { 0: 0x11 }, second: { 0: 0x11, 1: 0x22 } };
  await checkViews(s, vol, views, 'snapshots after the volchain resize');
  await checkViews(s, vol, { current: { 0: 0x11, 1: 0x22, 2: 0x33, [TOTAL + 1]: 0x55 } }, 'current after the volchain resize', TOTAL + 128);
  assert.deepEqual(await snapshotNames(s, vol), ['pre-up', 'second']);

  await s.vc.free(s.volid(vol));
  // saferemove with a foreground wipe: each layer renamed del-<lv>, zeroed and removed before free returns.
  assert.deepEqual(
    (await lvs()).filter((r) => r.name.includes('vm-7708-disk-0')).map((r) => r.name),
    [],
    'every layer of the volume is gone, snapshots too (no del- LV left)',
  );
  assert.deepEqual(await layersOf(7708), [other], 'the other volume is left');
  await checkViews(s, other, { current: { 3: 0x44 } }, 'the other volume after the free');
});

/** A volume volchain made with snapshots s1, s2, s3 (one block each), current writing block 3. */
async function volchainChain(s: LvmTestStorage, vmid: number): Promise<{ vol: string; views: Record<string, View> }> {
  const volid = await s.vc.alloc(s.id, vmid, SIZE);
  const vol = `vm-${vmid}-disk-0.qcow2`;
  assert.equal(volid, s.volid(vol));
  const views: Record<string, View> = {};
  let view: View = {};
  for (const [i, snap] of ['s1', 's2', 's3'].entries()) {
    await put(s.path(vol), i, 0x11 * (i + 1));
    view = { ...view, [i]: 0x11 * (i + 1) };
    await s.vc.snapshotCreate(volid, snap);
    views[snap] = view;
  }
  await put(s.path(vol), 3, 0x44);
  views.current = { ...view, 3: 0x44 };
  return { vol, views };
}

test("full-size frozen layers (next to PVE): PVE's snapshot, rollback, delete first/middle/newest, resize and free on volchain's chain keep every byte", async () => {
  requireVg();
  const pve = new PveLvm(VG, { zeroNewLvs: true });
  const s = await lvmStorage({ shrinkFrozen: 'no' });
  const { vol, views } = await volchainChain(s, 7702);

  await pve.snapshotCreate(7702, vol, 'pve-a');
  views['pve-a'] = { ...views.current };
  await put(s.path(vol), 4, 0x55);
  views.current = { ...views.current, 4: 0x55 };
  assert.deepEqual(await snapshotNames(s, vol), ['pve-a', 's1', 's2', 's3'], 'volchain reads the snapshot PVE made');
  await checkViews(s, vol, views, 'PVE snapshot');

  await pve.snapshotRollback(7702, vol, 'pve-a');
  views.current = { ...views['pve-a'], 5: 0x66 };
  await put(s.path(vol), 5, 0x66);
  await checkViews(s, vol, views, 'PVE rollback to the newest');

  assert.equal(await pve.snapshotDelete(vol, 's1'), 'commit');
  delete views.s1;
  await checkViews(s, vol, views, 'PVE delete of the first snapshot');
  assert.equal(await pve.snapshotDelete(vol, 's3'), 'rebase');
  delete views.s3;
  await checkViews(s, vol, views, 'PVE delete of a middle snapshot');
  assert.equal(await pve.snapshotDelete(vol, 'pve-a'), 'rebase');
  delete views['pve-a'];
  await checkViews(s, vol, views, 'PVE delete of the newest snapshot');
  assert.deepEqual(await snapshotNames(s, vol), ['s2']);

  await pve.resize(vol, SIZE + 16 * MiB);
  const listing = await s.vc.snapshotList(s.volid(vol));
  assert.equal(listing.current.virtualSize, SIZE + 16 * MiB, 'volchain reads the size PVE gave');
  await checkViews(s, vol, { current: views.current }, 'PVE resize', TOTAL * 2);
  // volchain goes on where PVE stopped: a snapshot and its delete on the resized chain.
  await s.vc.snapshotCreate(s.volid(vol), 'after-pve');
  await s.vc.snapshotDelete(s.volid(vol), 's2');
  await checkViews(s, vol, { 'after-pve': views.current, current: views.current }, 'volchain after PVE', TOTAL * 2);

  await pve.free(vol);
  assert.deepEqual(await layersOf(7702), [], 'PVE freed every layer');
});

test("shrunk frozen layers (volchain alone on the VG): PVE's delete of a middle snapshot fails for lack of space with nothing lost; snapshot, rollback, delete of the newest, resize and free work", async () => {
  requireVg();
  const pve = new PveLvm(VG, { zeroNewLvs: true });
  const s = await lvmStorage({ shrinkFrozen: 'yes' });
  const volid = await s.vc.alloc(s.id, 7703, SIZE);
  const vol = 'vm-7703-disk-0.qcow2';
  await put(s.path(vol), 0, 0x11);
  await s.vc.snapshotCreate(volid, 's1');
  // s2 holds 12 MiB, far more than s3's shrunk LV (one extent) can take in a rebase.
  await qemuIo(s.path(vol), [], [{ byte: 0x22, offset: 2 * MiB, len: 12 * MiB }]);
  await s.vc.snapshotCreate(volid, 's2');
  await put(s.path(vol), 1, 0x33);
  await s.vc.snapshotCreate(volid, 's3');
  await put(s.path(vol), 14 * 16, 0x44);
  const full = (await lv(vol))?.sizeBytes ?? 0;
  assert.ok(((await lv(s.snapLayer(vol, 's3')))?.sizeBytes ?? full) < full, 's3 is shrunk');
  const s1: View = { 0: 0x11 };
  const s2: View = { ...s1 };
  for (let b = 32; b < 224; b++) s2[b] = 0x22;
  const s3: View = { ...s2, 1: 0x33 };
  const views: Record<string, View> = { s1, s2, s3, current: { ...s3, 224: 0x44 } };

  // Middle: rebase of s3 onto s1 copies s2's 12 MiB into s3's shrunk LV.
  await assert.rejects(pve.snapshotDelete(vol, 's2'), /No space left|error|failed/i, 'the rebase cannot fit');
  await checkViews(s, vol, views, 'after the failed PVE delete of a middle snapshot (nothing lost)');
  assert.deepEqual(await snapshotNames(s, vol), ['s1', 's2', 's3']);

  await pve.snapshotCreate(7703, vol, 'pve-b');
  views['pve-b'] = { ...views.current };
  await pve.snapshotRollback(7703, vol, 'pve-b');
  views.current = { ...views['pve-b'], 2: 0x55 };
  await put(s.path(vol), 2, 0x55);
  assert.equal(await pve.snapshotDelete(vol, 'pve-b'), 'rebase'); // the newest: rebases the full-size current layer
  delete views['pve-b'];
  await checkViews(s, vol, views, 'PVE snapshot, rollback and delete of the newest on shrunk layers');
  await pve.resize(vol, SIZE + 16 * MiB);
  await checkViews(s, vol, { current: views.current }, 'PVE resize', TOTAL * 2);
  // volchain deletes the middle snapshot PVE could not: it grows the layer it writes into first.
  await s.vc.snapshotDelete(s.volid(vol), 's2');
  delete views.s2;
  await checkViews(s, vol, views, 'volchain delete of the middle snapshot');
  await pve.free(vol);
  assert.deepEqual(await layersOf(7703), [], 'PVE freed every layer');
});

test("a branched tree (volchain rolled back to an older snapshot, keeping the newer): PVE's snapshot, rollback and delete of the newest work; its delete of the branch point loses the other branch", async () => {
  requireVg();
  const pve = new PveLvm(VG, { zeroNewLvs: true });
  const s = await lvmStorage({ shrinkFrozen: 'no' });
  const { vol, views } = await volchainChain(s, 7704);
  await s.vc.snapshotRollback(s.volid(vol), 's1'); // s2 and s3 stay: s1 has two children, s2 and the current layer
  await put(s.path(vol), 5, 0x66);
  views.current = { ...views.s1, 5: 0x66 };
  // PVE follows the backing chain from the current layer only: s2 and s3 are not snapshots to PVE.
  assert.deepEqual([...(await pve.volumeSnapshotInfo(vol)).keys()].sort(), ['current', 's1']);

  await pve.snapshotCreate(7704, vol, 'pve-c');
  views['pve-c'] = { ...views.current };
  await put(s.path(vol), 6, 0x77);
  views.current = { ...views.current, 6: 0x77 };
  await checkViews(s, vol, views, 'PVE snapshot on a branched tree');
  await pve.snapshotRollback(7704, vol, 'pve-c'); // the newest of PVE's chain
  views.current = { ...views['pve-c'] };
  await checkViews(s, vol, views, 'PVE rollback on a branched tree');
  assert.equal(await pve.snapshotDelete(vol, 'pve-c'), 'rebase'); // the newest: the current layer is rebased onto s1
  delete views['pve-c'];
  await checkViews(s, vol, views, 'PVE delete of the newest on a branched tree');
  assert.deepEqual(await snapshotNames(s, vol), ['s1', 's2', 's3']);

  // The branch point s1 is PVE's first snapshot, with one child in PVE's eyes (the current layer): PVE
  // commits the current layer into s1 and renames s1's LV to the volume's name. The current state survives;
  // s2 (and s3 above it) lose their base: the LV their headers name is gone.
  assert.equal(await pve.snapshotDelete(vol, 's1'), 'commit');
  await checkViews(s, vol, { current: views.current }, 'the current layer after PVE deleted the branch point');
  // volchain refuses the volume (exit 8), naming the reference that leads nowhere now.
  await assert.rejects(
    s.vc.snapshotList(s.volid(vol)),
    (err: Error & { code?: string }) =>
      err.code === 'UNSAFE_IMAGE' && /snap_vm-7704-disk-0_s2\.qcow2: backing reference .*"snap_vm-7704-disk-0_s1\.qcow2"/.test(err.message),
  );
  const listed = await s.vc.list(s.id, { vmid: 7704 });
  assert.deepEqual(
    listed.map((v) => [v.volid, v.problem?.code]),
    [[s.volid(vol), 'UNSAFE_IMAGE']],
    'list shows the volume with its problem',
  );
  assert.notEqual((await sh('qemu-io', ['-r', '-f', 'qcow2', '-c', 'read 0 64k', s.path(vol, 's2')])).code, 0, 's2 cannot be opened');
  // PVE's free sees the current layer only and leaves the branch behind.
  await pve.free(vol);
  assert.deepEqual(await layersOf(7704), [s.snapLayer(vol, 's2'), s.snapLayer(vol, 's3')].sort(), "PVE's free leaves the layers off its chain");
});

test('a layer name that fits two volumes (made by PVE, untagged by volchain) belongs to the chain its headers join', async () => {
  requireVg();
  const pve = new PveLvm(VG, { zeroNewLvs: true });
  const s = await lvmStorage({ shrinkFrozen: 'no' });
  // VM 7705: the ambiguous LV is disk-0_pre's snapshot `up` (its parent: disk-0_pre's `first`).
  // VM 7706: the ambiguous LV is disk-0's snapshot `pre_up` (its parent: disk-0's `first`).
  for (const [vmid, owner] of [
    [7705, 'pre'],
    [7706, 'disk-0'],
  ] as const) {
    const a = `vm-${vmid}-disk-0.qcow2`;
    const b = `vm-${vmid}-disk-0_pre.qcow2`;
    const ambiguous = `snap_vm-${vmid}-disk-0_pre_up.qcow2`;
    await pve.alloc(vmid, SIZE, a);
    await pve.alloc(vmid, SIZE, b);
    const [mine, other, snap] = owner === 'pre' ? [b, a, 'up'] : [a, b, 'pre_up'];
    await put(s.path(mine), 0, 0x11);
    await pve.snapshotCreate(vmid, mine, 'first');
    await put(s.path(mine), 1, 0x22);
    await pve.snapshotCreate(vmid, mine, snap);
    assert.ok(await lv(ambiguous), `${ambiguous} exists`);
    await put(s.path(mine), 2, 0x33);
    await put(s.path(other), 3, 0x44);
    await pve.snapshotCreate(vmid, other, 'oth');
    await put(s.path(other), 4, 0x55);

    assert.deepEqual(await snapshotNames(s, mine), ['first', snap].sort());
    assert.deepEqual(await snapshotNames(s, other), ['oth']);
    // Operations on both volumes: each activates and checks its own chain, the ambiguous layer only in its own.
    await s.vc.snapshotCreate(s.volid(other), 'vc-o');
    await s.vc.snapshotCreate(s.volid(mine), 'vc-m');
    const mineViews: Record<string, View> = {
      first: { 0: 0x11 },
      [snap]: { 0: 0x11, 1: 0x22 },
      'vc-m': { 0: 0x11, 1: 0x22, 2: 0x33 },
      current: { 0: 0x11, 1: 0x22, 2: 0x33 },
    };
    const otherViews: Record<string, View> = { oth: { 3: 0x44 }, 'vc-o': { 3: 0x44, 4: 0x55 }, current: { 3: 0x44, 4: 0x55 } };
    await checkViews(s, mine, mineViews, `VM ${vmid} ${mine}`);
    await checkViews(s, other, otherViews, `VM ${vmid} ${other}`);
    // The ambiguous layer is recorded as its own volume's.
    assert.ok((await lv(ambiguous))?.tags.includes(`volchain.vol.${mine}`), `${ambiguous} tagged as ${mine}'s`);
    await s.vc.snapshotDelete(s.volid(mine), snap);
    delete mineViews[snap];
    await s.vc.snapshotDelete(s.volid(other), 'oth');
    delete otherViews.oth;
    await checkViews(s, mine, mineViews, `VM ${vmid} ${mine} after deletes`);
    await checkViews(s, other, otherViews, `VM ${vmid} ${other} after deletes`);
  }
});

test('an ambiguous layer of one volume that cannot be read does not stop operations on the other volume its name fits', async () => {
  requireVg();
  const pve = new PveLvm(VG, { zeroNewLvs: true });
  const s = await lvmStorage({ shrinkFrozen: 'no' });
  const mine = 'vm-7707-disk-0.qcow2';
  const other = 'vm-7707-disk-0_pre.qcow2';
  const ambiguous = 'snap_vm-7707-disk-0_pre_up.qcow2'; // disk-0_pre's `up` (or disk-0's `pre_up`)
  await pve.alloc(7707, SIZE, mine);
  await pve.alloc(7707, SIZE, other);
  await put(s.path(mine), 0, 0x11);
  await pve.snapshotCreate(7707, mine, 'first');
  await put(s.path(mine), 1, 0x22);
  await put(s.path(other), 2, 0x33);
  await pve.snapshotCreate(7707, other, 'up');
  assert.ok(await lv(ambiguous), `${ambiguous} exists`);
  // Break the ambiguous layer's header (PVE made it: no volchain tags), all LVs of the VM inactive.
  await shOk('dd', ['if=/dev/zero', `of=${s.path(other, 'up')}`, 'bs=4096', 'count=1', 'conv=notrunc,fsync']);
  for (const name of await layersOf(7707)) await shOk('lvchange', ['-an', `${VG}/${name}`]);
  // disk-0's activation reads the ambiguous header too (the name fits disk-0), cannot, and goes on: its own
  // chain does not need it. Every name this operation touches fits disk-0 only.
  await s.vc.snapshotCreate(s.volid(mine), 'vc-m');
  await checkViews(s, mine, { first: { 0: 0x11 }, 'vc-m': { 0: 0x11, 1: 0x22 }, current: { 0: 0x11, 1: 0x22 } }, `VM 7707 ${mine}`);
  // The volume that needs the layer is refused, naming it, and nothing of it changed.
  const before = await layersOf(7707);
  await assert.rejects(s.vc.snapshotCreate(s.volid(other), 'vc-o'), (err: Error) => err.message.includes(ambiguous));
  assert.deepEqual(await layersOf(7707), before);
});
