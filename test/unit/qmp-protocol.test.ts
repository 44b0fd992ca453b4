/**
 * The QMP client against a transport that replays transcripts (src/qmp/replay.ts): handshake, interleaved
 * events and replies, replies out of order, error replies, disconnects with calls in flight, timeouts, and
 * malformed input. No QEMU here; qmp-live.test.ts runs the same client against a real one.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  LineSplitter,
  QmpClient,
  QmpCommandError,
  QmpDisconnectedError,
  QmpError,
  QmpProtocolError,
  QmpTimeoutError,
  ReplayTransport,
  event,
  greeting,
  handshake,
  parseMessage,
  type QmpEvent,
  type QmpState,
  type ReplayStep,
} from '../../src/qmp/index.js';

async function connected(
  steps: ReplayStep[],
  options: ConstructorParameters<typeof QmpClient>[0] = {},
): Promise<{ client: QmpClient; transport: ReplayTransport }> {
  const transport = new ReplayTransport([...handshake(), ...steps]);
  const client = new QmpClient(options);
  await client.connect(transport);
  return { client, transport };
}

/** Lets the replay play everything it can (each step takes one turn of the event loop). */
const settle = (turns = 20): Promise<void> =>
  (async () => {
    for (let i = 0; i < turns; i++) await new Promise((r) => setImmediate(r));
  })();

describe('QMP framing and parsing', () => {
  it('splits a stream into lines whatever the chunking, dropping \\r and blank lines', () => {
    const s = new LineSplitter();
    assert.deepEqual(s.push('{"a":'), []);
    assert.deepEqual(s.push('1}\r\n{"b":2}\r\n\r\n{"c"'), ['{"a":1}', '{"b":2}']);
    assert.equal(s.pending, '{"c"');
    assert.deepEqual(s.push(':3}\r\n'), ['{"c":3}']);
  });

  const cases: { description: string; line: string; kind: string }[] = [
    { description: 'greeting', line: JSON.stringify(greeting()), kind: 'greeting' },
    { description: 'success', line: '{"return": {}, "id": "c1"}', kind: 'return' },
    { description: 'error', line: '{"error": {"class": "GenericError", "desc": "x"}, "id": "c1"}', kind: 'error' },
    { description: 'event', line: '{"event": "STOP", "timestamp": {"seconds": 1, "microseconds": 2}}', kind: 'event' },
  ];
  for (const c of cases) {
    it(`classifies a ${c.description}`, () => {
      assert.equal(parseMessage(c.line).kind, c.kind);
    });
  }

  it('refuses what is not QMP', () => {
    for (const line of ['not json', '[1,2]', '{"neither": 1}', '{"QMP": {"version": 1}}', '{"error": "x", "id": 1}']) {
      assert.throws(() => parseMessage(line), QmpProtocolError, line);
    }
  });

  it('gives an event without data an empty data object', () => {
    const m = parseMessage('{"event": "STOP", "timestamp": {"seconds": 5, "microseconds": 6}}');
    assert.ok(m.kind === 'event');
    assert.deepEqual(m.event, { event: 'STOP', data: {}, timestamp: { seconds: 5, microseconds: 6 } });
  });
});

describe('QMP client: handshake', () => {
  it('walks idle → connecting → negotiating → ready, negotiating no capabilities', async () => {
    const states: QmpState[] = [];
    const transport = new ReplayTransport(handshake());
    const client = new QmpClient({ onStateChange: (s) => states.push(s) });
    assert.equal(client.state, 'idle');
    const g = await client.connect(transport);
    assert.deepEqual(states, ['connecting', 'negotiating', 'ready']);
    assert.equal(g.QMP.version.qemu.major, 7);
    assert.equal(client.greeting, g);
    assert.deepEqual(transport.sent, [{ execute: 'qmp_capabilities', id: 'c1' }]);
    assert.deepEqual(transport.mismatches, []);
    await client.close();
    assert.equal(client.state, 'closed');
  });

  it('accepts a greeting split across chunks', async () => {
    const text = `${JSON.stringify(greeting())}\r\n`;
    const transport = new ReplayTransport([
      { send: text.slice(0, 17) },
      { send: text.slice(17) },
      { expect: 'qmp_capabilities' },
      { reply: 'qmp_capabilities', return: {} },
    ]);
    const client = new QmpClient();
    await client.connect(transport);
    assert.equal(client.state, 'ready');
    await client.close();
  });

  it('fails the handshake when the first message is not a greeting, and ends closed', async () => {
    const transport = new ReplayTransport([{ send: { return: {}, id: 'c1' } }]);
    const client = new QmpClient();
    await assert.rejects(client.connect(transport), (err: unknown) => {
      assert.ok(err instanceof QmpDisconnectedError);
      assert.match(err.message, /answered before greeting/);
      assert.ok(err.cause instanceof QmpProtocolError);
      return true;
    });
    assert.equal(client.state, 'closed');
  });

  it('fails the handshake when QEMU refuses qmp_capabilities', async () => {
    const transport = new ReplayTransport([
      { send: greeting() as unknown as Record<string, unknown> },
      { expect: 'qmp_capabilities' },
      { reply: 'qmp_capabilities', error: { class: 'CommandNotFound', desc: 'Capabilities negotiation is already complete' } },
    ]);
    const client = new QmpClient();
    await assert.rejects(client.connect(transport), QmpCommandError);
    assert.equal(client.state, 'closed');
  });

  it('times out a handshake QEMU never answers', async () => {
    const client = new QmpClient();
    await assert.rejects(client.connect(new ReplayTransport([]), { timeoutMs: 30 }), QmpTimeoutError);
    assert.equal(client.state, 'closed');
  });

  it('fails when QEMU goes away before greeting', async () => {
    const client = new QmpClient();
    await assert.rejects(client.connect(new ReplayTransport([{ close: true }])), QmpDisconnectedError);
    assert.equal(client.state, 'closed');
  });

  it('refuses to run commands before it is ready, and to connect twice', async () => {
    const client = new QmpClient();
    await assert.rejects(client.execute('query-status'), (err: unknown) => err instanceof QmpError && err.message.includes('idle, not ready'));
    await client.connect(new ReplayTransport(handshake()));
    await assert.rejects(client.connect(new ReplayTransport(handshake())), /already ready/);
    await client.close();
  });
});

describe('QMP client: commands and events', () => {
  it('matches replies by id when they come out of order, with events between them', async () => {
    const { client, transport } = await connected([
      { expect: 'query-block', as: 'block' },
      { expect: 'query-jobs', as: 'jobs' },
      event('JOB_STATUS_CHANGE', { id: 'j1', status: 'running' }),
      { reply: 'jobs', return: [{ id: 'j1' }] },
      event('JOB_STATUS_CHANGE', { id: 'j1', status: 'ready' }),
      { reply: 'block', return: [{ device: 'd0' }] },
      event('STOP'),
    ]);
    const seen: string[] = [];
    client.subscribe('*', (e) => seen.push(e.event === 'JOB_STATUS_CHANGE' ? String(e.data['status']) : e.event));
    const block = client.execute('query-block');
    const jobs = client.execute('query-jobs');
    assert.deepEqual(await jobs, [{ id: 'j1' }]);
    assert.deepEqual(await block, [{ device: 'd0' }]);
    await transport.finished;
    await settle();
    assert.deepEqual(seen, ['running', 'ready', 'STOP']);
    assert.deepEqual(transport.mismatches, []);
    await client.close();
  });

  it('sends arguments as given and leaves them out when there are none', async () => {
    const { client, transport } = await connected([
      { expect: 'blockdev-del', arguments: { 'node-name': 'fmt-1' } },
      { reply: 'blockdev-del', return: {} },
      { expect: 'stop' },
      { reply: 'stop', return: {} },
    ]);
    await client.execute('blockdev-del', { 'node-name': 'fmt-1' });
    await client.execute('stop');
    assert.deepEqual(transport.sent.slice(1), [
      { execute: 'blockdev-del', arguments: { 'node-name': 'fmt-1' }, id: 'c2' },
      { execute: 'stop', id: 'c3' },
    ]);
    await client.close();
  });

  it("turns an error reply into a QmpCommandError with QEMU's class and text, and stays usable", async () => {
    const { client } = await connected([
      { expect: 'blockdev-del' },
      { reply: 'blockdev-del', error: { class: 'GenericError', desc: "Failed to find node with node-name='x'" } },
      { expect: 'query-jobs' },
      { reply: 'query-jobs', return: [] },
    ]);
    await assert.rejects(client.execute('blockdev-del', { 'node-name': 'x' }), (err: unknown) => {
      assert.ok(err instanceof QmpCommandError);
      assert.equal(err.command, 'blockdev-del');
      assert.equal(err.errorClass, 'GenericError');
      assert.equal(err.desc, "Failed to find node with node-name='x'");
      assert.equal(err.code, 'COMMAND_FAILED');
      assert.equal(err.exitStatus, 10);
      assert.match(err.message, /QEMU refused blockdev-del: Failed to find node with node-name='x'/);
      return true;
    });
    assert.equal(client.state, 'ready');
    assert.deepEqual(await client.execute('query-jobs'), []);
    await client.close();
  });

  it('filters subscriptions by name and predicate, and stops delivering after unsubscribe', async () => {
    const { client, transport } = await connected([
      event('JOB_STATUS_CHANGE', { id: 'a', status: 'running' }),
      event('JOB_STATUS_CHANGE', { id: 'b', status: 'running' }),
      event('BLOCK_JOB_READY', { device: 'a' }),
      { expect: 'query-jobs' },
      { reply: 'query-jobs', return: [] },
      event('JOB_STATUS_CHANGE', { id: 'a', status: 'concluded' }),
    ]);
    const forA: QmpEvent[] = [];
    const unsubscribe = client.subscribe(['JOB_STATUS_CHANGE'], (e) => forA.push(e), { filter: (e) => e.data['id'] === 'a' });
    await settle();
    unsubscribe();
    await client.execute('query-jobs');
    await transport.finished;
    await settle();
    assert.deepEqual(
      forA.map((e) => e.data),
      [{ id: 'a', status: 'running' }],
    );
    await client.close();
  });

  it('tells subscribers with onClose that the connection ended (at once when it already had)', async () => {
    const { client } = await connected([{ close: true }]);
    const heard = new Promise((resolve) => client.subscribe('*', () => undefined, { onClose: resolve }));
    const error = await client.closed;
    assert.equal(await heard, error);
    const late = await new Promise((resolve) => client.subscribe('STOP', () => undefined, { onClose: resolve }));
    assert.equal(late, error);
  });

  it('waitForEvent resolves with the first matching event after the call', async () => {
    const { client } = await connected([
      { expect: 'job-cancel' },
      event('JOB_STATUS_CHANGE', { id: 'j', status: 'aborting' }),
      { reply: 'job-cancel', return: {} },
      event('JOB_STATUS_CHANGE', { id: 'other', status: 'concluded' }),
      event('JOB_STATUS_CHANGE', { id: 'j', status: 'concluded' }),
    ]);
    const concluded = client.waitForEvent('JOB_STATUS_CHANGE', (e) => e.data['id'] === 'j' && e.data['status'] === 'concluded', 2000);
    await client.execute('job-cancel', { id: 'j' });
    assert.deepEqual((await concluded).data, { id: 'j', status: 'concluded' });
    await client.close();
  });

  it('waitForEvent times out with QmpTimeoutError', async () => {
    const { client } = await connected([]);
    await assert.rejects(client.waitForEvent('BLOCK_JOB_READY', undefined, 20), (err: unknown) => {
      assert.ok(err instanceof QmpTimeoutError);
      assert.match(err.message, /waiting for event BLOCK_JOB_READY: no answer from QEMU within 20 ms/);
      return true;
    });
    await client.close();
  });
});

describe('QMP client: timeouts', () => {
  it('times out one call, drops its late answer, and keeps the connection usable', async () => {
    const { client, transport } = await connected([
      { expect: 'query-block', as: 'slow' },
      { expect: 'query-jobs', as: 'fast' },
      { reply: 'fast', return: ['fast'] },
      { reply: 'slow', return: ['late'] },
      { expect: 'query-status' },
      { reply: 'query-status', return: { running: true } },
    ]);
    // The replay answers `slow` only after the client sent query-jobs, which it sends after the timeout.
    await assert.rejects(client.execute('query-block', undefined, { timeoutMs: 20 }), (err: unknown) => {
      assert.ok(err instanceof QmpTimeoutError);
      assert.equal(err.what, 'query-block');
      assert.equal(err.timeoutMs, 20);
      return true;
    });
    assert.deepEqual(await client.execute('query-jobs'), ['fast']);
    assert.deepEqual(await client.execute('query-status'), { running: true });
    assert.equal(client.state, 'ready');
    assert.deepEqual(transport.mismatches, []);
    await client.close();
  });

  it('uses the client default timeout when a call gives none', async () => {
    const { client } = await connected([{ expect: 'query-block' }], { defaultTimeoutMs: 15 });
    await assert.rejects(client.execute('query-block'), QmpTimeoutError);
    await client.close();
  });
});

describe('QMP client: disconnects', () => {
  it('fails every pending call and event waiter with one and the same error when QEMU goes away', async () => {
    const { client } = await connected([
      { expect: 'block-commit' },
      { expect: 'query-jobs' },
      { expect: 'human-monitor-command' },
      event('JOB_STATUS_CHANGE', { id: 'j', status: 'running' }),
      { close: true },
    ]);
    const waiter = client.waitForEvent('BLOCK_JOB_COMPLETED');
    const calls = [
      client.execute('block-commit', { device: 'd', 'job-id': 'j' }),
      client.execute('query-jobs'),
      client.execute('human-monitor-command', { 'command-line': 'info block' }),
    ];
    const results = await Promise.allSettled([...calls, waiter]);
    const reasons = results.map((r) => (r.status === 'rejected' ? (r.reason as unknown) : r));
    const first = reasons[0];
    assert.ok(first instanceof QmpDisconnectedError, String(first));
    for (const r of reasons) assert.equal(r, first, 'every pending call fails with the one error');
    assert.deepEqual(first.interrupted, ['block-commit', 'query-jobs', 'human-monitor-command']);
    assert.match(first.message, /was closed by QEMU; interrupted: block-commit, query-jobs, human-monitor-command/);
    assert.equal(client.state, 'closed');
    assert.equal(await client.closed, first);
    // Later calls fail at once, naming the earlier cause.
    await assert.rejects(client.execute('query-jobs'), (err: unknown) => {
      assert.ok(err instanceof QmpDisconnectedError);
      assert.match(err.message, /cannot run query-jobs: not connected to QEMU/);
      assert.equal(err.cause, first);
      return true;
    });
    await assert.rejects(client.waitForEvent('STOP'), (err: unknown) => err === first);
  });

  it('close() interrupts pending calls with a "closed by the client" error and is idempotent', async () => {
    const { client } = await connected([{ expect: 'query-block' }]);
    const pending = client.execute('query-block');
    await settle();
    await client.close();
    await client.close();
    await assert.rejects(
      pending,
      (err: unknown) => err instanceof QmpDisconnectedError && err.message.includes('closed by the client; interrupted: query-block'),
    );
  });

  it('disconnects on a reply without id (QEMU could not parse a request), failing pending calls', async () => {
    const { client } = await connected([{ expect: 'query-block' }, { send: { error: { class: 'GenericError', desc: 'JSON parse error, invalid keyword' } } }]);
    await assert.rejects(client.execute('query-block'), (err: unknown) => {
      assert.ok(err instanceof QmpDisconnectedError);
      assert.ok(err.cause instanceof QmpProtocolError);
      assert.match(err.message, /reply without id.*JSON parse error/);
      return true;
    });
    assert.equal(client.state, 'closed');
  });

  it('disconnects on garbage from the socket', async () => {
    const { client } = await connected([{ expect: 'query-block' }, { send: 'this is not json\r\n' }]);
    await assert.rejects(client.execute('query-block'), (err: unknown) => err instanceof QmpDisconnectedError && err.cause instanceof QmpProtocolError);
  });

  it('ignores an answer to an id it never sent (a call that timed out long ago)', async () => {
    const { client } = await connected([{ send: { return: {}, id: 'c999' } }, { expect: 'query-jobs' }, { reply: 'query-jobs', return: [] }]);
    assert.deepEqual(await client.execute('query-jobs'), []);
    await client.close();
  });
});
