/**
 * Issue 3 acceptance: the volume lifecycle on a real dir storage, driven through the CLI
 * (node bin/volchain.js) with QEMU's own tools as the judge of what is on disk.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { buildProgram } from '../../src/cli/main.js';
import { VolchainError } from '../../src/errors.js';
import {
  MiB,
  assertPattern,
  assertSameTree,
  checkAllLayers,
  checkClean,
  cli,
  cliFails,
  cliJson,
  cliOk,
  imageInfo,
  inParallel,
  makeStorage,
  snapshotOf,
  writePattern,
  type TestStorage,
} from './helpers.js';

interface InfoJson {
  volid: string;
  storage: string;
  vmid: number;
  name: string;
  format: string;
  virtualSize: number;
  usedBytes: number;
  chainUsedBytes: number;
  snapshots: string[];
  path: string;
  snapshotMode: string;
  parentSnapshot: string | null;
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

describe('volume lifecycle through the CLI', () => {
  let s: TestStorage;
  before(async () => {
    s = await makeStorage();
  });
  after(async () => {
    await s.cleanup();
  });

  it('alloc of a qcow2 volume creates a v3 image with 128k clusters and extended L2 of the asked size', async () => {
    const volid = (await cliOk(s, ['alloc', s.id, '100', '64M'])).trim();
    assert.equal(volid, `${s.id}:100/vm-100-disk-0.qcow2`);
    const file = s.layer(100, 'vm-100-disk-0.qcow2');
    const info = await imageInfo(file);
    assert.equal(info.format, 'qcow2');
    assert.equal(info['virtual-size'], 64 * MiB);
    assert.equal(info['cluster-size'], 128 * 1024);
    assert.equal(info['format-specific']?.data?.['extended-l2'], true);
    assert.equal(info['format-specific']?.data?.compat, '1.1');
    assert.equal(info['backing-filename'], undefined, 'a new volume has no backing file');
    await checkClean(file);
    await assertPattern(file, 0, 0, 64 * MiB);
  });

  it('alloc of a raw volume with a plain byte count creates a raw file of exactly that size', async () => {
    const volid = (await cliOk(s, ['alloc', s.id, '101', '3145728', '--format', 'raw'])).trim();
    assert.equal(volid, `${s.id}:101/vm-101-disk-0.raw`);
    const file = s.layer(101, 'vm-101-disk-0.raw');
    assert.equal((await stat(file)).size, 3 * MiB);
    assert.equal((await imageInfo(file, 'raw'))['virtual-size'], 3 * MiB);
    const json = await cliJson<InfoJson>(s, ['info', volid]);
    assert.equal(json.format, 'raw');
    assert.equal(json.snapshotMode, 'none');
    assert.equal(json.virtualSize, 3 * MiB);
  });

  it('alloc picks the lowest free disk number whatever the format, also after a free', async () => {
    const names: string[] = [];
    names.push((await cliOk(s, ['alloc', s.id, '102', '16M'])).trim());
    names.push((await cliOk(s, ['alloc', s.id, '102', '1M', '--format', 'raw'])).trim());
    names.push((await cliOk(s, ['alloc', s.id, '102', '16M'])).trim());
    assert.deepEqual(names, [`${s.id}:102/vm-102-disk-0.qcow2`, `${s.id}:102/vm-102-disk-1.raw`, `${s.id}:102/vm-102-disk-2.qcow2`]);
    await cliOk(s, ['free', `${s.id}:102/vm-102-disk-1.raw`]);
    assert.equal((await cliOk(s, ['alloc', s.id, '102', '16M'])).trim(), `${s.id}:102/vm-102-disk-1.qcow2`);
    assert.equal((await cliOk(s, ['alloc', s.id, '102', '16M'])).trim(), `${s.id}:102/vm-102-disk-3.qcow2`);
    assert.deepEqual((await readdir(join(s.path, 'images', '102'))).sort(), [
      'vm-102-disk-0.qcow2',
      'vm-102-disk-1.qcow2',
      'vm-102-disk-2.qcow2',
      'vm-102-disk-3.qcow2',
    ]);
    // A name given with --name does not shift the numbering.
    await cliOk(s, ['alloc', s.id, '102', '16M', '--name', 'vm-102-disk-5.qcow2']);
    assert.equal((await cliOk(s, ['alloc', s.id, '102', '16M'])).trim(), `${s.id}:102/vm-102-disk-4.qcow2`);
    assert.equal((await cliOk(s, ['alloc', s.id, '102', '16M'])).trim(), `${s.id}:102/vm-102-disk-6.qcow2`);
  });

  it("alloc honours --name (format from the suffix) and refuses names that are taken or not this VM's", async () => {
    assert.equal((await cliOk(s, ['alloc', s.id, '103', '16M', '--name', 'vm-103-data.qcow2'])).trim(), `${s.id}:103/vm-103-data.qcow2`);
    assert.equal((await imageInfo(s.layer(103, 'vm-103-data.qcow2'))).format, 'qcow2');
    assert.equal((await cliOk(s, ['alloc', s.id, '103', '2M', '--name', 'vm-103-scratch.raw'])).trim(), `${s.id}:103/vm-103-scratch.raw`);
    assert.equal((await stat(s.layer(103, 'vm-103-scratch.raw'))).size, 2 * MiB);
    await writePattern(s.layer(103, 'vm-103-data.qcow2'), 0x5a, 0, MiB);

    const before = await snapshotOf(s.path);
    await cliFails(s, ['alloc', s.id, '103', '32M', '--name', 'vm-103-data.qcow2'], { code: 4, match: /already exists/ });
    await cliFails(s, ['alloc', s.id, '103', '16M', '--name', 'vm-104-data.qcow2'], { code: 2, match: /VM 104/ });
    await cliFails(s, ['alloc', s.id, '103', '16M', '--name', 'snap-a-vm-103-data.qcow2'], { code: 2 });
    await cliFails(s, ['alloc', s.id, '103', '16M', '--name', 'vm-103-x.qcow2', '--format', 'raw'], { code: 2 });
    await cliFails(s, ['alloc', s.id, '103', '16M', '--name', 'vm-103-a/b.qcow2'], { code: 2 });
    await cliFails(s, ['alloc', s.id, '103', '16M', '--name', '../103/vm-103-y.qcow2'], { code: 2 });
    await cliFails(s, ['alloc', s.id, '103', '16M', '--name', '-o.qcow2'], { code: 2 });
    await cliFails(s, ['alloc', s.id, '103', '16M', '--name', 'vm-103-x.vmdk'], { code: 5 });
    await cliFails(s, ['alloc', s.id, '103', '16M', '--name', 'vm-103-x y.qcow2'], { code: 2 });
    assertSameTree(before, await snapshotOf(s.path), 'refused --name');
    await assertPattern(s.layer(103, 'vm-103-data.qcow2'), 0x5a, 0, MiB);
  });

  it('data written into a volume shows in info (used bytes grow) and reads back', async () => {
    const volid = (await cliOk(s, ['alloc', s.id, '105', '64M'])).trim();
    const file = s.layer(105, 'vm-105-disk-0.qcow2');
    const empty = await cliJson<InfoJson>(s, ['info', volid]);
    assert.deepEqual(
      { volid: empty.volid, storage: empty.storage, vmid: empty.vmid, name: empty.name, format: empty.format },
      { volid, storage: s.id, vmid: 105, name: 'vm-105-disk-0.qcow2', format: 'qcow2' },
    );
    assert.equal(empty.virtualSize, 64 * MiB);
    assert.equal(empty.path, file);
    assert.equal(empty.snapshotMode, 'volume-chain');
    assert.deepEqual(empty.snapshots, []);
    assert.equal(empty.parentSnapshot, null);
    assert.equal(typeof empty.usedBytes, 'number');
    assert.equal(empty.chainUsedBytes, empty.usedBytes);

    await writePattern(file, 0xa1, 0, MiB);
    await writePattern(file, 0xa2, 32 * MiB, MiB);
    const written = await cliJson<InfoJson>(s, ['info', volid]);
    assert.ok(written.usedBytes >= empty.usedBytes + 2 * MiB, `used bytes must grow by the 2 MiB written: ${empty.usedBytes} -> ${written.usedBytes}`);
    assert.equal(written.chainUsedBytes, written.usedBytes);
    assert.equal(written.virtualSize, 64 * MiB);
    await assertPattern(file, 0xa1, 0, MiB);
    await assertPattern(file, 0xa2, 32 * MiB, MiB);
    await assertPattern(file, 0, MiB, 31 * MiB);
    await checkClean(file);

    const text = await cliOk(s, ['info', volid]);
    assert.match(text, /format\s+qcow2/);
    assert.match(text, new RegExp(`virtual size\\s+64 MiB \\(${64 * MiB} bytes\\)`));
  });

  it('resize grows the virtual size and keeps the data; shrinking or the same size is refused with nothing changed', async () => {
    const volid = (await cliOk(s, ['alloc', s.id, '106', '16M'])).trim();
    const file = s.layer(106, 'vm-106-disk-0.qcow2');
    await writePattern(file, 0xb1, 15 * MiB, MiB);

    const untouched = await snapshotOf(s.path);
    const dry = await cliOk(s, ['resize', volid, '32M', '--dry-run']);
    assert.match(dry, /grow .* from 16777216 to 33554432 bytes/);
    assertSameTree(untouched, await snapshotOf(s.path), 'resize --dry-run');

    await cliOk(s, ['resize', volid, '32M']);
    assert.equal((await imageInfo(file))['virtual-size'], 32 * MiB);
    assert.equal((await cliJson<InfoJson>(s, ['info', volid])).virtualSize, 32 * MiB);
    await assertPattern(file, 0xb1, 15 * MiB, MiB);
    await assertPattern(file, 0, 16 * MiB, 16 * MiB);
    await writePattern(file, 0xb2, 31 * MiB, MiB);
    await assertPattern(file, 0xb2, 31 * MiB, MiB);
    await checkClean(file);

    const grown = await snapshotOf(s.path);
    await cliFails(s, ['resize', volid, '16M'], { code: 2, match: /shrink/ });
    await cliFails(s, ['resize', volid, '1M'], { code: 2, match: /shrink/ });
    await cliFails(s, ['resize', volid, '32M'], { code: 2, match: /already/ });
    await cliFails(s, ['resize', volid, '33554433'], { code: 2, match: /512/ });
    assertSameTree(grown, await snapshotOf(s.path), 'refused resize');

    // Raw volumes grow too.
    const raw = (await cliOk(s, ['alloc', s.id, '106', '1M', '--format', 'raw'])).trim();
    await writePattern(s.layer(106, 'vm-106-disk-1.raw'), 0xb3, 0, MiB, 'raw');
    await cliOk(s, ['resize', raw, '2M']);
    assert.equal((await stat(s.layer(106, 'vm-106-disk-1.raw'))).size, 2 * MiB);
    await assertPattern(s.layer(106, 'vm-106-disk-1.raw'), 0xb3, 0, MiB, 'raw');
    await assertPattern(s.layer(106, 'vm-106-disk-1.raw'), 0, MiB, MiB, 'raw');
    const json = await cliJson<{ dryRun: boolean; plans: { operation: string; volid: string; steps: unknown[] }[] }>(s, ['resize', raw, '4M']);
    assert.equal(json.dryRun, false);
    assert.equal(json.plans[0]?.operation, 'resize');
    assert.equal(json.plans[0]?.volid, raw);
    assert.equal((await stat(s.layer(106, 'vm-106-disk-1.raw'))).size, 4 * MiB);
  });

  it('path prints the file of the current layer, or of a snapshot layer with --snapshot', async () => {
    const volid = (await cliOk(s, ['alloc', s.id, '107', '16M'])).trim();
    const file = s.layer(107, 'vm-107-disk-0.qcow2');
    assert.equal(await cliOk(s, ['path', volid]), `${file}\n`);
    assert.deepEqual(await cliJson(s, ['path', volid]), { volid, path: file });
    await writePattern(file, 0xc1, 0, 64 * 1024);
    await cliOk(s, ['snapshot', 'create', volid, 'first']);
    const snapFile = (await cliOk(s, ['path', volid, '--snapshot', 'first'])).trim();
    assert.equal(snapFile, s.layer(107, 'vm-107-disk-0.qcow2', 'first'));
    await assertPattern(snapFile, 0xc1, 0, 64 * 1024);
    assert.equal((await cliOk(s, ['path', volid])).trim(), file, 'the volume name stays the current layer');
    await cliFails(s, ['path', volid, '--snapshot', 'second'], { code: 3, match: /second/ });
  });

  it('list shows the volumes of a storage; --vmid narrows it to one VM; --json fields parse', async () => {
    await cliOk(s, ['alloc', s.id, '108', '16M']);
    await cliOk(s, ['alloc', s.id, '108', '1M', '--format', 'raw']);
    await cliOk(s, ['alloc', s.id, '109', '16M']);
    await cliOk(s, ['snapshot', 'create', `${s.id}:108/vm-108-disk-0.qcow2`, 'before']);

    const only = await cliJson<{ volumes: InfoJson[] }>(s, ['list', s.id, '--vmid', '108']);
    assert.deepEqual(
      only.volumes.map((v) => v.volid),
      [`${s.id}:108/vm-108-disk-0.qcow2`, `${s.id}:108/vm-108-disk-1.raw`],
    );
    const [q, r] = only.volumes;
    assert.ok(q && r);
    assert.deepEqual(
      { storage: q.storage, vmid: q.vmid, name: q.name, format: q.format, virtualSize: q.virtualSize, snapshots: q.snapshots },
      { storage: s.id, vmid: 108, name: 'vm-108-disk-0.qcow2', format: 'qcow2', virtualSize: 16 * MiB, snapshots: ['before'] },
    );
    assert.ok(q.chainUsedBytes >= q.usedBytes, 'the chain uses at least what its top uses');
    assert.deepEqual({ format: r.format, virtualSize: r.virtualSize, snapshots: r.snapshots }, { format: 'raw', virtualSize: MiB, snapshots: [] });

    const all = await cliJson<{ volumes: InfoJson[] }>(s, ['list', s.id]);
    const ids = all.volumes.map((v) => v.volid);
    assert.ok(ids.includes(`${s.id}:109/vm-109-disk-0.qcow2`) && ids.includes(`${s.id}:108/vm-108-disk-0.qcow2`));
    assert.ok(!ids.some((id) => id.includes('snap-')), `snapshot layers are not volumes: ${ids.join(', ')}`);

    const text = await cliOk(s, ['list', s.id, '--vmid', '109']);
    assert.match(text, /^VOLID\s+FORMAT\s+SIZE/);
    assert.match(text, new RegExp(`${s.id}:109/vm-109-disk-0\\.qcow2\\s+qcow2\\s+16 MiB`));
    assert.doesNotMatch(text, /vm-108/);
    assert.equal((await cliJson<{ volumes: unknown[] }>(s, ['list', s.id, '--vmid', '999'])).volumes.length, 0);
  });

  it('free removes every layer of the volume, and the images/<vmid> directory with the last one', async () => {
    const a = (await cliOk(s, ['alloc', s.id, '110', '16M'])).trim();
    const b = (await cliOk(s, ['alloc', s.id, '110', '16M'])).trim();
    const fileA = s.layer(110, 'vm-110-disk-0.qcow2');
    await writePattern(fileA, 0xd1, 0, MiB);
    await cliOk(s, ['snapshot', 'create', a, 'one']);
    await writePattern(fileA, 0xd2, 0, MiB);
    await cliOk(s, ['snapshot', 'create', a, 'two']);
    await cliOk(s, ['snapshot', 'rollback', a, 'one']);
    await cliOk(s, ['snapshot', 'create', a, 'three']); // 'one' now has two children: a branched tree
    await writePattern(s.layer(110, 'vm-110-disk-1.qcow2'), 0xd3, 0, MiB);
    assert.equal((await readdir(join(s.path, 'images', '110'))).length, 5);

    const before = await snapshotOf(s.path);
    const dry = await cliOk(s, ['free', a, '--dry-run']);
    assert.match(dry, /remove .*3 snapshot layer/);
    assert.equal(dry.match(/^\s+\d+\. remove /gm)?.length, 4, dry);
    assertSameTree(before, await snapshotOf(s.path), 'free --dry-run');

    assert.equal((await cliOk(s, ['free', a])).trim(), `removed ${a}`);
    assert.deepEqual(await readdir(join(s.path, 'images', '110')), ['vm-110-disk-1.qcow2']);
    await assertPattern(s.layer(110, 'vm-110-disk-1.qcow2'), 0xd3, 0, MiB);
    await cliFails(s, ['info', a], { code: 3, match: /does not exist/ });

    await cliOk(s, ['free', b]);
    assert.equal(await exists(join(s.path, 'images', '110')), false, 'images/110 must be gone');
    assert.deepEqual((await cliJson<{ volumes: unknown[] }>(s, ['list', s.id, '--vmid', '110'])).volumes, []);
    const journal = join(s.path, '.volchain', 'journal');
    assert.deepEqual((await exists(journal)) ? await readdir(journal) : [], [], 'no journal left behind');
    assert.equal((await cliOk(s, ['status'])).trim(), 'no unfinished operations');
  });

  it('every layer of every volume made above checks clean', async () => {
    const n = await checkAllLayers(s.path);
    assert.ok(n >= 10, `expected many qcow2 layers, found ${n}`);
  });
});

describe('bad input through the CLI: non-zero exit, one line on stderr, storage byte-identical', () => {
  let s: TestStorage;
  let pristine: Awaited<ReturnType<typeof snapshotOf>>;
  const vol = (): string => `${s.id}:100/vm-100-disk-0.qcow2`;

  before(async () => {
    s = await makeStorage();
    await cliOk(s, ['alloc', s.id, '100', '4M']);
    await cliOk(s, ['alloc', s.id, '101', '4M']);
    await cliOk(s, ['alloc', s.id, '100', '1M', '--format', 'raw']);
    await writePattern(s.layer(100, 'vm-100-disk-0.qcow2'), 0xe1, 0, MiB);
    await cliOk(s, ['snapshot', 'create', vol(), 'snap1']);
    await writePattern(s.layer(100, 'vm-100-disk-0.qcow2'), 0xe2, MiB, MiB);
    await writePattern(s.layer(101, 'vm-101-disk-0.qcow2'), 0xe3, 0, MiB);
    pristine = await snapshotOf(s.path);
  });
  after(async () => {
    await s.cleanup();
  });

  async function refused(args: string[], expect: { code?: number; match?: RegExp } = {}): Promise<void> {
    await cliFails(s, args, expect);
    assertSameTree(pristine, await snapshotOf(s.path), `volchain ${args.join(' ')}`);
  }

  /** Many refusals, four CLI processes at a time; the storage is compared after every batch. */
  async function refusedAll(cases: { args: string[]; code?: number; match?: RegExp }[]): Promise<void> {
    for (let i = 0; i < cases.length; i += 4) {
      const batch = cases.slice(i, i + 4);
      await Promise.all(batch.map((c) => cliFails(s, c.args, c)));
      assertSameTree(pristine, await snapshotOf(s.path), batch.map((c) => `volchain ${c.args.join(' ')}`).join('; '));
    }
  }

  /**
   * The same refusals through the library in-process (what every CLI command calls): for the long lists of
   * variants, where one node process per case would make the suite slow. Each must be a VolchainError with
   * one of `codes` (never INTERNAL, never a crash), its message one line, and the storage unchanged.
   */
  async function rejectedInProcess(cases: { what: string; fn: () => Promise<unknown> }[], codes: readonly string[]): Promise<void> {
    for (const c of cases) {
      await assert.rejects(
        c.fn,
        (err: unknown) => {
          assert.ok(err instanceof VolchainError, `${c.what}: expected a VolchainError, got ${String(err)}`);
          assert.ok(codes.includes(err.code), `${c.what}: code ${err.code} (${err.message}) not in ${codes.join(', ')}`);
          assert.doesNotMatch(err.message, /\n/, `${c.what}: one-line message`);
          return true;
        },
        c.what,
      );
    }
    assertSameTree(pristine, await snapshotOf(s.path), cases.map((c) => c.what).join('; '));
  }

  /** Every volid-taking library call, for a volid that must be refused before anything is touched. */
  const volidCalls = (volid: string): { what: string; fn: () => Promise<unknown> }[] => [
    { what: `info ${JSON.stringify(volid)}`, fn: () => s.vc.info(volid) },
    { what: `path ${JSON.stringify(volid)}`, fn: () => s.vc.path(volid) },
    { what: `free ${JSON.stringify(volid)}`, fn: () => s.vc.free(volid) },
    { what: `resize ${JSON.stringify(volid)}`, fn: () => s.vc.resize(volid, '32M') },
    { what: `snapshot create ${JSON.stringify(volid)}`, fn: () => s.vc.snapshotCreate(volid, 's2') },
    { what: `snapshot list ${JSON.stringify(volid)}`, fn: () => s.vc.snapshotList(volid) },
    { what: `snapshot rollback ${JSON.stringify(volid)}`, fn: () => s.vc.snapshotRollback(volid, 'snap1') },
    { what: `snapshot delete ${JSON.stringify(volid)}`, fn: () => s.vc.snapshotDelete(volid, 'snap1') },
  ];

  const badVolids = (): string[] => [
    `${s.id}:100/../100/vm-100-disk-0.qcow2`,
    `${s.id}:../100/vm-100-disk-0.qcow2`,
    `${s.id}:100/..`,
    `${s.id}:100/.`,
    `${s.id}:100/../../../../etc/passwd`,
    `${s.id}:101/../100/vm-100-disk-0.qcow2`,
    `${s.id}:/etc/passwd`,
    `${s.id}:${s.layer(100, 'vm-100-disk-0.qcow2')}`,
    `${s.id}:100/vm-101-disk-0.qcow2`,
    `${s.id}:101/vm-100-disk-0.qcow2`,
    `${s.id}:100/-f.qcow2`,
    `${s.id}:100/--help`,
    `${s.id}:100/vm-100-disk-0.qcow2,file.driver=nbd`,
    `${s.id}:100/json:{"file":"x"}`,
    `${s.id}:100/snap-snap1-vm-100-disk-0.qcow2`,
    `${s.id}:100/.volchain-tmp-create-vm-100-disk-0.qcow2`,
    `${s.id}:100/vm-100-disk-0.qcow2\n`,
    `${s.id}:0100/vm-100-disk-0.qcow2`,
    `${s.id}:100/vm-100-disk-0`,
    `${s.id}:100/`,
    `${s.id}:`,
    '100/vm-100-disk-0.qcow2',
    ':100/vm-100-disk-0.qcow2',
    '-rf',
    '',
  ];

  it("bad volume ids through the CLI: traversal, absolute paths, another VM's disk, option-like names, no storage", async () => {
    const bad = badVolids();
    // `--` so that a volid starting with '-' reaches volchain's own validation. Each form goes through the
    // most destructive command; the first also through every other command that takes a volid.
    const forms = [0, 1, 4, 6, 7, 8, 9, 10, 11, 14, 16, 21, 22, 23].map((i) => bad[i] as string);
    const cases: { args: string[] }[] = forms.map((volid) => ({ args: ['free', '--', volid] }));
    const first = bad[0] as string;
    cases.push(
      { args: ['info', '--', first] },
      { args: ['path', '--', first] },
      { args: ['resize', '--', first, '32M'] },
      { args: ['snapshot', 'create', '--', first, 's2'] },
      { args: ['snapshot', 'delete', '--', first, 'snap1'] },
    );
    await refusedAll(cases);
  });

  it('every bad volume id form is refused by every volume operation of the library', async () => {
    await rejectedInProcess(badVolids().flatMap(volidCalls), ['INVALID_INPUT', 'NOT_SUPPORTED']);
  });

  it('unknown storages are named in the error', async () => {
    await refused(['info', 'nope:100/vm-100-disk-0.qcow2'], { code: 3, match: /storage 'nope' is not defined.*known storages: tst/ });
    await refused(['alloc', 'nope', '100', '16M'], { code: 3, match: /storage 'nope' is not defined/ });
    await rejectedInProcess(
      [
        ...volidCalls('nope:100/vm-100-disk-0.qcow2'),
        { what: 'list nope', fn: () => s.vc.list('nope') },
        { what: 'vm snapshot on nope', fn: () => s.vc.vmSnapshot(100, 'x1', { storage: 'nope' }) },
      ],
      ['NOT_FOUND'],
    );
  });

  it('bad sizes for alloc and resize', async () => {
    await refusedAll([
      ...['0', '-1', 'abc', '513', '99999999999T'].map((size) => ({ args: ['alloc', s.id, '100', '--', size], code: 2 })),
      ...['-16M', '1.5'].map((size) => ({ args: ['resize', vol(), '--', size], code: 2 })),
    ]);
    const sizes = ['0', '-1', '-16M', '1.5', '0.1K', '10X', 'abc', '', ' 16M', '16 M', '16MB', '1e9', '0x100', '513', '99999999999T', '16E', 'NaN', 'Infinity'];
    await rejectedInProcess(
      sizes.flatMap((size) => [
        { what: `alloc size ${JSON.stringify(size)}`, fn: () => s.vc.alloc(s.id, '100', size) },
        { what: `resize to ${JSON.stringify(size)}`, fn: () => s.vc.resize(vol(), size) },
      ]),
      ['INVALID_INPUT'],
    );
  });

  it('bad VM ids', async () => {
    await refusedAll([
      { args: ['alloc', s.id, '--', '99', '16M'], code: 2, match: /VM id/ },
      { args: ['alloc', s.id, '--', 'abc', '16M'], code: 2, match: /VM id/ },
      { args: ['list', s.id, '--vmid', '0100'], code: 2, match: /VM id/ },
      { args: ['vm', 'snapshot', '--', '-100', 'x1'], code: 2, match: /VM id/ },
    ]);
    await rejectedInProcess(
      ['99', '0100', 'abc', '1000000000', '-100', '100.0', '1e3', '', ' 100'].flatMap((vmid) => [
        { what: `alloc for VM ${JSON.stringify(vmid)}`, fn: () => s.vc.alloc(s.id, vmid, '16M') },
        { what: `vm snapshot of VM ${JSON.stringify(vmid)}`, fn: () => s.vc.vmSnapshot(vmid, 'x1') },
      ]),
      ['INVALID_INPUT'],
    );
  });

  it('volumes that do not exist', async () => {
    const missing = `${s.id}:100/vm-100-disk-7.qcow2`;
    await refusedAll([
      { args: ['info', missing], code: 3, match: /volume tst:100\/vm-100-disk-7\.qcow2 does not exist/ },
      { args: ['free', missing], code: 3, match: /does not exist/ },
      { args: ['snapshot', 'create', missing, 'x1'], code: 3, match: /does not exist/ },
      { args: ['snapshot', 'list', missing], code: 3, match: /does not exist/ },
      // A VM without any disk directory, and a raw name: "does not exist" comes before anything else.
      { args: ['info', `${s.id}:555/vm-555-disk-0.qcow2`], code: 3, match: /does not exist/ },
      { args: ['snapshot', 'list', `${s.id}:100/vm-100-disk-9.raw`], code: 3, match: /does not exist/ },
      { args: ['vm', 'snapshot', '555', 'x1'], code: 3, match: /VM 555 has no disks/ },
    ]);
    await rejectedInProcess([missing, `${s.id}:555/vm-555-disk-0.qcow2`, `${s.id}:100/vm-100-disk-9.raw`].flatMap(volidCalls), ['NOT_FOUND']);
  });

  it('usage errors (missing argument, unknown option, bad --format) exit 2 and change nothing', async () => {
    for (const args of [
      ['alloc', s.id],
      ['alloc', s.id, '100', '16M', '--format', 'vmdk'],
      ['info', '--bogus', vol()],
    ]) {
      const r = await cli(s, args);
      assert.equal(r.code, 2, `volchain ${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /^volchain: [^\n]+\n$/, `volchain ${args.join(' ')}: one volchain line`);
      assert.equal(r.stdout, '');
      assertSameTree(pristine, await snapshotOf(s.path), `volchain ${args.join(' ')}`);
    }
  });

  it('the volumes used above still hold their data', async () => {
    await assertPattern(s.layer(100, 'vm-100-disk-0.qcow2'), 0xe1, 0, MiB);
    await assertPattern(s.layer(100, 'vm-100-disk-0.qcow2'), 0xe2, MiB, MiB);
    await assertPattern(s.layer(100, 'vm-100-disk-0.qcow2', 'snap1'), 0, MiB, MiB);
    await assertPattern(s.layer(101, 'vm-101-disk-0.qcow2'), 0xe3, 0, MiB);
    assert.equal(await checkAllLayers(s.path), 3);
  });
});

describe('--help', () => {
  /** Every command path of the CLI, read from the program itself so that new commands are covered too. */
  const allCommands = (): string[][] => {
    const out: string[][] = [[]];
    const walk = (cmd: ReturnType<typeof buildProgram>['commands'][number], path: string[]): void => {
      const here = [...path, cmd.name()];
      out.push(here);
      for (const sub of cmd.commands) walk(sub, here);
    };
    for (const cmd of buildProgram().commands) walk(cmd, []);
    return out;
  };
  const withDryRun = ['free', 'resize', 'snapshot create', 'snapshot rollback', 'snapshot delete', 'vm snapshot', 'vm rollback', 'vm delsnapshot', 'repair'];

  it('works on every command: exit 0, usage on stdout, nothing on stderr', async () => {
    const commands = allCommands();
    const names = commands.map((c) => c.join(' '));
    for (const expected of ['storage list', 'alloc', 'free', 'list', 'path', 'info', 'resize', 'snapshot list', 'status', ...withDryRun]) {
      assert.ok(names.includes(expected), `the CLI has a '${expected}' command`);
    }
    const cfg = { cfg: '/nonexistent/storage.cfg' }; // --help must not even need a readable config
    const results: { cmd: string[]; r: Awaited<ReturnType<typeof cli>> }[] = [];
    await inParallel(commands, 4, async (cmd) => {
      results.push({ cmd, r: await cli(cfg, [...cmd, '--help']) });
    });
    assert.equal(results.length, commands.length);
    for (const { cmd, r } of results) {
      const what = `volchain ${cmd.join(' ')} --help`;
      assert.equal(r.code, 0, `${what}: ${r.stderr}`);
      assert.equal(r.stderr, '', what);
      assert.match(r.stdout, new RegExp(`^Usage: volchain${cmd.length > 0 ? ` ${cmd.join(' ')}` : ''} `), what);
      assert.match(r.stdout, /-h, --help/, what);
      if (withDryRun.includes(cmd.join(' '))) assert.match(r.stdout, /--dry-run/, `${what} lists --dry-run`);
    }
  });
});
