/**
 * Issue 4 acceptance: snapshots as qcow2 volume chains on a real dir storage. The rule under test (DESIGN.md
 * section 1): the layer named after snapshot S holds exactly the data the disk had when S was taken. Every
 * snapshot gets its own pattern bytes, written at its own offsets AND over a block every snapshot overwrites,
 * and every layer is read back through its chain with qemu-io after every operation.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Plan } from '../../src/model/plan.js';
import { VolchainError } from '../../src/errors.js';
import {
  BLOCK,
  ChainModel,
  MiB,
  assertBlocks,
  assertPatterns,
  assertSameTree,
  checkAllLayers,
  cliFails,
  cliJson,
  cliOk,
  expectsFor,
  imageInfo,
  makeStorage,
  runCommand,
  snapshotOf,
  verifyVolume,
  writePattern,
  writePatterns,
  type Blocks,
  type TestStorage,
} from './helpers.js';

/**
 * 8 MiB volumes: 128 blocks of 64 KiB, every one of them checked on every read of every layer. (Reading is
 * what costs: each verification reads every layer of the chain in full.)
 */
const SIZE = 8 * MiB;
const BLOCKS = SIZE / BLOCK;

/** Writes `count` blocks of `byte` from block `block` into the current layer, and into the model. */
async function write(s: TestStorage, vmid: number, name: string, model: ChainModel, block: number, byte: number, count = 1): Promise<void> {
  await writeMany(s, vmid, name, model, [[block, byte, count]]);
}

/** Several [block, byte, count] writes in order, in one qemu-io run. */
async function writeMany(s: TestStorage, vmid: number, name: string, model: ChainModel, writes: [number, number, number][]): Promise<void> {
  await writePatterns(
    s.layer(vmid, name),
    writes.map(([block, byte, count]) => ({ byte, offset: block * BLOCK, len: count * BLOCK })),
  );
  for (const [block, byte, count] of writes) model.write(block, byte, count);
}

async function newVolume(s: TestStorage, vmid: number, size = SIZE): Promise<{ name: string; volid: string }> {
  const volid = await s.vc.alloc(s.id, vmid, size);
  const name = volid.slice(volid.indexOf('/') + 1);
  return { name, volid };
}

describe('snapshot chains on a volume-chain dir storage', () => {
  let s: TestStorage;
  before(async () => {
    s = await makeStorage();
  });
  after(async () => {
    await s.cleanup();
  });

  it('linear chains of depth 1 to 20: every snapshot layer holds exactly its state, headers name the parent', async () => {
    const vmid = 200;
    const { name, volid } = await newVolume(s, vmid);
    const model = new ChainModel();
    await write(s, vmid, name, model, 0, 0xff); // block 0: overwritten before every snapshot
    for (let depth = 1; depth <= 20; depth++) {
      const snap = `s${depth}`;
      await writeMany(s, vmid, name, model, [
        [depth * 4, depth, 1], // a block of its own
        [0, 0x80 + depth, 1], // the shared block
        [depth * 4 + 2, 0x40 + depth, 3], // reaches into the next snapshot's blocks
      ]);
      const plan = await s.vc.snapshotCreate(volid, snap);
      model.create(snap);
      assert.equal(plan.operation, 'snapshot-create');
      await verifyVolume(s, vmid, name, model, BLOCKS, `chain of depth ${depth}`);
      // The new current layer is empty: what the disk holds comes from the frozen layer.
      const listing = await s.vc.snapshotList(volid);
      assert.equal(listing.current.definedBytes, 0, `depth ${depth}: a fresh top defines nothing`);
      // ... and the frozen layer holds exactly the five blocks written since the previous snapshot.
      assert.equal(listing.snapshots.find((e) => e.name === snap)?.definedBytes, 5 * BLOCK, `depth ${depth}: data of ${snap}'s own layer`);
    }
    // Headers: every layer names its parent by relative file name, with an explicit qcow2 backing format.
    for (let depth = 1; depth <= 20; depth++) {
      const info = await imageInfo(s.layer(vmid, name, `s${depth}`));
      assert.equal(info['backing-filename'], depth === 1 ? undefined : `snap-s${depth - 1}-${name}`);
      if (depth > 1) assert.equal(info['backing-filename-format'], 'qcow2');
    }
    const top = await imageInfo(s.layer(vmid, name));
    assert.equal(top['backing-filename'], `snap-s20-${name}`);
    assert.equal(top['backing-filename-format'], 'qcow2');
    assert.equal(top['format-specific']?.data?.['extended-l2'], true, 'overlays use extended L2 too');

    // Rollback to every position (newest to oldest, then back up): the current disk becomes the snapshot,
    // writing into it afterwards touches no snapshot, and all 20 snapshots keep their data.
    const order = [20, 19, 13, 7, 2, 1, 5, 11, 17, 3];
    for (let i = 1; i <= 20; i++) if (!order.includes(i)) order.push(i);
    for (const depth of order) {
      const snap = `s${depth}`;
      await write(s, vmid, name, model, 120, 0xe0); // discarded by the rollback
      await s.vc.snapshotRollback(volid, snap);
      model.rollback(snap);
      await verifyVolume(s, vmid, name, model, BLOCKS, `rollback to ${snap}`);
      await writeMany(s, vmid, name, model, [
        [0, 0xee, 1],
        [depth * 4, 0xed, 1],
      ]);
      await verifyVolume(s, vmid, name, model, BLOCKS, `write after rollback to ${snap}`);
    }
    assert.equal(model.names().length, 20);
    await verifyVolume(s, vmid, name, model, BLOCKS, 'end of the linear chain test', { full: true });
  });

  it('rollback through the CLI, and --purge-newer drops exactly the newer snapshots', async () => {
    const vmid = 201;
    const { name, volid } = await newVolume(s, vmid);
    const model = new ChainModel();
    for (let i = 1; i <= 5; i++) {
      await write(s, vmid, name, model, i, 0x10 + i);
      await write(s, vmid, name, model, 0, 0x20 + i);
      await cliOk(s, ['snapshot', 'create', volid, `p${i}`]);
      model.create(`p${i}`);
    }
    await write(s, vmid, name, model, 9, 0x99);
    assert.equal((await cliOk(s, ['snapshot', 'rollback', volid, 'p3'])).trim(), `rolled ${volid} back to 'p3'`);
    model.rollback('p3');
    await verifyVolume(s, vmid, name, model, BLOCKS, 'CLI rollback to p3');
    await write(s, vmid, name, model, 10, 0xaa);
    await cliOk(s, ['snapshot', 'rollback', volid, 'p2', '--purge-newer']);
    model.rollback('p2', true);
    assert.deepEqual(model.names(), ['p1', 'p2']);
    await verifyVolume(s, vmid, name, model, BLOCKS, 'rollback to p2 --purge-newer');
  });

  it('deletes of the oldest, a middle and the newest snapshot keep every other state; both strategies run', async () => {
    const vmid = 202;
    const { name, volid } = await newVolume(s, vmid);
    const model = new ChainModel();
    // Sizes chosen so that the cheapest strategy differs: d1 big / d2 small (commit d2 into d1), d3 small /
    // d4 big (rebase d4 onto d2), d5 big / current small (commit the current layer into d5).
    const layout: [string, number, number][] = [
      ['d1', 0x11, 16],
      ['d2', 0x12, 1],
      ['d3', 0x13, 1],
      ['d4', 0x14, 16],
      ['d5', 0x15, 16],
    ];
    let at = 20;
    for (const [snap, byte, count] of layout) {
      await write(s, vmid, name, model, at, byte, count);
      await write(s, vmid, name, model, 0, byte);
      at += count;
      await s.vc.snapshotCreate(volid, snap);
      model.create(snap);
    }
    await write(s, vmid, name, model, 0, 0x1f);
    await write(s, vmid, name, model, 120, 0x1e);
    await verifyVolume(s, vmid, name, model, BLOCKS, 'before deletes');

    const steps: [string, string][] = [
      ['d1', 'commit-child'],
      ['d3', 'rebase-children'],
      ['d5', 'commit-child'],
    ];
    for (const [snap, strategy] of steps) {
      const plan = await s.vc.snapshotDelete(volid, snap);
      assert.equal(plan.summary, `delete snapshot '${snap}' of ${volid} by ${strategy}`);
      model.delete(snap);
      await verifyVolume(s, vmid, name, model, BLOCKS, `after deleting ${snap}`);
    }
    assert.deepEqual(model.names(), ['d2', 'd4']);
    // And the rest, newest first, down to a volume without snapshots.
    for (const snap of ['d4', 'd2']) {
      await s.vc.snapshotDelete(volid, snap);
      model.delete(snap);
      await verifyVolume(s, vmid, name, model, BLOCKS, `after deleting ${snap}`);
    }
    assert.equal((await imageInfo(s.layer(vmid, name)))['backing-filename'], undefined);
  });

  it('a branched tree: rollback keeps newer snapshots as a branch; deleting a snapshot with two children, a leaf and the oldest', async () => {
    const vmid = 203;
    const { name, volid } = await newVolume(s, vmid);
    const model = new ChainModel();
    const snap = async (n: string): Promise<void> => {
      await s.vc.snapshotCreate(volid, n);
      model.create(n);
      await verifyVolume(s, vmid, name, model, BLOCKS, `create ${n}`);
    };
    await write(s, vmid, name, model, 0, 0xa1, 4);
    await snap('b1');
    await write(s, vmid, name, model, 2, 0xa2, 4);
    await snap('b2');
    await write(s, vmid, name, model, 0, 0xa3);
    await write(s, vmid, name, model, 30, 0xa3);
    await snap('b3');
    await write(s, vmid, name, model, 1, 0xa4);

    await s.vc.snapshotRollback(volid, 'b1');
    model.rollback('b1');
    await verifyVolume(s, vmid, name, model, BLOCKS, 'rollback to b1 keeps b2, b3');
    const listing = await s.vc.snapshotList(volid);
    assert.deepEqual(
      listing.snapshots.map((e) => [e.name, e.inCurrentChain]),
      [
        ['b1', true],
        ['b2', false],
        ['b3', false],
      ],
    );
    const tree = await cliOk(s, ['snapshot', 'list', volid]);
    assert.match(tree, /b1 .*\n\|-- b2 .*\n\| {3}`-- b3 .*\n`-- current .*<- you are here/);

    await write(s, vmid, name, model, 3, 0xb4, 2);
    await write(s, vmid, name, model, 40, 0xb4);
    await snap('b4'); // b1 now has two children: b2 and b4
    await write(s, vmid, name, model, 0, 0xc0);
    assert.deepEqual(model.children('b1'), ['b2', 'b4']);

    const plan = await s.vc.snapshotDelete(volid, 'b1');
    assert.equal(plan.summary, `delete snapshot 'b1' of ${volid} by rebase-children`);
    assert.deepEqual(
      plan.strategies?.map((o) => [o.strategy, o.valid]),
      [
        ['rebase-children', true],
        ['commit-child', false],
      ],
    );
    assert.match(plan.strategies?.[1]?.reason ?? '', /2 children/);
    model.delete('b1');
    await verifyVolume(s, vmid, name, model, BLOCKS, 'delete b1 (two children)');

    await s.vc.snapshotDelete(volid, 'b3'); // a leaf outside the current chain
    model.delete('b3');
    await verifyVolume(s, vmid, name, model, BLOCKS, 'delete leaf b3');

    await s.vc.snapshotRollback(volid, 'b2'); // jump to the other branch
    model.rollback('b2');
    await verifyVolume(s, vmid, name, model, BLOCKS, 'rollback to b2');
    await write(s, vmid, name, model, 5, 0xc5);
    await snap('b5');
    await write(s, vmid, name, model, 6, 0xc6);

    // Oldest left: b2 and b4 are both roots now; delete b2 (child b5), then b4 (a root with no child).
    await s.vc.snapshotDelete(volid, 'b2');
    model.delete('b2');
    await verifyVolume(s, vmid, name, model, BLOCKS, 'delete b2 (oldest)');
    await s.vc.snapshotDelete(volid, 'b4');
    model.delete('b4');
    await verifyVolume(s, vmid, name, model, BLOCKS, 'delete b4');
    assert.deepEqual(model.names(), ['b5']);
  });

  it('--dry-run changes nothing and shows each strategy with its byte count', async () => {
    const vmid = 204;
    const { name, volid } = await newVolume(s, vmid);
    await writePattern(s.layer(vmid, name), 0x61, 0, MiB);
    await cliOk(s, ['snapshot', 'create', volid, 'big']);
    await writePattern(s.layer(vmid, name), 0x62, 2 * MiB, 64 * 1024);
    await cliOk(s, ['snapshot', 'create', volid, 'small']);
    await writePattern(s.layer(vmid, name), 0x63, 4 * MiB, 128 * 1024);
    const pristine = await snapshotOf(s.path);

    const text = await cliOk(s, ['snapshot', 'delete', volid, 'big', '--dry-run']);
    assert.match(text, /^plan: delete snapshot 'big' of .* by commit-child$/m);
    assert.match(text, /^ {2}\d+\. commit snap-small-vm-204-disk-0\.qcow2 into snap-big-vm-204-disk-0\.qcow2 \(65536 bytes\)$/m);
    assert.match(text, /^bytes moved: 64 KiB \(65536 bytes\)$/m);
    assert.match(text, /^ {4}rebase-children +1 MiB +copies up to 1048576 bytes/m);
    assert.match(text, /^ {2}\* commit-child +64 KiB +commits the 65536 bytes/m);

    const json = await cliJson<{ dryRun: boolean; plans: Plan[] }>(s, ['snapshot', 'delete', volid, 'small', '--dry-run']);
    assert.equal(json.dryRun, true);
    const plan = json.plans[0];
    assert.ok(plan);
    assert.deepEqual(
      plan.strategies?.map((o) => ({ strategy: o.strategy, valid: o.valid, bytesMoved: o.bytesMoved })),
      [
        { strategy: 'rebase-children', valid: true, bytesMoved: 65536 },
        { strategy: 'commit-child', valid: true, bytesMoved: 131072 },
      ],
    );
    assert.equal(plan.bytesMoved, 65536);
    assert.equal(plan.summary, `delete snapshot 'small' of ${volid} by rebase-children`);
    assert.deepEqual(
      plan.steps.filter((st) => st.kind === 'rebase' || st.kind === 'remove' || st.kind === 'commit'),
      [
        { kind: 'rebase', layer: 'vm-204-disk-0.qcow2', from: 'snap-small-vm-204-disk-0.qcow2', onto: 'snap-big-vm-204-disk-0.qcow2', bytes: 65536 },
        { kind: 'remove', layer: 'snap-small-vm-204-disk-0.qcow2' },
      ],
    );

    for (const args of [
      ['snapshot', 'create', volid, 'third'],
      ['snapshot', 'rollback', volid, 'big'],
      ['snapshot', 'rollback', volid, 'big', '--purge-newer'],
      ['resize', volid, '32M'],
      ['free', volid],
      ['vm', 'snapshot', String(vmid), 'third'],
      ['vm', 'rollback', String(vmid), 'small'],
      ['vm', 'delsnapshot', String(vmid), 'big'],
    ]) {
      const out = await cliOk(s, [...args, '--dry-run']);
      assert.match(out, /^plan: /, `volchain ${args.join(' ')} --dry-run prints a plan`);
      assert.match(out, /^ {2}1\. /m, `volchain ${args.join(' ')} --dry-run lists steps`);
      assertSameTree(pristine, await snapshotOf(s.path), `volchain ${args.join(' ')} --dry-run`);
    }
    assertSameTree(pristine, await snapshotOf(s.path), 'after every --dry-run');
  });

  it('resize after snapshots, then delete (commit into the smaller layer) and rollback across the resize', async () => {
    for (const strategy of ['commit-child', 'rebase-children']) {
      const vmid = strategy === 'commit-child' ? 205 : 206;
      const { name, volid } = await newVolume(s, vmid, 8 * MiB);
      const model = new ChainModel();
      const small = 128;
      const big = 256;
      await write(s, vmid, name, model, 0, 0x71, strategy === 'commit-child' ? 32 : 1);
      await write(s, vmid, name, model, 127, 0x72); // last block of the 8 MiB disk
      await s.vc.snapshotCreate(volid, 'before');
      model.create('before');
      await s.vc.resize(volid, 16 * MiB);
      await write(s, vmid, name, model, 128, 0x73, strategy === 'commit-child' ? 1 : 32); // first block past the old end
      await write(s, vmid, name, model, 255, 0x74);
      await write(s, vmid, name, model, 0, 0x75);
      await s.vc.snapshotCreate(volid, 'after');
      model.create('after');
      await write(s, vmid, name, model, 200, 0x76);
      assert.equal((await imageInfo(s.layer(vmid, name, 'before')))['virtual-size'], 8 * MiB);
      assert.equal((await imageInfo(s.layer(vmid, name, 'after')))['virtual-size'], 16 * MiB);
      await assertBlocks(s.layer(vmid, name, 'before'), model.get('before').blocks, small, 'before (8 MiB)');
      await verifyAfterResize();

      // Roll back to the pre-resize snapshot: the disk is 8 MiB again; 'after' keeps its 16 MiB.
      await s.vc.snapshotRollback(volid, 'before');
      model.rollback('before');
      assert.equal((await s.vc.info(volid)).virtualSize, 8 * MiB);
      await assertBlocks(s.layer(vmid, name), model.current, small, 'current after rollback to before');
      await assertBlocks(s.layer(vmid, name, 'after'), model.get('after').blocks, big, 'after, kept as a branch');
      await checkAllLayers(s.path, vmid);

      await s.vc.snapshotRollback(volid, 'after');
      model.rollback('after');
      assert.equal((await s.vc.info(volid)).virtualSize, 16 * MiB);
      await write(s, vmid, name, model, 201, 0x77);

      // Delete the small snapshot below the big one.
      const plan = await s.vc.snapshotDelete(volid, 'before');
      assert.equal(plan.summary, `delete snapshot 'before' of ${volid} by ${strategy}`);
      model.delete('before');
      await verifyAfterResize();
      assert.equal((await imageInfo(s.layer(vmid, name, 'after')))['virtual-size'], 16 * MiB);

      await s.vc.snapshotRollback(volid, 'after');
      model.rollback('after');
      await verifyAfterResize();
      await s.vc.snapshotDelete(volid, 'after');
      model.delete('after');
      await verifyAfterResize();
      assert.equal((await s.vc.info(volid)).virtualSize, 16 * MiB);

      async function verifyAfterResize(): Promise<void> {
        const listing = await s.vc.snapshotList(volid);
        assert.deepEqual(
          listing.snapshots.map((e) => e.name),
          model.names(),
        );
        await assertBlocks(s.layer(vmid, name), model.current, big, `${strategy}: current`);
        if (model.snaps.has('after')) await assertBlocks(s.layer(vmid, name, 'after'), model.get('after').blocks, big, `${strategy}: after`);
        if (model.snaps.has('before')) await assertBlocks(s.layer(vmid, name, 'before'), model.get('before').blocks, small, `${strategy}: before`);
        await checkAllLayers(s.path, vmid);
        assert.deepEqual(await s.vc.status(), []);
      }
    }
  });
});

describe('snapshots of every disk of a VM: all or none', () => {
  let s: TestStorage;
  const vmid = 300;
  const disks = ['vm-300-disk-0.qcow2', 'vm-300-disk-1.qcow2', 'vm-300-disk-2.qcow2'];
  const models = disks.map(() => new ChainModel());

  before(async () => {
    s = await makeStorage();
    for (const [i, disk] of disks.entries()) {
      assert.equal(await s.vc.alloc(s.id, vmid, SIZE), s.volid(vmid, disk));
      const model = models[i] as ChainModel;
      await write(s, vmid, disk, model, 0, 0x30 + i);
      await write(s, vmid, disk, model, 10 + i, 0x40 + i, 3);
    }
  });
  after(async () => {
    await s.cleanup();
  });

  const verifyAll = async (context: string): Promise<void> => {
    for (const [i, disk] of disks.entries()) await verifyVolume(s, vmid, disk, models[i] as ChainModel, BLOCKS, `${context} (${disk})`);
  };
  const writeAll = async (block: number, byte: number): Promise<void> => {
    for (const [i, disk] of disks.entries()) await write(s, vmid, disk, models[i] as ChainModel, block + i, byte + i);
  };

  it('vm snapshot takes the snapshot on every disk', async () => {
    assert.match(await cliOk(s, ['vm', 'snapshot', String(vmid), 'base']), /created snapshot 'base' of every disk of VM 300/);
    for (const m of models) m.create('base');
    await verifyAll('vm snapshot base');
    await writeAll(20, 0x50);
  });

  // Every step of the disk's snapshot-create plan (as --dry-run shows it; the plan differs between storage
  // types) fails in turn, on the first, the second (the issue's case) and the last disk.
  for (const disk of [0, 1, 2]) {
    it(`an injected failure at any step on disk ${disk + 1} of 3 leaves no disk with the snapshot and all data intact`, async () => {
      const plans = await s.vc.vmSnapshot(vmid, 'second', { dryRun: true });
      assert.equal(plans.length, 3);
      const steps = plans[disk]?.steps.length ?? 0;
      assert.ok(steps >= 3, `snapshot-create of ${String(disks[disk])} has ${steps} steps`);
      for (let step = 1; step <= steps; step++) {
        const pristine = await snapshotOf(s.path);
        const line = await cliFails(s, ['vm', 'snapshot', String(vmid), 'second'], {
          env: { VOLCHAIN_FAIL_AT: `snapshot-create:${step}:${String(disks[disk])}` },
          match: new RegExp(`injected failure.*${disk > 0 ? `the ${disk} disk\\(s\\) already done were restored` : ''}`),
        });
        assert.match(line, new RegExp(`failed on .*${disks[disk]?.replace(/\./g, '\\.') ?? 'x'}`));
        await verifyAll(`failed vm snapshot (step ${step}, disk ${disk + 1})`);
        if (disk === 0) assertSameTree(pristine, await snapshotOf(s.path), `failure at step ${step} on the first disk`);
        assert.equal((await cliOk(s, ['status'])).trim(), 'no unfinished operations');
      }
    });
  }

  it('vm snapshot, vm rollback and vm delsnapshot act on every disk', async () => {
    await cliOk(s, ['vm', 'snapshot', String(vmid), 'second']);
    for (const m of models) m.create('second');
    await verifyAll('vm snapshot second');
    await writeAll(30, 0x60);

    assert.match(await cliOk(s, ['vm', 'rollback', String(vmid), 'base']), /rolled every disk of VM 300 back to 'base'/);
    for (const m of models) m.rollback('base');
    await verifyAll('vm rollback base');
    await writeAll(40, 0x70);

    await cliOk(s, ['vm', 'delsnapshot', String(vmid), 'base']);
    for (const m of models) m.delete('base');
    await verifyAll('vm delsnapshot base');

    await cliOk(s, ['vm', 'rollback', String(vmid), 'second']);
    for (const m of models) m.rollback('second');
    await verifyAll('vm rollback second');
  });

  it('a vm operation that cannot be done on one disk changes no disk', async () => {
    // 'lone' exists on the first disk only: rollback to it and delete it must fail before touching anything.
    await s.vc.snapshotCreate(s.volid(vmid, disks[0] as string), 'lone');
    (models[0] as ChainModel).create('lone');
    await writeAll(50, 0x80);
    const pristine = await snapshotOf(s.path);
    await cliFails(s, ['vm', 'rollback', String(vmid), 'lone'], { code: 3, match: /snapshot 'lone' of .*vm-300-disk-1\.qcow2 does not exist/ });
    await cliFails(s, ['vm', 'delsnapshot', String(vmid), 'lone'], { code: 3, match: /does not exist/ });
    await cliFails(s, ['vm', 'snapshot', String(vmid), 'LONE'], { code: 4, match: /already exists/ });
    assertSameTree(pristine, await snapshotOf(s.path), 'refused vm operations');
    // A raw disk in the VM: snapshots need qcow2, so no disk gets one.
    await s.vc.alloc(s.id, vmid, MiB, { format: 'raw' });
    const withRaw = await snapshotOf(s.path);
    await cliFails(s, ['vm', 'snapshot', String(vmid), 'third'], { code: 5, match: /raw volume: snapshots need qcow2/ });
    assertSameTree(withRaw, await snapshotOf(s.path), 'vm snapshot with a raw disk');
    await verifyAll('after refused vm operations');
  });
});

describe('snapshot names and errors: a clear message, nothing changed', () => {
  let s: TestStorage;
  let pristine: Awaited<ReturnType<typeof snapshotOf>>;
  const vmid = 400;
  const volid = (): string => s.volid(vmid, 'vm-400-disk-0.qcow2');

  before(async () => {
    s = await makeStorage();
    await s.vc.alloc(s.id, vmid, 4 * MiB);
    await s.vc.alloc(s.id, vmid, MiB, { format: 'raw' });
    await writePattern(s.layer(vmid, 'vm-400-disk-0.qcow2'), 0x91, 0, MiB);
    await s.vc.snapshotCreate(volid(), 'snap1');
    await writePattern(s.layer(vmid, 'vm-400-disk-0.qcow2'), 0x92, MiB, MiB);
    pristine = await snapshotOf(s.path);
  });
  after(async () => {
    await s.cleanup();
  });

  const refuse = async (cases: { args: string[]; code: number; match?: RegExp }[]): Promise<void> => {
    for (let i = 0; i < cases.length; i += 4) {
      const batch = cases.slice(i, i + 4);
      await Promise.all(batch.map((c) => cliFails(s, c.args, c)));
      assertSameTree(pristine, await snapshotOf(s.path), batch.map((c) => c.args.join(' ')).join('; '));
    }
  };

  it('invalid snapshot names are refused by every command', async () => {
    // PVE's rule (pve-configid; 'current' exact and 'pending' any case reserved): 'x-y' and 'Current' are valid.
    const bad = ['1abc', 'a', 'current', 'Pending', 'PENDING', '-xy', 'a'.repeat(41), 'a b', 'snap.1', 'snap/1', '_ab', 'ab\u00e9', '--x', ''];
    // Through the CLI: the names the issue lists, and one bad name for each other command.
    await refuse([
      ...['1abc', 'a', 'current', 'pending', 'a'.repeat(41)].map((name) => ({
        args: ['snapshot', 'create', '--', volid(), name],
        code: 2,
        match: /snapshot name/,
      })),
      { args: ['vm', 'snapshot', '--', String(vmid), 'x.y'], code: 2, match: /snapshot name "x.y" contains "\."/ },
      { args: ['snapshot', 'rollback', volid(), '1abc'], code: 2, match: /must start with a letter/ },
      { args: ['snapshot', 'delete', volid(), 'current'], code: 2, match: /reserved/ },
      { args: ['path', volid(), '--snapshot', 'a'.repeat(41)], code: 2, match: /41 characters long/ },
    ]);
    // Every name through every snapshot call of the library, in-process (what the CLI calls).
    for (const name of bad) {
      for (const [what, fn] of [
        ['create', () => s.vc.snapshotCreate(volid(), name)],
        ['rollback', () => s.vc.snapshotRollback(volid(), name)],
        ['delete', () => s.vc.snapshotDelete(volid(), name)],
        ['path', () => s.vc.path(volid(), { snapshot: name })],
        ['vm snapshot', () => s.vc.vmSnapshot(vmid, name)],
        ['vm rollback', () => s.vc.vmRollback(vmid, name)],
        ['vm delsnapshot', () => s.vc.vmDeleteSnapshot(vmid, name)],
      ] as const) {
        await assert.rejects(
          fn,
          (err: unknown) => err instanceof VolchainError && err.code === 'INVALID_INPUT' && err.message.includes('snapshot name'),
          `${what} ${JSON.stringify(name)}`,
        );
      }
    }
    assertSameTree(pristine, await snapshotOf(s.path), 'invalid snapshot names in-process');
  });

  it('names that exist, also in another case, are refused', async () => {
    await refuse([
      { args: ['snapshot', 'create', volid(), 'snap1'], code: 4, match: /snapshot 'snap1' of .* already exists/ },
      { args: ['snapshot', 'create', volid(), 'SNAP1'], code: 4, match: /snapshot 'snap1' of .* already exists/ },
      { args: ['snapshot', 'create', volid(), 'Snap1'], code: 4, match: /already exists/ },
    ]);
  });

  it('unknown snapshots are reported, with a hint when only the case differs', async () => {
    await refuse([
      { args: ['snapshot', 'rollback', volid(), 'nosuch'], code: 3, match: /snapshot 'nosuch' of .* does not exist$/ },
      { args: ['snapshot', 'delete', volid(), 'nosuch'], code: 3, match: /does not exist/ },
      { args: ['snapshot', 'rollback', volid(), 'SNAP1'], code: 3, match: /did you mean 'snap1'/ },
      { args: ['snapshot', 'delete', volid(), 'Snap1'], code: 3, match: /did you mean 'snap1'/ },
      { args: ['vm', 'rollback', String(vmid), 'nosuch'], code: 3, match: /does not exist/ },
      { args: ['path', volid(), '--snapshot', 'nosuch'], code: 3, match: /does not exist/ },
    ]);
  });

  it('a raw volume cannot have snapshots: the error says they need qcow2', async () => {
    const raw = s.volid(vmid, 'vm-400-disk-1.raw');
    await refuse([
      { args: ['snapshot', 'create', raw, 'snap2'], code: 5, match: /raw volume: snapshots need qcow2/ },
      { args: ['snapshot', 'list', raw], code: 5, match: /snapshots need qcow2/ },
      { args: ['snapshot', 'rollback', raw, 'snap1'], code: 5, match: /snapshots need qcow2/ },
      { args: ['snapshot', 'delete', raw, 'snap1'], code: 5, match: /snapshots need qcow2/ },
    ]);
  });

  it('a 40-character name is the longest accepted, and the volume is intact after all the refusals', async () => {
    const longest = `L${'x'.repeat(39)}`;
    await cliOk(s, ['snapshot', 'create', volid(), longest]);
    const listing = await cliJson<{ snapshots: { name: string }[] }>(s, ['snapshot', 'list', volid()]);
    assert.deepEqual(
      listing.snapshots.map((e) => e.name),
      [longest, 'snap1'],
    );
    await assertBlocks(s.layer(vmid, 'vm-400-disk-0.qcow2', longest), new Map([...range(0, 16, 0x91), ...range(16, 32, 0x92)]), 64);
    await assertBlocks(s.layer(vmid, 'vm-400-disk-0.qcow2', 'snap1'), new Map(range(0, 16, 0x91)), 64);
    await checkAllLayers(s.path);
  });
});

function range(from: number, to: number, byte: number): [number, number][] {
  return Array.from({ length: to - from }, (_, i) => [from + i, byte]);
}

describe('a storage without snapshot-as-volume-chain uses qcow2 internal snapshots', () => {
  let s: TestStorage;
  let scratch: string;
  const vmid = 500;
  const name = 'vm-500-disk-0.qcow2';
  const volid = (): string => s.volid(vmid, name);

  before(async () => {
    s = await makeStorage({ chain: false });
    scratch = await mkdtemp(join(tmpdir(), 'volchain-it-raw-'));
  });
  after(async () => {
    await s.cleanup();
    await rm(scratch, { recursive: true, force: true });
  });

  /** Content of internal snapshot `snap`, exported with qemu-img convert -l and read as raw. */
  const assertInternal = async (snap: string, blocks: Blocks): Promise<void> => {
    const out = join(scratch, `${snap}.raw`);
    const r = await runCommand('qemu-img', ['convert', '-f', 'qcow2', '-l', `snapshot.name=${snap}`, '-O', 'raw', s.layer(vmid, name), out]);
    assert.equal(r.code, 0, `qemu-img convert of internal snapshot ${snap}: ${r.stderr}`);
    await assertPatterns(out, expectsFor(blocks, BLOCKS), `internal snapshot ${snap}`, 'raw');
    await rm(out);
  };

  it('create, list, rollback and delete work inside the one qcow2 file, data checked', async () => {
    await cliOk(s, ['alloc', s.id, String(vmid), '8M']);
    const model = new ChainModel();
    await write(s, vmid, name, model, 0, 0x21, 2);
    await cliOk(s, ['snapshot', 'create', volid(), 'i1']);
    model.create('i1');
    await checkAllLayers(s.path);
    await write(s, vmid, name, model, 1, 0x22, 2);
    await write(s, vmid, name, model, 100, 0x22);
    await cliOk(s, ['snapshot', 'create', volid(), 'i2']);
    model.create('i2');
    await checkAllLayers(s.path);
    await write(s, vmid, name, model, 0, 0x23);

    assert.deepEqual(await readdir(join(s.path, 'images', String(vmid))), [name], 'no layer files: snapshots live inside the image');
    const listing = await cliJson<{ mode: string; snapshots: { name: string }[] }>(s, ['snapshot', 'list', volid()]);
    assert.equal(listing.mode, 'internal');
    assert.deepEqual(
      listing.snapshots.map((e) => e.name),
      ['i1', 'i2'],
    );
    assert.equal((await s.vc.info(volid())).snapshotMode, 'internal');
    const qemuInfo = (await imageInfo(s.layer(vmid, name))) as { snapshots?: { name: string }[] };
    assert.deepEqual(
      qemuInfo.snapshots?.map((x) => x.name),
      ['i1', 'i2'],
      'qemu-img info lists both internal snapshots',
    );
    await assertInternal('i1', model.get('i1').blocks);
    await assertInternal('i2', model.get('i2').blocks);
    await assertBlocks(s.layer(vmid, name), model.current, BLOCKS, 'current');

    const pristine = await snapshotOf(s.path);
    await cliFails(s, ['snapshot', 'create', volid(), 'I1'], { code: 4, match: /already exists/ });
    await cliFails(s, ['snapshot', 'rollback', volid(), 'i1', '--purge-newer'], { code: 5, match: /snapshot-as-volume-chain/ });
    await cliFails(s, ['snapshot', 'rollback', volid(), 'nosuch'], { code: 3, match: /does not exist/ });
    await cliFails(s, ['snapshot', 'delete', volid(), 'nosuch'], { code: 3, match: /does not exist/ });
    assertSameTree(pristine, await snapshotOf(s.path), 'refused internal snapshot operations');

    await checkAllLayers(s.path);
    await cliOk(s, ['snapshot', 'rollback', volid(), 'i1']);
    model.rollback('i1');
    await checkAllLayers(s.path);
    await assertBlocks(s.layer(vmid, name), model.current, BLOCKS, 'after rollback to i1');
    await assertInternal('i2', model.get('i2').blocks);
    await write(s, vmid, name, model, 50, 0x24);

    await cliOk(s, ['snapshot', 'rollback', volid(), 'i2']);
    model.rollback('i2');
    await checkAllLayers(s.path);
    await assertBlocks(s.layer(vmid, name), model.current, BLOCKS, 'after rollback to i2');

    await cliOk(s, ['snapshot', 'delete', volid(), 'i1']);
    model.delete('i1');
    const after1 = await cliJson<{ snapshots: { name: string }[] }>(s, ['snapshot', 'list', volid()]);
    assert.deepEqual(
      after1.snapshots.map((e) => e.name),
      ['i2'],
    );
    await assertInternal('i2', model.get('i2').blocks);
    await assertBlocks(s.layer(vmid, name), model.current, BLOCKS, 'after delete of i1');
    await checkAllLayers(s.path);

    await cliOk(s, ['snapshot', 'delete', volid(), 'i2']);
    assert.deepEqual((await s.vc.snapshotList(volid())).snapshots, []);
    await assertBlocks(s.layer(vmid, name), model.current, BLOCKS, 'after delete of i2');
    await checkAllLayers(s.path);
    assert.deepEqual(await s.vc.status(), []);
  });

  it('a vm snapshot failing on the 2nd disk takes the internal snapshot back from the 1st (its undo deletes it)', async () => {
    const disks = ['vm-501-disk-0.qcow2', 'vm-501-disk-1.qcow2'];
    for (const disk of disks) await cliOk(s, ['alloc', s.id, '501', '8M', '--name', disk]);
    const model = new ChainModel();
    await write(s, 501, disks[0] as string, model, 0, 0x31, 2);
    await cliFails(s, ['vm', 'snapshot', '501', 'v1'], {
      env: { VOLCHAIN_FAIL_AT: `snapshot-create:1:${disks[1] as string}` },
      match: /injected failure.*the 1 disk\(s\) already done were restored/,
    });
    for (const disk of disks) {
      const qemuInfo = (await imageInfo(s.layer(501, disk))) as { snapshots?: { name: string }[] };
      assert.deepEqual(qemuInfo.snapshots ?? [], [], `${disk} has no internal snapshot`);
    }
    await assertBlocks(s.layer(501, disks[0] as string), model.current, BLOCKS, 'current of the 1st disk');
    assert.equal((await cliOk(s, ['status'])).trim(), 'no unfinished operations');
  });
});
