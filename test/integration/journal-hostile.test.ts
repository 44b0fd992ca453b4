/**
 * Issue 13, part 2: journals and state on a hostile or full storage, through the CLI on real dir storages.
 * - a 100%-full storage (a tmpfs with a size limit: real ENOSPC) can still be freed, and alloc says exit 9;
 * - a journal file that is not a record (`{}`, truncated JSON) is set aside as `*.bad`, named by status,
 *   and every command goes on;
 * - the temp file of an interrupted journal write is named by status and removed by repair --all;
 * - refused commands leave no lock file; a bad VOLCHAIN_LOCK_TIMEOUT is invalid input (exit 2).
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, open, readFile, readdir, rm, statfs, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  MiB,
  assertPattern,
  assertSameTree,
  checkClean,
  cliFails,
  cliJson,
  cliOk,
  makeStorage,
  runCommand,
  snapshotOf,
  writePattern,
  type TestStorage,
} from './helpers.js';

interface StatusJson {
  pending: { id: string }[];
  journalFiles: { storage: string; path: string; kind: 'set-aside' | 'temp'; vmid: number | null }[];
}

async function freeBytes(path: string): Promise<number> {
  const s = await statfs(path);
  return s.bavail * s.bsize;
}

/** Writes zeroes into `path` until the file system says ENOSPC: afterwards not one block is free. */
async function fill(path: string): Promise<void> {
  const fh = await open(path, 'w');
  const chunk = Buffer.alloc(64 * 1024);
  try {
    for (;;) {
      const { bytesWritten } = await fh.write(chunk);
      if (bytesWritten < chunk.length) break;
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  } finally {
    await fh.close();
  }
  // Single-byte writes take what a partial block left.
  const fh2 = await open(`${path}.tail`, 'w');
  try {
    for (;;) await fh2.write(Buffer.alloc(1));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  } finally {
    await fh2.close();
  }
}

describe('a full storage can be freed', () => {
  let s: TestStorage;
  let mounted = false;
  before(async () => {
    s = await makeStorage();
    await mkdir(s.path, { recursive: true });
    // A size-limited tmpfs gives real ENOSPC (this machine has no device-mapper for a small LV).
    const r = await runCommand('mount', ['-t', 'tmpfs', '-o', 'size=64M', 'tmpfs', s.path]);
    assert.equal(r.code, 0, `mounting a tmpfs for the full-storage test needs root: ${r.stderr}`);
    mounted = true;
  });
  after(async () => {
    if (mounted) await runCommand('umount', [s.path]);
    await s.cleanup();
  });

  it('free on a 100%-full storage succeeds and gives the space back; alloc there exits 9', async () => {
    const big = s.volid(100, 'vm-100-disk-0.qcow2');
    const keep = s.volid(101, 'vm-101-disk-0.qcow2');
    await cliOk(s, ['alloc', s.id, '100', '40M']);
    await cliOk(s, ['alloc', s.id, '101', '4M']);
    await cliOk(s, ['snapshot', 'create', keep, 'before']);
    await writePattern(s.layer(100, 'vm-100-disk-0.qcow2'), 0xa1, 0, 32 * MiB);
    await writePattern(s.layer(101, 'vm-101-disk-0.qcow2', 'before'), 0xb2, 0, MiB);
    await writePattern(s.layer(101, 'vm-101-disk-0.qcow2'), 0xc3, MiB, MiB);
    await fill(join(s.path, 'filler'));
    assert.equal(await freeBytes(s.path), 0, 'the storage is full');

    // Nothing fits: alloc says so with exit 9 and makes nothing.
    await cliFails(s, ['alloc', s.id, '102', '1M'], { code: 9, match: /no space.*\(0 B free on / });
    assert.deepEqual((await readdir(join(s.path, 'images'))).sort(), ['100', '101']);

    const before = await freeBytes(s.path);
    assert.equal((await cliOk(s, ['free', big])).trim(), `removed ${big}`);
    assert.deepEqual(await readdir(join(s.path, 'images')), ['101'], 'the volume is gone');
    assert.ok((await freeBytes(s.path)) >= before + 30 * MiB, `free gave back its 32 MiB of data (free now ${await freeBytes(s.path)})`);
    const status = await cliJson<StatusJson>(s, ['status', '--json']);
    assert.deepEqual(status.pending, [], 'no journal left behind');
    assert.deepEqual(status.journalFiles, []);
    // The other VM's chain is untouched, each byte in its layer.
    await assertPattern(s.layer(101, 'vm-101-disk-0.qcow2'), 0xb2, 0, MiB);
    await assertPattern(s.layer(101, 'vm-101-disk-0.qcow2'), 0xc3, MiB, MiB);
    await checkClean(s.layer(101, 'vm-101-disk-0.qcow2'));
    // With room again, the storage works as before (and has taken its reserve back: 16 MiB are free).
    await cliOk(s, ['alloc', s.id, '102', '1M']);
    assert.ok((await readdir(join(s.path, '.volchain'))).includes('journal.reserve'));
  });
});

describe('journal files that are not records', () => {
  let s: TestStorage;
  let journal: string;
  const vol = (vmid: number): string => `tst:${vmid}/vm-${vmid}-disk-0.qcow2`;
  before(async () => {
    s = await makeStorage();
    journal = join(s.path, '.volchain', 'journal');
    await cliOk(s, ['alloc', s.id, '100', '4M']);
    await cliOk(s, ['alloc', s.id, '101', '4M']);
    await writePattern(s.layer(101, 'vm-101-disk-0.qcow2'), 0x5a, 0, MiB);
    await mkdir(journal, { recursive: true });
  });
  after(() => s.cleanup());

  it('an empty object and a truncated record are set aside as *.bad, named by status, and every command goes on', async () => {
    await writeFile(join(journal, 'x.json'), '{}\n');
    // A record of VM 100 cut short, as a torn write by another tool would leave it.
    const truncated = '{\n  "id": "100-1700000000000-deadbeef",\n  "storage": "tst",\n  "plan": {';
    await writeFile(join(journal, '100-1700000000000-deadbeef.json'), truncated);

    const status = await cliOk(s, ['status']);
    assert.match(status, /set aside as unreadable: \S+\/x\.json\.bad/);
    assert.match(status, /set aside as unreadable: \S+\/100-1700000000000-deadbeef\.json\.bad/);
    assert.deepEqual((await readdir(journal)).sort(), ['100-1700000000000-deadbeef.json.bad', 'x.json.bad']);
    // Set aside, never deleted: the bytes are all there for a person to look at.
    assert.equal(await readFile(join(journal, 'x.json.bad'), 'utf8'), '{}\n');
    assert.equal(await readFile(join(journal, '100-1700000000000-deadbeef.json.bad'), 'utf8'), truncated);

    const json = await cliJson<StatusJson>(s, ['status', '--json']);
    assert.deepEqual(json.pending, []);
    assert.deepEqual(
      json.journalFiles.map((f) => [f.storage, f.kind, f.vmid, f.path]),
      [
        ['tst', 'set-aside', 100, join(journal, '100-1700000000000-deadbeef.json.bad')],
        ['tst', 'set-aside', null, join(journal, 'x.json.bad')],
      ],
    );

    await cliOk(s, ['info', vol(100)]);
    await cliOk(s, ['snapshot', 'create', vol(101), 'after']);
    await assertPattern(s.layer(101, 'vm-101-disk-0.qcow2', 'after'), 0x5a, 0, MiB);
    await cliOk(s, ['repair', '--all']);
    // repair leaves set-aside files where they are: only a person decides they are worthless.
    assert.deepEqual((await readdir(journal)).sort(), ['100-1700000000000-deadbeef.json.bad', 'x.json.bad']);
  });

  it('a record with the wrong shape or under another name is set aside too, the valid ones stay pending', async () => {
    for (const f of await readdir(journal)) await rm(join(journal, f));
    const good = {
      id: '101-1700000000000-0000beef',
      storage: 'tst',
      host: 'h',
      pid: 1,
      startedAt: '2026-12-04T00:00:00.000Z',
      plan: { operation: 'free', volid: vol(101), vmid: 101, summary: 's', steps: [], bytesMoved: 0 },
      completedSteps: 0,
      runningStep: null,
    };
    await writeFile(join(journal, `${good.id}.json`), JSON.stringify(good));
    await writeFile(join(journal, '100-1-a.json'), JSON.stringify({ ...good, id: '100-1-a', plan: { ...good.plan, vmid: 'x' } }));
    await writeFile(join(journal, '100-1-b.json'), JSON.stringify({ ...good, id: 'other' }));
    const json = await cliJson<StatusJson>(s, ['status', '--json']);
    assert.deepEqual(
      json.pending.map((p) => p.id),
      [good.id],
    );
    assert.deepEqual(json.journalFiles.map((f) => f.path.slice(journal.length + 1)).sort(), ['100-1-a.json.bad', '100-1-b.json.bad']);
    // The valid record still protects its VM; the other VM is free to go.
    await cliFails(s, ['snapshot', 'create', vol(101), 'blocked'], { code: 7, match: /unfinished free/ });
    await cliOk(s, ['snapshot', 'create', vol(100), 'fine']);
    await rm(join(journal, `${good.id}.json`));
  });

  it('the temp file of an interrupted journal write is named by status and removed by repair --all', async () => {
    const tmp = join(journal, '101-1700000000000-0000cafe.json.tmp');
    await writeFile(tmp, '{"id": "101-17');
    const text = await cliOk(s, ['status']);
    assert.match(text, /temp file of an interrupted journal write: \S+101-1700000000000-0000cafe\.json\.tmp/);
    const json = await cliJson<StatusJson>(s, ['status', '--json']);
    assert.deepEqual(
      json.journalFiles.filter((f) => f.kind === 'temp').map((f) => [f.vmid, f.path]),
      [[101, tmp]],
    );
    const dry = await cliOk(s, ['repair', '--all', '--dry-run']);
    assert.match(dry, /0000cafe\.json\.tmp/);
    assert.ok((await readdir(journal)).includes('101-1700000000000-0000cafe.json.tmp'), 'a dry run removes nothing');
    await cliOk(s, ['repair', '--all']);
    assert.ok(!(await readdir(journal)).some((f) => f.endsWith('.tmp')), 'repair removed the temp file');
    assert.deepEqual(
      (await cliJson<StatusJson>(s, ['status', '--json'])).journalFiles.filter((f) => f.kind === 'temp'),
      [],
    );
  });
});

describe('refused commands leave no trace', () => {
  let s: TestStorage;
  before(async () => {
    s = await makeStorage();
    await cliOk(s, ['alloc', s.id, '100', '4M']);
  });
  after(() => s.cleanup());

  it('snapshot create (and free) of a volume that does not exist: exit 3, no lock file', async () => {
    const before = await readdir(join(s.path, '.volchain', 'locks'));
    await cliFails(s, ['snapshot', 'create', s.volid(999, 'vm-999-disk-0.qcow2'), 'xx'], { code: 3, match: /does not exist/ });
    await cliFails(s, ['free', s.volid(998, 'vm-998-disk-0.qcow2')], { code: 3, match: /does not exist/ });
    await cliFails(s, ['activate', s.volid(997, 'vm-997-disk-0.qcow2')], { code: 3, match: /does not exist/ });
    await cliFails(s, ['deactivate', s.volid(996, 'vm-996-disk-0.qcow2')], { code: 3, match: /does not exist/ });
    assert.deepEqual(await readdir(join(s.path, '.volchain', 'locks')), before);
  });

  it('VOLCHAIN_LOCK_TIMEOUT that is not a number of seconds is invalid input: exit 2, nothing changed', async () => {
    const pristine = await snapshotOf(s.path);
    for (const bad of ['abc', '-1']) {
      await cliFails(s, ['snapshot', 'create', s.volid(100, 'vm-100-disk-0.qcow2'), 'yy'], {
        code: 2,
        match: new RegExp(`VOLCHAIN_LOCK_TIMEOUT .*'${bad}'`),
        env: { VOLCHAIN_LOCK_TIMEOUT: bad },
      });
    }
    assertSameTree(pristine, await snapshotOf(s.path), 'bad VOLCHAIN_LOCK_TIMEOUT');
  });
});
