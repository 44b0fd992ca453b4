/**
 * waitForJob over replayed transcripts. The event sequences are the ones QEMU 7.2 produced in
 * qmp-live.test.ts (created, running, [ready], waiting, pending, BLOCK_JOB_COMPLETED|CANCELLED, concluded,
 * null), including the detail that the job-starting command's own answer arrives *after* its first events.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  QmpClient,
  QmpCommandError,
  QmpDisconnectedError,
  QmpJobError,
  QmpTimeoutError,
  ReplayTransport,
  blockCommit,
  blockStream,
  event,
  handshake,
  jobComplete,
  waitForJob,
  type JobProgress,
  type ReplayStep,
} from '../../src/qmp/index.js';

async function connected(steps: ReplayStep[]): Promise<{ client: QmpClient; transport: ReplayTransport }> {
  const transport = new ReplayTransport([...handshake(), ...steps]);
  const client = new QmpClient();
  await client.connect(transport);
  return { client, transport };
}

const status = (id: string, s: string): ReplayStep => event('JOB_STATUS_CHANGE', { id, status: s });
const info = (id: string, s: string, current: number, total: number, extra: Record<string, unknown> = {}) => ({
  id,
  type: 'commit',
  status: s,
  'current-progress': current,
  'total-progress': total,
  ...extra,
});

describe('waitForJob', () => {
  it('starts an active commit, completes it on READY, and resolves when it concludes', async () => {
    const { client, transport } = await connected([
      { expect: 'block-commit', arguments: { device: 'fmt-top', 'base-node': 'fmt-base', 'job-id': 'commit-0' } },
      status('commit-0', 'created'),
      status('commit-0', 'running'),
      { reply: 'block-commit', return: {} },
      { expect: 'query-jobs' },
      { reply: 'query-jobs', return: [info('commit-0', 'running', 0, 4096)] },
      status('commit-0', 'ready'),
      event('BLOCK_JOB_READY', { device: 'commit-0', len: 4096, offset: 4096, speed: 0, type: 'commit' }),
      { expect: 'job-complete', arguments: { id: 'commit-0' } },
      { reply: 'job-complete', return: {} },
      status('commit-0', 'waiting'),
      status('commit-0', 'pending'),
      event('BLOCK_JOB_COMPLETED', { device: 'commit-0', len: 4096, offset: 4096, speed: 0, type: 'commit' }),
      status('commit-0', 'concluded'),
      status('commit-0', 'null'),
      { expect: 'query-jobs', as: 'final' },
      { reply: 'final', return: [] },
    ]);
    const progress: JobProgress[] = [];
    const result = await waitForJob(client, 'commit-0', {
      start: () => blockCommit(client, { jobId: 'commit-0', device: 'fmt-top', baseNode: 'fmt-base' }),
      onProgress: (p) => progress.push(p),
      pollIntervalMs: 0,
    });
    assert.deepEqual(result, { id: 'commit-0', type: 'commit', current: 4096, total: 4096 });
    assert.deepEqual(
      progress.map((p) => `${p.status} ${p.current}/${p.total}`),
      [
        'created 0/0',
        'running 0/0',
        'running 0/4096',
        'ready 0/4096',
        'ready 4096/4096',
        'waiting 4096/4096',
        'pending 4096/4096',
        'concluded 4096/4096',
        'null 4096/4096',
      ],
    );
    await transport.finished;
    assert.deepEqual(transport.mismatches, []);
    await client.close();
  });

  it("leaves READY to the caller with whenReady 'wait'", async () => {
    const { client, transport } = await connected([
      { expect: 'query-jobs' },
      { reply: 'query-jobs', return: [info('c', 'ready', 10, 10)] },
      { expect: 'job-complete' },
      { reply: 'job-complete', return: {} },
      status('c', 'waiting'),
      status('c', 'pending'),
      event('BLOCK_JOB_COMPLETED', { device: 'c', len: 10, offset: 10, speed: 0, type: 'commit' }),
      status('c', 'concluded'),
      status('c', 'null'),
      { expect: 'query-jobs' },
      { reply: 'query-jobs', return: [] },
    ]);
    const done = waitForJob(client, 'c', {
      whenReady: 'wait',
      pollIntervalMs: 0,
      onProgress: (p) => {
        if (p.status === 'ready') jobComplete(client, 'c').catch((err: unknown) => assert.fail(String(err)));
      },
    });
    assert.equal((await done).current, 10);
    await transport.finished;
    assert.deepEqual(transport.mismatches, []);
    await client.close();
  });

  it('rejects with outcome "failed" and QEMU\'s message when BLOCK_JOB_COMPLETED carries an error', async () => {
    const { client } = await connected([
      { expect: 'block-stream' },
      status('s', 'created'),
      status('s', 'running'),
      { reply: 'block-stream', return: {} },
      { expect: 'query-jobs' },
      { reply: 'query-jobs', return: [info('s', 'running', 0, 100, { type: 'stream' })] },
      event('BLOCK_JOB_ERROR', { device: 's', operation: 'read', action: 'report' }),
      status('s', 'aborting'),
      event('BLOCK_JOB_COMPLETED', { device: 's', len: 100, offset: 50, speed: 0, type: 'stream', error: 'Input/output error' }),
      status('s', 'concluded'),
      status('s', 'null'),
      { expect: 'query-jobs' },
      { reply: 'query-jobs', return: [] },
    ]);
    await assert.rejects(
      waitForJob(client, 's', { start: () => blockStream(client, { jobId: 's', device: 'fmt-top' }), pollIntervalMs: 0 }),
      (err: unknown) => {
        assert.ok(err instanceof QmpJobError);
        assert.equal(err.jobOutcome, 'failed');
        assert.equal(err.qemuMessage, 'Input/output error');
        assert.match(err.message, /block job s failed: Input\/output error \(read error \(action report\)\)/);
        return true;
      },
    );
    await client.close();
  });

  it('rejects with outcome "cancelled" after BLOCK_JOB_CANCELLED', async () => {
    const { client } = await connected([
      { expect: 'query-jobs' },
      { reply: 'query-jobs', return: [info('s', 'running', 5, 100)] },
      status('s', 'aborting'),
      event('BLOCK_JOB_CANCELLED', { device: 's', len: 100, offset: 5, speed: 0, type: 'stream' }),
      status('s', 'concluded'),
      status('s', 'null'),
      { expect: 'query-jobs' },
      { reply: 'query-jobs', return: [] },
    ]);
    await assert.rejects(waitForJob(client, 's', { pollIntervalMs: 0 }), (err: unknown) => err instanceof QmpJobError && err.jobOutcome === 'cancelled');
    await client.close();
  });

  it('reads the error of a job that stays listed (auto-dismiss off) and dismisses it', async () => {
    const { client, transport } = await connected([
      { expect: 'query-jobs' },
      { reply: 'query-jobs', return: [info('k', 'running', 0, 100)] },
      status('k', 'aborting'),
      status('k', 'concluded'),
      { expect: 'query-jobs', as: 'q2' },
      { reply: 'q2', return: [info('k', 'concluded', 30, 100, { error: 'No space left on device' })] },
      { expect: 'job-dismiss', arguments: { id: 'k' } },
      { reply: 'job-dismiss', return: {} },
      status('k', 'null'),
    ]);
    await assert.rejects(waitForJob(client, 'k', { pollIntervalMs: 0 }), (err: unknown) => {
      assert.ok(err instanceof QmpJobError);
      assert.equal(err.jobOutcome, 'failed');
      assert.equal(err.qemuMessage, 'No space left on device');
      return true;
    });
    await transport.finished;
    assert.deepEqual(transport.mismatches, []);
    await client.close();
  });

  it('reports a job QEMU does not know as "missing"', async () => {
    const { client } = await connected([{ expect: 'query-jobs' }, { reply: 'query-jobs', return: [info('other', 'running', 0, 1)] }]);
    await assert.rejects(
      waitForJob(client, 'nope', { pollIntervalMs: 0 }),
      (err: unknown) => err instanceof QmpJobError && err.jobOutcome === 'missing' && err.message.includes('nope is not known to QEMU'),
    );
    await client.close();
  });

  it('passes on the error of a start that QEMU refused', async () => {
    const { client } = await connected([
      { expect: 'block-commit' },
      { reply: 'block-commit', error: { class: 'GenericError', desc: "Cannot find device='x' nor node-name='x'" } },
    ]);
    await assert.rejects(
      waitForJob(client, 'j', { start: () => blockCommit(client, { jobId: 'j', device: 'x' }), pollIntervalMs: 0 }),
      (err: unknown) => err instanceof QmpCommandError && err.command === 'block-commit',
    );
    await client.close();
  });

  it('polls query-jobs for progress while the job runs', async () => {
    const { client } = await connected([
      { expect: 'query-jobs' },
      { reply: 'query-jobs', return: [info('p', 'running', 0, 100)] },
      { expect: 'query-jobs' },
      { reply: 'query-jobs', return: [info('p', 'running', 40, 100)] },
      { expect: 'query-jobs' },
      { reply: 'query-jobs', return: [info('p', 'running', 80, 100)] },
      event('BLOCK_JOB_COMPLETED', { device: 'p', len: 100, offset: 100, speed: 0, type: 'commit' }),
      status('p', 'concluded'),
      status('p', 'null'),
    ]);
    const seen: number[] = [];
    const r = await waitForJob(client, 'p', { pollIntervalMs: 5, onProgress: (p) => seen.push(p.current) });
    assert.equal(r.current, 100);
    assert.deepEqual(
      seen.filter((c, i) => seen.indexOf(c) === i),
      [0, 40, 80, 100],
    );
    await client.close();
  });

  it('fails with the disconnect error when QEMU goes away during the job', async () => {
    const { client } = await connected([{ expect: 'query-jobs' }, { reply: 'query-jobs', return: [info('d', 'running', 0, 100)] }, { close: true }]);
    await assert.rejects(waitForJob(client, 'd', { pollIntervalMs: 0 }), QmpDisconnectedError);
  });

  it('times out (the job keeps running in QEMU)', async () => {
    const { client } = await connected([{ expect: 'query-jobs' }, { reply: 'query-jobs', return: [info('t', 'running', 0, 100)] }]);
    await assert.rejects(waitForJob(client, 't', { pollIntervalMs: 0, timeoutMs: 30 }), QmpTimeoutError);
    await client.close();
  });
});
