/**
 * Issue 17, `volchain convert <volid> --format qcow2` on dir storage, with real data: a raw volume written
 * with patterns becomes a qcow2 volume (PVE's name: `.raw` -> `.qcow2`) that reads the same (qemu-io, `qemu-img
 * compare`), is clean (`qemu-img check`) and takes snapshots. A dry run and every refused input change
 * nothing on disk; a SIGKILL at every step, then `repair`, leaves the qcow2 volume complete and the raw one
 * gone, and at the moment of the crash one complete volume always holds the data under a volume name.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  MiB,
  assertPatterns,
  checkClean,
  cli,
  cliFails,
  cliJson,
  cliOk,
  imageInfo,
  makeStorage,
  runCommand,
  snapshotOf,
  writePatterns,
  type Expect,
  type TestStorage,
} from './helpers.js';
import { startQemu } from './qemu-harness.js';
import type { EngineEvent } from '../../src/engine/run/step-rules.js';

const SIZE = 8 * MiB;
/** What every test disk holds: two patterns and zeroes around them. */
const DATA: Expect[] = [
  { byte: 0xa1, offset: 0, len: MiB },
  { byte: 0, offset: MiB, len: MiB },
  { byte: 0xb2, offset: 2 * MiB, len: 512 * 1024 },
  { byte: 0, offset: 2 * MiB + 512 * 1024, len: SIZE - 2 * MiB - 512 * 1024 },
];

interface PlanDoc {
  dryRun: boolean;
  plans: { operation: string; volid: string; newVolid?: string; steps: { kind: string }[] }[];
}

/** A raw volume of VM `vmid` holding DATA; returns its volid. */
async function rawVolume(s: TestStorage, vmid: number): Promise<string> {
  const volid = (await cliOk(s, ['alloc', s.id, String(vmid), String(SIZE), '--format', 'raw'])).trim();
  await writePatterns(s.layer(vmid, volid.split('/')[1] as string), DATA, 'raw');
  return volid;
}

async function qemuImgOk(args: readonly string[]): Promise<string> {
  const r = await runCommand('qemu-img', args, { env: { ...process.env, LC_ALL: 'C' } });
  assert.equal(r.code, 0, `qemu-img ${args.join(' ')}: ${r.stderr}${r.stdout}`);
  return r.stdout;
}

describe('convert a raw volume to qcow2 on dir storage', () => {
  let s: TestStorage;
  before(async () => {
    s = await makeStorage();
  });
  after(async () => {
    await s.cleanup();
  });

  it('the qcow2 volume reads what the raw one held, is clean, gets PVE name and options, and takes snapshots and rollbacks', async () => {
    const raw = await rawVolume(s, 100);
    const reference = join(s.root, 'reference.raw');
    await qemuImgOk(['convert', '-f', 'raw', '-O', 'raw', s.layer(100, 'vm-100-disk-0.raw'), reference]);
    const out = await cliOk(s, ['convert', raw, '--format', 'qcow2']);
    assert.equal(out.trim(), `${s.id}:100/vm-100-disk-0.qcow2`, 'prints the new volid');
    const path = s.layer(100, 'vm-100-disk-0.qcow2');
    assert.equal(existsSync(s.layer(100, 'vm-100-disk-0.raw')), false, 'the raw volume is gone');
    assert.deepEqual(await readdir(join(s.path, 'images', '100')), ['vm-100-disk-0.qcow2'], 'no temporary left');
    await assertPatterns(path, DATA, 'after convert');
    await qemuImgOk(['compare', '-f', 'qcow2', '-F', 'raw', path, reference]);
    await checkClean(path);
    const info = await imageInfo(path);
    assert.equal(info['virtual-size'], SIZE);
    assert.equal(info['backing-filename'], undefined, 'no backing file');
    assert.equal(info['cluster-size'], 128 * 1024, "volchain's cluster size");
    assert.equal(info['format-specific']?.data?.['extended-l2'], true, 'extended L2 as every new image');
    const listed = await cliJson<{ volumes: { volid: string; format: string }[] }>(s, ['list', s.id, '--vmid', '100']);
    assert.deepEqual(
      listed.volumes.map((v) => [v.volid, v.format]),
      [[`${s.id}:100/vm-100-disk-0.qcow2`, 'qcow2']],
    );
    // Now it can take snapshots: snapshot, write over the first pattern, roll back, the old data is back.
    const volid = out.trim();
    await cliOk(s, ['snapshot', 'create', volid, 'before']);
    await writePatterns(path, [{ byte: 0xc3, offset: 0, len: MiB }]);
    await assertPatterns(path, [{ byte: 0xc3, offset: 0, len: MiB }], 'written after the snapshot');
    await assertPatterns(s.layer(100, 'vm-100-disk-0.qcow2', 'before'), DATA, 'the snapshot layer holds the converted data');
    await cliOk(s, ['snapshot', 'rollback', volid, 'before']);
    await assertPatterns(path, DATA, 'after rollback');
    await checkClean(path);
    await checkClean(s.layer(100, 'vm-100-disk-0.qcow2', 'before'));
  });

  it('through the library: the copy and the comparison are long steps that report progress up to 100%', async () => {
    const raw = await rawVolume(s, 107);
    const events: EngineEvent[] = [];
    const plan = await s.vc.convert(raw, { onEvent: (e) => events.push(e) });
    assert.equal(plan.newVolid, `${s.id}:107/vm-107-disk-0.qcow2`);
    const steps = events.filter((e) => e.type === 'step');
    assert.deepEqual(
      steps.map((e) => [e.index, e.long]),
      [
        [0, true],
        [1, true],
        [2, false],
        [3, false],
      ],
    );
    for (const index of [0, 1]) {
      const percents = events.filter((e) => e.type === 'progress' && e.index === index).map((e) => (e.type === 'progress' ? e.percent : -1));
      assert.ok(percents.length > 0, `step ${index + 1} reported progress`);
      assert.equal(Math.max(...percents), 100, `step ${index + 1} reached 100%`);
    }
    await assertPatterns(s.layer(107, 'vm-107-disk-0.qcow2'), DATA, 'converted through the library');
  });

  it('--dry-run prints the plan (copy, verify, rename, remove) and the new volid, and changes nothing', async () => {
    const raw = await rawVolume(s, 101);
    const before = await snapshotOf(s.path);
    const doc = await cliJson<PlanDoc>(s, ['convert', raw, '--format', 'qcow2', '--dry-run']);
    assert.equal(doc.dryRun, true);
    const plan = doc.plans[0];
    assert.ok(plan);
    assert.equal(plan.operation, 'convert');
    assert.equal(plan.newVolid, `${s.id}:101/vm-101-disk-0.qcow2`);
    assert.deepEqual(
      plan.steps.map((st) => st.kind),
      ['convert', 'verify', 'rename', 'remove'],
    );
    const text = await cliOk(s, ['convert', raw, '--format', 'qcow2', '--dry-run']);
    assert.match(text, /needs \d+ bytes free/);
    assert.deepEqual(await snapshotOf(s.path), before, 'nothing changed');
  });

  it('a raw disk whose guest wrote a qcow2 header into it is copied as raw data, never opened as that image', async () => {
    const raw = await rawVolume(s, 102);
    // The first sectors of a qcow2 image backed by a file outside the storage, written by "the guest".
    const hostile = join(s.root, 'hostile.qcow2');
    await writeFile(join(s.root, 'secret'), 'secret');
    await qemuImgOk(['create', '-f', 'qcow2', '-F', 'raw', '-b', join(s.root, 'secret'), hostile, '1M']);
    const rawPath = s.layer(102, 'vm-102-disk-0.raw');
    const r = await runCommand('dd', [`if=${hostile}`, `of=${rawPath}`, 'bs=64k', 'count=1', 'conv=notrunc'], {});
    assert.equal(r.code, 0, r.stderr);
    const reference = join(s.root, 'reference-102.raw');
    await qemuImgOk(['convert', '-f', 'raw', '-O', 'raw', rawPath, reference]);
    await cliOk(s, ['convert', raw, '--format', 'qcow2']);
    const path = s.layer(102, 'vm-102-disk-0.qcow2');
    await qemuImgOk(['compare', '-f', 'qcow2', '-F', 'raw', path, reference]);
    const info = await imageInfo(path);
    assert.equal(info['virtual-size'], SIZE, 'the size of the raw disk, not of the image its data describes');
    assert.equal(info['backing-filename'], undefined, 'the copy has no backing file');
  });

  it('refuses bad input with a clear message and its exit status, changing nothing', async () => {
    const raw = await rawVolume(s, 103);
    await cliOk(s, ['alloc', s.id, '104', String(SIZE), '--format', 'qcow2']);
    // A raw volume whose qcow2 name is taken by another volume.
    const raw105 = await rawVolume(s, 105);
    await cliOk(s, ['alloc', s.id, '105', String(SIZE), '--name', 'vm-105-disk-0.qcow2']);
    const before = await snapshotOf(s.path);
    await cliFails(s, ['convert', `${s.id}:104/vm-104-disk-0.qcow2`, '--format', 'qcow2'], { code: 2, match: /already a qcow2 volume: nothing to convert/ });
    await cliFails(s, ['convert', `${s.id}:103/vm-103-disk-7.raw`, '--format', 'qcow2'], { code: 3, match: /does not exist/ });
    await cliFails(s, ['convert', raw, '--format', 'raw'], { code: 2, match: /qcow2/ });
    await cliFails(s, ['convert', raw], { code: 2, match: /--format/ });
    await cliFails(s, ['convert', `${s.id}:103/../vm-103-disk-0.raw`, '--format', 'qcow2'], { code: 2 });
    await cliFails(s, ['convert', raw105, '--format', 'qcow2'], { code: 4, match: /vm-105-disk-0\.qcow2 already exists/ });
    assert.deepEqual(await snapshotOf(s.path), before, 'nothing changed');
    await assertPatterns(s.layer(103, 'vm-103-disk-0.raw'), DATA, 'raw volume intact', 'raw');
  });

  it('refuses while the VM runs (its QEMU answers on the QMP socket), changing nothing', async () => {
    const raw = await rawVolume(s, 106);
    const socket = join(s.root, 'vm106.qmp');
    const vm = await startQemu({ extraArgs: ['-qmp', `unix:${socket},server=on,wait=off`] });
    try {
      const before = await snapshotOf(s.path);
      await cliFails(s, ['convert', raw, '--format', 'qcow2', '--qmp', socket], {
        code: 6,
        match: /^volchain: VM 106 is running \(QMP socket .*vm106\.qmp answers\): convert of .*vm-106-disk-0\.raw needs the VM stopped: .*; stop the VM/m,
      });
      assert.deepEqual(await snapshotOf(s.path), before, 'nothing changed');
    } finally {
      await vm.stop();
    }
  });

  it('a failing copy check or rename is undone: the raw volume stays, no temporary is left', async () => {
    for (const step of [1, 2, 3]) {
      const vmid = 110 + step;
      const raw = await rawVolume(s, vmid);
      const before = await snapshotOf(s.path);
      await cliFails(s, ['convert', raw, '--format', 'qcow2'], { env: { VOLCHAIN_FAIL_AT: `convert:${step}` }, match: /nothing was changed/ });
      assert.deepEqual(await snapshotOf(s.path), before, `failure at step ${step}: nothing changed`);
      assert.equal((await cliJson<{ pending: unknown[] }>(s, ['status'])).pending.length, 0, 'no journal left');
    }
  });
});

describe('convert: SIGKILL at every step, then repair', () => {
  let s: TestStorage;
  before(async () => {
    s = await makeStorage();
  });
  after(async () => {
    await s.cleanup();
  });

  const points: string[] = [];
  for (const step of [1, 2, 3, 4]) for (const moment of ['started', 'after']) points.push(`${step}:${moment}`);
  points.unshift('1:before');

  it(`leaves one complete volume at every point (${points.length} crash points), and repair finishes the convert`, async () => {
    for (const [i, point] of points.entries()) {
      const vmid = 200 + i;
      const raw = await rawVolume(s, vmid);
      const rawPath = s.layer(vmid, `vm-${vmid}-disk-0.raw`);
      const qcowPath = s.layer(vmid, `vm-${vmid}-disk-0.qcow2`);
      const r = await cli(s, ['convert', raw, '--format', 'qcow2'], { env: { VOLCHAIN_CRASH_AT: `convert:${point}` } });
      assert.notEqual(r.code, 0, `${point}: the crash hook killed the convert`);
      // At the crash: the data is under a volume name, complete (the qcow2 one only once verified).
      assert.ok(existsSync(rawPath) || existsSync(qcowPath), `${point}: some volume exists`);
      if (existsSync(rawPath)) await assertPatterns(rawPath, DATA, `${point}: raw volume at the crash`, 'raw');
      if (existsSync(qcowPath)) await assertPatterns(qcowPath, DATA, `${point}: qcow2 volume at the crash`);
      const status = await cliJson<{ pending: { plan: { operation: string } }[] }>(s, ['status']);
      assert.deepEqual(
        status.pending.map((o) => o.plan.operation),
        ['convert'],
        `${point}: the convert is pending`,
      );
      await cliOk(s, ['repair', raw]);
      assert.deepEqual(await readdir(join(s.path, 'images', String(vmid))), [`vm-${vmid}-disk-0.qcow2`], `${point}: after repair only the qcow2 volume`);
      await assertPatterns(qcowPath, DATA, `${point}: after repair`);
      await checkClean(qcowPath);
      assert.equal((await cliJson<{ pending: unknown[] }>(s, ['status'])).pending.length, 0, `${point}: nothing pending`);
    }
  });
});
