/**
 * The QMP client, the vocabulary and the -blockdev definitions against a real QEMU (7.2 here): negotiation,
 * the node graph from blockdev.ts, a live snapshot of two disks in one transaction, an active commit while
 * the guest keeps writing, a stream that writes the exact backing name, cancelled jobs leaving valid
 * chains, and QEMU dying with commands in flight. Every data claim is checked after QEMU has exited, with
 * qemu-io/qemu-img on the files: what matters is what the layers hold, not what QEMU said.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../../src/tools/runner.js';
import {
  QmpCommandError,
  QmpDisconnectedError,
  QmpJobError,
  blockCommit,
  blockStream,
  blockdevAdd,
  blockdevDel,
  chainBlockdevs,
  cont,
  jobCancel,
  overlayBlockdevs,
  queryBlock,
  queryJobs,
  queryNamedBlockNodes,
  reportedPath,
  snapshotAction,
  stop,
  transaction,
  waitForJob,
  type ChainLayerSpec,
  type JobProgress,
} from '../../src/qmp/index.js';
import { guestRead, guestWrite, runningQemuPids, startQemu, withQemu, type RunningQemu } from './qemu-harness.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const STORAGE = 'tst';
const TEST_TIMEOUT = { timeout: 120_000 };

let work: string;
before(async () => {
  work = await mkdtemp(join(tmpdir(), 'volchain-qmp-live-'));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
  assert.deepEqual(runningQemuPids(), [], 'every QEMU started by these tests has exited');
});

// ---- images, offline ------------------------------------------------------------------------------------

const hex = (b: number): string => `0x${b.toString(16).padStart(2, '0')}`;
const p = (name: string): string => join(work, name);
const layer = (name: string): ChainLayerSpec => ({ name, path: p(name), format: 'qcow2' });

/** A qcow2 image the way volchain creates them; `backing` is the exact name written into the header. */
async function create(name: string, sizeBytes: number, backing?: string): Promise<void> {
  const args = ['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=128k,extended_l2=on'];
  if (backing !== undefined) args.push('-F', 'qcow2', '-b', backing, '-u');
  await run('qemu-img', [...args, p(name), String(sizeBytes)]);
}

async function offlineWrite(name: string, pattern: number, offset: number, len: number): Promise<void> {
  const r = await run('qemu-io', ['-f', 'qcow2', '-c', `write -P ${hex(pattern)} ${offset} ${len}`, p(name)]);
  assert.match(r.stdout, /^wrote /m, r.stdout + r.stderr);
}

type Range = readonly [pattern: number, offset: number, len: number];

/**
 * Reads every range of image `name` read-only, through its backing chain (as the header names it), or
 * `alone` (backing null: what this layer itself holds; unallocated reads as zero), and fails naming the
 * ranges that hold other data.
 */
async function assertData(name: string, ranges: readonly Range[], opts: { alone?: boolean } = {}): Promise<void> {
  const target = opts.alone ? alone(name) : p(name);
  const args = ['-r', ...(opts.alone ? [] : ['-f', 'qcow2'])];
  for (const [pattern, off, len] of ranges) args.push('-c', `read -P ${hex(pattern)} ${off} ${len}`);
  // qemu-io exits 1 when a pattern differs: the output says where.
  const r = await run('qemu-io', [...args, target], { okExitCodes: [1] });
  const out = r.stdout + r.stderr;
  const bad = [...out.matchAll(/Pattern verification failed at offset (\d+)/g)].map((m) => {
    const off = Number(m[1]);
    const range = ranges.find(([, o, l]) => off >= o && off < o + l);
    return `${off} (expected ${hex(range?.[0] ?? -1)})`;
  });
  assert.equal(bad.length, 0, `${name}${opts.alone ? ' alone' : ''} holds other data at ${bad.join(', ')}`);
  assert.equal((out.match(/^read \d+\/\d+ bytes/gm) ?? []).length, ranges.length, `every read of ${name} completed: ${out}`);
}

async function headerBacking(name: string): Promise<string | undefined> {
  const r = await run('qemu-img', ['info', '--output=json', '-f', 'qcow2', p(name)]);
  return (JSON.parse(r.stdout) as { 'backing-filename'?: string })['backing-filename'];
}

const alone = (name: string): string => `json:${JSON.stringify({ driver: 'qcow2', file: { driver: 'file', filename: p(name) }, backing: null })}`;

/** qemu-img check of each image (without opening its backing file: a layer's own structure is checked). */
async function assertClean(...names: string[]): Promise<void> {
  for (const n of names) await run('qemu-img', ['check', '-q', alone(n)]);
}

/** Guest bytes image `name` itself holds (qemu-img map entries at depth 0 with data). */
async function ownDataBytes(name: string): Promise<number> {
  const r = await run('qemu-img', ['map', '--output=json', '-f', 'qcow2', p(name)]);
  const entries = JSON.parse(r.stdout) as { length: number; depth: number; data: boolean }[];
  return entries.filter((e) => e.depth === 0 && e.data).reduce((s, e) => s + e.length, 0);
}

const nodeByName = async (vm: RunningQemu, name: string) => (await queryNamedBlockNodes(vm.client)).find((n) => n['node-name'] === name);

// ---- tests ----------------------------------------------------------------------------------------------

describe('QMP against QEMU', () => {
  it("negotiates, and QEMU opens the chain exactly as blockdev.ts defines it, ignoring the header's backing name", TEST_TIMEOUT, async () => {
    await create('n-base.qcow2', 8 * MiB);
    await offlineWrite('n-base.qcow2', 0xa1, 0, MiB);
    await create('n-mid.qcow2', 8 * MiB, 'n-base.qcow2');
    await offlineWrite('n-mid.qcow2', 0xb2, MiB, MiB);
    // The top's header names a file that does not exist: only the explicit backing link can make this work.
    await create('n-top.qcow2', 8 * MiB, 'no-such-layer.qcow2');
    const chain = chainBlockdevs(STORAGE, [layer('n-top.qcow2'), layer('n-mid.qcow2'), layer('n-base.qcow2')]);

    await withQemu({ blockdevs: chain.nodes }, async (vm) => {
      assert.equal(vm.client.state, 'ready');
      assert.equal(vm.client.greeting?.QMP.version.qemu.major, 7);

      const nodes = await queryNamedBlockNodes(vm.client);
      const byName = new Map(nodes.map((n) => [n['node-name'], n]));
      assert.deepEqual(new Set(byName.keys()), new Set(chain.nodes.map((n) => n['node-name'])), 'exactly our nodes, no auto-named ones');
      for (const [i, name] of ['n-top.qcow2', 'n-mid.qcow2', 'n-base.qcow2'].entries()) {
        const names = chain.byLayer.get(name);
        assert.ok(names);
        const fmt = byName.get(names.format);
        const proto = byName.get(names.protocol);
        assert.equal(fmt?.drv, 'qcow2');
        assert.equal(fmt?.ro, i > 0, `${name}: read-only below the top`);
        assert.equal(fmt?.detect_zeroes, 'unmap');
        assert.equal(proto?.drv, 'file');
        assert.equal(proto?.file, p(name), 'the protocol node reports the path it opened');
      }
      // QEMU reports the backing *node's* file (json: form, as that node has an explicit backing too), not the
      // name in the header; and the top itself as a json: pseudo-filename.
      assert.equal(reportedPath(byName.get(chain.top)?.file ?? ''), p('n-top.qcow2'));
      assert.equal(reportedPath(byName.get(chain.top)?.backing_file ?? ''), p('n-mid.qcow2'));

      await guestWrite(vm, chain.top, 0xc3, 2 * MiB, 64 * KiB);
      await guestRead(vm, chain.top, 0xa1, 0, MiB);
      await guestRead(vm, chain.top, 0xb2, MiB, MiB);
      await guestRead(vm, chain.top, 0xc3, 2 * MiB, 64 * KiB);
      await assert.rejects(guestRead(vm, chain.top, 0xff, 0, 64 * KiB), /other data than 0xff/);
    });

    assert.equal(await headerBacking('n-top.qcow2'), 'no-such-layer.qcow2', 'QEMU never rewrote the header');
    await assertData(
      'n-top.qcow2',
      [
        [0xc3, 2 * MiB, 64 * KiB],
        [0x00, 0, 2 * MiB],
      ],
      { alone: true },
    );
    await assertData('n-mid.qcow2', [
      [0xa1, 0, MiB],
      [0xb2, MiB, MiB],
      [0x00, 2 * MiB, 64 * KiB],
    ]);
    await assertClean('n-top.qcow2', 'n-mid.qcow2', 'n-base.qcow2');
  });

  it('this QEMU knows every command and argument commands.ts sends', TEST_TIMEOUT, async () => {
    const used: Record<string, string[]> = {
      'query-block': [],
      'query-named-block-nodes': ['flat'],
      'query-jobs': [],
      'blockdev-add': ['driver', 'node-name', 'read-only', 'auto-read-only', 'discard', 'detect-zeroes', 'cache'],
      'blockdev-del': ['node-name'],
      'blockdev-snapshot': ['node', 'overlay'],
      transaction: ['actions', 'properties'],
      'block-stream': ['job-id', 'device', 'base-node', 'backing-file', 'speed', 'on-error', 'filter-node-name', 'auto-finalize', 'auto-dismiss'],
      'block-commit': ['job-id', 'device', 'top-node', 'base-node', 'backing-file', 'speed', 'on-error', 'filter-node-name', 'auto-finalize', 'auto-dismiss'],
      'job-complete': ['id'],
      'job-cancel': ['id'],
      'job-dismiss': ['id'],
      'job-finalize': ['id'],
      stop: [],
      cont: [],
      'human-monitor-command': ['command-line', 'cpu-index'],
      quit: [],
    };
    await withQemu({}, async (vm) => {
      interface Entity {
        name: string;
        'meta-type': string;
        'arg-type'?: string;
        members?: { name: string }[];
        base?: string;
      }
      const schema = await vm.client.execute<Entity[]>('query-qmp-schema');
      const byName = new Map(schema.map((e) => [e.name, e]));
      for (const [command, args] of Object.entries(used)) {
        const cmd = byName.get(command);
        assert.equal(cmd?.['meta-type'], 'command', `QEMU has no command ${command}`);
        const argType = byName.get(cmd['arg-type'] ?? '');
        const members = new Set((argType?.members ?? []).map((m) => m.name));
        for (const a of args) assert.ok(members.has(a), `${command} has no argument ${a} in this QEMU`);
      }
    });
  });

  it('a live external snapshot of two disks in one transaction: old tops keep the past, overlays take the future', TEST_TIMEOUT, async () => {
    await create('t-a.qcow2', 16 * MiB);
    await create('t-b.qcow2', 16 * MiB);
    const A = chainBlockdevs(STORAGE, [layer('t-a.qcow2')]);
    const B = chainBlockdevs(STORAGE, [layer('t-b.qcow2')]);
    // The new tops are created first, their headers naming the old tops (blockdev-snapshot does not write it).
    await create('t-a-ov.qcow2', 16 * MiB, 't-a.qcow2');
    await create('t-b-ov.qcow2', 16 * MiB, 't-b.qcow2');
    const ovA = overlayBlockdevs(STORAGE, { name: 't-a-ov.qcow2', path: p('t-a-ov.qcow2') });
    const ovB = overlayBlockdevs(STORAGE, { name: 't-b-ov.qcow2', path: p('t-b-ov.qcow2') });

    await withQemu(
      {
        machine: 'q35',
        blockdevs: [...A.nodes, ...B.nodes],
        disks: [
          { id: 'disk-a', node: A.top },
          { id: 'disk-b', node: B.top },
        ],
      },
      async (vm) => {
        for (const d of ['disk-a', 'disk-b']) await guestWrite(vm, { qdev: d }, 0xa1, 0, 256 * KiB);
        for (const n of [...ovA.nodes, ...ovB.nodes]) await blockdevAdd(vm.client, n);

        // All or nothing: a transaction whose second action fails changes nothing.
        await assert.rejects(transaction(vm.client, [snapshotAction(A.top, ovA.names.format), { type: 'abort', data: {} }]), QmpCommandError);
        const onDevices = async () => new Map((await queryBlock(vm.client)).map((b) => [b.qdev, b.inserted?.['node-name']]));
        assert.deepEqual(
          await onDevices(),
          new Map([
            ['disk-a', A.top],
            ['disk-b', B.top],
          ]),
        );

        await stop(vm.client); // the guest is paused for the instant of the snapshot, as a management tool might do
        await transaction(vm.client, [snapshotAction(A.top, ovA.names.format), snapshotAction(B.top, ovB.names.format)]);
        await cont(vm.client);
        assert.deepEqual(
          await onDevices(),
          new Map([
            ['disk-a', ovA.names.format],
            ['disk-b', ovB.names.format],
          ]),
        );
        assert.equal((await nodeByName(vm, A.top))?.ro, true, 'QEMU reopens the old top read-only');

        for (const d of ['disk-a', 'disk-b']) {
          await guestWrite(vm, { qdev: d }, 0xb2, 128 * KiB, 128 * KiB);
          await guestRead(vm, { qdev: d }, 0xa1, 0, 128 * KiB);
          await guestRead(vm, { qdev: d }, 0xb2, 128 * KiB, 128 * KiB);
        }
      },
    );

    for (const d of ['a', 'b']) {
      await assertData(`t-${d}.qcow2`, [[0xa1, 0, 256 * KiB]]); // the whole pre-snapshot state, overwritten range included
      await assertData(
        `t-${d}-ov.qcow2`,
        [
          [0xb2, 128 * KiB, 128 * KiB],
          [0x00, 0, 128 * KiB],
        ],
        { alone: true },
      );
      await assertData(`t-${d}-ov.qcow2`, [
        [0xa1, 0, 128 * KiB],
        [0xb2, 128 * KiB, 128 * KiB],
      ]);
      assert.equal(await headerBacking(`t-${d}-ov.qcow2`), `t-${d}.qcow2`);
      await assertClean(`t-${d}.qcow2`, `t-${d}-ov.qcow2`);
    }
  });

  it('commits the active layer with job-complete while the guest keeps writing', TEST_TIMEOUT, async () => {
    await create('c-base.qcow2', 32 * MiB);
    await offlineWrite('c-base.qcow2', 0xa1, 0, 8 * MiB);
    await create('c-top.qcow2', 32 * MiB, 'c-base.qcow2');
    await offlineWrite('c-top.qcow2', 0xb2, 8 * MiB, 8 * MiB);
    const chain = chainBlockdevs(STORAGE, [layer('c-top.qcow2'), layer('c-base.qcow2')]);
    const base = chain.byLayer.get('c-base.qcow2');
    const top = chain.byLayer.get('c-top.qcow2');
    assert.ok(base && top);
    const written: Range[] = [];

    await withQemu({ machine: 'q35', blockdevs: chain.nodes, disks: [{ id: 'disk0', node: chain.top }] }, async (vm) => {
      const statuses: string[] = [];
      let status = '';
      const job = waitForJob(vm.client, 'commit0', {
        // 4 MiB/s over 8 MiB: about two seconds of the job running while the guest writes.
        start: () => blockCommit(vm.client, { jobId: 'commit0', device: chain.top, baseNode: base.format, speed: 4 * MiB }),
        pollIntervalMs: 100,
        onProgress: (pr: JobProgress) => {
          status = pr.status;
          if (statuses[statuses.length - 1] !== pr.status) statuses.push(pr.status);
        },
      });
      let settled = false;
      void job.then(
        () => (settled = true),
        () => (settled = true),
      );
      let writesWhileRunning = 0;
      for (let i = 0; !settled && i < 60; i++) {
        const running = status === 'running';
        // New data past the committed range, and overwrites of data the job is copying.
        await guestWrite(vm, { qdev: 'disk0' }, 0xc0 + (i % 16), 16 * MiB + i * 64 * KiB, 64 * KiB);
        written.push([0xc0 + (i % 16), 16 * MiB + i * 64 * KiB, 64 * KiB]);
        await guestWrite(vm, { qdev: 'disk0' }, 0xd0 + (i % 16), 8 * MiB + i * 128 * KiB, 64 * KiB);
        written.push([0xd0 + (i % 16), 8 * MiB + i * 128 * KiB, 64 * KiB]);
        if (running) writesWhileRunning++;
        await new Promise((r) => setTimeout(r, 50));
      }
      const result = await job;
      assert.equal(result.type, 'commit');
      assert.ok(writesWhileRunning >= 3, `the guest wrote while the job ran (${writesWhileRunning} times)`);
      assert.ok(statuses.includes('ready'), `statuses: ${statuses.join(' → ')}`);

      const disk = (await queryBlock(vm.client)).find((b) => b.qdev === 'disk0');
      assert.equal(disk?.inserted?.['node-name'], base.format, 'the disk now runs on the base');
      // Nothing uses the old top any more: it can leave the graph.
      await blockdevDel(vm.client, top.format);
      await blockdevDel(vm.client, top.protocol);
      await guestWrite(vm, { qdev: 'disk0' }, 0xee, 24 * MiB, 64 * KiB);
      written.push([0xee, 24 * MiB, 64 * KiB]);
    });

    // The base alone holds everything: its own data, the top's, and every write made during the job.
    const expected = new Map<number, number>(); // 64 KiB block → pattern, later writes win
    const put = ([pat, off, len]: Range): void => {
      for (let o = off; o < off + len; o += 64 * KiB) expected.set(o, pat);
    };
    put([0xa1, 0, 8 * MiB]);
    put([0xb2, 8 * MiB, 8 * MiB]);
    written.forEach(put);
    await assertData(
      'c-base.qcow2',
      [...expected].map(([off, pat]) => [pat, off, 64 * KiB] as const),
    );
    await assertClean('c-base.qcow2');
  });

  it('streams into the top with backing-file: the header gets exactly the relative name, the middle layer is free', TEST_TIMEOUT, async () => {
    await create('s-a.qcow2', 8 * MiB);
    await offlineWrite('s-a.qcow2', 0xa1, 0, MiB);
    await create('s-b.qcow2', 8 * MiB, 's-a.qcow2');
    await offlineWrite('s-b.qcow2', 0xb2, MiB, MiB);
    await create('s-c.qcow2', 8 * MiB, 's-b.qcow2');
    await offlineWrite('s-c.qcow2', 0xc3, 2 * MiB, MiB);
    const chain = chainBlockdevs(STORAGE, [layer('s-c.qcow2'), layer('s-b.qcow2'), layer('s-a.qcow2')]);
    const a = chain.byLayer.get('s-a.qcow2');
    const b = chain.byLayer.get('s-b.qcow2');
    assert.ok(a && b);

    await withQemu({ blockdevs: chain.nodes }, async (vm) => {
      const r = await waitForJob(vm.client, 'stream0', {
        start: () => blockStream(vm.client, { jobId: 'stream0', device: chain.top, baseNode: a.format, backingFile: 's-a.qcow2' }),
      });
      assert.equal(r.type, 'stream');
      assert.equal(reportedPath((await nodeByName(vm, chain.top))?.backing_file ?? ''), p('s-a.qcow2'), 'QEMU links the top to the base node');
      await blockdevDel(vm.client, b.format);
      await blockdevDel(vm.client, b.protocol);
      assert.deepEqual(await queryJobs(vm.client), []);
    });

    assert.equal(await headerBacking('s-c.qcow2'), 's-a.qcow2', 'the exact relative name, not an absolute path');
    await rm(p('s-b.qcow2')); // the chain no longer needs it
    await assertData('s-c.qcow2', [
      [0xa1, 0, MiB],
      [0xb2, MiB, MiB],
      [0xc3, 2 * MiB, MiB],
    ]);
    await assertData(
      's-c.qcow2',
      [
        [0x00, 0, MiB],
        [0xb2, MiB, MiB],
        [0xc3, 2 * MiB, MiB],
      ],
      { alone: true },
    );
    await assertClean('s-c.qcow2', 's-a.qcow2');
  });

  it('jobs cancelled halfway leave a valid, unchanged chain', TEST_TIMEOUT, async () => {
    await create('x-a.qcow2', 32 * MiB);
    await offlineWrite('x-a.qcow2', 0xa1, 0, 16 * MiB);
    await create('x-b.qcow2', 32 * MiB, 'x-a.qcow2');
    await offlineWrite('x-b.qcow2', 0xb2, 0, 16 * MiB);
    await create('x-c.qcow2', 32 * MiB, 'x-b.qcow2');
    await offlineWrite('x-c.qcow2', 0xc3, 16 * MiB, MiB);
    const chain = chainBlockdevs(STORAGE, [layer('x-c.qcow2'), layer('x-b.qcow2'), layer('x-a.qcow2')]);
    const a = chain.byLayer.get('x-a.qcow2');
    const b = chain.byLayer.get('x-b.qcow2');
    assert.ok(a && b);
    const cOwnBefore = await ownDataBytes('x-c.qcow2');

    /** Runs a rate-limited job and cancels it once it has copied at least 2 MiB but not everything. */
    const cancelHalfway = async (vm: RunningQemu, jobId: string, start: () => Promise<void>): Promise<JobProgress[]> => {
      const seen: JobProgress[] = [];
      let cancelling = false;
      await assert.rejects(
        waitForJob(vm.client, jobId, {
          start,
          pollIntervalMs: 50,
          onProgress: (pr) => {
            seen.push(pr);
            if (!cancelling && pr.status === 'running' && pr.current >= 2 * MiB && pr.current < pr.total) {
              cancelling = true;
              // Losing the race against the job's own end ("Job not found") shows up as a resolved job below.
              jobCancel(vm.client, jobId).catch(() => undefined);
            }
          },
        }),
        (err: unknown) => err instanceof QmpJobError && err.jobOutcome === 'cancelled',
      );
      return seen;
    };

    await withQemu({ blockdevs: chain.nodes }, async (vm) => {
      await cancelHalfway(vm, 'stream-x', () =>
        blockStream(vm.client, { jobId: 'stream-x', device: chain.top, baseNode: a.format, backingFile: 'x-a.qcow2', speed: 4 * MiB }),
      );
      assert.equal(reportedPath((await nodeByName(vm, chain.top))?.backing_file ?? ''), p('x-b.qcow2'), 'the top still sits on the middle layer');
      await guestRead(vm, chain.top, 0xb2, 0, 16 * MiB);

      // Commit of the middle layer into the base (not the active layer: it would end by itself).
      await cancelHalfway(vm, 'commit-x', () =>
        blockCommit(vm.client, { jobId: 'commit-x', device: chain.top, topNode: b.format, baseNode: a.format, backingFile: 'x-a.qcow2', speed: 4 * MiB }),
      );
      assert.equal(reportedPath((await nodeByName(vm, chain.top))?.backing_file ?? ''), p('x-b.qcow2'));
      assert.equal((await nodeByName(vm, a.format))?.ro, true, 'QEMU put the base back to read-only');
      await guestRead(vm, chain.top, 0xb2, 0, 16 * MiB);
      await guestRead(vm, chain.top, 0xc3, 16 * MiB, MiB);
    });

    assert.equal(await headerBacking('x-c.qcow2'), 'x-b.qcow2');
    assert.equal(await headerBacking('x-b.qcow2'), 'x-a.qcow2');
    await assertClean('x-a.qcow2', 'x-b.qcow2', 'x-c.qcow2');
    await assertData('x-c.qcow2', [
      [0xb2, 0, 16 * MiB],
      [0xc3, 16 * MiB, MiB],
    ]);
    const copied = (await ownDataBytes('x-c.qcow2')) - cOwnBefore;
    assert.ok(copied > 0 && copied < 16 * MiB, `the stream had copied part of the middle layer into the top (${copied} bytes)`);
    // The cancelled commit wrote part of x-b's data into x-a: the chain reads right, but x-a alone no longer
    // holds only its own state. (Why volchain never commits into a snapshot layer that must keep its state.)
    const stillA = await run('qemu-io', ['-r', '-f', 'qcow2', '-c', `read -P 0xa1 0 ${16 * MiB}`, p('x-a.qcow2')], { okExitCodes: [1] });
    assert.match(stillA.stdout, /Pattern verification failed/, 'a cancelled commit leaves copied data in its base');
  });

  it('QEMU killed mid-command: every pending call and waiter fails with the one disconnect error', TEST_TIMEOUT, async () => {
    await create('k.qcow2', 8 * MiB);
    const chain = chainBlockdevs(STORAGE, [layer('k.qcow2')]);
    const vm = await startQemu({ blockdevs: chain.nodes });
    try {
      const c = vm.client;
      // Frozen, QEMU reads nothing: the commands are certainly in flight when it dies.
      vm.signal('SIGSTOP');
      const waiter = c.waitForEvent('BLOCK_JOB_COMPLETED');
      const calls = [queryBlock(c), queryJobs(c), c.execute('human-monitor-command', { 'command-line': 'info block' })];
      await new Promise((r) => setTimeout(r, 50));
      vm.signal('SIGKILL');
      const results = await Promise.allSettled([...calls, waiter]);
      const reasons = results.map((r) => (r.status === 'rejected' ? (r.reason as unknown) : r));
      const first = reasons[0];
      assert.ok(first instanceof QmpDisconnectedError, String(first));
      for (const r of reasons) assert.equal(r, first);
      assert.deepEqual(first.interrupted, ['query-block', 'query-jobs', 'human-monitor-command']);
      assert.equal(c.state, 'closed');
      assert.equal((await vm.exited).signal, 'SIGKILL');
      await assert.rejects(queryJobs(c), QmpDisconnectedError);
    } finally {
      await vm.stop();
    }
    assert.equal(vm.isAlive(), false);
  });
});
