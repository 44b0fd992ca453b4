/**
 * Issue 14 ("names and listing") and issue 13 items 6 and 7 on a real dir storage:
 * - snapshots PVE made with a hyphen (pve-configid allows it) are read, listed and operated on;
 * - a layer name that fits two volumes (possible with hyphens) belongs to the chain its headers join;
 * - one volume volchain cannot read is listed with its problem, never failing the listing of the others;
 * - a volume whose current layer an unfinished operation renamed away: every reader agrees (exit 7, and
 *   `list` shows the volume with the operation);
 * - `s1` and `S1` made elsewhere: the exact name is always the one acted on.
 * Volumes and snapshots "made by PVE" are made with PVE's own command lines (pve-storage Plugin.pm: alloc_image,
 * then volume_snapshot = rename_snapshot + alloc_backed_image / Common.pm qemu_img_create_qcow2_backed), never
 * with volchain. Data is proven with qemu-io patterns read back from the layer that must hold them.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, rename } from 'node:fs/promises';
import { join } from 'node:path';
import {
  MiB,
  assertPattern,
  assertSameTree,
  checkClean,
  cli,
  cliFails,
  cliJson,
  cliOk,
  makeStorage,
  runCommand,
  snapshotOf,
  writePattern,
  type TestStorage,
} from './helpers.js';

interface ListEntry {
  volid: string;
  name: string;
  snapshots?: string[];
  problem: { code: string; message: string } | null;
  pendingOperation: { operation: string } | null;
}

const SIZE = 16 * MiB;

let s: TestStorage;
before(async () => {
  s = await makeStorage();
});
after(async () => {
  await s.cleanup();
});

async function qemuImg(args: string[]): Promise<void> {
  const r = await runCommand('qemu-img', args);
  assert.equal(r.code, 0, `qemu-img ${args.join(' ')}: ${r.stderr}`);
}

/** PVE's alloc_image for a qcow2 volume on dir storage (preallocation metadata, the dir default). */
async function pveAlloc(vmid: number, name: string): Promise<string> {
  const dir = join(s.path, 'images', String(vmid));
  await mkdir(dir, { recursive: true });
  const path = join(dir, name);
  await qemuImg(['create', '-o', 'preallocation=metadata,extended_l2=on,cluster_size=128k', '-f', 'qcow2', path, String(SIZE)]);
  return path;
}

/**
 * PVE's volume_snapshot with snapshot-as-volume-chain: rename_snapshot (current -> snap-<S>-<volume>), then
 * alloc_backed_image (qemu-img create -F qcow2 -b <relative snap name> -f qcow2 <path> -o ...).
 */
async function pveSnapshot(vmid: number, name: string, snap: string): Promise<void> {
  const dir = join(s.path, 'images', String(vmid));
  const layer = `snap-${snap}-${name}`;
  await rename(join(dir, name), join(dir, layer));
  await qemuImg(['create', '-F', 'qcow2', '-b', layer, '-f', 'qcow2', join(dir, name), '-o', 'extended_l2=on,cluster_size=128k,preallocation=metadata']);
}

async function listJson(args: string[] = []): Promise<ListEntry[]> {
  return (await cliJson<{ volumes: ListEntry[] }>(s, ['list', s.id, ...args])).volumes;
}

async function snapshotNames(volid: string): Promise<string[]> {
  return (await cliJson<{ snapshots: { name: string }[] }>(s, ['snapshot', 'list', volid])).snapshots.map((x) => x.name);
}

describe('snapshots PVE made with a hyphen in the name (issue 14)', () => {
  it("'pre-up' is listed, found and operated on like any other snapshot; volchain takes hyphenated names too", async () => {
    const name = 'vm-101-disk-0.qcow2';
    const volid = s.volid(101, name);
    const current = await pveAlloc(101, name);
    await pveAlloc(101, 'vm-101-disk-1.qcow2');
    await writePattern(current, 0xa1, 0, MiB);
    await pveSnapshot(101, name, 'pre-up');
    await writePattern(current, 0xb2, MiB, MiB);

    const listed = await listJson(['--vmid', '101']);
    assert.deepEqual(
      listed.map((v) => [v.volid, v.snapshots, v.problem]),
      [
        [volid, ['pre-up'], null],
        [s.volid(101, 'vm-101-disk-1.qcow2'), [], null],
      ],
    );
    assert.deepEqual(await snapshotNames(volid), ['pre-up']);
    assert.equal((await cliOk(s, ['path', volid, '--snapshot', 'pre-up'])).trim(), s.layer(101, name, 'pre-up'));

    await cliOk(s, ['snapshot', 'create', volid, 'post-up']);
    await assertPattern(s.layer(101, name, 'post-up'), 0xb2, MiB, MiB);
    await assertPattern(s.layer(101, name, 'post-up'), 0xa1, 0, MiB);

    await cliOk(s, ['snapshot', 'rollback', volid, 'pre-up']);
    await assertPattern(current, 0xa1, 0, MiB);
    await assertPattern(current, 0x00, MiB, MiB);

    await cliOk(s, ['snapshot', 'delete', volid, 'pre-up']);
    assert.deepEqual(await snapshotNames(volid), ['post-up']);
    await assertPattern(s.layer(101, name, 'post-up'), 0xa1, 0, MiB);
    await assertPattern(s.layer(101, name, 'post-up'), 0xb2, MiB, MiB);
    await assertPattern(current, 0xa1, 0, MiB);
    for (const path of [current, s.layer(101, name, 'post-up')]) await checkClean(path);
  });

  it("'Current' is a valid name (qemu-server reserves 'current' in exact case only); 'current' and 'Pending' are not", async () => {
    const name = 'vm-111-disk-0.qcow2';
    const volid = s.volid(111, name);
    await pveAlloc(111, name);
    await cliOk(s, ['snapshot', 'create', volid, 'Current']);
    assert.deepEqual(await snapshotNames(volid), ['Current']);
    await cliFails(s, ['snapshot', 'create', volid, 'current'], { code: 2, match: /reserved/ });
    await cliFails(s, ['snapshot', 'create', volid, 'Pending'], { code: 2, match: /reserved/ });
  });
});

describe('a layer name that fits two volumes belongs to the chain its headers join', () => {
  it("another volume's snapshot layer is not this volume's snapshot, and its name cannot be taken", async () => {
    // vm-104-x-vm-104-d.qcow2's snapshot 'sn' is the file snap-sn-vm-104-x-vm-104-d.qcow2, which is also what
    // vm-104-d.qcow2's snapshot 'sn-vm-104-x' would be called.
    const d = 'vm-104-d.qcow2';
    const x = 'vm-104-x-vm-104-d.qcow2';
    await pveAlloc(104, d);
    const xPath = await pveAlloc(104, x);
    await writePattern(xPath, 0xc4, 0, MiB);
    await pveSnapshot(104, x, 'sn');
    const pristine = await snapshotOf(s.path);

    assert.deepEqual(
      (await listJson(['--vmid', '104'])).map((v) => [v.name, v.snapshots, v.problem]),
      [
        [d, [], null],
        [x, ['sn'], null],
      ],
    );
    assert.deepEqual(await snapshotNames(s.volid(104, d)), []);
    assert.deepEqual(await snapshotNames(s.volid(104, x)), ['sn']);
    await cliFails(s, ['path', s.volid(104, d), '--snapshot', 'sn-vm-104-x'], { code: 3, match: /does not exist/ });
    await cliFails(s, ['snapshot', 'create', s.volid(104, d), 'sn-vm-104-x'], { code: 4, match: /another volume's chain/ });
    assertSameTree(pristine, await snapshotOf(s.path), 'refused snapshot over a foreign layer name');

    // And the other way round: vm-105-d.qcow2 got snapshot 'ab-vm-105-x' first; the later volume's 'ab' is refused.
    const d5 = 'vm-105-d.qcow2';
    const d5Path = await pveAlloc(105, d5);
    await writePattern(d5Path, 0xd5, 0, MiB);
    await pveSnapshot(105, d5, 'ab-vm-105-x');
    const x5 = s.volid(105, 'vm-105-x-vm-105-d.qcow2');
    await cliOk(s, ['alloc', s.id, '105', '16M', '--name', 'vm-105-x-vm-105-d.qcow2']);
    assert.deepEqual(await snapshotNames(x5), []);
    assert.deepEqual(await snapshotNames(s.volid(105, d5)), ['ab-vm-105-x']);
    await cliFails(s, ['snapshot', 'create', x5, 'ab'], { code: 4, match: /another volume's chain/ });
    await assertPattern(s.layer(105, d5, 'ab-vm-105-x'), 0xd5, 0, MiB);
    await cliOk(s, ['snapshot', 'delete', s.volid(104, x), 'sn']);
    await assertPattern(xPath, 0xc4, 0, MiB);
    assert.deepEqual(await snapshotNames(s.volid(104, x)), []);
  });
});

describe('one volume volchain cannot read never hides the others (issue 14)', () => {
  it('a volume with an unknown layer name or a refused header is listed with its problem; list exits 0', async () => {
    const good = 'vm-103-disk-0.qcow2';
    const goodPath = await pveAlloc(103, good);
    await pveSnapshot(103, good, 'daily');
    // disk-1: backed by a layer whose snapshot part is no valid snapshot name ('.' is not allowed).
    const dir = join(s.path, 'images', '103');
    await qemuImg(['create', '-f', 'qcow2', join(dir, 'snap-x.y-vm-103-disk-1.qcow2'), String(SIZE)]);
    await qemuImg(['create', '-F', 'qcow2', '-b', 'snap-x.y-vm-103-disk-1.qcow2', '-f', 'qcow2', join(dir, 'vm-103-disk-1.qcow2')]);
    // disk-2: a version 2 qcow2 header (compat=0.10), which volchain refuses.
    await qemuImg(['create', '-f', 'qcow2', '-o', 'compat=0.10', join(dir, 'vm-103-disk-2.qcow2'), String(SIZE)]);
    await writePattern(goodPath, 0xe3, 0, MiB);
    const pristine = await snapshotOf(s.path);

    const listed = await listJson(['--vmid', '103']);
    assert.deepEqual(
      listed.map((v) => [v.name, v.snapshots ?? null, v.problem?.code ?? null]),
      [
        [good, ['daily'], null],
        ['vm-103-disk-1.qcow2', null, 'UNSAFE_IMAGE'],
        ['vm-103-disk-2.qcow2', null, listed[2]?.problem?.code ?? 'missing'],
      ],
    );
    assert.notEqual(listed[2]?.problem, null, 'the version 2 image is listed with a problem');
    // The problem is the error any operation on the volume gives, with its exit status.
    for (const [i, v] of listed.entries()) {
      if (i === 0) continue;
      const message = await cliFails(s, ['info', v.volid], { code: 8 });
      assert.equal(message, `volchain: ${v.problem?.message ?? ''}`);
    }
    assert.match(listed[1]?.problem?.message ?? '', /snap-x\.y-vm-103-disk-1\.qcow2/);

    const text = await cliOk(s, ['list', s.id, '--vmid', '103']);
    assert.match(text, new RegExp(`^${s.id}:103/vm-103-disk-0\\.qcow2\\s+qcow2\\s+16 MiB`, 'm'));
    assert.match(text, new RegExp(`^${s.id}:103/vm-103-disk-1\\.qcow2\\s+qcow2\\s+\\?`, 'm'));
    assert.match(text, new RegExp(`^${s.id}:103/vm-103-disk-1\\.qcow2: cannot be read \\(UNSAFE_IMAGE\\): `, 'm'));
    assert.match(text, new RegExp(`^${s.id}:103/vm-103-disk-2\\.qcow2: cannot be read `, 'm'));

    // The whole storage too: every other volume is listed normally.
    const all = await listJson();
    assert.ok(all.some((v) => v.volid === s.volid(101, 'vm-101-disk-0.qcow2') && v.problem === null));
    assert.equal(all.filter((v) => v.problem !== null).length, 2, JSON.stringify(all.filter((v) => v.problem !== null)));
    assertSameTree(pristine, await snapshotOf(s.path), 'listing');
    await assertPattern(goodPath, 0xe3, 0, MiB);
  });
});

describe('readers agree on a volume whose current layer an unfinished operation renamed away (issue 13 item 6)', () => {
  it('volume commands exit 7; list shows the volume with its operation and exits 0; repair brings it back', async () => {
    const name = 'vm-106-disk-0.qcow2';
    const volid = s.volid(106, name);
    const path = await pveAlloc(106, name);
    await pveAlloc(106, 'vm-106-disk-1.qcow2');
    await writePattern(path, 0xf6, 0, MiB);
    // Step 2 renames the current layer to the snapshot layer; step 3 would give the new top its name.
    const crashed = await cli(s, ['snapshot', 'create', volid, 'mid'], { env: { VOLCHAIN_CRASH_AT: 'snapshot-create:2:after' } });
    assert.notEqual(crashed.code, 0, 'the process was killed');
    const state = await snapshotOf(s.path);

    for (const args of [
      ['snapshot', 'list', volid],
      ['info', volid],
      ['path', volid],
      ['path', volid, '--snapshot', 'mid'],
      ['snapshot', 'delete', volid, 'mid', '--dry-run'],
      ['snapshot', 'create', volid, 'other'],
      ['vm', 'snapshot', '106', 'other', '--dry-run'],
      ['snapshot', 'create', s.volid(106, 'vm-106-disk-1.qcow2'), 'other', '--dry-run'],
    ]) {
      await cliFails(s, args, { code: 7, match: /snapshot-create|repair/ });
    }
    const listed = await listJson(['--vmid', '106']);
    assert.deepEqual(
      listed.map((v) => [v.name, v.problem?.code ?? null, v.pendingOperation?.operation ?? null]),
      [
        [name, 'PENDING_OPERATION', 'snapshot-create'],
        ['vm-106-disk-1.qcow2', null, null],
      ],
    );
    const text = await cliOk(s, ['list', s.id, '--vmid', '106']);
    assert.match(text, new RegExp(`^${s.id}:106/vm-106-disk-0\\.qcow2: cannot be read \\(PENDING_OPERATION\\): .*repair`, 'm'));
    assertSameTree(state, await snapshotOf(s.path), 'readers of a volume mid-operation');

    await cliOk(s, ['repair', volid]);
    const repaired = await listJson(['--vmid', '106']);
    assert.deepEqual(
      repaired.map((v) => [v.name, v.snapshots, v.problem, v.pendingOperation]),
      [
        [name, ['mid'], null, null],
        ['vm-106-disk-1.qcow2', [], null, null],
      ],
    );
    await assertPattern(s.layer(106, name, 'mid'), 0xf6, 0, MiB);
  });
});

describe("snapshots 's1' and 'S1' made elsewhere: the exact name is the one acted on (issue 13 item 7)", () => {
  it('rollback, delete and path take the exact-case snapshot; a new name clashing in case is refused', async () => {
    const name = 'vm-107-disk-0.qcow2';
    const volid = s.volid(107, name);
    const current = await pveAlloc(107, name);
    await writePattern(current, 0x11, 0, MiB);
    await pveSnapshot(107, name, 's1');
    await writePattern(current, 0x22, MiB, MiB);
    await pveSnapshot(107, name, 'S1');
    await writePattern(current, 0x33, 2 * MiB, MiB);

    assert.deepEqual((await snapshotNames(volid)).sort(), ['S1', 's1']);
    assert.equal((await cliOk(s, ['path', volid, '--snapshot', 's1'])).trim(), s.layer(107, name, 's1'));
    assert.equal((await cliOk(s, ['path', volid, '--snapshot', 'S1'])).trim(), s.layer(107, name, 'S1'));
    for (const snap of ['s1', 'S1']) {
      const plan = await cliJson<{ plans?: { steps: { backing?: string }[] }[]; steps?: { backing?: string }[] }>(s, [
        'snapshot',
        'rollback',
        volid,
        snap,
        '--dry-run',
      ]);
      const steps = plan.steps ?? plan.plans?.[0]?.steps ?? [];
      assert.ok(
        steps.some((st) => st.backing === `snap-${snap}-${name}`),
        `rollback to ${snap} builds on its own layer: ${JSON.stringify(steps)}`,
      );
    }
    await cliFails(s, ['snapshot', 'create', volid, 'S1'], { code: 4, match: /'S1' .* already exists/ });
    await cliFails(s, ['snapshot', 'rollback', volid, 'S2'], { code: 3, match: /does not exist/ });

    await cliOk(s, ['snapshot', 'rollback', volid, 's1']);
    await assertPattern(current, 0x11, 0, MiB);
    await assertPattern(current, 0x00, MiB, MiB);
    await cliOk(s, ['snapshot', 'delete', volid, 's1']);
    assert.deepEqual(await snapshotNames(volid), ['S1']);
    await assertPattern(s.layer(107, name, 'S1'), 0x11, 0, MiB);
    await assertPattern(s.layer(107, name, 'S1'), 0x22, MiB, MiB);
    await assertPattern(current, 0x11, 0, MiB);
    await cliFails(s, ['snapshot', 'create', volid, 's1'], { code: 4, match: /'S1' .* already exists \(names that differ only in case are refused\)/ });
    for (const path of [current, s.layer(107, name, 'S1')]) await checkClean(path);
  });
});
