/**
 * Snapshot chains on real LVM through the same engine as dir storage: depth 1 to 10 with a data pattern per
 * layer, rollback to every position, deletion of the first, a middle, the newest and a branched snapshot,
 * frozen layers shrunk (and grown back and shrunk again around a rebase into them). Data is written and
 * read with qemu-io on /dev/<vg>/<lv>; every layer must check clean.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { checkClean } from '../integration/helpers.js';
import {
  BLOCK,
  MiB,
  SKIP,
  blockReads,
  cleanupState,
  fullLvSize,
  lvmStorage,
  lvs,
  qemuIo,
  removeVmLvs,
  type Blocks,
  type LvmTestStorage,
} from './helpers.js';

const VMIDS = [7201];
after(async () => {
  if (SKIP) return;
  await removeVmLvs(VMIDS);
  await cleanupState();
});

const SIZE = 16 * MiB;
const BLOCKS = 24; // blocks checked at the start of the disk

/** Every layer of a VM's volumes must pass qemu-img check. */
async function checkAll(s: LvmTestStorage, vmid: number): Promise<void> {
  for (const row of (await lvs()).filter((r) => r.name.includes(`vm-${vmid}-`))) await checkClean(s.path(row.name));
}

/** Frozen layers are smaller than a writable one; the current layer has full size. */
async function assertSizes(s: LvmTestStorage, name: string, snaps: Iterable<string>, full: number, when: string): Promise<void> {
  const rows = new Map((await lvs()).map((r) => [r.name, r]));
  assert.equal(rows.get(name)?.sizeBytes, full, `${when}: the current layer has full size`);
  for (const snap of snaps) {
    const size = rows.get(s.snapLayer(name, snap))?.sizeBytes ?? NaN;
    assert.ok(size < full, `${when}: ${snap}'s LV is shrunk (${size} < ${full})`);
  }
}

test('depth 1 to 10, rollback to every position, then delete the first, a middle, the newest and a branched snapshot', { skip: SKIP }, async () => {
  const s = await lvmStorage();
  const name = 'vm-7201-disk-0.qcow2';
  const path = s.path(name);
  const volid = await s.vc.alloc(s.id, 7201, SIZE);
  const full = await fullLvSize(SIZE);
  const current: Blocks = new Map();
  const states = new Map<string, Blocks>();
  /** Layer `depth` writes block depth+1 and shadows block 0; `verify` is checked first, in the same run. */
  const step = async (byte: number, block: number, verify: Blocks | undefined, context: string): Promise<void> => {
    await qemuIo(path, verify ? blockReads(verify, BLOCKS) : [], [
      { byte, offset: block * BLOCK, len: BLOCK },
      { byte, offset: 0, len: BLOCK },
    ], context);
    current.set(block, byte).set(0, byte);
  };
  await step(0x10, 1, undefined, 'base');
  for (let depth = 1; depth <= 10; depth++) {
    await s.vc.snapshotCreate(volid, `s${depth}`);
    states.set(`s${depth}`, new Map(current));
    await step(0x10 + depth, depth + 1, current, `current at depth ${depth}`);
  }
  // Every snapshot's own layer holds exactly its state.
  for (const [snap, blocks] of states) await qemuIo(s.path(name, snap), blockReads(blocks, BLOCKS), [], `snapshot ${snap}`);
  await assertSizes(s, name, states.keys(), full, 'depth 10');
  const listing = await s.vc.snapshotList(volid);
  assert.equal(listing.snapshots.length, 10);
  assert.equal(listing.current.parent, 's10');

  // Rollback to every position (ending on s3): the data is the snapshot's, the newer snapshots stay, the disk
  // is writable at once.
  for (const k of [10, 9, 8, 7, 6, 5, 4, 2, 1, 3]) {
    await s.vc.snapshotRollback(volid, `s${k}`);
    current.clear();
    for (const [b, v] of states.get(`s${k}`) ?? []) current.set(b, v);
    await step(0xe0 + k, 20, current, `after rollback to s${k}`);
  }
  assert.equal((await s.vc.snapshotList(volid)).snapshots.length, 10, 'rollback keeps newer snapshots');

  // s3 now has two children (s4 and the current layer).
  const verifyAll = async (when: string): Promise<void> => {
    await qemuIo(path, blockReads(current, BLOCKS), [], `current ${when}`);
    for (const [snap, blocks] of states) await qemuIo(s.path(name, snap), blockReads(blocks, BLOCKS), [], `snapshot ${snap} ${when}`);
    await assertSizes(s, name, states.keys(), full, when);
  };
  const del = async (snap: string): Promise<void> => {
    await s.vc.snapshotDelete(volid, snap);
    states.delete(snap);
  };
  await del('s1'); // the first
  await del('s6'); // a middle one
  await del('s10'); // the newest
  const s3 = (await s.vc.snapshotList(volid)).snapshots.find((x) => x.name === 's3');
  assert.deepEqual([...(s3?.children ?? [])].sort(), ['current', 's4']);
  await del('s3'); // branched: s4 and the current layer are both rebased onto s2
  await verifyAll('after the deletes');
  assert.deepEqual((await s.vc.snapshotList(volid)).snapshots.map((x) => x.name), ['s2', 's4', 's5', 's7', 's8', 's9']);
  await checkAll(s, 7201);
});

