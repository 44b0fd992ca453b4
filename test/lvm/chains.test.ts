/**
 * Snapshot chains on real LVM through the same engine as dir storage: depth 1 to 10 with a data pattern per
 * layer, frozen layers shrunk to their data, rollback to every position. Data is written and read with
 * qemu-io on /dev/<vg>/<lv>.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { assertManyPatterns, checkClean } from '../integration/helpers.js';
import {
  BLOCK,
  MiB,
  requireVg,
  VG,
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
  if (VG === '') return; // nothing was created without a VG
  await removeVmLvs(VMIDS);
  await cleanupState();
});

const SIZE = 16 * MiB;
const BLOCKS = 24; // blocks checked at the start of the disk

/** Frozen layers are smaller than a writable one; the current layer has full size. */
async function assertSizes(s: LvmTestStorage, name: string, snaps: Iterable<string>, full: number, when: string): Promise<void> {
  const rows = new Map((await lvs()).map((r) => [r.name, r]));
  assert.equal(rows.get(name)?.sizeBytes, full, `${when}: the current layer has full size`);
  for (const snap of snaps) {
    const size = rows.get(s.snapLayer(name, snap))?.sizeBytes ?? NaN;
    assert.ok(size < full, `${when}: ${snap}'s LV is shrunk (${size} < ${full})`);
  }
}

test("depth 1 to 10 keeps every layer's data, frozen layers are shrunk, rollback works to every position", async () => {
  requireVg();
  const s = await lvmStorage();
  const name = 'vm-7201-disk-0.qcow2';
  const path = s.path(name);
  const volid = await s.vc.alloc(s.id, 7201, SIZE);
  const full = await fullLvSize(SIZE);
  const current: Blocks = new Map();
  const states = new Map<string, Blocks>();
  /** Layer `depth` writes block depth+1 and shadows block 0; `verify` is checked first, in the same run. */
  const step = async (byte: number, block: number, verify: Blocks | undefined, context: string): Promise<void> => {
    await qemuIo(
      path,
      verify ? blockReads(verify, BLOCKS) : [],
      [
        { byte, offset: block * BLOCK, len: BLOCK },
        { byte, offset: 0, len: BLOCK },
      ],
      context,
    );
    current.set(block, byte).set(0, byte);
  };
  await step(0x10, 1, undefined, 'base');
  for (let depth = 1; depth <= 10; depth++) {
    await s.vc.snapshotCreate(volid, `s${depth}`);
    states.set(`s${depth}`, new Map(current));
    await step(0x10 + depth, depth + 1, current, `current at depth ${depth}`);
  }
  // Every snapshot's own layer holds exactly its state (one qemu-io for all of them).
  await assertManyPatterns(
    [...states].map(([snap, blocks]) => ({ path: s.path(name, snap), expects: blockReads(blocks, BLOCKS), context: `snapshot ${snap}` })),
  );
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
  await assertManyPatterns(
    [...states].map(([snap, blocks]) => ({ path: s.path(name, snap), expects: blockReads(blocks, BLOCKS), context: `snapshot ${snap} after the rollbacks` })),
  );
  await assertSizes(s, name, states.keys(), full, 'after the rollbacks');

  await checkClean(path);
});
