/**
 * The journal stores' logic without LVM: the two-copy device format (torn writes at every point), and the
 * LVM journal store over a fake volume group whose "LVs" are regular files.
 */
import { describe, it, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, open, readdir, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { NoSpaceError } from '../../src/errors.js';
import {
  HEADER_BYTES,
  decodeHeader,
  encodeHeader,
  payloadCapacity,
  payloadOffset,
  readDeviceDocument,
  sha256,
  writeDeviceDocument,
} from '../../src/journal/device-format.js';
import { FileJournalStore } from '../../src/journal/file-store.js';
import type { JournalRecord } from '../../src/journal/record.js';
import { LvmJournalStore, journalLvName, summaryRecord, summaryTags, vmidOfJournalLv, type JournalVolumeGroup } from '../../src/backends/lvm/journal.js';
import type { LvRow } from '../../src/tools/lvm.js';

const DEVICE = 4 * 1024 * 1024;
let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'volchain-journal-unit-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function device(name = 'dev'): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, '');
  await truncate(path, DEVICE);
  return path;
}

function record(vmid: number, id: string, extra: Partial<JournalRecord> = {}): JournalRecord {
  return {
    id,
    storage: 'vg1',
    host: 'host-a',
    pid: 4242,
    startedAt: `2026-11-23T10:00:0${id.length % 10}.000Z`,
    plan: { operation: 'snapshot-delete', volid: `vg1:vm-${vmid}-disk-0.qcow2`, vmid, summary: 's', steps: [{ kind: 'remove', layer: 'x' }], bytesMoved: 0 },
    completedSteps: 0,
    runningStep: null,
    ...extra,
  };
}

describe('device format', () => {
  it('headers round-trip and garbage or zeroes are no header', () => {
    const h = { generation: 7, length: 123, sha256: sha256(Buffer.from('x')) };
    assert.deepEqual(decodeHeader(encodeHeader(h), 1), { copy: 1, ...h });
    assert.equal(decodeHeader(Buffer.alloc(HEADER_BYTES), 0), undefined);
    assert.equal(decodeHeader(Buffer.from('VOLCHAIN-JOURNAL-1 0 5 abc\n'.padEnd(HEADER_BYTES, '\0')), 0), undefined);
    assert.equal(encodeHeader(h).length, HEADER_BYTES);
  });

  it('the two payload copies do not overlap the headers or each other', () => {
    const cap = payloadCapacity(DEVICE);
    assert.ok(payloadOffset(0, DEVICE) >= 2 * HEADER_BYTES);
    assert.equal(payloadOffset(1, DEVICE), payloadOffset(0, DEVICE) + cap);
    assert.ok(payloadOffset(1, DEVICE) + cap <= DEVICE);
  });

  it('a fresh (zeroed) device holds no document; each write is read back and alternates copies', async () => {
    const path = await device();
    assert.equal(await readDeviceDocument(path, DEVICE), undefined);
    let prev;
    for (let i = 1; i <= 5; i++) {
      prev = await writeDeviceDocument(path, DEVICE, prev, Buffer.from(`version ${i}`));
      const got = await readDeviceDocument(path, DEVICE);
      assert.equal(got?.payload.toString(), `version ${i}`);
      assert.equal(got?.generation, i);
      assert.equal(got?.copy, (i - 1) % 2);
    }
  });

  it('a write torn anywhere (payload partly written, header not yet) leaves the previous version', async () => {
    await fc.assert(
      fc.asyncProperty(fc.string({ minLength: 1, maxLength: 300 }), fc.string({ minLength: 1, maxLength: 300 }), fc.nat(), async (a, b, cut) => {
        const path = await device(`torn-${Math.random()}`);
        const first = await writeDeviceDocument(path, DEVICE, undefined, Buffer.from(a));
        const second = await writeDeviceDocument(path, DEVICE, first, Buffer.from(`second ${a}`));
        // The third write goes to copy 0 (over `a`): tear it after `cut` payload bytes, header not written.
        const payload = Buffer.from(b);
        const n = cut % (payload.length + 1);
        const fh = await open(path, 'r+');
        await fh.write(payload, 0, n, payloadOffset(0, DEVICE));
        await fh.close();
        const got = await readDeviceDocument(path, DEVICE);
        assert.equal(got?.payload.toString(), `second ${a}`);
        assert.equal(got?.generation, second.generation);
        await rm(path);
      }),
      { numRuns: 40 },
    );
  });

  it('a header whose payload does not match its hash is passed over', async () => {
    const path = await device();
    const first = await writeDeviceDocument(path, DEVICE, undefined, Buffer.from('one'));
    await writeDeviceDocument(path, DEVICE, first, Buffer.from('two'));
    const fh = await open(path, 'r+');
    await fh.write(Buffer.from('TWO'), 0, 3, payloadOffset(1, DEVICE)); // bit rot in the newest copy
    await fh.close();
    assert.equal((await readDeviceDocument(path, DEVICE))?.payload.toString(), 'one');
  });

  it('refuses a document larger than a copy, leaving the old one', async () => {
    const path = await device();
    const first = await writeDeviceDocument(path, DEVICE, undefined, Buffer.from('small'));
    await assert.rejects(writeDeviceDocument(path, DEVICE, first, Buffer.alloc(payloadCapacity(DEVICE) + 1)), /does not fit/);
    assert.equal((await readDeviceDocument(path, DEVICE))?.payload.toString(), 'small');
  });
});

describe('journal LV names and summary tags', () => {
  it('names are exact and never look like PVE volumes', () => {
    assert.equal(journalLvName(100), 'volchain-journal-100');
    assert.equal(vmidOfJournalLv('volchain-journal-100'), 100);
    assert.equal(vmidOfJournalLv('volchain-journal-100x'), undefined);
    assert.equal(vmidOfJournalLv('del-volchain-journal-100'), undefined);
    assert.equal(vmidOfJournalLv('vm-100-disk-0'), undefined);
    assert.doesNotMatch(journalLvName(100), /(^|[^A-Za-z0-9])vm-100-/);
  });

  it('a summary made from the tags names the operation, volume, host, pid and start time', () => {
    const r = record(100, 'a', { host: 'node-1.example', startedAt: '2026-11-23T10:11:12.345Z' });
    const tags = summaryTags(r);
    for (const t of tags) assert.match(t, /^[A-Za-z0-9_+.-]{1,128}$/, `valid LVM tag: ${t}`);
    const s = summaryRecord('vg1', 100, { name: journalLvName(100), tags });
    assert.equal(s.summaryOnly, true);
    assert.equal(s.plan.operation, 'snapshot-delete');
    assert.equal(s.plan.volid, 'vg1:vm-100-disk-0.qcow2');
    assert.equal(s.host, 'node-1.example');
    assert.equal(s.pid, 4242);
    assert.equal(s.startedAt, '2026-11-23T10:11:12.345Z');
    assert.deepEqual(s.plan.steps, []);
  });

  it('a value too long for a tag is left out, not truncated', () => {
    const r = record(100, 'a', { host: 'h'.repeat(200) });
    const tags = summaryTags(r);
    assert.ok(tags.every((t) => t.length <= 128));
    assert.equal(summaryRecord('vg1', 100, { name: journalLvName(100), tags }).host, 'an unknown host');
  });
});

/** A volume group whose LVs are files in a directory; counts the LVM commands a real one would run. */
class FakeVg implements JournalVolumeGroup {
  readonly vg = 'vg1';
  readonly storage = 'vg1';
  rows = new Map<string, LvRow>();
  full = false;
  isShared = false;
  commands: string[] = [];
  constructor(private readonly root: string) {}
  async row(_vmid: number, name: string): Promise<LvRow | undefined> {
    return this.rows.get(name);
  }
  /** What an earlier listing saw, when set: journalRows() returns it instead of the rows of now. */
  listing: LvRow[] | undefined;
  async journalRows(): Promise<LvRow[]> {
    return this.listing ?? [...this.rows.values()];
  }
  async freshRow(name: string): Promise<LvRow | undefined> {
    return this.rows.get(name);
  }
  async create(name: string, sizeBytes: number, tags: readonly string[]): Promise<LvRow> {
    this.commands.push(`lvcreate ${name}`);
    if (this.full) throw new NoSpaceError('VG full');
    const path = this.path(name);
    await writeFile(path, '');
    await truncate(path, sizeBytes);
    const row: LvRow = { name, uuid: name, sizeBytes, tags: [...tags], attr: '-wi-a-----', active: true, open: false };
    this.rows.set(name, row);
    return row;
  }
  async activate(row: LvRow): Promise<void> {
    this.commands.push(`lvchange -ay ${row.name}`);
    row.active = true;
  }
  async remove(name: string): Promise<void> {
    this.commands.push(`lvremove ${name}`);
    this.rows.delete(name);
    await rm(this.path(name), { force: true });
  }
  async shared(): Promise<boolean> {
    return this.isShared;
  }
  path(name: string): string {
    return join(this.root, name);
  }
}

describe('LvmJournalStore', () => {
  let fake: FakeVg;
  let fallback: FileJournalStore;
  let store: LvmJournalStore;
  beforeEach(() => {
    fake = new FakeVg(dir);
    fallback = new FileJournalStore(join(dir, 'state', 'journal'));
    store = new LvmJournalStore(fake, fallback);
  });

  it('a journal LV removed between the listing and the read (its operation ended) hides nothing and breaks nothing', async () => {
    await store.save(record(100, 'a'));
    await store.save(record(101, 'b'));
    fake.listing = [...fake.rows.values()].map((r) => ({ ...r }));
    await store.remove(record(101, 'b'));
    assert.deepEqual(
      (await store.list()).map((r) => r.id),
      ['a'],
    );
    assert.deepEqual(
      (await store.list({ forRepair: true })).map((r) => r.id),
      ['a'],
    );
    // One still there but unreadable is not skipped: readers and repair see VM 100's operation pending, with
    // why its steps cannot be read (and still list every other VM's records).
    fake.listing = undefined;
    await rm(fake.path('volchain-journal-100'));
    const listed = await store.list();
    assert.equal(listed.length, 1);
    assert.match(listed[0]?.error ?? '', /could not be read here.*ENOENT/);
    const forRepair = await store.list({ forRepair: true });
    assert.equal(forRepair.length, 1);
    assert.match(forRepair[0]?.error ?? '', /could not be read here.*ENOENT/);
    fake.rows.delete('volchain-journal-100');
    assert.deepEqual(await store.list(), []);
  });

  it('one LV per VM while records exist: created by the first record, removed with the last', async () => {
    const a = record(100, 'a');
    const b = record(100, 'bb', { group: 'g' });
    await store.save(a);
    assert.deepEqual([...fake.rows.keys()], ['volchain-journal-100']);
    await store.save(b);
    a.completedSteps = 1;
    await store.save(a);
    assert.deepEqual(fake.commands, ['lvcreate volchain-journal-100'], 'updates are writes to the LV, not LVM commands');
    const listed = await store.list({ vmid: 100 });
    assert.deepEqual(
      listed.map((r) => [r.id, r.completedSteps]),
      [
        ['a', 1],
        ['bb', 0],
      ],
    );
    assert.deepEqual(await store.list({ vmid: 101 }), []);
    await store.remove(a);
    assert.deepEqual(
      (await store.list()).map((r) => r.id),
      ['bb'],
    );
    await store.remove(b);
    assert.equal(fake.rows.size, 0);
    assert.deepEqual(fake.commands, ['lvcreate volchain-journal-100', 'lvremove volchain-journal-100']);
    assert.deepEqual(await store.list(), []);
  });

  it('VMs get separate LVs', async () => {
    await store.save(record(100, 'a'));
    await store.save(record(200, 'b'));
    assert.deepEqual([...fake.rows.keys()].sort(), ['volchain-journal-100', 'volchain-journal-200']);
    assert.deepEqual(
      (await store.list({ vmid: 200 })).map((r) => r.id),
      ['b'],
    );
  });

  it('a full VG: records go to the local state directory, and are found and removed there', async () => {
    fake.full = true;
    const a = record(100, 'a');
    await store.save(a);
    assert.equal(fake.rows.size, 0);
    assert.deepEqual(await readdir(fallback.location), ['a.json']);
    fake.full = false; // space came back: the running operation's record stays where it is
    a.completedSteps = 1;
    await store.save(a);
    assert.equal(fake.rows.size, 0);
    assert.equal((await store.list({ vmid: 100 }))[0]?.completedSteps, 1);
    await store.remove(a);
    assert.deepEqual(await store.list(), []);
  });

  it('on a shared VG an inactive journal LV is summarised from its tags, and read (activated) only for repair', async () => {
    fake.isShared = true;
    const a = record(100, 'a', { completedSteps: 1 });
    await store.save(a);
    const row = fake.rows.get('volchain-journal-100') as LvRow;
    row.active = false; // as another host sees it
    fake.commands = [];
    const peek = await store.list({ vmid: 100 });
    assert.equal(peek.length, 1);
    assert.equal(peek[0]?.summaryOnly, true);
    assert.equal(peek[0]?.plan.volid, a.plan.volid);
    assert.deepEqual(fake.commands, [], 'nothing activated by a reader');
    const full = await store.list({ vmid: 100, forRepair: true });
    assert.equal(full[0]?.summaryOnly, undefined);
    assert.equal(full[0]?.completedSteps, 1);
    assert.deepEqual(fake.commands, ['lvchange -ay volchain-journal-100']);
  });

  it('on a VG only this host uses, an inactive journal LV (after a reboot) is activated and read', async () => {
    await store.save(record(100, 'a'));
    (fake.rows.get('volchain-journal-100') as LvRow).active = false;
    const listed = await store.list();
    assert.equal(listed[0]?.summaryOnly, undefined);
    assert.equal(listed[0]?.id, 'a');
  });

  it('a journal LV that holds no record (crash right after lvcreate) lists nothing and is swept', async () => {
    await fake.create('volchain-journal-100', DEVICE, []);
    assert.deepEqual(await store.list(), []);
    assert.deepEqual(await store.containerVmids(), [100]);
    assert.deepEqual(await store.sweep(100, true), ['empty journal vg1/volchain-journal-100']);
    assert.ok(fake.rows.has('volchain-journal-100'), 'dry run keeps it');
    assert.deepEqual(await store.sweep(100, false), ['empty journal vg1/volchain-journal-100']);
    assert.equal(fake.rows.size, 0);
    await store.save(record(100, 'a'));
    assert.deepEqual(await store.sweep(100, false), [], 'never sweeps a journal with records');
  });

  it("storages that name the same VG share the VM's journal LV, each listing its own records", async () => {
    const other = new LvmJournalStore(
      {
        // eslint-disable-next-line @typescript-eslint/no-misused-spread -- copies the fake's own fields; its methods are bound explicitly below
        ...fake,
        storage: 'vg1-too',
        row: fake.row.bind(fake),
        journalRows: fake.journalRows.bind(fake),
        freshRow: fake.freshRow.bind(fake),
        create: fake.create.bind(fake),
        activate: fake.activate.bind(fake),
        remove: fake.remove.bind(fake),
        shared: fake.shared.bind(fake),
        path: fake.path.bind(fake),
      },
      fallback,
    );
    const a = record(100, 'a');
    const b = record(100, 'bb', { storage: 'vg1-too' });
    await store.save(a);
    await other.save(b);
    assert.deepEqual([...fake.rows.keys()], ['volchain-journal-100']);
    assert.deepEqual(
      (await store.list()).map((r) => r.id),
      ['a'],
    );
    assert.deepEqual(
      (await other.list()).map((r) => r.id),
      ['bb'],
    );
    await store.remove(a);
    assert.ok(fake.rows.has('volchain-journal-100'), "kept for the other storage's record");
    assert.deepEqual(await store.sweep(100, false), [], 'not empty: never swept');
    await other.remove(b);
    assert.equal(fake.rows.size, 0);
  });

  it('refuses a journal LV whose contents belong to another VM', async () => {
    await store.save(record(100, 'a'));
    const other = fake.rows.get('volchain-journal-100') as LvRow;
    fake.rows.delete(other.name);
    fake.rows.set('volchain-journal-200', { ...other, name: 'volchain-journal-200' });
    await rm(fake.path('volchain-journal-200'), { force: true });
    await writeFile(fake.path('volchain-journal-200'), '');
    const { copyFile } = await import('node:fs/promises');
    await copyFile(fake.path('volchain-journal-100'), fake.path('volchain-journal-200'));
    // Reported as VM 200's pending operation that cannot be read, never written over.
    const listed = await store.list({ vmid: 200 });
    assert.equal(listed.length, 1);
    assert.match(listed[0]?.error ?? '', /holds the journal of VM 100/);
    await assert.rejects(store.save(record(200, 'b')), /holds the journal of VM 100/);
  });
  it('a journal LV whose checksummed document is not a valid journal: that VM pending with why, other VMs listed', async () => {
    await store.save(record(100, 'a'));
    await store.save(record(101, 'b'));
    const row = fake.rows.get('volchain-journal-100') as LvRow;
    // A well-formed two-copy write of a payload no volchain writes: the shape check, not the checksum, stops it.
    const version = await readDeviceDocument(fake.path(row.name), row.sizeBytes);
    const doc = { storage: 'vg1', vmid: 100, records: [{ id: 'a', plan: {} }] };
    await writeDeviceDocument(fake.path(row.name), row.sizeBytes, version, Buffer.from(JSON.stringify(doc)));
    const listed = await store.list();
    assert.deepEqual(listed.map((r) => [r.plan.vmid, r.summaryOnly ?? false]).sort(), [
      [100, true],
      [101, false],
    ]);
    assert.match(
      listed.find((r) => r.plan.vmid === 100)?.error ?? '',
      /record 1 of journal LV vg1\/volchain-journal-100 is not a journal record: field 'storage'/,
    );
    await assert.rejects(store.save(record(100, 'c')), /is not a journal record/, 'never rewritten over');
  });

  it("the host-side records' leftovers (set-aside files, temp files) are the store's, swept with the VM", async () => {
    fake.full = true;
    await store.save(record(100, '100-1-a'));
    await writeFile(join(fallback.location, '100-1-b.json.tmp'), '{');
    await writeFile(join(fallback.location, 'junk.json'), '[]');
    assert.deepEqual(
      (await store.list()).map((r) => r.id),
      ['100-1-a'],
    );
    assert.deepEqual(
      (await store.leftovers()).map((l) => [l.kind, l.vmid, l.path.slice(fallback.location.length + 1)]),
      [
        ['temp', 100, '100-1-b.json.tmp'],
        ['set-aside', null, 'junk.json.bad'],
      ],
    );
    assert.deepEqual(await store.containerVmids(), [100]);
    assert.equal((await store.sweep(100, false)).length, 1);
    assert.deepEqual(
      (await store.leftovers()).map((l) => l.kind),
      ['set-aside'],
    );
  });
});
