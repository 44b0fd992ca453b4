/**
 * `activate` / `deactivate` and the snapshot space figures of `list` / `info` on a real dir storage, through
 * the CLI: on dir storage activation is a no-op that succeeds (as in PVE) but still checks its input and
 * refuses over an unfinished operation; `snapshotBytes` is what the snapshot files take (their blocks), and
 * `fullSizeSnapshotBytes` equals it (files grow on demand); dry runs carry no LVM space estimate.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { stat } from 'node:fs/promises';
import { MiB, assertSameTree, cli, cliFails, cliJson, cliOk, makeStorage, snapshotOf, writePattern, type TestStorage } from './helpers.js';

interface VolumeJson {
  volid: string;
  usedBytes: number;
  chainUsedBytes: number;
  snapshotBytes: number;
  fullSizeSnapshotBytes: number;
  snapshots: string[];
}

async function blocksOf(path: string): Promise<number> {
  return (await stat(path)).blocks * 512;
}

describe('activate and deactivate on dir storage', () => {
  let s: TestStorage;
  const vmid = 120;
  const name = 'vm-120-disk-0.qcow2';
  let volid: string;
  before(async () => {
    s = await makeStorage();
    volid = (await cliOk(s, ['alloc', s.id, String(vmid), '16M'])).trim();
    await writePattern(s.layer(vmid, name), 0x31, 0, MiB);
    await cliOk(s, ['snapshot', 'create', volid, 'first']);
  });
  after(async () => {
    await s.cleanup();
  });

  it("succeeds doing nothing, says so, and lists the chain's layers in --json", async () => {
    const before = await snapshotOf(s.path);
    assert.equal((await cliOk(s, ['activate', volid])).trim(), `${volid}: storage '${s.id}' needs no activation, nothing to do`);
    assert.equal((await cliOk(s, ['deactivate', volid])).trim(), `${volid}: storage '${s.id}' needs no activation, nothing to do`);
    for (const action of ['activate', 'deactivate']) {
      assert.deepEqual(await cliJson(s, [action, volid]), {
        volid,
        storage: s.id,
        layers: [name, `snap-first-${name}`],
        active: null,
      });
    }
    assertSameTree(before, await snapshotOf(s.path), 'activate/deactivate on dir');
    // The library call says the same.
    assert.deepEqual(await s.vc.activate(volid), { volid, storage: s.id, layers: [name, `snap-first-${name}`], active: null });
  });

  it('--help says that dir storage needs no activation', async () => {
    for (const action of ['activate', 'deactivate']) {
      const help = await cliOk(s, [action, '--help']);
      assert.match(help.replace(/\s+/g, ' '), /on dir storage .*(nothing|doing nothing)/, `${action} --help`);
    }
  });

  it('bad input: malformed volid (2), unknown volume (3), unknown storage (3), missing argument (2)', async () => {
    for (const action of ['activate', 'deactivate']) {
      await cliFails(s, [action, 'no-colon'], { code: 2, match: /no ':'/ });
      await cliFails(s, [action, s.volid(vmid, 'vm-120-disk-7.qcow2')], { code: 3, match: /does not exist/ });
      await cliFails(s, [action, `nosuch:${vmid}/${name}`], { code: 3, match: /nosuch/ });
      const r = await cli(s, [action]);
      assert.equal(r.code, 2, `${action} without a volid: ${r.stderr}`);
    }
  });

  it('is refused (exit 7) while an operation on the VM is unfinished, like every writer', async () => {
    const crash = await cli(s, ['snapshot', 'create', volid, 'second'], { env: { VOLCHAIN_CRASH_AT: 'snapshot-create:2:after' } });
    assert.notEqual(crash.code, 0, 'the snapshot was to be killed midway');
    for (const action of ['activate', 'deactivate']) {
      await cliFails(s, [action, volid], { code: 7, match: /unfinished .*repair/ });
    }
    await cliOk(s, ['repair', volid]);
    await cliOk(s, ['activate', volid]);
    assert.deepEqual((await cliJson<VolumeJson>(s, ['info', volid])).snapshots, ['first', 'second']);
  });
});

describe('snapshot space in list and info on dir storage', () => {
  let s: TestStorage;
  before(async () => {
    s = await makeStorage();
  });
  after(async () => {
    await s.cleanup();
  });

  it('snapshotBytes is what the snapshot files take; fullSizeSnapshotBytes the same on dir', async () => {
    const vmid = 130;
    const name = 'vm-130-disk-0.qcow2';
    const volid = (await cliOk(s, ['alloc', s.id, String(vmid), '32M'])).trim();
    const none = await cliJson<VolumeJson>(s, ['info', volid]);
    assert.equal(none.snapshotBytes, 0);
    assert.equal(none.fullSizeSnapshotBytes, 0);

    await writePattern(s.layer(vmid, name), 0x41, 0, 4 * MiB);
    await cliOk(s, ['snapshot', 'create', volid, 'one']);
    await writePattern(s.layer(vmid, name), 0x42, 8 * MiB, 2 * MiB);
    await cliOk(s, ['snapshot', 'create', volid, 'two']);
    await writePattern(s.layer(vmid, name), 0x43, 16 * MiB, MiB);

    const files = [s.layer(vmid, name, 'one'), s.layer(vmid, name, 'two')];
    let expected = 0;
    for (const f of files) expected += await blocksOf(f);
    assert.ok(expected >= 6 * MiB, `the snapshot files hold the data written before each snapshot (${expected})`);

    const info = await cliJson<VolumeJson>(s, ['info', volid]);
    assert.equal(info.snapshotBytes, expected);
    assert.equal(info.fullSizeSnapshotBytes, expected, 'dir: the same files as PVE 9 makes');
    assert.equal(info.usedBytes, await blocksOf(s.layer(vmid, name)));
    assert.equal(info.chainUsedBytes, info.usedBytes + info.snapshotBytes);

    const listed = (await cliJson<{ volumes: VolumeJson[] }>(s, ['list', s.id, '--vmid', String(vmid)])).volumes;
    assert.equal(listed.length, 1);
    assert.equal(listed[0]?.snapshotBytes, expected);
    assert.equal(listed[0]?.fullSizeSnapshotBytes, expected);

    const text = await cliOk(s, ['list', s.id]);
    const [header, row] = text.trim().split('\n');
    assert.match(header ?? '', /SNAP USED\s+SNAP FULL-SIZE$/);
    assert.match(row ?? '', new RegExp(`^${volid.replace(/[/.]/g, '\\$&')}\\s`));
    const infoText = await cliOk(s, ['info', volid]);
    assert.match(infoText, new RegExp(`^snapshots use +\\S+ \\S+ \\(${expected} bytes\\)$`, 'm'));
    assert.match(infoText, new RegExp(`^at full size +\\S+ \\S+ \\(${expected} bytes, `, 'm'));
  });

  it('raw volumes and internal snapshots have no snapshot layers: 0 bytes', async () => {
    const raw = (await cliOk(s, ['alloc', s.id, '131', '4M', '--format', 'raw'])).trim();
    const r = await cliJson<VolumeJson>(s, ['info', raw]);
    assert.deepEqual([r.snapshotBytes, r.fullSizeSnapshotBytes], [0, 0]);

    const internal = await makeStorage({ chain: false, id: 'int' });
    try {
      const volid = (await cliOk(internal, ['alloc', internal.id, '132', '8M'])).trim();
      await writePattern(internal.layer(132, 'vm-132-disk-0.qcow2'), 0x51, 0, MiB);
      await cliOk(internal, ['snapshot', 'create', volid, 'inside']);
      const i = await cliJson<VolumeJson>(internal, ['info', volid]);
      assert.deepEqual(i.snapshots, ['inside']);
      assert.deepEqual([i.snapshotBytes, i.fullSizeSnapshotBytes], [0, 0], 'internal snapshots live in the current layer');
      assert.equal(i.chainUsedBytes, i.usedBytes);
    } finally {
      await internal.cleanup();
    }
  });

  it('a dry-run snapshot on dir storage carries no LVM space estimate', async () => {
    const volid = (await cliOk(s, ['alloc', s.id, '133', '8M'])).trim();
    const dry = await cliJson<{ plans: Record<string, unknown>[] }>(s, ['snapshot', 'create', volid, 'nope', '--dry-run']);
    assert.equal(dry.plans.length, 1);
    assert.equal(dry.plans[0]?.operation, 'snapshot-create');
    assert.ok(!('space' in (dry.plans[0] ?? {})), 'no space field on dir');
    assert.doesNotMatch(await cliOk(s, ['snapshot', 'create', volid, 'nope', '--dry-run']), /^space:/m);
    const vm = await cliOk(s, ['vm', 'snapshot', '133', 'nope', '--dry-run']);
    assert.doesNotMatch(vm, /space:|total for/);
  });
});
