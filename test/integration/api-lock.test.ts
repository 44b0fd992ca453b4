/**
 * The API and the CLI share the VM's lock and the journal. While another process holds a VM's lock (as a
 * running volchain command does), a mutating request is refused at once with 409 naming the holder, no
 * task is made and nothing changes; other VMs are not affected. A server killed in the middle of a task
 * (VOLCHAIN_CRASH_AT, SIGKILL at a plan step) leaves the task on disk: the next server shows it interrupted
 * and needing repair, and repair through the API finishes the operation with the data intact.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { TokenStore } from '../../src/api/tokens.js';
import type { Task } from '../../src/api/tasks.js';
import type { StatusJson } from '../../src/results.js';
import type { SnapshotListing } from '../../src/index.js';
import { assertPattern, assertSameTree, BIN, checkClean, cliOk, makeStorage, MiB, ROOT, snapshotOf, writePattern, type TestStorage } from './helpers.js';
import { enc, errorOf, finished, makeApi, runTask, type TestApi } from './api-helpers.js';

describe('HTTP API: the VM lock shared with the CLI', () => {
  let s: TestStorage;
  let api: TestApi;
  let volid: string;
  before(async () => {
    s = await makeStorage();
    volid = (await cliOk(s, ['alloc', s.id, '100', '4M'])).trim();
    await cliOk(s, ['alloc', s.id, '101', '4M']);
    api = await makeApi(s);
  });
  after(async () => {
    await api.close();
    await s.cleanup();
  });

  it('while another process holds VM 100 lock: 409 LOCKED naming it, no task, nothing changed; VM 101 is served; afterwards 100 is too', async () => {
    const lockFile = join(s.path, '.volchain', 'locks', '100.lock');
    const holder = spawn(process.execPath, [resolve(ROOT, 'dist/test/fixtures/hold-vm-lock.js'), lockFile, 'snapshot-delete'], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    try {
      const lines = createInterface({ input: holder.stdout });
      assert.equal((await lines[Symbol.asyncIterator]().next()).value, 'held', 'the holder took the lock');
      const before = await snapshotOf(s.path);
      const started = Date.now();
      for (const [what, method, url, body] of [
        ['snapshot create', 'POST', `/api/volumes/${enc(volid)}/snapshots`, { name: 's1' }],
        ['resize', 'POST', `/api/volumes/${enc(volid)}/resize`, { size: '8M' }],
        ['free', 'DELETE', `/api/volumes/${enc(volid)}`, undefined],
        ['vm snapshot', 'POST', '/api/vms/100/snapshots', { name: 's1' }],
        ['repair of the volume', 'POST', '/api/repair', { volid }],
      ] as const) {
        const error = errorOf(await api.call(method, url, body !== undefined ? { body } : {}), 409, 'LOCKED', what);
        assert.equal(error.outcome, 'unchanged');
        assert.equal(error.fields.path, lockFile);
        assert.equal(error.fields.vmid, 100);
        const h = error.fields.holder as Record<string, unknown>;
        assert.deepEqual({ pid: h.pid, host: h.host, operation: h.operation }, { pid: holder.pid, host: hostname(), operation: 'snapshot-delete' }, what);
        assert.match(error.message, new RegExp(`held by pid ${String(holder.pid)} .*snapshot-delete`));
      }
      assert.ok(Date.now() - started < 10_000, 'refused at once, not after the lock timeout');
      assert.deepEqual(((await api.call('GET', '/api/tasks')).body as { tasks: Task[] }).tasks, [], 'no task was made');
      assertSameTree(before, await snapshotOf(s.path), 'refused while locked');
      // Reading needs no lock, and another VM is not locked.
      assert.equal((await api.call('GET', `/api/volumes/${enc(volid)}/snapshots`)).status, 200);
      await runTask(api, 'POST', `/api/volumes/${enc(`${s.id}:101/vm-101-disk-0.qcow2`)}/snapshots`, { name: 's1' });
    } finally {
      holder.stdin.end();
      await new Promise((r) => holder.once('exit', r));
    }
    const task = await runTask(api, 'POST', `/api/volumes/${enc(volid)}/snapshots`, { name: 's1' });
    assert.equal(task.state, 'done', 'once the lock is free the same request is served');
  });

  it('two requests at once on one VM: one task is accepted, the other is refused with 409 naming it', async () => {
    const [a, b] = await Promise.all([
      api.call('POST', `/api/volumes/${enc(volid)}/snapshots`, { body: { name: 'ta' } }),
      api.call('POST', '/api/vms/100/snapshots', { body: { name: 'tb' } }),
    ]);
    const [ok, refused] = a.status === 202 ? [a, b] : [b, a];
    assert.equal(ok.status, 202, ok.text);
    const error = errorOf(refused, 409, 'LOCKED', 'the second request');
    const holder = error.fields.holder as Record<string, unknown>;
    assert.equal(holder.pid, process.pid, 'the holder is this server');
    assert.match(error.message, /task .* of this server/);
    const task = await finished(api, (ok.body as { task: string }).task);
    assert.equal(task.state, 'done');
    // Clean up for the next test: the snapshot made is deleted again.
    await runTask(api, 'DELETE', a.status === 202 ? `/api/volumes/${enc(volid)}/snapshots/ta` : '/api/vms/100/snapshots/tb');
  });

  it('a CLI command on a VM a task holds waits for it (the same lock): both end, one after the other, the chain whole', async () => {
    await writePattern(s.layer(100, 'vm-100-disk-0.qcow2'), 0xa1, 0, MiB);
    const id = ((await api.call('POST', `/api/volumes/${enc(volid)}/snapshots`, { body: { name: 's2' } })).body as { task: string }).task;
    await cliOk(s, ['snapshot', 'create', volid, 's3']);
    const task = await finished(api, id);
    assert.equal(task.state, 'done');
    const tree = (await api.call('GET', `/api/volumes/${enc(volid)}/snapshots`)).body as SnapshotListing;
    assert.deepEqual(tree.snapshots.map((x) => x.name).sort(), ['s1', 's2', 's3']);
    await assertPattern(s.layer(100, 'vm-100-disk-0.qcow2'), 0xa1, 0, MiB);
    for (const snap of ['s1', 's2', 's3']) await checkClean(s.layer(100, 'vm-100-disk-0.qcow2', snap));
  });
});

describe('HTTP API: a server killed during a task', () => {
  let s: TestStorage;
  let state: string;
  before(async () => {
    s = await makeStorage();
    state = await mkdtemp(join(tmpdir(), 'volchain-api-restart-'));
  });
  after(async () => {
    await s.cleanup();
    await rm(state, { recursive: true, force: true });
  });

  it('the next server shows the task interrupted and needing repair; POST /api/repair finishes the operation, data intact', async () => {
    const volid = (await cliOk(s, ['alloc', s.id, '100', '4M'])).trim();
    await writePattern(s.layer(100, 'vm-100-disk-0.qcow2'), 0xa1, 0, MiB);
    const apiDir = join(state, 'api');
    const { token } = await new TokenStore(apiDir).create('admin', false);
    // `volchain serve` as a user starts it, told to die (SIGKILL) once step 2 of the snapshot has started.
    const env = { ...process.env, VOLCHAIN_STATE_DIR: state, VOLCHAIN_CRASH_AT: 'snapshot-create:2:started', LC_ALL: 'C' };
    const server = spawn(process.execPath, [BIN, '--config', s.cfg, 'serve', '--listen', '127.0.0.1:0'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = new Promise<NodeJS.Signals | null>((r) => server.once('exit', (_code, signal) => r(signal)));
    try {
      const lines = createInterface({ input: server.stdout });
      const first = (await lines[Symbol.asyncIterator]().next()).value as string;
      const url = /listening on (http:\/\/\S+)/.exec(first)?.[1];
      assert.ok(url, `the server says where it listens: ${first}`);
      const health = await fetch(`${url}/api/health`);
      assert.equal(health.status, 200);
      // The answer (202) may or may not reach us before the process dies: the task file is what counts.
      await fetch(`${url}/api/volumes/${enc(volid)}/snapshots`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ name: 's1' }),
      }).catch(() => undefined);
      assert.equal(await exited, 'SIGKILL', 'the server died at the crash point');
    } finally {
      server.kill('SIGKILL');
    }

    const api = await makeApi(s, { stateDir: apiDir, admin: token });
    try {
      const tasks = ((await api.call('GET', '/api/tasks')).body as { tasks: Task[] }).tasks;
      assert.equal(tasks.length, 1);
      const task = tasks[0] as Task;
      assert.equal(task.state, 'interrupted');
      assert.equal(task.needsRepair, true);
      assert.equal(task.operation, 'snapshot-create');
      assert.ok(task.steps.length >= 1, 'the steps reached are kept');
      assert.match(task.log.at(-1)?.line ?? '', /stopped while this task ran.*repair/);
      const interrupted = ((await api.call('GET', '/api/tasks?state=interrupted')).body as { tasks: Task[] }).tasks;
      assert.deepEqual(
        interrupted.map((t) => t.id),
        [task.id],
      );
      const status = (await api.call('GET', '/api/status')).body as StatusJson;
      assert.equal(status.pending.length, 1, 'the journal of the killed operation is pending');
      assert.equal(status.pending[0]?.volid, volid);
      // Any other mutation is refused while it is unfinished (409), repair is not.
      errorOf(
        await api.call('POST', `/api/volumes/${enc(volid)}/snapshots`, { body: { name: 's2' } }),
        409,
        'PENDING_OPERATION',
        'a snapshot over an unfinished one',
      );
      const repaired = await runTask(api, 'POST', '/api/repair', { volid });
      assert.equal((repaired.result as { repaired: unknown[] }).repaired.length, 1);
      assert.deepEqual(((await api.call('GET', '/api/status')).body as StatusJson).pending, []);
      const tree = (await api.call('GET', `/api/volumes/${enc(volid)}/snapshots`)).body as SnapshotListing;
      // Repair finishes or undoes the snapshot; either way the data is whole and the chain clean.
      await assertPattern(s.layer(100, 'vm-100-disk-0.qcow2'), 0xa1, 0, MiB);
      for (const snap of tree.snapshots) {
        await assertPattern(snap.path, 0xa1, 0, MiB);
        await checkClean(snap.path);
      }
      await checkClean(s.layer(100, 'vm-100-disk-0.qcow2'));
    } finally {
      await api.close();
    }
  });
});
