/**
 * The API's task list (src/api/tasks.ts) and its event stream route (src/api/routes-tasks.ts) with a task
 * whose progress the test drives: a client listening while the task runs gets every change in order, then
 * 'end', and the stream closes; the task file on disk follows the steps; a task left running by a server
 * that stopped is shown interrupted, needing repair, when the list is opened again.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Fastify from 'fastify';
import { serializerCompiler, validatorCompiler, type ZodTypeProvider } from 'fastify-type-provider-zod';
import { TaskManager, type Task, type TaskReporter } from '../../src/api/tasks.js';
import { taskRoutes } from '../../src/api/routes-tasks.js';
import type { ApiContext } from '../../src/api/context.js';
import { NoSpaceError } from '../../src/errors.js';

/** A promise and the function that resolves it. */
function deferred<T = void>(): { promise: Promise<T>; resolve: (v: T) => void } {
  let resolve: (v: T) => void = () => undefined;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

/** The task file once `ready` holds for it (written asynchronously): polled, up to 10 s. */
async function waitForFile(file: string, ready: (task: Task) => boolean): Promise<Task> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const task = await readFile(file, 'utf8').then(
      (t) => JSON.parse(t) as Task,
      () => undefined,
    );
    if (task && ready(task)) return task;
    if (Date.now() > deadline) throw new Error(`${file} never reached the expected state: ${JSON.stringify(task)}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

test('the event stream of a running task sends every change in order, then end, and closes; the task file follows', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'volchain-tasks-'));
  const tasks = await TaskManager.open(dir);
  const finish = deferred();
  try {
    const app = Fastify();
    app.setValidatorCompiler(validatorCompiler);
    app.setSerializerCompiler(serializerCompiler);
    await app.withTypeProvider<ZodTypeProvider>().register(taskRoutes, { ctx: { tasks } as unknown as ApiContext });

    const reporterReady = deferred<TaskReporter>();
    const task = await tasks.start('snapshot-create', { volid: 'tst:100/vm-100-disk-0.qcow2', vmid: 100 }, 'admin', async (reporter) => {
      reporterReady.resolve(reporter);
      await finish.promise;
      return { dryRun: false, plans: [] };
    });
    const onDisk = JSON.parse(await readFile(join(dir, `${task.id}.json`), 'utf8')) as Task;
    assert.equal(onDisk.state, 'running', 'the task is on disk before the caller answers 202');

    // The events sent below must reach the stream: wait until its route has subscribed (no fixed sleep: a
    // loaded machine may take longer than any guess).
    const subscribed = deferred();
    const subscribe = tasks.subscribe.bind(tasks);
    tasks.subscribe = (id, listener) => {
      const unsubscribe = subscribe(id, listener);
      subscribed.resolve();
      return unsubscribe;
    };
    const stream = app.inject({ method: 'GET', url: `/api/tasks/${task.id}/events` });
    const reporter = await reporterReady.promise;
    await subscribed.promise;
    const volid = 'tst:100/vm-100-disk-0.qcow2';
    reporter.onEvent({ type: 'step', volid, index: 1, total: 2, description: 'create the overlay', long: false });
    reporter.onEvent({ type: 'step-done', volid, index: 1 });
    reporter.onEvent({ type: 'step', volid, index: 2, total: 2, description: 'commit', long: true });
    reporter.onEvent({ type: 'progress', volid, index: 2, percent: 50 });
    reporter.log('half way');
    reporter.onEvent({ type: 'step-done', volid, index: 2 });
    // Written at once, not at the next progress tick: the file shows both steps while the task still runs.
    const midway = await waitForFile(join(dir, `${task.id}.json`), (t) => t.steps.length === 2);
    assert.equal(midway.state, 'running');
    assert.equal(midway.steps.length, 2, 'step boundaries are written at once');
    finish.resolve();
    const r = await stream;
    assert.equal(r.statusCode, 200);
    const events = r.body
      .split('\n\n')
      .filter((b) => b.startsWith('event: '))
      .map((b) => b.split('\n')[0]?.slice('event: '.length));
    assert.deepEqual(events, ['task', 'step', 'log', 'step-done', 'step', 'log', 'progress', 'log', 'step-done', 'end']);
    const done = tasks.get(task.id);
    assert.equal(done?.state, 'done');
    assert.deepEqual(
      done.steps.map((s) => [s.index, s.state, s.percent]),
      [
        [1, 'done', null],
        [2, 'done', 50],
      ],
    );
    assert.deepEqual(done.result, { dryRun: false, plans: [] });
    await tasks.idle();
    assert.equal((JSON.parse(await readFile(join(dir, `${task.id}.json`), 'utf8')) as Task).state, 'done');

    // A failed task: the error document, and needsRepair from its outcome.
    const failed = await tasks.start('free', {}, 'admin', () => Promise.reject(new NoSpaceError('no room', { outcome: 'needs-repair' })));
    await tasks.idle();
    assert.equal(tasks.get(failed.id)?.state, 'failed');
    assert.equal(tasks.get(failed.id)?.error?.code, 'NO_SPACE');
    assert.equal(tasks.get(failed.id)?.needsRepair, true);
    await app.close();
  } finally {
    finish.resolve(); // a failed assertion above must not leave the task (and the test process) waiting
    await tasks.idle(); // no task file written while the directory is removed
    await rm(dir, { recursive: true, force: true });
  }
});

test('opening the task list again: finished tasks as they were, a running one interrupted and needing repair; filters and order', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'volchain-tasks-'));
  try {
    const first = await TaskManager.open(dir);
    const a = await first.start('snapshot-create', { vmid: 100, volid: 'tst:100/vm-100-disk-0.qcow2' }, 'admin', () => Promise.resolve({ ok: 1 }));
    await first.idle();
    await new Promise((r) => setTimeout(r, 5));
    const b = await first.start('vm-rollback', { vmid: 101 }, 'ops', () => new Promise(() => undefined)); // never ends: the server "stops"
    await writeFile(join(dir, 'not-a-task.json'), '{');
    await writeFile(join(dir, '00000000-0000-4000-8000-00000000000x.json'), 'torn');

    const second = await TaskManager.open(dir);
    assert.equal(second.get(a.id)?.state, 'done');
    assert.deepEqual(second.get(a.id)?.result, { ok: 1 });
    const interrupted = second.get(b.id);
    assert.equal(interrupted?.state, 'interrupted');
    assert.equal(interrupted.needsRepair, true);
    assert.ok(interrupted.finishedAt !== null);
    assert.deepEqual(
      second.list().map((t) => t.id),
      [b.id, a.id],
      'newest first',
    );
    assert.deepEqual(
      second.list({ vmid: 101 }).map((t) => t.id),
      [b.id],
    );
    assert.deepEqual(
      second.list({ state: 'done', operation: 'snapshot-create', volid: 'tst:100/vm-100-disk-0.qcow2' }).map((t) => t.id),
      [a.id],
    );
    assert.equal(second.list({ limit: 1 }).length, 1);
    const third = await TaskManager.open(dir);
    assert.equal(third.get(b.id)?.state, 'interrupted', 'the interruption was written back');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
