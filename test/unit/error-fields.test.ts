/**
 * Errors as data (issue 15): every VolchainError has an outcome and the values involved as fields, which a
 * wrapping error keeps; toJSON is what the CLI prints under --json. Also the journal's `undo` field check and
 * createVolchain's refusals of bad settings.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  CommandFailedError,
  ConfigError,
  CorruptImageError,
  LockedError,
  NotFoundError,
  UnsafeImageError,
  VolchainError,
  asVolchainError,
} from '../../src/errors.js';
import { QmpJobError } from '../../src/qmp/errors.js';
import { journalRecordProblem } from '../../src/journal/validate.js';
import type { JournalRecord } from '../../src/journal/record.js';
import { createVolchain } from '../../src/create.js';
import { parseStorageConfig } from '../../src/config/index.js';

describe('VolchainError fields and outcome', () => {
  it("defaults: outcome 'unchanged', no fields; toJSON has code, exitStatus, message, outcome, fields", () => {
    const err = new NotFoundError('volume x does not exist');
    assert.equal(err.outcome, 'unchanged');
    assert.deepEqual(err.fields, {});
    assert.deepEqual(err.toJSON(), { code: 'NOT_FOUND', exitStatus: 3, message: 'volume x does not exist', outcome: 'unchanged', fields: {} });
  });

  it('fields given are kept, undefined ones dropped', () => {
    const err = new LockedError('held', { fields: { path: '/l', holder: { pid: 1, host: 'h', operation: 'free', since: 't' }, volid: undefined } });
    assert.deepEqual(err.fields, { path: '/l', holder: { pid: 1, host: 'h', operation: 'free', since: 't' } });
    assert.equal(err.toJSON().exitStatus, 6);
  });

  it('a wrapping error keeps the outcome and fields of the one it wraps, and may add or override', () => {
    const inner = new VolchainError('INTERNAL', 'step failed', { outcome: 'needs-repair', fields: { volid: 'a:1/b', step: 2 } });
    const outer = new VolchainError(inner.code, `more: ${inner.message}`, { cause: inner, fields: { vmid: 1 } });
    assert.equal(outer.outcome, 'needs-repair');
    assert.deepEqual(outer.fields, { volid: 'a:1/b', step: 2, vmid: 1 });
    const undone = new VolchainError(inner.code, 'undone', { cause: inner, outcome: 'unchanged', fields: { step: 3 } });
    assert.equal(undone.outcome, 'unchanged');
    assert.equal(undone.fields.step, 3);
  });

  it('classes that hold values name them in fields', () => {
    assert.deepEqual(new ConfigError('/etc/pve/storage.cfg', 4, 'bad').fields, { file: '/etc/pve/storage.cfg', line: 4 });
    assert.deepEqual(new CorruptImageError('vm-1-disk-0.qcow2', 'truncated').fields, { layer: 'vm-1-disk-0.qcow2' });
    // A reference from a header is foreign text: the field holds it escaped, as the message does.
    const unsafe = new UnsafeImageError('l', 'backing file outside the storage', '/etc/\u001bpasswd');
    assert.equal(unsafe.fields.layer, 'l');
    assert.equal(typeof unsafe.fields.reference, 'string');
    // eslint-disable-next-line no-control-regex -- asserts the ESC byte of a terminal escape was quoted away
    assert.doesNotMatch(unsafe.fields.reference as string, /\u001b/);
    assert.deepEqual(new CommandFailedError(['qemu-img', 'check', 'x'], 3, 'boom\n').fields, { argv: ['qemu-img', 'check', 'x'], exitCode: 3 });
    assert.deepEqual(new CommandFailedError(['qemu-img'], null, '', 'SIGKILL').fields, { argv: ['qemu-img'], exitCode: null, signal: 'SIGKILL' });
    const job = new QmpJobError('j1', 'cancelled', 'was cancelled');
    assert.equal(job.jobOutcome, 'cancelled');
    assert.equal(job.outcome, 'unchanged');
    assert.deepEqual(job.fields, { jobId: 'j1', jobOutcome: 'cancelled' });
  });

  it('asVolchainError names the path of a system error', () => {
    const enoent = Object.assign(new Error("ENOENT: no such file, open '/x/y'"), { code: 'ENOENT', path: '/x/y' });
    const err = asVolchainError(enoent);
    assert.equal(err.code, 'NOT_FOUND');
    assert.deepEqual(err.fields, { path: '/x/y' });
  });
});

describe("the journal record's undo field", () => {
  const record = (extra: Partial<JournalRecord>): unknown => ({
    id: '100-1-a',
    storage: 'st',
    host: 'h',
    pid: 7,
    startedAt: 't',
    plan: {
      operation: 'snapshot-create',
      volid: 'st:100/vm-100-disk-0.qcow2',
      vmid: 100,
      summary: 's',
      steps: [{ kind: 'a' }, { kind: 'b' }, { kind: 'c' }],
      bytesMoved: 0,
    },
    completedSteps: 2,
    runningStep: null,
    ...extra,
  });
  it('is optional (records of older versions have none) and accepted when well-formed', () => {
    assert.equal(journalRecordProblem(record({})), undefined);
    assert.equal(journalRecordProblem(record({ undo: { failedStep: 2, undone: 1, error: 'e' } })), undefined);
  });
  it('is refused when it could not be acted on', () => {
    assert.match(journalRecordProblem(record({ undo: 'x' as never })) ?? '', /'undo' is not an object/);
    assert.match(journalRecordProblem(record({ undo: { failedStep: 3, undone: 0, error: 'e' } })) ?? '', /undo\.failedStep/);
    assert.match(journalRecordProblem(record({ undo: { failedStep: 2, undone: 3, error: 'e' } })) ?? '', /undo\.undone/);
    assert.match(journalRecordProblem(record({ undo: { failedStep: 2, undone: 0 } as never })) ?? '', /undo\.error/);
  });
});

describe('createVolchain', () => {
  const config = parseStorageConfig('dir: tst\n\tpath /nonexistent/store\n\tcontent images\n', '/test/storage.cfg');
  it('takes a parsed config and names its source', async () => {
    const vc = await createVolchain({ config });
    assert.equal(vc.config.source, '/test/storage.cfg');
    assert.deepEqual(
      vc.storages().map((s) => s.id),
      ['tst'],
    );
  });
  it('refuses a bad lock timeout and a relative state directory as invalid input', async () => {
    await assert.rejects(
      createVolchain({ config, lockTimeoutSeconds: -1 }),
      (err: unknown) => err instanceof VolchainError && err.code === 'INVALID_INPUT' && err.message.includes('lockTimeoutSeconds'),
    );
    await assert.rejects(
      createVolchain({ config, stateDir: 'relative/dir' }),
      (err: unknown) => err instanceof VolchainError && err.message.includes('absolute path'),
    );
  });
  it('a config file that does not exist is an error naming it', async () => {
    await assert.rejects(
      createVolchain({ config: '/nonexistent/storage.cfg' }),
      (err: unknown) => err instanceof VolchainError && err.message.includes('/nonexistent/storage.cfg'),
    );
  });
});
