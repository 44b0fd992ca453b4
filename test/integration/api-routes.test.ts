/**
 * Every route of the HTTP API on a real dir storage, with real data: alloc, snapshot create/rollback/delete,
 * resize, the VM-wide operations, free, repair and wipe run as tasks (202, then the task's steps, log and
 * result, and its event stream); dryRun returns the plan at once and changes nothing; the read routes return
 * the CLI's --json documents. Guest data written with qemu-io is read back from the right layer after each step.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import type { Task } from '../../src/api/tasks.js';
import type { PlansJson, StatusJson } from '../../src/results.js';
import type { SnapshotListing, VolumeInfo } from '../../src/index.js';
import { assertPattern, assertSameTree, checkClean, cliJson, makeStorage, MiB, snapshotOf, writePattern, type TestStorage } from './helpers.js';
import { accepted, enc, errorOf, eventsOf, finished, makeApi, runTask, type TestApi } from './api-helpers.js';

describe('HTTP API: every route, tasks, real data', () => {
  let s: TestStorage;
  let api: TestApi;
  let volid: string;
  before(async () => {
    s = await makeStorage();
    api = await makeApi(s);
  });
  after(async () => {
    await api.close();
    await s.cleanup();
  });

  it('alloc is a task whose result is the new volid; the volume is a qcow2 of that size', async () => {
    const task = await runTask(api, 'POST', `/api/storages/${s.id}/volumes`, { vmid: '100', size: '8M' });
    assert.equal(task.operation, 'alloc');
    assert.equal(task.owner, 'admin');
    assert.deepEqual(task.result, { volid: `${s.id}:100/vm-100-disk-0.qcow2` });
    volid = task.result.volid;
    const info = (await api.call('GET', `/api/volumes/${enc(volid)}`)).body as VolumeInfo;
    assert.equal(info.virtualSize, 8 * MiB);
    await checkClean(s.layer(100, 'vm-100-disk-0.qcow2'));
  });

  it('read routes: storages, volumes, info, path, snapshot tree, VM disks, status — the CLI --json documents', async () => {
    const storages = await api.call('GET', '/api/storages');
    assert.deepEqual(storages.body, await cliJson(s, ['storage', 'list']));
    const list = await api.call('GET', `/api/storages/${s.id}/volumes?vmid=100`);
    assert.deepEqual(list.body, await cliJson(s, ['list', s.id, '--vmid', '100']));
    const path = await api.call('GET', `/api/volumes/${enc(volid)}/path`);
    assert.deepEqual(path.body, { volid, path: s.layer(100, 'vm-100-disk-0.qcow2') });
    const tree = await api.call('GET', `/api/volumes/${enc(volid)}/snapshots`);
    assert.deepEqual(tree.body, await cliJson(s, ['snapshot', 'list', volid]));
    const deep = (await api.call('GET', `/api/volumes/${enc(volid)}?deep=true`)).body as VolumeInfo;
    assert.equal(
      deep.checks?.every((c) => c.clean),
      true,
      'deep info checks every layer',
    );
    const disks = await api.call('GET', '/api/vms/100/disks');
    assert.deepEqual(disks.body, { vmid: 100, disks: [volid] });
    const status = await api.call('GET', '/api/status');
    assert.deepEqual(status.body, { pending: [], wipes: [], journalFiles: [] } satisfies StatusJson);
  });

  it('snapshot create: 202, the task records every step and its plan as result; the events stream tells the same; the data stays in the snapshot', async () => {
    await writePattern(s.layer(100, 'vm-100-disk-0.qcow2'), 0xa1, 0, MiB);
    const id = await accepted(api, 'POST', `/api/volumes/${enc(volid)}/snapshots`, { name: 's1' });
    const events = await eventsOf(api, id);
    assert.equal(events[0]?.event, 'task', 'the stream starts with the task as it is');
    assert.equal(events.at(-1)?.event, 'end');
    const ended = events.at(-1)?.data as Task;
    assert.equal(ended.state, 'done');
    const task = (await api.call('GET', `/api/tasks/${id}`)).body as Task;
    assert.deepEqual(task, ended, 'GET shows what the stream ended with');
    const plan = (task.result as PlansJson).plans[0];
    assert.equal(plan?.operation, 'snapshot-create');
    assert.equal(task.steps.length, plan.steps.length, 'one task step per plan step');
    const planned = (task.planned as PlansJson).plans[0];
    assert.equal((task.planned as PlansJson).dryRun, true);
    assert.deepEqual(planned?.steps, plan.steps, 'the plan made before the task was accepted is the one that ran');
    assert.ok(task.steps.every((st) => st.state === 'done'));
    // The stream saw every step start and end (unless the task ended before the stream opened: then it holds the task alone).
    const stepEvents = events.filter((e) => e.event === 'step').length;
    assert.ok(stepEvents === 0 || stepEvents === plan.steps.length, `step events: ${stepEvents}`);
    if (stepEvents === 0) assert.equal((events[0]?.data as Task).state, 'done', 'no step events only when the task had ended before the stream opened');
    assert.ok(
      task.log.some((l) => l.line.includes('step 1/')),
      'the log names the steps',
    );
    await assertPattern(s.layer(100, 'vm-100-disk-0.qcow2', 's1'), 0xa1, 0, MiB);
    await checkClean(s.layer(100, 'vm-100-disk-0.qcow2', 's1'));
  });

  it('dryRun: the plan at once (200, no task), nothing changed — create, rollback, delete (with strategies), resize, free, VM-wide', async () => {
    const before = await snapshotOf(s.path);
    const tasksBefore = ((await api.call('GET', '/api/tasks')).body as { tasks: Task[] }).tasks.length;
    const dry: [string, 'POST' | 'DELETE', string, unknown, string][] = [
      ['create', 'POST', `/api/volumes/${enc(volid)}/snapshots`, { name: 's9', dryRun: true }, 'snapshot-create'],
      ['rollback', 'POST', `/api/volumes/${enc(volid)}/snapshots/s1/rollback`, { dryRun: true }, 'snapshot-rollback'],
      ['delete', 'DELETE', `/api/volumes/${enc(volid)}/snapshots/s1?dryRun=true`, undefined, 'snapshot-delete'],
      ['resize', 'POST', `/api/volumes/${enc(volid)}/resize`, { size: '16M', dryRun: true }, 'resize'],
      ['free', 'DELETE', `/api/volumes/${enc(volid)}?dryRun=true`, undefined, 'free'],
      ['vm snapshot', 'POST', '/api/vms/100/snapshots', { name: 's9', dryRun: true }, 'snapshot-create'],
      ['vm delsnapshot', 'DELETE', '/api/vms/100/snapshots/s1?dryRun=true', undefined, 'snapshot-delete'],
    ];
    for (const [what, method, url, body, operation] of dry) {
      const r = await api.call(method, url, body !== undefined ? { body } : {});
      assert.equal(r.status, 200, `${what}: ${r.text}`);
      const doc = r.body as PlansJson;
      assert.equal(doc.dryRun, true);
      assert.equal(doc.plans[0]?.operation, operation, what);
      assert.ok((doc.plans[0]?.steps.length ?? 0) > 0, `${what}: steps`);
    }
    const del = (await api.call('DELETE', `/api/volumes/${enc(volid)}/snapshots/s1?dryRun=true`)).body as PlansJson;
    assert.ok((del.plans[0]?.strategies?.length ?? 0) > 0, 'a delete plan names the strategies considered');
    assertSameTree(before, await snapshotOf(s.path), 'dry runs');
    assert.equal(((await api.call('GET', '/api/tasks')).body as { tasks: Task[] }).tasks.length, tasksBefore, 'dry runs make no task');
  });

  it('rollback to s1 brings s1 data back; a second snapshot and delete of s1 keep s2 data; resize grows the disk', async () => {
    await writePattern(s.layer(100, 'vm-100-disk-0.qcow2'), 0xb2, 0, MiB);
    await runTask(api, 'POST', `/api/volumes/${enc(volid)}/snapshots`, { name: 's2' });
    await writePattern(s.layer(100, 'vm-100-disk-0.qcow2'), 0xc3, 0, MiB);
    await runTask(api, 'POST', `/api/volumes/${enc(volid)}/snapshots/s1/rollback`, { purgeNewer: false });
    await assertPattern(s.layer(100, 'vm-100-disk-0.qcow2'), 0xa1, 0, MiB);
    const del = await runTask(api, 'DELETE', `/api/volumes/${enc(volid)}/snapshots/s1`);
    assert.equal((del.result as PlansJson).plans[0]?.operation, 'snapshot-delete');
    const tree = (await api.call('GET', `/api/volumes/${enc(volid)}/snapshots`)).body as SnapshotListing;
    assert.deepEqual(
      tree.snapshots.map((x) => x.name),
      ['s2'],
    );
    await assertPattern(s.layer(100, 'vm-100-disk-0.qcow2', 's2'), 0xb2, 0, MiB);
    await assertPattern(s.layer(100, 'vm-100-disk-0.qcow2'), 0xa1, 0, MiB);
    await runTask(api, 'POST', `/api/volumes/${enc(volid)}/resize`, { size: '16M' });
    assert.equal(((await api.call('GET', `/api/volumes/${enc(volid)}`)).body as VolumeInfo).virtualSize, 16 * MiB);
    await assertPattern(s.layer(100, 'vm-100-disk-0.qcow2'), 0xa1, 0, MiB);
  });

  it('VM-wide snapshot, rollback and delsnapshot act on every disk of the VM', async () => {
    const second = (await runTask(api, 'POST', `/api/storages/${s.id}/volumes`, { vmid: '100', size: '4M' })).result as { volid: string };
    await writePattern(s.layer(100, 'vm-100-disk-1.qcow2'), 0xd4, 0, MiB);
    const snap = await runTask(api, 'POST', '/api/vms/100/snapshots', { name: 'vs' });
    assert.deepEqual(
      (snap.result as PlansJson).plans.map((p) => p.volid),
      [volid, second.volid],
    );
    assert.equal(snap.target.vmid, 100);
    await writePattern(s.layer(100, 'vm-100-disk-1.qcow2'), 0xe5, 0, MiB);
    await runTask(api, 'POST', '/api/vms/100/snapshots/vs/rollback', {});
    await assertPattern(s.layer(100, 'vm-100-disk-1.qcow2'), 0xd4, 0, MiB);
    await runTask(api, 'DELETE', '/api/vms/100/snapshots/vs');
    for (const v of [volid, second.volid]) {
      const tree = (await api.call('GET', `/api/volumes/${enc(v)}/snapshots`)).body as SnapshotListing;
      assert.ok(!tree.snapshots.some((x) => x.name === 'vs'), `${v}: vs deleted`);
    }
    await assertPattern(s.layer(100, 'vm-100-disk-1.qcow2'), 0xd4, 0, MiB);
  });

  it('a failed task: state failed, the error document, outcome unchanged (a snapshot of a missing VM is refused before any task)', async () => {
    errorOf(await api.call('POST', '/api/vms/4242/snapshots', { body: { name: 'x1' } }), 404, 'NOT_FOUND', 'a VM without disks');
    // alloc is not planned first: a name that exists fails in its task.
    const id = await accepted(api, 'POST', `/api/storages/${s.id}/volumes`, { vmid: '100', size: '1M', name: 'vm-100-disk-0.qcow2' });
    const task = await finished(api, id);
    assert.equal(task.planned, null, 'alloc is not planned first');
    assert.equal(task.state, 'failed');
    assert.equal(task.error?.code, 'ALREADY_EXISTS');
    assert.equal(task.needsRepair, false);
    assert.ok(task.log.some((l) => l.line.startsWith('failed: ')));
  });

  it('GET /api/tasks filters by state, operation, VM, volume, limit; an unknown task is 404', async () => {
    const all = ((await api.call('GET', '/api/tasks')).body as { tasks: Task[] }).tasks;
    assert.ok(all.length >= 8);
    assert.ok(
      all.every((t, i) => i === 0 || (all[i - 1]?.createdAt ?? '') >= t.createdAt),
      'newest first',
    );
    const byOp = ((await api.call('GET', '/api/tasks?operation=snapshot-create')).body as { tasks: Task[] }).tasks;
    assert.deepEqual(
      byOp.map((t) => t.target.snapshot),
      ['s2', 's1'],
    );
    const failed = ((await api.call('GET', '/api/tasks?state=failed')).body as { tasks: Task[] }).tasks;
    assert.deepEqual(
      failed.map((t) => t.operation),
      ['alloc'],
    );
    const byVolume = ((await api.call('GET', `/api/tasks?volid=${enc(volid)}`)).body as { tasks: Task[] }).tasks;
    assert.ok(byVolume.length >= 4 && byVolume.every((t) => t.target.volid === volid));
    const byVm = ((await api.call('GET', '/api/tasks?vmid=100&limit=2')).body as { tasks: Task[] }).tasks;
    assert.equal(byVm.length, 2);
    errorOf(await api.call('GET', '/api/tasks?state=bogus'), 400, 'INVALID_INPUT', 'a bad state filter');
    errorOf(await api.call('GET', '/api/tasks/00000000-0000-4000-8000-000000000000'), 404, 'NOT_FOUND', 'an unknown task');
    errorOf(await api.call('GET', '/api/tasks/..%2F..%2Fetc%2Fpasswd'), 400, 'INVALID_INPUT', 'a task id that is not one');
  });

  it('repair and wipe are tasks too; with nothing to do their results say so', async () => {
    const repair = await runTask(api, 'POST', '/api/repair', { volid });
    assert.deepEqual(repair.result, { dryRun: false, repaired: [] });
    const dry = await api.call('POST', '/api/repair', { body: { dryRun: true } });
    assert.equal(dry.status, 200);
    assert.deepEqual(dry.body, { dryRun: true, repaired: [] });
    const wipe = await runTask(api, 'POST', '/api/wipe', { storage: s.id });
    assert.deepEqual(wipe.result, { wiped: [], waited: [], busy: [] });
  });

  it('free removes the volume and all its layers', async () => {
    await runTask(api, 'DELETE', `/api/volumes/${enc(volid)}`);
    assert.ok(!existsSync(s.layer(100, 'vm-100-disk-0.qcow2')));
    assert.ok(!existsSync(s.layer(100, 'vm-100-disk-0.qcow2', 's2')));
    errorOf(await api.call('GET', `/api/volumes/${enc(volid)}`), 404, 'NOT_FOUND', 'info of the freed volume');
  });
});
