/**
 * Issue 13 (parts 2, 3 and 13) on real images: a layer QEMU marked corrupt is shown but never written or
 * frozen; internal snapshots inside chain layers are shown and never silently destroyed; a chain deeper than
 * 1000 layers is neither read nor made. Every refusal is checked to leave the storage byte for byte as it was.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { executePlan } from '../../src/engine/run/executor.js';
import { planSnapshotCreate } from '../../src/engine/planners/snapshot-create.js';
import { readVolumeTree } from '../../src/engine/read/volume-tree.js';
import { VolchainError } from '../../src/errors.js';
import { readSettings } from '../../src/settings.js';
import { markCorrupt, rewriteQcow2Header } from '../fixtures/qcow2-craft.js';
import { run } from '../../src/tools/runner.js';
import {
  MiB,
  assertPattern,
  assertSameTree,
  checkClean,
  cliFails,
  cliJson,
  cliOk,
  makeStorage,
  snapshotOf,
  writePattern,
  type TestStorage,
} from './helpers.js';

interface Flagged {
  corrupt: boolean | null;
  internalSnapshots: { id: string; name: string; date: string; vmStateSize: number; virtualSize: number | null }[] | null;
}
interface Listing {
  current: Flagged & { layer: string };
  snapshots: (Flagged & { name: string; layer: string })[];
}
interface Info {
  layers: (Flagged & { layer: string; snapshot: string | null })[];
}

async function internalSnapshotNames(path: string): Promise<string[]> {
  const { stdout } = await run('qemu-img', ['snapshot', '-l', '-U', path]);
  return stdout
    .split('\n')
    .slice(2)
    .map((l) => l.trim().split(/\s+/)[1])
    .filter((n): n is string => n !== undefined && n.length > 0);
}

/** The CLI call must fail with `code` and a message matching `match`, and change nothing on disk. */
async function refusedUnchanged(st: TestStorage, args: string[], code: number, match: RegExp): Promise<string> {
  const before = await snapshotOf(st.path);
  const line = await cliFails(st, args, { code, match });
  assertSameTree(before, await snapshotOf(st.path), args.join(' '));
  return line;
}

let st: TestStorage;
before(async () => {
  st = await makeStorage();
});
after(async () => {
  await st.cleanup();
});

describe('internal snapshots inside chain layers', () => {
  it('are listed per layer and survive: the delete that would drop them is refused, naming layer and snapshots', async () => {
    const volid = (await cliOk(st, ['alloc', st.id, '100', '4M'])).trim();
    const top = st.layer(100, 'vm-100-disk-0.qcow2');
    await writePattern(top, 0xa1, 0, MiB);
    // Made before the storage switched to volume chains, say.
    await run('qemu-img', ['snapshot', '-c', 'old1', top]);
    await writePattern(top, 0xa2, 0, MiB);
    await cliOk(st, ['snapshot', 'create', volid, 's1']);
    const s1 = st.layer(100, 'vm-100-disk-0.qcow2', 's1');

    const listing = await cliJson<Listing>(st, ['snapshot', 'list', volid]);
    assert.deepEqual(
      listing.snapshots.map((s) => [s.name, s.corrupt, s.internalSnapshots?.map((i) => i.name)]),
      [['s1', false, ['old1']]],
    );
    assert.deepEqual(listing.current.internalSnapshots, []);
    assert.match(listing.snapshots[0]?.internalSnapshots?.[0]?.date ?? '', /^\d{4}-\d\d-\d\dT/);
    assert.match(await cliOk(st, ['snapshot', 'list', volid]), /^s1 .*\[internal snapshots: old1\]$/m);
    const info = await cliJson<Info>(st, ['info', volid]);
    assert.deepEqual(
      info.layers.map((l) => [l.snapshot, l.internalSnapshots?.map((i) => i.name)]),
      [
        [null, []],
        ['s1', ['old1']],
      ],
    );
    assert.match(await cliOk(st, ['info', volid]), /^internal in s1 +old1 \(snap-s1-vm-100-disk-0\.qcow2\)$/m);

    // A rollback to s1 leaves s1 with two children: the only way to delete it then removes its layer.
    await writePattern(top, 0xa3, 0, MiB);
    await cliOk(st, ['snapshot', 'create', volid, 's2']);
    await cliOk(st, ['snapshot', 'rollback', volid, 's1']);
    const line = await refusedUnchanged(
      st,
      ['snapshot', 'delete', volid, 's1'],
      8,
      /snap-s1-vm-100-disk-0\.qcow2: holds internal snapshot\(s\) "old1" that would be lost if it were removed/,
    );
    assert.match(line, /qemu-img snapshot -d <name> \S+snap-s1-vm-100-disk-0\.qcow2/);
    await cliFails(st, ['snapshot', 'delete', volid, 's1', '--dry-run'], { code: 8, match: /"old1"/ });
    assert.deepEqual(await internalSnapshotNames(s1), ['old1']);

    // With one child again, s1 is deleted by committing that child into s1's layer, which keeps 'old1'
    // (QEMU copies on write what an internal snapshot uses) and takes the child's name.
    await cliOk(st, ['snapshot', 'rollback', volid, 's2', '--purge-newer']);
    const plan = await cliJson<{ plans: { summary: string }[] }>(st, ['snapshot', 'delete', volid, 's1']);
    assert.match(plan.plans[0]?.summary ?? '', /by commit-child$/);
    const s2 = st.layer(100, 'vm-100-disk-0.qcow2', 's2');
    assert.deepEqual(await internalSnapshotNames(s2), ['old1']);
    assert.deepEqual(
      (await cliJson<Info>(st, ['info', volid])).layers.map((l) => [l.snapshot, l.internalSnapshots?.map((i) => i.name)]),
      [
        [null, []],
        ['s2', ['old1']],
      ],
    );
    await assertPattern(s2, 0xa3, 0, MiB);
    await checkClean(s2);
    // The internal snapshot still holds what it was taken with.
    await run('qemu-img', ['snapshot', '-a', 'old1', s2]);
    await assertPattern(s2, 0xa1, 0, MiB);
  });

  it('in the current layer block a rollback (it would replace the layer) but not a new snapshot', async () => {
    const volid = (await cliOk(st, ['alloc', st.id, '101', '4M'])).trim();
    const top = st.layer(101, 'vm-101-disk-0.qcow2');
    await cliOk(st, ['snapshot', 'create', volid, 'base']);
    await writePattern(top, 0xb1, 0, MiB);
    await run('qemu-img', ['snapshot', '-c', 'mine', top]);
    await refusedUnchanged(
      st,
      ['snapshot', 'rollback', volid, 'base'],
      8,
      /vm-101-disk-0\.qcow2: holds internal snapshot\(s\) "mine" that would be lost if it were replaced/,
    );
    // Deleting 'base' would rebase the current layer or commit it away: refused as well.
    await refusedUnchanged(st, ['snapshot', 'delete', volid, 'base'], 8, /vm-101-disk-0\.qcow2: holds internal snapshot\(s\) "mine"/);
    // Freezing keeps them: the new snapshot's layer carries 'mine'.
    await cliOk(st, ['snapshot', 'create', volid, 'next']);
    assert.deepEqual(await internalSnapshotNames(st.layer(101, 'vm-101-disk-0.qcow2', 'next')), ['mine']);
    await assertPattern(st.layer(101, 'vm-101-disk-0.qcow2', 'next'), 0xb1, 0, MiB);
  });
});

describe('a layer QEMU marked corrupt', () => {
  it('is flagged by info and snapshot list, and nothing freezes, commits or resizes it', async () => {
    const volid = (await cliOk(st, ['alloc', st.id, '102', '4M'])).trim();
    const top = st.layer(102, 'vm-102-disk-0.qcow2');
    await writePattern(top, 0xc1, 0, MiB);
    await cliOk(st, ['snapshot', 'create', volid, 's1']);
    await writePattern(top, 0xc2, MiB, MiB);
    await markCorrupt(top);

    const info = await cliJson<Info>(st, ['info', volid]);
    assert.deepEqual(
      info.layers.map((l) => [l.snapshot, l.corrupt]),
      [
        [null, true],
        ['s1', false],
      ],
    );
    assert.match(await cliOk(st, ['info', volid]), /^CORRUPT +current \(vm-102-disk-0\.qcow2\): run 'qemu-img check -r all/m);
    const listing = await cliJson<Listing>(st, ['snapshot', 'list', volid]);
    assert.equal(listing.current.corrupt, true);
    assert.match(await cliOk(st, ['snapshot', 'list', volid]), /^`-- current .*\[CORRUPT: qemu-img check -r\]/m);

    const check = new RegExp(`vm-102-disk-0\\.qcow2: is marked corrupt by QEMU.*'qemu-img check -r all -f qcow2 ${top.replace(/[.]/g, '\\.')}'`);
    await refusedUnchanged(st, ['snapshot', 'create', volid, 's2'], 8, check);
    // Both ways of deleting s1 write the corrupt current layer or move its data.
    await refusedUnchanged(st, ['snapshot', 'delete', volid, 's1'], 8, check);
    await refusedUnchanged(st, ['resize', volid, '8M'], 8, check);
    await refusedUnchanged(st, ['vm', 'snapshot', '102', 's2'], 8, check);

    // The advice works: after the repair QEMU clears the bit and the same operations go through.
    await run('qemu-img', ['check', '-r', 'all', '-f', 'qcow2', top]);
    await cliOk(st, ['snapshot', 'delete', volid, 's1']);
    await cliOk(st, ['snapshot', 'create', volid, 's2']);
    await assertPattern(st.layer(102, 'vm-102-disk-0.qcow2', 's2'), 0xc1, 0, MiB);
    await assertPattern(st.layer(102, 'vm-102-disk-0.qcow2', 's2'), 0xc2, MiB, MiB);
  });

  it('below the current layer: a new snapshot is fine, deleting it (copying its data) and rolling back onto it are not', async () => {
    const volid = (await cliOk(st, ['alloc', st.id, '103', '4M'])).trim();
    const top = st.layer(103, 'vm-103-disk-0.qcow2');
    await writePattern(top, 0xd1, 0, MiB);
    await cliOk(st, ['snapshot', 'create', volid, 's1']);
    const s1 = st.layer(103, 'vm-103-disk-0.qcow2', 's1');
    await markCorrupt(s1);
    await refusedUnchanged(st, ['snapshot', 'delete', volid, 's1'], 8, /snap-s1-vm-103-disk-0\.qcow2: is marked corrupt/);
    await refusedUnchanged(st, ['snapshot', 'rollback', volid, 's1'], 8, /snap-s1-vm-103-disk-0\.qcow2: is marked corrupt/);
    await cliOk(st, ['snapshot', 'create', volid, 's2']);
    assert.deepEqual(
      (await cliJson<Listing>(st, ['snapshot', 'list', volid])).snapshots.map((s) => [s.name, s.corrupt]),
      [
        ['s1', true],
        ['s2', false],
      ],
    );
    // Deleting s2 by commit-child leaves the corrupt s1 alone (rebase-children, which reads it, is set aside).
    await writePattern(top, 0xd2, MiB, MiB);
    const s1Bytes = await readFile(s1);
    const plan = await cliJson<{ plans: { summary: string }[] }>(st, ['snapshot', 'delete', volid, 's2']);
    assert.match(plan.plans[0]?.summary ?? '', /by commit-child$/);
    assert.ok(s1Bytes.equals(await readFile(s1)), 'the corrupt layer was not written');
    await assertPattern(top, 0xd2, MiB, MiB);
    // Freeing the volume removes corrupt layers too: that is what it is for.
    await cliOk(st, ['free', volid]);
  });
});

describe('the executor, right before the first step', () => {
  it('judges the headers again: a layer marked corrupt after planning is refused, no journal, nothing changed', async () => {
    // What an LVM plan made from tags (inactive layers, no header) meets once the executor activated them.
    const volid = (await cliOk(st, ['alloc', st.id, '106', '4M'])).trim();
    const top = st.layer(106, 'vm-106-disk-0.qcow2');
    await writePattern(top, 0xf1, 0, MiB);
    const { backend, volume } = st.vc.resolve(volid);
    const plan = planSnapshotCreate(await readVolumeTree(backend, volume), { kind: 'dir', volumeChain: true, fixedSizeLayers: false }, 's1');
    await markCorrupt(top);
    const before = await snapshotOf(st.path);
    await assert.rejects(
      executePlan(backend, plan, { hooks: readSettings({}).hooks }),
      (err: unknown) =>
        err instanceof VolchainError &&
        err.code === 'CORRUPT_IMAGE' &&
        /vm-106-disk-0\.qcow2: is marked corrupt by QEMU.*\(nothing was changed\)$/.test(err.message),
    );
    assertSameTree(before, await snapshotOf(st.path), 'executePlan of a plan touching a corrupt layer');
    assert.deepEqual(await st.vc.status(), [], 'no journal left behind');
  });
});

describe('chain depth', () => {
  const VOL = 'vm-104-disk-0.qcow2';
  const snap = (i: number): string => `l${String(i).padStart(4, '0')}`;
  let dir = '';
  let overlay: Buffer;

  /** Adds snapshot layers l0001..l<n> (each backed by the one before, l0001 by the base) and a current on top. */
  async function buildChain(n: number): Promise<void> {
    for (let i = 1; i <= n; i++) {
      const backing = i === 1 ? 'snap-base-vm-104-disk-0.qcow2' : `snap-${snap(i - 1)}-${VOL}`;
      await writeFile(join(dir, `snap-${snap(i)}-${VOL}`), rewriteQcow2Header(overlay, { backingFile: backing }));
    }
    await writeFile(join(dir, VOL), rewriteQcow2Header(overlay, { backingFile: `snap-${snap(n)}-${VOL}` }));
  }

  before(async () => {
    dir = join(st.path, 'images', '104');
    await mkdir(dir, { recursive: true });
    const base = join(dir, 'snap-base-vm-104-disk-0.qcow2');
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', base, '1M']);
    await writePattern(base, 0xe1, 0, 64 * 1024);
    // One real overlay made by qemu-img; the others are copies of it with another backing name (cheap: a
    // thousand qemu-img runs would take most of a minute).
    const tmp = join(st.root, 'overlay.qcow2');
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', 'snap-base-vm-104-disk-0.qcow2', '-u', tmp, '1M']);
    overlay = await readFile(tmp);
  });

  it('1000 layers are read; a snapshot that would make 1001 is refused with a clear error (exit 5)', async () => {
    await buildChain(998); // base + 998 + current = 1000
    const volid = st.volid(104, VOL);
    const info = await cliJson<{ snapshots: string[] }>(st, ['info', volid]);
    assert.equal(info.snapshots.length, 999);
    await refusedUnchanged(st, ['snapshot', 'create', volid, 'onemore'], 5, /would make its chain 1001 layers deep, more than the limit of 1000/);
    await refusedUnchanged(st, ['vm', 'snapshot', '104', 'onemore'], 5, /1001 layers deep/);
  });

  it('a chain of 1001 layers is refused by readers and writers alike (exit 8), naming its top', async () => {
    await buildChain(999);
    const volid = st.volid(104, VOL);
    const deep = /vm-104-disk-0\.qcow2: backing chain of .* is 1001 layers deep, more than the limit of 1000 layers/;
    await refusedUnchanged(st, ['info', volid], 8, deep);
    await refusedUnchanged(st, ['snapshot', 'list', volid], 8, deep);
    await refusedUnchanged(st, ['snapshot', 'create', volid, 'onemore'], 8, deep);
    await refusedUnchanged(st, ['snapshot', 'delete', volid, snap(5)], 8, deep);
    await refusedUnchanged(st, ['snapshot', 'rollback', volid, 'base'], 8, deep);
    await assertPattern(join(dir, 'snap-base-vm-104-disk-0.qcow2'), 0xe1, 0, 64 * 1024);
  });
});
