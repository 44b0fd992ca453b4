/**
 * Errors as data (issue 15): under --json every failure prints `{"error": {code, exitStatus, message,
 * outcome, fields}}` on stdout and keeps its one `volchain:` line on stderr with the same exit status, so a
 * program reads the volid, the lock's holder or whether repair is needed from fields, never from the text.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_LOCK_TIMEOUT_MS, acquireLock } from '../../src/engine/session/lock.js';
import { createVolchain } from '../../src/create.js';
import { LockedError } from '../../src/errors.js';
import { assertSameTree, cli, cliOk, makeStorage, snapshotOf, type RunResult, type TestStorage } from './helpers.js';
import { startQemu } from './qemu-harness.js';

interface ErrorDoc {
  code: string;
  exitStatus: number;
  message: string;
  outcome: 'unchanged' | 'needs-repair';
  fields: Record<string, unknown>;
}

/** The run failed with `status`: one volchain line on stderr, and the same error as JSON on stdout. */
function errorOf(r: RunResult, status: number, what: string): ErrorDoc {
  assert.equal(r.code, status, `${what}: exit status (stderr: ${r.stderr})`);
  const line = /^volchain: ([^\n]+)\n$/.exec(r.stderr);
  assert.ok(line, `${what}: one volchain line on stderr, got ${JSON.stringify(r.stderr)}`);
  const doc = JSON.parse(r.stdout) as { error: ErrorDoc };
  assert.deepEqual(Object.keys(doc), ['error'], what);
  assert.deepEqual(Object.keys(doc.error).sort(), ['code', 'exitStatus', 'fields', 'message', 'outcome'], what);
  assert.equal(doc.error.message, line[1], `${what}: the same message in both places`);
  assert.equal(doc.error.exitStatus, status, what);
  return doc.error;
}

describe('--json failures carry structured fields', () => {
  let s: TestStorage;
  let volid: string;
  before(async () => {
    s = await makeStorage();
    volid = (await cliOk(s, ['alloc', s.id, '100', '4M'])).trim();
    await cliOk(s, ['snapshot', 'create', volid, 's1']);
  });
  after(async () => s.cleanup());

  it('usage errors of the argument parser (unknown option, missing argument): INVALID_INPUT, unchanged', async () => {
    const before = await snapshotOf(s.path);
    for (const args of [
      ['list', s.id, '--jsn', '--json'],
      ['snapshot', 'create', volid, '--json'],
    ]) {
      const error = errorOf(await cli(s, args), 2, args.join(' '));
      assert.equal(error.code, 'INVALID_INPUT');
      assert.equal(error.outcome, 'unchanged');
      assert.deepEqual(error.fields, {});
    }
    assertSameTree(before, await snapshotOf(s.path), 'usage errors');
  });

  it('not found: the volid, and the snapshot, are fields', async () => {
    const missing = `${s.id}:100/vm-100-disk-7.qcow2`;
    const volume = errorOf(await cli(s, ['info', missing, '--json']), 3, 'info of a missing volume');
    assert.equal(volume.code, 'NOT_FOUND');
    assert.deepEqual(volume.fields, { volid: missing, vmid: 100, storage: s.id });
    const snap = errorOf(await cli(s, ['snapshot', 'delete', volid, 'nosuch', '--json']), 3, 'delete of a missing snapshot');
    assert.deepEqual(snap.fields, { volid, snapshot: 'nosuch' });
    assert.equal(snap.outcome, 'unchanged');
  });

  it("a locked VM: LOCKED, exit 6, the lock's holder named in fields", async () => {
    const lockPath = join(s.path, '.volchain', 'locks', '100.lock');
    const held = await acquireLock(lockPath, 'snapshot-delete', DEFAULT_LOCK_TIMEOUT_MS);
    try {
      const r = await cli(s, ['snapshot', 'create', volid, 's2', '--json'], { env: { VOLCHAIN_LOCK_TIMEOUT: '0.2' } });
      const error = errorOf(r, 6, 'snapshot create on a locked VM');
      assert.equal(error.code, 'LOCKED');
      assert.equal(error.outcome, 'unchanged');
      assert.equal(error.fields.path, lockPath);
      const holder = error.fields.holder as Record<string, unknown>;
      assert.deepEqual(
        { pid: holder.pid, host: holder.host, operation: holder.operation },
        { pid: process.pid, host: hostname(), operation: 'snapshot-delete' },
      );
      assert.equal(typeof holder.since, 'string');
    } finally {
      await held.release();
    }
  });

  it("createVolchain's lockTimeoutSeconds is the wait for a VM's lock (the environment's is not used)", async () => {
    const held = await acquireLock(join(s.path, '.volchain', 'locks', '100.lock'), 'resize', DEFAULT_LOCK_TIMEOUT_MS);
    const saved = process.env.VOLCHAIN_LOCK_TIMEOUT;
    process.env.VOLCHAIN_LOCK_TIMEOUT = '600';
    try {
      const vc = await createVolchain({ config: s.cfg, lockTimeoutSeconds: 0.2 });
      const started = Date.now();
      await assert.rejects(vc.snapshotCreate(volid, 's3'), (err: unknown) => err instanceof LockedError && err.message.includes('gave up after 0.2s'));
      assert.ok(Date.now() - started < 10_000, 'gave up after the configured 0.2 s, not $VOLCHAIN_LOCK_TIMEOUT');
    } finally {
      if (saved === undefined) delete process.env.VOLCHAIN_LOCK_TIMEOUT;
      else process.env.VOLCHAIN_LOCK_TIMEOUT = saved;
      await held.release();
    }
  });

  it('a running VM (its QMP socket answers): LOCKED, exit 6, one message shape and the same fields for every operation that needs it stopped', async () => {
    const raw = (await cliOk(s, ['alloc', s.id, '101', '1M', '--format', 'raw'])).trim();
    const socket = join(s.root, 'running.qmp');
    const output = join(s.root, 'running.vcx');
    const vm = await startQemu({ extraArgs: ['-qmp', `unix:${socket},server=on,wait=off`] });
    try {
      const before = await snapshotOf(s.path);
      const calls: [string, string, string[]][] = [
        ['clone', volid, ['clone', volid, s.id, '200']],
        ['reassign', volid, ['move', volid, s.id, '--vmid', '200']],
        ['export', volid, ['export', volid, '-o', output]],
        ['template', volid, ['template', volid]],
        ['convert', raw, ['convert', raw, '--format', 'qcow2']],
      ];
      for (const [operation, subject, args] of calls) {
        const error = errorOf(await cli(s, [...args, '--qmp', socket, '--json']), 6, `${operation} while the VM runs`);
        const vmid = subject === raw ? 101 : 100;
        assert.equal(error.code, 'LOCKED', operation);
        assert.equal(error.outcome, 'unchanged', operation);
        assert.deepEqual(error.fields, { vmid, socket, operation, volid: subject }, operation);
        assert.ok(
          error.message.startsWith(`VM ${vmid} is running (QMP socket ${socket} answers): ${operation} of ${subject} needs the VM stopped: `),
          `${operation}: message shape, got ${error.message}`,
        );
      }
      assertSameTree(before, await snapshotOf(s.path), 'refusals of a running VM (nothing changed, not even a lock file)');
    } finally {
      await vm.stop();
    }
    await cliOk(s, ['free', raw]);
  });

  it('a failure mid-operation that leaves a journal: outcome needs-repair, the step in fields; then a refusal names it', async () => {
    // free removes the layers one by one: once one is gone there is no way back, only forward (repair).
    const r = await cli(s, ['free', volid, '--json'], { env: { VOLCHAIN_FAIL_AT: 'free:2' } });
    const error = errorOf(r, 1, 'free failing at step 2');
    assert.equal(error.outcome, 'needs-repair');
    assert.deepEqual(error.fields, { volid, vmid: 100, operation: 'free', step: 2 });
    assert.match(error.message, /volchain repair/);
    const refused = errorOf(await cli(s, ['snapshot', 'create', volid, 's2', '--json']), 7, 'snapshot create over the unfinished free');
    assert.equal(refused.code, 'PENDING_OPERATION');
    assert.equal(refused.outcome, 'needs-repair');
    assert.equal(refused.fields.volid, volid);
    assert.equal(refused.fields.operation, 'free');
    await cliOk(s, ['repair', volid]);
    const listing = JSON.parse(await cliOk(s, ['list', s.id, '--json'])) as { volumes: unknown[] };
    assert.deepEqual(listing.volumes, [], 'repair finished the free');
  });
});
