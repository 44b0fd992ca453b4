/**
 * Shape checks of journal records (journal/validate.ts) and what the file store does with files that fail
 * them or that crashes left (issue 13, part 2).
 */
import { describe, it, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileJournalStore } from '../../src/journal/file-store.js';
import type { JournalRecord } from '../../src/journal/record.js';
import { RESERVE_BYTES, reservePath } from '../../src/journal/reserve.js';
import { journalRecordProblem } from '../../src/journal/validate.js';
import { InvalidInputError, NoSpaceError } from '../../src/errors.js';
import { explainNoSpace } from '../../src/backends/dir/space.js';
import { lockTimeoutMs } from '../../src/engine/session/lock.js';

function valid(): JournalRecord {
  return {
    id: '100-1-a',
    storage: 'st',
    host: 'h',
    pid: 7,
    startedAt: '2026-12-04T00:00:00.000Z',
    plan: {
      operation: 'free',
      volid: 'st:100/vm-100-disk-0.qcow2',
      vmid: 100,
      summary: 's',
      steps: [
        { kind: 'remove', layer: 'x' },
        { kind: 'remove', layer: 'y' },
      ],
      bytesMoved: 0,
    },
    completedSteps: 1,
    runningStep: 1,
  };
}

describe('journalRecordProblem', () => {
  it('accepts a record the engine writes, with and without its optional fields', () => {
    assert.equal(journalRecordProblem(valid()), undefined);
    assert.equal(journalRecordProblem({ ...valid(), runningStep: null, completedSteps: 2, error: 'e', group: 'g' }), undefined);
  });

  it('names the first field the engine could not use', () => {
    const cases: [unknown, RegExp][] = [
      [{}, /'id'/],
      [[], /not a JSON object/],
      [null, /not a JSON object/],
      [{ ...valid(), pid: '7' }, /'pid'/],
      [{ ...valid(), plan: undefined }, /'plan' is not an object/],
      [{ ...valid(), plan: { ...valid().plan, vmid: 'x' } }, /'plan\.vmid'/],
      [{ ...valid(), plan: { ...valid().plan, steps: {} } }, /'plan\.steps'/],
      [{ ...valid(), plan: { ...valid().plan, steps: [{ kind: 'remove' }, 3] } }, /step 2 of the plan/],
      [{ ...valid(), completedSteps: 3 }, /'completedSteps'.* 2/],
      [{ ...valid(), completedSteps: -1 }, /'completedSteps'/],
      [{ ...valid(), runningStep: 2 }, /'runningStep'/],
      [{ ...valid(), runningStep: undefined }, /'runningStep'/],
      [{ ...valid(), error: 5 }, /'error'/],
    ];
    for (const [value, pattern] of cases) assert.match(journalRecordProblem(value) ?? 'accepted', pattern, JSON.stringify(value));
  });

  it("accepts an undo of a plan that ran to its end (a VM-wide snapshot's finished disk walked back), and no step beyond", () => {
    const done = { ...valid(), runningStep: null, completedSteps: 2 };
    assert.equal(journalRecordProblem({ ...done, undo: { failedStep: 2, undone: 1, error: 'e' } }), undefined);
    assert.match(journalRecordProblem({ ...done, undo: { failedStep: 3, undone: 0, error: 'e' } }) ?? 'accepted', /'undo\.failedStep'.* 2/);
    const notDone = { ...valid(), runningStep: null, completedSteps: 1 };
    assert.match(
      journalRecordProblem({ ...notDone, undo: { failedStep: 2, undone: 0, error: 'e' } }) ?? 'accepted',
      /'undo\.failedStep'/,
      'not every step done',
    );
  });
});

describe('FileJournalStore on a hostile directory', () => {
  let dir: string;
  let store: FileJournalStore;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'volchain-journal-validate-'));
    store = new FileJournalStore(join(dir, '.volchain', 'journal'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('sets aside what is not a record under its own name, never over an earlier set-aside file', async () => {
    await store.save(valid());
    await writeFile(join(store.location, 'x.json'), '{}');
    await writeFile(join(store.location, 'x.json.bad'), 'earlier');
    await mkdir(join(store.location, 'd.json'));
    assert.deepEqual(
      (await store.list()).map((r) => r.id),
      ['100-1-a'],
    );
    assert.deepEqual((await readdir(store.location)).sort(), ['100-1-a.json', 'd.json.bad', 'x.json.1.bad', 'x.json.bad']);
    assert.equal(await readFile(join(store.location, 'x.json.bad'), 'utf8'), 'earlier');
    assert.equal(await readFile(join(store.location, 'x.json.1.bad'), 'utf8'), '{}');
    assert.deepEqual(
      (await store.leftovers()).map((l) => l.kind),
      ['set-aside', 'set-aside', 'set-aside'],
    );
  });

  it('keeps a reserve of real blocks beside the journal, made by listing and remade after saves', async () => {
    await store.list();
    const st = await stat(reservePath(store.location));
    assert.equal(st.size, RESERVE_BYTES);
    assert.ok(st.blocks * 512 >= RESERVE_BYTES, 'written, not sparse');
    await rm(reservePath(store.location));
    await store.save(valid());
    assert.equal((await stat(reservePath(store.location))).size, RESERVE_BYTES);
    assert.deepEqual(await readdir(store.location), ['100-1-a.json'], 'the reserve is not in the journal directory');
  });
});

describe('VOLCHAIN_LOCK_TIMEOUT', () => {
  it('is seconds; anything else is invalid input', () => {
    assert.equal(lockTimeoutMs({ VOLCHAIN_LOCK_TIMEOUT: '2.5' }), 2500);
    assert.equal(lockTimeoutMs({}), 30_000);
    for (const bad of ['abc', '-1', 'Infinity']) assert.throws(() => lockTimeoutMs({ VOLCHAIN_LOCK_TIMEOUT: bad }), InvalidInputError);
  });
});

describe('explainNoSpace (dir alloc refused for lack of space)', () => {
  it('says what is free, and what is missing only when the image takes its whole size at once', async () => {
    const dir = tmpdir();
    const err = new NoSpaceError('no space left on the storage: qemu-img failed');
    const huge = 2 ** 50; // 1 PiB: more than any test machine has free
    const full = await explainNoSpace(err, dir, huge, 'full');
    assert.match(full.message, /^no space left on the storage: qemu-img failed \(\S+ \S+ free on .*; it needs .*more than is free\)$/);
    assert.equal(full.exitStatus, 9);
    const meta = await explainNoSpace(err, dir, huge, 'metadata');
    assert.match(meta.message, /free on /);
    assert.doesNotMatch(meta.message, /more than is free/);
    assert.equal(await explainNoSpace(err, join(dir, 'no-such-dir-volchain'), huge, 'full'), err, 'unknown: the error as it was');
  });
});
