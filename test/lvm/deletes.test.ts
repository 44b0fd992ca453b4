/**
 * Deleting snapshots on real LVM: the first, a middle one, the newest, and a branched one (two children, both
 * rebased); frozen layers that receive data in a rebase are grown first and shrunk again after; every
 * remaining snapshot keeps its data and every touched layer checks clean.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { assertManyPatterns, checkClean } from '../integration/helpers.js';
import { BLOCK, MiB, requireVg, VG, blockReads, cleanupState, fullLvSize, lvmStorage, lvs, qemuIo, removeVmLvs, type Blocks } from './helpers.js';

const VMIDS = [7251];
after(async () => {
  if (VG === '') return; // nothing was created without a VG
  await removeVmLvs(VMIDS);
  await cleanupState();
});

const BLOCKS = 12;

test('delete the first, a middle, the newest and a branched snapshot; every other snapshot keeps its data', async () => {
  requireVg();
  const s = await lvmStorage();
  const name = 'vm-7251-disk-0.qcow2';
  const path = s.path(name);
  const volid = await s.vc.alloc(s.id, 7251, 16 * MiB);
  const full = await fullLvSize(16 * MiB);
  const current: Blocks = new Map();
  const states = new Map<string, Blocks>();
  /** Writes block `block` and shadows block 0 with the same byte. */
  const write = async (byte: number, block: number): Promise<void> => {
    await qemuIo(
      path,
      [],
      [
        { byte, offset: block * BLOCK, len: BLOCK },
        { byte, offset: 0, len: BLOCK },
      ],
    );
    current.set(block, byte).set(0, byte);
  };
  // s1 <- s2 <- s3 <- s4, then rollback to s2 and a new line: s2 <- b1 <- current.
  for (let i = 1; i <= 4; i++) {
    await write(0x20 + i, i);
    await s.vc.snapshotCreate(volid, `s${i}`);
    states.set(`s${i}`, new Map(current));
  }
  await s.vc.snapshotRollback(volid, 's2');
  current.clear();
  for (const [b, v] of states.get('s2') ?? []) current.set(b, v);
  await write(0x41, 8);
  await s.vc.snapshotCreate(volid, 'b1');
  states.set('b1', new Map(current));
  await write(0x42, 9);

  const verify = async (when: string): Promise<void> => {
    await assertManyPatterns([
      { path, expects: blockReads(current, BLOCKS), context: `current ${when}` },
      ...[...states].map(([snap, blocks]) => ({ path: s.path(name, snap), expects: blockReads(blocks, BLOCKS), context: `snapshot ${snap} ${when}` })),
    ]);
    const rows = new Map((await lvs()).map((r) => [r.name, r]));
    assert.equal(rows.get(name)?.sizeBytes, full, `${when}: current has full size`);
    for (const snap of states.keys()) {
      const size = rows.get(s.snapLayer(name, snap))?.sizeBytes ?? NaN;
      assert.ok(size < full, `${when}: ${snap} stays shrunk (${size})`);
    }
  };
  const del = async (snap: string, strategy: string): Promise<void> => {
    const plan = await s.vc.snapshotDelete(volid, snap);
    assert.match(plan.summary, new RegExp(strategy), plan.summary);
    states.delete(snap);
  };
  await del('s1', ''); // the first (one child: s2, frozen: grown for the rebase, then shrunk again)
  await del('s3', ''); // a middle one (s2 <- s3 <- s4)
  await verify('after deleting the first and a middle one');
  const s2 = (await s.vc.snapshotList(volid)).snapshots.find((x) => x.name === 's2');
  assert.deepEqual(s2?.children, ['b1', 's4']);
  await del('s2', 'rebase-children'); // branched: s4 and b1 are both rebased onto nothing (s2 was the base)
  await del('s4', 'rebase-children'); // the newest of the old line: no child, simply removed
  await del('b1', 'commit-child'); // the current layer holds one block: committed into b1, which becomes current
  await verify("after deleting the branched one, the newest and the current layer's parent");
  assert.deepEqual(
    (await s.vc.snapshotList(volid)).snapshots.map((x) => x.name),
    [],
  );
  await checkClean(path);
});
