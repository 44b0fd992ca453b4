/**
 * Issue 17: `volchain clone --linked` on dir storage. A template made by `volchain template` (VM 7531) gets
 * linked clones made by volchain, in PVE's layout (the header as PVE's clone_image writes it, compared with
 * one made by PVE's own command line); the clone is written, snapshotted, rolled back and has its snapshots
 * deleted with every view checked by qemu-io, while the base stays byte-identical (sha256, mtime and mode);
 * free of the base is refused while a clone needs it; bad input is refused with its exit status and nothing
 * changed on disk; SIGKILL at every step of the plan, then repair, ends in no clone or a whole one.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { appendFile, mkdir, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import {
  KiB,
  MiB,
  assertPatterns,
  assertSameTree,
  checkAllLayers,
  checkClean,
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
import { clearImmutableFlags, fileFingerprint, pveCloneImage } from '../fixtures/pve-dir-fixture.js';

const SIZE = 8 * MiB;
const BASE_BYTE = 0xa1;
const BASE_LEN = 2 * MiB;
const BASE = 'base-7531-disk-0.qcow2';
const BASE_VOLID = (s: TestStorage): string => `${s.id}:7531/${BASE}`;
const CLONE_VOLID = (s: TestStorage, vmid: number, name = `vm-${vmid}-disk-0.qcow2`): string => `${s.id}:7531/${BASE}/${vmid}/${name}`;

interface ImageInfoJson {
  'virtual-size': number;
  'backing-filename'?: string;
  'backing-filename-format'?: string;
  'cluster-size'?: number;
  'format-specific'?: { data?: { 'extended-l2'?: boolean } };
}

async function infoOf(path: string): Promise<ImageInfoJson> {
  const r = await runCommand('qemu-img', ['info', '--output=json', '-f', 'qcow2', path], { env: { ...process.env, LC_ALL: 'C' } });
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as ImageInfoJson;
}

/** What PVE's clone_image decides in a clone's header: backing reference and format, size, cluster layout. */
function headerShape(info: ImageInfoJson): Record<string, unknown> {
  return {
    backing: info['backing-filename'],
    backingFormat: info['backing-filename-format'],
    virtualSize: info['virtual-size'],
    clusterSize: info['cluster-size'],
    extendedL2: info['format-specific']?.data?.['extended-l2'],
  };
}

async function compareImages(a: string, b: string): Promise<void> {
  const r = await runCommand('qemu-img', ['compare', '-f', 'qcow2', '-F', 'qcow2', a, b], { env: { ...process.env, LC_ALL: 'C' } });
  assert.equal(r.code, 0, `qemu-img compare ${a} ${b}: ${r.stdout}${r.stderr}`);
}

/** The view of the base alone: its pattern, zeroes above it. */
const BASE_VIEW: Expect[] = [
  { byte: BASE_BYTE, offset: 0, len: BASE_LEN },
  { byte: 0, offset: BASE_LEN, len: SIZE - BASE_LEN },
];

describe('clone --linked on dir storage', () => {
  let s: TestStorage;
  let basePath: string;
  let baseBefore: string;

  const cloneFile = (vmid: number, name = `vm-${vmid}-disk-0.qcow2`): string => s.layer(vmid, name);
  const baseIntact = async (context: string): Promise<void> => {
    assert.equal(await fileFingerprint(basePath), baseBefore, `${context}: the base volume's bytes, mtime and mode are unchanged`);
    await assertPatterns(basePath, BASE_VIEW, `${context}: base`);
  };

  before(async () => {
    s = await makeStorage();
    await cliOk(s, ['alloc', s.id, '7531', String(SIZE), '--name', 'vm-7531-disk-0.qcow2']);
    await writePattern(s.layer(7531, 'vm-7531-disk-0.qcow2'), BASE_BYTE, 0, BASE_LEN);
    assert.match(await cliOk(s, ['template', s.volid(7531, 'vm-7531-disk-0.qcow2')]), new RegExp(BASE));
    basePath = s.layer(7531, BASE);
    baseBefore = await fileFingerprint(basePath);
  });

  after(async () => {
    await clearImmutableFlags([basePath]);
    await s.cleanup();
  });

  it("makes a qcow2 volume in <vmid>/ whose header names the base as PVE's clone_image writes it", async () => {
    const out = await cliOk(s, ['clone', '--linked', BASE_VOLID(s), s.id, '7532']);
    assert.equal(out.trim(), `linked clone of ${BASE_VOLID(s)}: ${CLONE_VOLID(s, 7532)}`);
    const ours = await infoOf(cloneFile(7532));
    assert.deepEqual(headerShape(ours), {
      backing: `../7531/${BASE}`,
      backingFormat: 'qcow2',
      virtualSize: SIZE,
      clusterSize: 128 * KiB,
      extendedL2: true,
    });
    // The same base cloned with PVE's own command line: the same header decisions.
    const pve = await pveCloneImage(s.path, 7531, BASE, 7536, 'vm-7536-disk-0.qcow2');
    assert.deepEqual(headerShape(ours), headerShape(await infoOf(pve)));
    await rm(join(s.path, 'images', '7536'), { recursive: true });
    // The clone reads exactly the base, and volchain lists it as the base's clone.
    await compareImages(basePath, cloneFile(7532));
    await checkClean(cloneFile(7532));
    const listed = await cliJson<{ volumes: { volid: string; template: boolean; base: string | null; clones: string[] }[] }>(s, ['list', s.id]);
    const base = listed.volumes.find((v) => v.volid === BASE_VOLID(s));
    assert.deepEqual(base?.clones, [CLONE_VOLID(s, 7532)]);
    assert.equal(listed.volumes.find((v) => v.volid === CLONE_VOLID(s, 7532))?.base, BASE_VOLID(s));
    await baseIntact('after the clone');
  });

  it('--dry-run prints the plan and changes nothing; --name picks the name; --json gives the new volid', async () => {
    const before = await snapshotOf(s.path);
    const dry = await cliOk(s, ['clone', '--linked', BASE_VOLID(s), s.id, '7533', '--dry-run']);
    assert.match(dry, /1\. create linked clone \.volchain-tmp-linked-vm-7533-disk-0\.qcow2 backed by base volume base-7531-disk-0\.qcow2 of VM 7531/);
    assert.match(dry, /2\. rename \.volchain-tmp-linked-vm-7533-disk-0\.qcow2 -> vm-7533-disk-0\.qcow2/);
    assertSameTree(before, await snapshotOf(s.path), 'dry run');
    const json = await cliJson<{ plans: { operation: string; newVolid: string }[] }>(s, [
      'clone',
      '--linked',
      BASE_VOLID(s),
      s.id,
      '7533',
      '--name',
      'vm-7533-web.qcow2',
    ]);
    assert.equal(json.plans[0]?.operation, 'linked-clone');
    assert.equal(json.plans[0]?.newVolid, CLONE_VOLID(s, 7533, 'vm-7533-web.qcow2'));
    await compareImages(basePath, cloneFile(7533, 'vm-7533-web.qcow2'));
    await cliOk(s, ['free', CLONE_VOLID(s, 7533, 'vm-7533-web.qcow2')]);
    await baseIntact('after a second clone and its free');
  });

  it('the clone is written, snapshotted, rolled back and has its snapshots deleted; the base never changes', async () => {
    const volid = CLONE_VOLID(s, 7532);
    const top = cloneFile(7532);
    const block = 256 * KiB;
    const gen = (bytes: number[]): Expect[] => [
      ...bytes.map((byte, i) => ({ byte, offset: i * block, len: block })),
      { byte: BASE_BYTE, offset: bytes.length * block, len: BASE_LEN - bytes.length * block },
      { byte: 0, offset: BASE_LEN, len: SIZE - BASE_LEN },
    ];
    await writePattern(top, 0xb1, 0, block);
    await assertPatterns(top, gen([0xb1]), 'written clone');
    await baseIntact('after writing the clone');

    await cliOk(s, ['snapshot', 'create', volid, 's1']);
    await writePattern(top, 0xb2, block, block);
    await cliOk(s, ['snapshot', 'create', volid, 's2']);
    await writePattern(top, 0xb3, 2 * block, block);
    await assertPatterns(s.layer(7532, 'vm-7532-disk-0.qcow2', 's1'), gen([0xb1]), 's1');
    await assertPatterns(s.layer(7532, 'vm-7532-disk-0.qcow2', 's2'), gen([0xb1, 0xb2]), 's2');
    await assertPatterns(top, gen([0xb1, 0xb2, 0xb3]), 'current');
    // The oldest snapshot's layer is the one backed by the base.
    assert.equal((await infoOf(s.layer(7532, 'vm-7532-disk-0.qcow2', 's1')))['backing-filename'], `../7531/${BASE}`);
    await baseIntact('after two snapshots');

    await cliOk(s, ['snapshot', 'rollback', volid, 's2']);
    await assertPatterns(top, gen([0xb1, 0xb2]), 'current after rollback to s2');
    await writePattern(top, 0xb4, 2 * block, block);

    // Deleting the oldest snapshot moves its data onto the base's side of the chain without writing the base.
    await cliOk(s, ['snapshot', 'delete', volid, 's1']);
    await assertPatterns(s.layer(7532, 'vm-7532-disk-0.qcow2', 's2'), gen([0xb1, 0xb2]), 's2 after deleting s1');
    await assertPatterns(top, gen([0xb1, 0xb2, 0xb4]), 'current after deleting s1');
    await cliOk(s, ['snapshot', 'delete', volid, 's2']);
    await assertPatterns(top, gen([0xb1, 0xb2, 0xb4]), 'current after deleting s2');
    const listed = await cliJson<{ snapshots: unknown[] }>(s, ['snapshot', 'list', volid]);
    assert.equal(listed.snapshots.length, 0);
    assert.equal((await infoOf(top))['backing-filename'], `../7531/${BASE}`, 'the clone still ends in the base');
    assert.ok((await checkAllLayers(s.path, 7532)) >= 1);
    await baseIntact('after rollback and deletes');
  });

  it('free of the base is refused while a linked clone needs it, naming the clone, and changes nothing', async () => {
    const before = await snapshotOf(s.path);
    const msg = await cliFails(s, ['free', BASE_VOLID(s)], { code: 5 });
    assert.ok(msg.includes(CLONE_VOLID(s, 7532)), `the message names the clone: ${msg}`);
    assertSameTree(before, await snapshotOf(s.path), 'refused free of the base');
    await baseIntact('after the refused free');
  });

  it('bad input is refused with a one-line message and its exit status, and changes nothing', async () => {
    // A second storage for "another storage", and a volume that is no template.
    await appendFile(s.cfg, `\ndir: other\n\tpath ${join(s.root, 'other')}\n\tcontent images\n\tsnapshot-as-volume-chain 1\n`);
    await mkdir(join(s.root, 'other'), { recursive: true });
    await cliOk(s, ['alloc', s.id, '7534', '1M', '--name', 'vm-7534-disk-0.qcow2']);
    const before = await snapshotOf(s.root);
    const cases: { args: string[]; code: number; match: RegExp }[] = [
      { args: [s.volid(7534, 'vm-7534-disk-0.qcow2'), s.id, '7535'], code: 2, match: /is not a template's base volume/ },
      { args: [BASE_VOLID(s), 'other', '7535'], code: 5, match: /a linked clone stays on its base's storage: .* not 'other'/ },
      { args: [BASE_VOLID(s), s.id, '7531'], code: 2, match: /must belong to another VM than its template 7531/ },
      { args: [BASE_VOLID(s), s.id, '7532', '--name', 'vm-7532-disk-0.qcow2'], code: 4, match: /already exists/ },
      { args: [BASE_VOLID(s), s.id, '7535', '--name', 'vm-7535-disk-0.raw'], code: 2, match: /not a qcow2 volume name/ },
      { args: [BASE_VOLID(s), s.id, '7535', '--name', 'vm-7536-disk-0.qcow2'], code: 2, match: /belongs to VM 7536, not to VM 7535/ },
      { args: [`${s.id}:7531/base-7531-disk-9.qcow2`, s.id, '7535'], code: 3, match: /does not exist/ },
      { args: [BASE_VOLID(s), s.id, '7535', '--snapshot', 's1'], code: 2, match: /--linked and --snapshot do not go together/ },
      { args: [BASE_VOLID(s), s.id, '07535'], code: 2, match: /VM id "07535" is not valid/ },
      { args: [BASE_VOLID(s), 'nosuch', '7535'], code: 3, match: /nosuch/ },
    ];
    for (const c of cases) {
      await cliFails(s, ['clone', '--linked', ...c.args], { code: c.code, match: c.match });
      assertSameTree(before, await snapshotOf(s.root), `clone --linked ${c.args.join(' ')}`);
    }
    await cliOk(s, ['free', s.volid(7534, 'vm-7534-disk-0.qcow2')]);
    await baseIntact('after the refusals');
  });

  it('SIGKILL at every step, then repair: a whole clone (repair finishes it), no temporary left, the base intact', async () => {
    let vmid = 7540;
    for (const step of [1, 2]) {
      for (const moment of ['before', 'started', 'after']) {
        vmid++;
        const label = `crash at linked-clone:${step}:${moment}`;
        const run = await cli(s, ['clone', '--linked', BASE_VOLID(s), s.id, String(vmid)], { env: { VOLCHAIN_CRASH_AT: `linked-clone:${step}:${moment}` } });
        assert.equal(run.code, 128, `${label}: the process was expected to die (${run.stderr})`);
        await cliFails(s, ['clone', '--linked', BASE_VOLID(s), s.id, String(vmid)], { code: 7, match: /unfinished linked-clone/ });
        const repaired = await cliOk(s, ['repair', CLONE_VOLID(s, vmid)]);
        assert.match(repaired, /finish linked-clone/, label);
        const names = await readdir(join(s.path, 'images', String(vmid)));
        assert.deepEqual(names, [`vm-${vmid}-disk-0.qcow2`], `${label}: the clone alone, no temporary`);
        await compareImages(basePath, cloneFile(vmid));
        await checkClean(cloneFile(vmid));
        assert.equal((await infoOf(cloneFile(vmid)))['backing-filename'], `../7531/${BASE}`);
        await cliOk(s, ['free', CLONE_VOLID(s, vmid)]);
        await assert.rejects(stat(join(s.path, 'images', String(vmid))), `${label}: the freed clone leaves no directory`);
      }
    }
    await baseIntact('after the crashes');
  });

  it("a raw base: the clone names it with -F raw, as PVE's clone_image does, and reads its data", async () => {
    const raw = 'vm-7536-disk-0.raw';
    await cliOk(s, ['alloc', s.id, '7536', String(SIZE), '--name', raw]);
    await writePattern(s.layer(7536, raw), 0xc1, 0, MiB, 'raw');
    await cliOk(s, ['template', s.volid(7536, raw)]);
    const rawBase = s.layer(7536, 'base-7536-disk-0.raw');
    const fingerprint = await fileFingerprint(rawBase);
    try {
      const out = await cliOk(s, ['clone', '--linked', `${s.id}:7536/base-7536-disk-0.raw`, s.id, '7537']);
      assert.match(out, /: tst:7536\/base-7536-disk-0\.raw\/7537\/vm-7537-disk-0\.qcow2$/m);
      const info = await infoOf(cloneFile(7537));
      assert.equal(info['backing-filename'], '../7536/base-7536-disk-0.raw');
      assert.equal(info['backing-filename-format'], 'raw');
      await assertPatterns(cloneFile(7537), [
        { byte: 0xc1, offset: 0, len: MiB },
        { byte: 0, offset: MiB, len: SIZE - MiB },
      ]);
      await writePattern(cloneFile(7537), 0xc2, 0, 64 * KiB);
      assert.equal(await fileFingerprint(rawBase), fingerprint, 'the raw base is unchanged');
      await cliOk(s, ['free', `${s.id}:7536/base-7536-disk-0.raw/7537/vm-7537-disk-0.qcow2`]);
      await cliOk(s, ['free', `${s.id}:7536/base-7536-disk-0.raw`]);
    } finally {
      await clearImmutableFlags([rawBase]);
    }
  });

  it('once its clones are freed, the base can be freed', async () => {
    await cliOk(s, ['free', CLONE_VOLID(s, 7532)]);
    await cliOk(s, ['free', BASE_VOLID(s)]);
    await assert.rejects(stat(basePath), 'the base is gone');
  });
});
