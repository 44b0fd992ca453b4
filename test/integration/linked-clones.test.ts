/**
 * Issue 14: templates and linked clones on dir storage, made with PVE's own command lines
 * (test/fixtures/pve-dir-fixture.ts). volchain lists both forms, snapshots the clones (create, list, rollback
 * to an older snapshot, delete oldest/middle/newest) with every layer's data checked by qemu-io and every
 * qcow2 checked by qemu-img, and never writes the base: its sha256, mtime and mode are compared before and
 * after every operation. Hostile variants of the cross-directory reference are refused with exit 8 and
 * nothing changed on disk.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile, readdir, rename, symlink, writeFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import {
  KiB,
  MiB,
  assertPatterns,
  assertSameTree,
  checkAllLayers,
  cli,
  cliFails,
  cliJson,
  cliOk,
  makeStorage,
  runCommand,
  snapshotOf,
  writePattern,
  type Expect,
  type TestStorage,
} from './helpers.js';
import {
  clearImmutableFlags,
  fileFingerprint,
  makePveTemplateWithClones,
  pveAlloc,
  pveCloneImage,
  pveCreateBase,
  type PveTemplateFixture,
} from '../fixtures/pve-dir-fixture.js';

const SIZE = 8 * MiB;
const BASE_BYTE = 0xa1;
const BASE_LEN = 2 * MiB;
const BASE_VOLID = (s: TestStorage): string => `${s.id}:101/base-101-disk-0.qcow2`;
const CLONE_VOLID = (s: TestStorage, vmid: number): string => `${s.id}:101/base-101-disk-0.qcow2/${vmid}/vm-${vmid}-disk-0.qcow2`;

interface ListEntry {
  volid: string;
  vmid: number;
  template: boolean;
  base: string | null;
  clones: string[];
  snapshots?: string[];
  problem: { code: string; message: string } | null;
}

interface PlanJson {
  plans: { summary: string; steps: { kind: string; onto?: string | null; ontoFormat?: string; base?: string }[] }[];
}

async function qemuImg(args: readonly string[], cwd?: string): Promise<void> {
  const r = await runCommand('qemu-img', args, { env: { ...process.env, LC_ALL: 'C' }, ...(cwd ? { cwd } : {}) });
  assert.equal(r.code, 0, `qemu-img ${args.join(' ')}: ${r.stderr}`);
}

/** What each state of a clone reads: the base's data, then each generation's block on top. */
function view(generations: readonly number[]): Expect[] {
  const out: Expect[] = [];
  // Generation i wrote 0xb0+i (plus a clone offset) at [i*256K, (i+1)*256K): the base shows through above.
  for (const [i, byte] of generations.entries()) out.push({ byte, offset: i * 256 * KiB, len: 256 * KiB });
  const top = generations.length * 256 * KiB;
  out.push({ byte: BASE_BYTE, offset: top, len: BASE_LEN - top });
  out.push({ byte: 0, offset: BASE_LEN, len: SIZE - BASE_LEN });
  return out;
}

describe('templates and linked clones made by PVE on dir storage', () => {
  let s: TestStorage;
  let fx: PveTemplateFixture;
  let baseBefore: string;
  /** After every operation: the base file is byte for byte, mtime and mode what PVE left. */
  const baseUntouched = async (after: string): Promise<void> => {
    assert.equal(await fileFingerprint(fx.basePath), baseBefore, `the base volume was written by: ${after}`);
  };

  before(async () => {
    s = await makeStorage();
    fx = await makePveTemplateWithClones(s.path, { sizeBytes: SIZE, basePattern: BASE_BYTE, patternBytes: BASE_LEN });
    baseBefore = await fileFingerprint(fx.basePath);
  });
  after(async () => {
    await clearImmutableFlags([fx.basePath]);
    await s.cleanup();
  });

  it('lists the base as a template with both clones, and each clone under its own vmid with its full volid and base', async () => {
    const { volumes } = await cliJson<{ volumes: ListEntry[] }>(s, ['list', s.id]);
    assert.deepEqual(
      volumes.map((v) => [v.volid, v.vmid, v.template, v.base, v.clones, v.problem]),
      [
        [BASE_VOLID(s), 101, true, null, [CLONE_VOLID(s, 102), CLONE_VOLID(s, 103)], null],
        [CLONE_VOLID(s, 102), 102, false, BASE_VOLID(s), [], null],
        [CLONE_VOLID(s, 103), 103, false, BASE_VOLID(s), [], null],
      ],
    );
    // One VM listed: the base still names its clones (read from the other VMs' headers).
    const one = await cliJson<{ volumes: ListEntry[] }>(s, ['list', s.id, '--vmid', '101']);
    assert.deepEqual(
      one.volumes.map((v) => v.clones),
      [[CLONE_VOLID(s, 102), CLONE_VOLID(s, 103)]],
    );
    const text = await cliOk(s, ['list', s.id]);
    assert.match(text, /base-101-disk-0\.qcow2: template base volume \(read-only\), linked clones: /);
    assert.match(text, /102\/vm-102-disk-0\.qcow2: linked clone of tst:101\/base-101-disk-0\.qcow2/);
    await baseUntouched('list');
  });

  it('info, snapshot list and path work on the base and on a clone in both volid forms', async () => {
    const base = await cliJson<{ volid: string; template: boolean; clones: string[]; base: string | null; snapshots: string[] }>(s, ['info', BASE_VOLID(s)]);
    assert.equal(base.template, true);
    assert.deepEqual(base.clones, [CLONE_VOLID(s, 102), CLONE_VOLID(s, 103)]);
    assert.deepEqual(base.snapshots, []);
    for (const volid of [CLONE_VOLID(s, 102), `${s.id}:102/vm-102-disk-0.qcow2`]) {
      const info = await cliJson<{ volid: string; base: string | null; template: boolean; virtualSize: number }>(s, ['info', volid]);
      assert.equal(info.volid, CLONE_VOLID(s, 102), `info ${volid}`);
      assert.equal(info.base, BASE_VOLID(s));
      assert.equal(info.template, false);
      assert.equal(info.virtualSize, SIZE);
      assert.equal((await cliOk(s, ['path', volid])).trim(), join(s.path, 'images', '102', 'vm-102-disk-0.qcow2'));
    }
    assert.equal((await cliOk(s, ['path', BASE_VOLID(s)])).trim(), fx.basePath);
    const list = await cliJson<{ volid: string; snapshots: unknown[] }>(s, ['snapshot', 'list', BASE_VOLID(s)]);
    assert.deepEqual(list.snapshots, []);
    // A volid naming another base than the headers do is refused, naming the real one.
    await cliFails(s, ['info', `${s.id}:101/base-101-disk-7.qcow2/102/vm-102-disk-0.qcow2`], {
      code: 2,
      match: /linked clone of tst:101\/base-101-disk-0\.qcow2, not of 101\/base-101-disk-7/,
    });
    await baseUntouched('info/path/snapshot list');
  });

  it('refuses to snapshot, roll back, delete snapshots of or resize the base (exit 5), changing nothing', async () => {
    const tree = await snapshotOf(s.path);
    for (const args of [
      ['snapshot', 'create', BASE_VOLID(s), 'tpl'],
      ['snapshot', 'rollback', BASE_VOLID(s), 'tpl'],
      ['snapshot', 'delete', BASE_VOLID(s), 'tpl'],
      ['resize', BASE_VOLID(s), '16M'],
    ]) {
      await cliFails(s, args, { code: 5, match: /template's base volume, which is read-only/ });
    }
    await cliFails(s, ['vm', 'snapshot', '101', 'tpl'], { code: 5, match: /tst:101\/base-101-disk-0\.qcow2 is a template's base volume/ });
    assertSameTree(tree, await snapshotOf(s.path), 'refused operations on the base');
    await baseUntouched('refused operations');
  });

  it('qemu-args opens a linked clone down to its base, read-only (live operations: live-clones.test.ts)', async () => {
    const args = await cliJson<{ volumes: { base?: { volid: string; readOnly: boolean } }[] }>(s, ['qemu-args', CLONE_VOLID(s, 102)]);
    assert.deepEqual(args.volumes[0]?.base && [args.volumes[0].base.volid, args.volumes[0].base.readOnly], [BASE_VOLID(s), true]);
    await baseUntouched('qemu-args');
  });

  it('alloc for the template VM never takes the number its base uses', async () => {
    const volid = (await cliOk(s, ['alloc', s.id, '101', '1M'])).trim();
    assert.equal(volid, `${s.id}:101/vm-101-disk-1.qcow2`);
    await cliOk(s, ['free', volid]);
    await baseUntouched('alloc/free of another disk of VM 101');
  });

  for (const [vmid, offsetByte] of [
    [102, 0xb0],
    [103, 0xc0],
  ] as const) {
    it(`clone ${vmid}: create, list, rollback to an older snapshot, delete middle, oldest and newest; data right in every layer`, async () => {
      const volid = CLONE_VOLID(s, vmid);
      const cur = join(s.path, 'images', String(vmid), `vm-${vmid}-disk-0.qcow2`);
      const layer = (snap: string): string => join(s.path, 'images', String(vmid), `snap-${snap}-vm-${vmid}-disk-0.qcow2`);
      const bytes = [offsetByte + 1, offsetByte + 2, offsetByte + 3, offsetByte + 4];
      // Generations: s1 holds bytes[0], s2 adds bytes[1], s3 adds bytes[2], current adds bytes[3].
      for (const [i, snap] of ['s1', 's2', 's3'].entries()) {
        await writePattern(cur, bytes[i] as number, i * 256 * KiB, 256 * KiB);
        await cliOk(s, ['snapshot', 'create', volid, snap]);
        await baseUntouched(`snapshot create ${snap} of ${vmid}`);
      }
      await writePattern(cur, bytes[3] as number, 3 * 256 * KiB, 256 * KiB);
      const listing = await cliJson<{ volid: string; snapshots: { name: string; parent: string | null }[] }>(s, ['snapshot', 'list', volid]);
      assert.equal(listing.volid, volid);
      assert.deepEqual(
        listing.snapshots.map((x) => [x.name, x.parent]),
        [
          ['s1', null],
          ['s2', 's1'],
          ['s3', 's2'],
        ],
      );
      await assertPatterns(layer('s1'), view(bytes.slice(0, 1)), 's1');
      await assertPatterns(layer('s2'), view(bytes.slice(0, 2)), 's2');
      await assertPatterns(layer('s3'), view(bytes.slice(0, 3)), 's3');
      await assertPatterns(cur, view(bytes), 'current');

      // Rollback to the oldest snapshot keeps the newer ones as a branch.
      await cliOk(s, ['snapshot', 'rollback', volid, 's1']);
      await baseUntouched(`rollback of ${vmid} to s1`);
      await assertPatterns(cur, view(bytes.slice(0, 1)), 'current after rollback to s1');
      await assertPatterns(layer('s3'), view(bytes.slice(0, 3)), 's3 after rollback');
      await writePattern(cur, 0xee, 5 * 256 * KiB, 64 * KiB);

      // Middle: s2 (one child, s3).
      await cliOk(s, ['snapshot', 'delete', volid, 's2']);
      await baseUntouched(`delete of ${vmid}'s middle snapshot`);
      await assertPatterns(layer('s3'), view(bytes.slice(0, 3)), 's3 after deleting s2');
      // Oldest: s1, whose parent is the base and which has two children now (s3 and current): the
      // children are rebased onto the base, read-only, with PVE's -F.
      const dry = await cliJson<PlanJson>(s, ['snapshot', 'delete', volid, 's1', '--dry-run']);
      const rebases = dry.plans[0]?.steps.filter((st) => st.kind === 'rebase') ?? [];
      assert.equal(rebases.length, 2, JSON.stringify(dry));
      for (const r of rebases) assert.deepEqual([r.onto, r.ontoFormat], ['../101/base-101-disk-0.qcow2', 'qcow2']);
      assert.ok(!(dry.plans[0]?.steps ?? []).some((st) => st.kind === 'commit' && st.base === '../101/base-101-disk-0.qcow2'));
      await cliOk(s, ['snapshot', 'delete', volid, 's1']);
      await baseUntouched(`delete of ${vmid}'s oldest snapshot`);
      await assertPatterns(layer('s3'), view(bytes.slice(0, 3)), 's3 after deleting s1');
      await assertPatterns(
        cur,
        [...view(bytes.slice(0, 1)).slice(0, 1), { byte: 0xee, offset: 5 * 256 * KiB, len: 64 * KiB }, { byte: BASE_BYTE, offset: 256 * KiB, len: 256 * KiB }],
        'current after deleting s1',
      );
      // Newest (and last): s3.
      await cliOk(s, ['snapshot', 'delete', volid, 's3']);
      await baseUntouched(`delete of ${vmid}'s newest snapshot`);
      const names = await readdir(join(s.path, 'images', String(vmid)));
      assert.deepEqual(names, [`vm-${vmid}-disk-0.qcow2`]);
      const header = await cliJson<{ base: string | null; snapshots: string[] }>(s, ['info', volid]);
      assert.deepEqual([header.base, header.snapshots], [BASE_VOLID(s), []]);
      await assertPatterns(
        cur,
        [
          { byte: bytes[0] as number, offset: 0, len: 256 * KiB },
          { byte: BASE_BYTE, offset: 256 * KiB, len: 1024 * KiB },
          { byte: 0xee, offset: 5 * 256 * KiB, len: 64 * KiB },
        ],
        'current at the end',
      );
      assert.ok((await checkAllLayers(s.path)) >= 3);
    });
  }

  it('deletes the oldest snapshot by committing its only child into it when that moves less, never into the base', async () => {
    const volid = CLONE_VOLID(s, 103);
    const cur = join(s.path, 'images', '103', 'vm-103-disk-0.qcow2');
    await writePattern(cur, 0xd1, 0, 3 * MiB); // the snapshot holds much
    await cliOk(s, ['snapshot', 'create', volid, 'big']);
    await writePattern(cur, 0xd2, 0, 64 * KiB); // its child little
    const dry = await cliJson<PlanJson>(s, ['snapshot', 'delete', volid, 'big', '--dry-run']);
    assert.match(dry.plans[0]?.summary ?? '', /by commit-child/);
    assert.deepEqual(
      dry.plans[0]?.steps.filter((st) => st.kind === 'commit').map((st) => st.base),
      ['snap-big-vm-103-disk-0.qcow2'],
    );
    await cliOk(s, ['snapshot', 'delete', volid, 'big']);
    await baseUntouched('commit-child delete of the oldest snapshot');
    await assertPatterns(
      cur,
      [
        { byte: 0xd2, offset: 0, len: 64 * KiB },
        { byte: 0xd1, offset: 64 * KiB, len: 3 * MiB - 64 * KiB },
        { byte: 0, offset: 3 * MiB, len: SIZE - 3 * MiB },
      ],
      'after commit-child',
    );
    const info = await cliJson<{ base: string | null }>(s, ['info', volid]);
    assert.equal(info.base, BASE_VOLID(s));
    await checkAllLayers(s.path);
  });

  it('vm snapshot of a VM whose disk is a linked clone works', async () => {
    await cliOk(s, ['vm', 'snapshot', '102', 'vmwide']);
    const info = await cliJson<{ snapshots: string[]; base: string | null }>(s, ['info', CLONE_VOLID(s, 102)]);
    assert.deepEqual([info.snapshots, info.base], [['vmwide'], BASE_VOLID(s)]);
    await cliOk(s, ['vm', 'delsnapshot', '102', 'vmwide']);
    // Disks taken from a PVE VM config, which names the clone by its full volid and the template's by the base's.
    const conf102 = join(s.root, '102.conf');
    const conf101 = join(s.root, '101.conf');
    await writeFile(conf102, `scsi0: ${CLONE_VOLID(s, 102)},size=8M\n`);
    await writeFile(conf101, `scsi0: ${BASE_VOLID(s)},size=8M\ntemplate: 1\n`);
    await cliOk(s, ['vm', 'snapshot', '102', 'fromconf', '--vm-config', conf102]);
    await cliOk(s, ['vm', 'delsnapshot', '102', 'fromconf', '--vm-config', conf102]);
    await cliFails(s, ['vm', 'snapshot', '101', 'fromconf', '--vm-config', conf101], {
      code: 5,
      match: /tst:101\/base-101-disk-0\.qcow2 is a template's base volume/,
    });
    await baseUntouched('vm snapshot of a clone');
  });

  it('free of the base is refused while clones exist, naming each; free of a clone leaves the base; then the base goes', async () => {
    const tree = await snapshotOf(s.path);
    await cliFails(s, ['free', BASE_VOLID(s)], {
      code: 5,
      match: new RegExp(`2 linked clone\\(s\\) are backed by it: ${CLONE_VOLID(s, 102).replace(/[.]/g, '\\.')}, ${CLONE_VOLID(s, 103).replace(/[.]/g, '\\.')}`),
    });
    assertSameTree(tree, await snapshotOf(s.path), 'refused free of the base');
    await cliOk(s, ['snapshot', 'create', CLONE_VOLID(s, 103), 'last']);
    await cliOk(s, ['free', CLONE_VOLID(s, 103)]);
    await baseUntouched('free of clone 103');
    await cliFails(s, ['free', BASE_VOLID(s)], {
      code: 5,
      match: /1 linked clone\(s\) are backed by it: tst:101\/base-101-disk-0\.qcow2\/102\/vm-102-disk-0\.qcow2;/,
    });
    await cliOk(s, ['free', `${s.id}:102/vm-102-disk-0.qcow2`]);
    await baseUntouched('free of clone 102');
    await cliOk(s, ['free', BASE_VOLID(s)]);
    assert.deepEqual(await readdir(join(s.path, 'images')), []);
  });
});

describe('a template made from a raw disk', () => {
  let s: TestStorage;
  let basePath: string;
  before(async () => {
    s = await makeStorage();
    const disk = await pveAlloc(s.path, 201, 'vm-201-disk-0.raw', SIZE);
    await writePattern(disk, BASE_BYTE, 0, BASE_LEN, 'raw');
    basePath = await pveCreateBase(s.path, 201, 'vm-201-disk-0.raw');
    await pveCloneImage(s.path, 201, 'base-201-disk-0.raw', 202, 'vm-202-disk-0.qcow2');
  });
  after(async () => {
    await clearImmutableFlags([basePath]);
    await s.cleanup();
  });

  it('snapshots its clone and deletes the oldest snapshot by a rebase with -F raw, the base unchanged', async () => {
    const before = await fileFingerprint(basePath);
    const volid = `${s.id}:201/base-201-disk-0.raw/202/vm-202-disk-0.qcow2`;
    const cur = join(s.path, 'images', '202', 'vm-202-disk-0.qcow2');
    await writePattern(cur, 0xb1, 0, 64 * KiB);
    await cliOk(s, ['snapshot', 'create', volid, 'first']);
    await writePattern(cur, 0xb2, 0, 1 * MiB);
    const dry = await cliJson<PlanJson>(s, ['snapshot', 'delete', volid, 'first', '--dry-run']);
    assert.deepEqual(
      dry.plans[0]?.steps.filter((st) => st.kind === 'rebase').map((st) => [st.onto, st.ontoFormat]),
      [['../201/base-201-disk-0.raw', 'raw']],
    );
    await cliOk(s, ['snapshot', 'delete', volid, 'first']);
    const info = await imageBacking(cur);
    assert.deepEqual(info, ['../201/base-201-disk-0.raw', 'raw']);
    // The clone's own data, and the raw base's where the clone wrote nothing.
    await assertPatterns(cur, [
      { byte: 0xb2, offset: 0, len: 1 * MiB },
      { byte: BASE_BYTE, offset: 1 * MiB, len: BASE_LEN - 1 * MiB },
      { byte: 0, offset: BASE_LEN, len: SIZE - BASE_LEN },
    ]);
    await checkAllLayers(s.path);
    assert.equal(await fileFingerprint(basePath), before);
    const { volumes } = await cliJson<{ volumes: ListEntry[] }>(s, ['list', s.id]);
    assert.deepEqual(
      volumes.map((v) => [v.volid, v.template, v.base]),
      [
        [`${s.id}:201/base-201-disk-0.raw`, true, null],
        [volid, false, `${s.id}:201/base-201-disk-0.raw`],
      ],
    );
  });
});

const sha = async (p: string): Promise<string> =>
  createHash('sha256')
    .update(await readFile(p))
    .digest('hex');

async function imageBacking(path: string): Promise<[string | undefined, string | undefined]> {
  const r = await runCommand('qemu-img', ['info', '-U', '-f', 'qcow2', '--output=json', path]);
  const info = JSON.parse(r.stdout) as { 'backing-filename'?: string; 'backing-filename-format'?: string };
  return [info['backing-filename'], info['backing-filename-format']];
}

describe('hostile cross-directory backing references are refused (exit 8) and nothing changes', () => {
  let s: TestStorage;
  let fx: PveTemplateFixture;
  const immutable: string[] = [];
  before(async () => {
    s = await makeStorage();
    fx = await makePveTemplateWithClones(s.path, { sizeBytes: SIZE, basePattern: BASE_BYTE, patternBytes: BASE_LEN, cloneVmids: [102, 103] });
    immutable.push(fx.basePath);
    const img = (vmid: number): string => join(s.path, 'images', String(vmid));
    // 104: backed by another VM's ordinary disk.
    await mkdir(img(104));
    await qemuImg(['create', '-F', 'qcow2', '-b', '../103/vm-103-disk-0.qcow2', '-f', 'qcow2', join(img(104), 'vm-104-disk-0.qcow2')], img(104));
    // 106: backed by a "base" of 105 that is a symlink to a real base-shaped image elsewhere.
    await mkdir(img(105));
    await qemuImg(['create', '-f', 'qcow2', join(s.root, 'elsewhere.qcow2'), String(SIZE)]);
    await symlink(join(s.root, 'elsewhere.qcow2'), join(img(105), 'base-105-disk-0.qcow2'));
    await mkdir(img(106));
    await qemuImg(
      ['create', '-u', '-F', 'qcow2', '-b', '../105/base-105-disk-0.qcow2', '-f', 'qcow2', join(img(106), 'vm-106-disk-0.qcow2'), String(SIZE)],
      img(106),
    );
    // 108: backed by a base of 107 that has a backing file of its own.
    await mkdir(img(107));
    await qemuImg(['create', '-f', 'qcow2', join(img(107), 'vm-107-disk-1.qcow2'), String(SIZE)]);
    await qemuImg(['create', '-F', 'qcow2', '-b', 'vm-107-disk-1.qcow2', '-f', 'qcow2', join(img(107), 'base-107-disk-0.qcow2')], img(107));
    await mkdir(img(108));
    await qemuImg(['create', '-F', 'qcow2', '-b', '../107/base-107-disk-0.qcow2', '-f', 'qcow2', join(img(108), 'vm-108-disk-0.qcow2')], img(108));
    // 109: backed by the real base but with -F raw (the base is qcow2: the format must match what is read).
    await mkdir(img(109));
    await qemuImg(
      ['create', '-u', '-F', 'raw', '-b', '../101/base-101-disk-0.qcow2', '-f', 'qcow2', join(img(109), 'vm-109-disk-0.qcow2'), String(SIZE)],
      img(109),
    );
    // 102: a middle snapshot layer pointing across directories (its chain: current -> s2 -> s1 -> base).
    await cliOk(s, ['snapshot', 'create', CLONE_VOLID(s, 102), 's1']);
    await cliOk(s, ['snapshot', 'create', CLONE_VOLID(s, 102), 's2']);
    await qemuImg(['rebase', '-u', '-f', 'qcow2', '-F', 'qcow2', '-b', '../103/vm-103-disk-0.qcow2', join(img(102), 'snap-s2-vm-102-disk-0.qcow2')]);
    // 110: a base-shaped reference into the same VM's own directory.
    await mkdir(img(110));
    await qemuImg(['create', '-f', 'qcow2', join(img(110), 'vm-110-disk-1.qcow2'), String(SIZE)]);
    await rename(join(img(110), 'vm-110-disk-1.qcow2'), join(img(110), 'base-110-disk-1.qcow2'));
    await qemuImg(['create', '-F', 'qcow2', '-b', '../110/base-110-disk-1.qcow2', '-f', 'qcow2', join(img(110), 'vm-110-disk-0.qcow2')], img(110));
  });
  after(async () => {
    await clearImmutableFlags(immutable);
    await s.cleanup();
  });

  const cases: { vmid: number; volume: string; match: RegExp; what: string }[] = [
    {
      vmid: 104,
      volume: 'vm-104-disk-0.qcow2',
      match: /contains '\/'.*\.\.\/103\/vm-103-disk-0\.qcow2|\.\.\/103\/vm-103-disk-0\.qcow2.*contains '\/'/,
      what: "another VM's ordinary disk",
    },
    { vmid: 106, volume: 'vm-106-disk-0.qcow2', match: /base-105-disk-0\.qcow2.*not a regular file/, what: 'a base that is a symlink' },
    { vmid: 108, volume: 'vm-108-disk-0.qcow2', match: /base volume with a backing file of its own/, what: 'a base with its own backing file' },
    {
      vmid: 109,
      volume: 'vm-109-disk-0.qcow2',
      match: /backing format of the base volume is "raw", expected "qcow2"/,
      what: 'a -F that does not match the base',
    },
    {
      vmid: 102,
      volume: 'vm-102-disk-0.qcow2',
      match: /snap-s2-vm-102-disk-0\.qcow2.*\.\.\/103\/vm-103-disk-0\.qcow2/,
      what: 'a middle layer pointing across directories',
    },
    { vmid: 110, volume: 'vm-110-disk-0.qcow2', match: /base volume of its own VM 110/, what: "a base of the clone's own VM" },
  ];
  for (const c of cases) {
    it(`${c.what}: every operation exits 8, list shows the problem, nothing written`, async () => {
      const tree = await snapshotOf(s.path);
      const outside = await sha(join(s.root, 'elsewhere.qcow2'));
      const volid = `${s.id}:${c.vmid}/${c.volume}`;
      for (const args of [
        ['info', volid],
        ['snapshot', 'list', volid],
        ['snapshot', 'create', volid, 'evil'],
        ['free', volid],
      ]) {
        await cliFails(s, args, { code: 8, match: c.match });
      }
      const { volumes } = await cliJson<{ volumes: ListEntry[] }>(s, ['list', s.id, '--vmid', String(c.vmid)]);
      const entry = volumes.find((v) => v.volid.endsWith(`${c.vmid}/${c.volume}`));
      assert.equal(entry?.problem?.code, 'UNSAFE_IMAGE', JSON.stringify(volumes));
      assertSameTree(tree, await snapshotOf(s.path), c.what);
      assert.equal(await sha(join(s.root, 'elsewhere.qcow2')), outside, `${c.what}: the symlink's target was written`);
    });
  }

  it('the healthy clone 103 and the base are still listed normally beside the hostile ones', async () => {
    const r = await cli(s, ['list', s.id, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const { volumes } = JSON.parse(r.stdout) as { volumes: ListEntry[] };
    const ok = volumes.filter((v) => v.problem === null).map((v) => v.volid);
    assert.ok(ok.includes(CLONE_VOLID(s, 103)), ok.join(' '));
    const base = volumes.find((v) => v.volid === BASE_VOLID(s));
    // 102 is unreadable (its middle layer is hostile), so only 103 is named as a clone in the listing...
    assert.deepEqual(base?.clones, [CLONE_VOLID(s, 103)]);
    // ...but free of the base still sees 102's bottom layer naming it, and the unreadable 109 too.
    await cliFails(s, ['free', BASE_VOLID(s)], { code: 5, match: /snap-s1-vm-102-disk-0\.qcow2/ });
  });
});

describe('a base whose VM directory is a symlink out of the storage', () => {
  it('is refused (exit 8) for every operation on its clone, and nothing is written there', async () => {
    const s = await makeStorage();
    try {
      const img = (vmid: number): string => join(s.path, 'images', String(vmid));
      await mkdir(join(s.path, 'images'), { recursive: true });
      await mkdir(join(s.root, 'outside-111'));
      const outsideBase = join(s.root, 'outside-111', 'base-111-disk-0.qcow2');
      await qemuImg(['create', '-f', 'qcow2', outsideBase, String(SIZE)]);
      await symlink(join(s.root, 'outside-111'), img(111));
      await mkdir(img(112));
      await qemuImg(['create', '-F', 'qcow2', '-b', '../111/base-111-disk-0.qcow2', '-f', 'qcow2', join(img(112), 'vm-112-disk-0.qcow2')], img(112));
      // Any earlier operation has made the state directory (locks): only its lock files may appear below.
      await cliOk(s, ['free', (await cliOk(s, ['alloc', s.id, '113', '1M'])).trim()]);
      const tree = await snapshotOf(s.path);
      const outside = await sha(outsideBase);
      const volid = `${s.id}:112/vm-112-disk-0.qcow2`;
      for (const args of [
        ['info', volid],
        ['snapshot', 'create', volid, 'evil'],
        ['free', volid],
      ]) {
        await cliFails(s, args, { code: 8, match: /images\/111: is a symbolic link, not a directory/ });
      }
      assertSameTree(tree, await snapshotOf(s.path), 'symlinked base directory');
      assert.equal(await sha(outsideBase), outside);
    } finally {
      await s.cleanup();
    }
  });
});

describe('a crash while deleting the oldest snapshot of a linked clone', () => {
  for (const [step, moment] of [
    [1, 'started'],
    [1, 'after'],
    [2, 'started'],
  ] as const) {
    it(`killed at step ${step} (${moment}): repair finishes it, every layer's data is right and the base was never written`, async () => {
      const s = await makeStorage();
      const fx = await makePveTemplateWithClones(s.path, { sizeBytes: SIZE, basePattern: BASE_BYTE, patternBytes: BASE_LEN, cloneVmids: [102] });
      try {
        const before = await fileFingerprint(fx.basePath);
        const volid = CLONE_VOLID(s, 102);
        const cur = join(s.path, 'images', '102', 'vm-102-disk-0.qcow2');
        await writePattern(cur, 0xb1, 0, 64 * KiB);
        await cliOk(s, ['snapshot', 'create', volid, 's1']);
        await writePattern(cur, 0xb2, 64 * KiB, 1 * MiB);
        await cliOk(s, ['snapshot', 'create', volid, 's2']);
        await writePattern(cur, 0xb3, 3 * MiB, 64 * KiB);
        // s1 holds little, its child s2 much: the plan is rebase s2 onto the base (1), remove s1 (2).
        const dry = await cliJson<PlanJson>(s, ['snapshot', 'delete', volid, 's1', '--dry-run']);
        assert.deepEqual(
          dry.plans[0]?.steps.map((x) => x.kind),
          ['rebase', 'remove'],
        );
        const run = await cli(s, ['snapshot', 'delete', volid, 's1'], { env: { VOLCHAIN_CRASH_AT: `snapshot-delete:${step}:${moment}` } });
        assert.notEqual(run.code, 0, 'the process was expected to die');
        await cliOk(s, ['repair', volid]);
        const info = await cliJson<{ snapshots: string[]; base: string | null }>(s, ['info', volid]);
        assert.deepEqual([info.snapshots, info.base], [['s2'], BASE_VOLID(s)]);
        const s2 = join(s.path, 'images', '102', 'snap-s2-vm-102-disk-0.qcow2');
        const s2View: Expect[] = [
          { byte: 0xb1, offset: 0, len: 64 * KiB },
          { byte: 0xb2, offset: 64 * KiB, len: 1 * MiB },
          { byte: BASE_BYTE, offset: 64 * KiB + 1 * MiB, len: BASE_LEN - 64 * KiB - 1 * MiB },
        ];
        await assertPatterns(s2, s2View, 's2 after repair');
        await assertPatterns(cur, [...s2View, { byte: 0xb3, offset: 3 * MiB, len: 64 * KiB }], 'current after repair');
        assert.deepEqual(await imageBacking(s2), [REF_OF_BASE, 'qcow2']);
        await checkAllLayers(s.path);
        assert.equal(await fileFingerprint(fx.basePath), before, 'the base was written');
      } finally {
        await clearImmutableFlags([fx.basePath]);
        await s.cleanup();
      }
    });
  }
});

const REF_OF_BASE = '../101/base-101-disk-0.qcow2';
