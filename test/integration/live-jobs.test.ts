/**
 * Live block jobs that do not end well: a stream cancelled halfway from another QMP client, a commit
 * cancelled by Ctrl-C on volchain, and QEMU killed while a commit runs (then `repair`, offline). Each time the
 * chain must stay valid, the snapshot present until the operation is finished, QEMU's view and the headers
 * must agree, and every layer must hold its data (checked with qemu-io after QEMU stopped).
 * VOLCHAIN_JOB_SPEED slows the jobs down enough to interrupt them.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { jobCancel } from '../../src/qmp/index.js';
import { BLOCK, MiB, checkAllLayers, cli, cliFails, cliJson, cliOk, writePatterns, type Blocks, type TestStorage } from './helpers.js';
import type { RunningQemu } from './qemu-harness.js';
import { humanMonitorCommand } from '../../src/qmp/index.js';
import { GuestWriter, assertAgreement, assertImages, diskChain, snapshotInstants, spawnCli, waitForJobProgress, type Window } from './live-helpers.js';
import { startVm, useLiveStorage, type LiveVm } from './live-vm.js';

const SIZE = 32 * MiB;
const TOTAL_BLOCKS = SIZE / BLOCK;
const TEST_TIMEOUT = { timeout: 300_000 };

interface AttachInfoJson {
  disks: { volid: string; open: boolean; layers: { layer: string }[]; problems: string[] }[];
}
interface ListingJson {
  snapshots: { name: string }[];
}

let s: TestStorage;
useLiveStorage((storage) => (s = storage));

const imagesDir = (vmid: number): string => join(s.path, 'images', String(vmid));

/** One disk with `writes` made offline (block ranges of a pattern), snapshots in between as given. */
async function prepareDisk(
  vmid: number,
  stages: readonly ({ byte: number; from: number; count: number } | { snapshot: string })[],
): Promise<{ volid: string; name: string; state: Blocks; snaps: Map<string, Blocks> }> {
  const volid = (await cliOk(s, ['alloc', s.id, String(vmid), String(SIZE)])).trim();
  const name = volid.split('/').pop() ?? '';
  const state: Blocks = new Map();
  const snaps = new Map<string, Blocks>();
  for (const st of stages) {
    if ('snapshot' in st) {
      await cliOk(s, ['snapshot', 'create', volid, st.snapshot]);
      snaps.set(st.snapshot, new Map(state));
    } else {
      await writePatterns(s.layer(vmid, name), [{ byte: st.byte, offset: st.from * BLOCK, len: st.count * BLOCK }]);
      for (let b = st.from; b < st.from + st.count; b++) state.set(b, st.byte);
    }
  }
  return { volid, name, state, snaps };
}

async function agree(live: LiveVm, vmid: number, names: readonly string[], context: string): Promise<void> {
  const info = await cliJson<AttachInfoJson>(s, ['vm', 'attach-info', String(vmid), '--qmp', live.socket]);
  for (const d of info.disks) {
    assert.deepEqual(d.problems, [], `${context}: attach-info of ${d.volid}`);
    assert.deepEqual(
      d.layers.map((l) => l.layer),
      await diskChain(imagesDir(vmid), d.volid.split('/').pop() ?? ''),
      `${context}: layers of ${d.volid}`,
    );
  }
  await assertAgreement(
    live.vm.client,
    live.vm.pid,
    imagesDir(vmid),
    names.map((volume, i) => ({ id: live.disks[i] as string, volume })),
  );
}

async function pendingOf(volid: string): Promise<string[]> {
  const pending = (await cliJson<{ pending: { volid: string; plan: { operation: string } }[] }>(s, ['status'])).pending;
  return pending.filter((p) => p.volid === volid).map((p) => p.plan.operation);
}

async function snapshotNames(volid: string): Promise<string[]> {
  return (await cliJson<ListingJson>(s, ['snapshot', 'list', volid])).snapshots.map((x) => x.name).sort();
}

async function guestFlush(vm: RunningQemu, disk: string): Promise<void> {
  const reply = await humanMonitorCommand(vm.client, `qemu-io -d ${disk} "flush"`);
  assert.equal(reply.trim(), '', `flush: ${reply}`);
}

describe('live jobs interrupted', () => {
  it('a stream cancelled halfway from another QMP client changes nothing; the delete works afterwards', TEST_TIMEOUT, async () => {
    const vmid = 201;
    // s0 holds 4 MiB, the current layer 6 MiB: rebasing the current layer (block-stream of s0's 4 MiB) is cheaper.
    const disk = await prepareDisk(vmid, [{ byte: 0xa0, from: 0, count: 64 }, { snapshot: 's0' }, { byte: 0xb0, from: 64, count: 96 }]);
    const live = await startVm(s, [disk.volid]);
    // Whole clusters only: QEMU 7.2's copy-on-read aborts on half-written clusters with subclusters (see live.ts).
    const writer = new GuestWriter(live, [disk.state], { blocks: 256, seed: 21, span: 2, pauseMs: 25 });
    const env = { VOLCHAIN_LIVE_STREAM: 'always' };
    try {
      writer.start();
      const plan = await cliJson<{ plans: { steps: { kind: string }[] }[] }>(s, ['snapshot', 'delete', disk.volid, 's0', '--qmp', live.socket, '--dry-run']);
      assert.ok(
        plan.plans[0]?.steps.every((st) => st.kind !== 'qmp-stream'),
        'without the override this QEMU gets a commit',
      );
      const forced = spawnCli(s, ['snapshot', 'delete', disk.volid, 's0', '--qmp', live.socket, '--json', '--dry-run'], env);
      assert.ok((await forced.done).stdout.includes('qmp-stream'), 'the override plans a block-stream');

      const del = spawnCli(s, ['snapshot', 'delete', disk.volid, 's0', '--qmp', live.socket, '--json'], { ...env, VOLCHAIN_JOB_SPEED: '1M' });
      const job = await waitForJobProgress(live.vm.client, 0.05, 20_000);
      assert.equal(job.type, 'stream');
      await jobCancel(live.vm.client, job.id);
      const r = await del.done;
      assert.notEqual(r.code, 0, 'the delete fails');
      assert.match(r.stderr, /cancelled.*\(nothing was changed\)/);
      writer.check();
      assert.deepEqual(await snapshotNames(disk.volid), ['s0'], 'the snapshot is still there');
      assert.deepEqual(await pendingOf(disk.volid), [], 'nothing left to repair');
      await agree(live, vmid, [disk.name], 'after the cancelled stream');

      // The same delete, unhindered, goes through.
      await cliOk(s, ['snapshot', 'delete', disk.volid, 's0', '--qmp', live.socket], { env });
      assert.deepEqual(await snapshotNames(disk.volid), []);
      await agree(live, vmid, [disk.name], 'after the delete');
      await writer.stop();
    } finally {
      await writer.stop().catch(() => undefined);
      await live.stop();
    }
    await assertImages([{ path: s.layer(vmid, disk.name), blocks: writer.stateAfter(0, writer.writes.length), totalBlocks: TOTAL_BLOCKS, context: 'current' }]);
    await checkAllLayers(s.path, vmid);
  });

  it('a commit cancelled by Ctrl-C leaves a valid chain and the snapshot; repair finishes the delete live', TEST_TIMEOUT, async () => {
    const vmid = 202;
    const disk = await prepareDisk(vmid, [{ byte: 0xa0, from: 0, count: 16 }, { snapshot: 's0' }, { byte: 0xa1, from: 16, count: 16 }]);
    const live = await startVm(s, [disk.volid]);
    const writer = new GuestWriter(live, [disk.state], { blocks: 128, seed: 22, pauseMs: 50 });
    let s1: Window | undefined;
    try {
      writer.start();
      s1 = (await writer.window(() => cliOk(s, ['snapshot', 'create', disk.volid, 's1', '--qmp', live.socket]))).window;
      // Let the current layer collect a few MiB, so a commit at 1 MiB/s takes seconds.
      while (writer.writes.length < s1.hi + 80) await new Promise((r) => setTimeout(r, 100));
      const del = spawnCli(s, ['snapshot', 'delete', disk.volid, 's1', '--qmp', live.socket], { VOLCHAIN_JOB_SPEED: '1M' });
      const job = await waitForJobProgress(live.vm.client, 0.3);
      assert.equal(job.type, 'commit');
      del.child.kill('SIGINT');
      const r = await del.done;
      assert.notEqual(r.code, 0, 'the delete fails');
      assert.match(r.stderr, /cancelled.*repair/);
      writer.check();

      // The commit wrote part of the current layer into s1's layer: s1 is still listed, the operation unfinished.
      assert.deepEqual(await snapshotNames(disk.volid), ['s0', 's1']);
      assert.deepEqual(await pendingOf(disk.volid), ['snapshot-delete']);
      await cliFails(s, ['snapshot', 'create', disk.volid, 'x1', '--qmp', live.socket], { code: 7, match: /repair/ });
      await agree(live, vmid, [disk.name], 'after the cancelled commit');

      // repair talks to the QEMU the operation ran against (recorded in the journal) and finishes it live.
      const out = await cliOk(s, ['repair', disk.volid]);
      assert.match(out, /QEMU: commit/);
      assert.deepEqual(await snapshotNames(disk.volid), ['s0']);
      assert.deepEqual(await pendingOf(disk.volid), []);
      await agree(live, vmid, [disk.name], 'after repair');
      await writer.stop();
      await agree(live, vmid, [disk.name], 'at the end');
    } finally {
      await writer.stop().catch(() => undefined);
      await live.stop();
    }
    await assertImages([
      { path: s.layer(vmid, disk.name, 's0'), blocks: disk.snaps.get('s0') as Blocks, totalBlocks: TOTAL_BLOCKS, context: 's0' },
      { path: s.layer(vmid, disk.name), blocks: writer.stateAfter(0, writer.writes.length), totalBlocks: TOTAL_BLOCKS, context: 'current' },
    ]);
    await checkAllLayers(s.path, vmid);
  });

  for (const active of [true, false]) {
    it(
      `QEMU killed during ${active ? 'an active' : 'an intermediate'} commit: repair finishes the delete offline, every snapshot keeps its data`,
      TEST_TIMEOUT,
      async () => {
        const vmid = active ? 203 : 204;
        const disk = await prepareDisk(vmid, [{ byte: 0xa0, from: 0, count: 32 }, { snapshot: 's0' }]);
        const live = await startVm(s, [disk.volid]);
        const writer = new GuestWriter(live, [disk.state], { blocks: 128, seed: active ? 23 : 24, pauseMs: 50 });
        const windows = new Map<string, Window>();
        try {
          writer.start();
          windows.set('s1', (await writer.window(() => cliOk(s, ['snapshot', 'create', disk.volid, 's1', '--qmp', live.socket]))).window);
          while (writer.writes.length < (windows.get('s1')?.hi ?? 0) + 80) await new Promise((r) => setTimeout(r, 100));
          if (!active) {
            // s2 on top of s1: deleting s1 commits s2 (a snapshot layer, not the active one) into it.
            windows.set('s2', (await writer.window(() => cliOk(s, ['snapshot', 'create', disk.volid, 's2', '--qmp', live.socket]))).window);
          }
          const del = spawnCli(s, ['snapshot', 'delete', disk.volid, 's1', '--qmp', live.socket], { VOLCHAIN_JOB_SPEED: '512K' });
          const job = await waitForJobProgress(live.vm.client, 0.2);
          assert.equal(job.type, 'commit');
          await writer.stop();
          // What the guest wrote is durable once flushed (as a guest OS does); unflushed qcow2 metadata may be lost.
          await guestFlush(live.vm, live.disks[0] as string);
          live.vm.signal('SIGKILL');
          await live.vm.exited;
          const r = await del.done;
          assert.notEqual(r.code, 0);
          assert.match(r.stderr, /repair/);
        } finally {
          await writer.stop().catch(() => undefined);
          await live.stop();
        }
        const volid = disk.volid;
        assert.deepEqual(await pendingOf(volid), ['snapshot-delete']);
        // QEMU is gone: repair finishes with the offline equivalent (qemu-img commit), then the renames.
        const out = await cliOk(s, ['repair', volid]);
        assert.match(out, /finish snapshot-delete/);
        assert.deepEqual(await snapshotNames(volid), active ? ['s0'] : ['s0', 's2']);

        const items = [
          { path: s.layer(vmid, disk.name, 's0'), blocks: disk.snaps.get('s0') as Blocks, totalBlocks: TOTAL_BLOCKS, context: 's0' },
          { path: s.layer(vmid, disk.name), blocks: writer.stateAfter(0, writer.writes.length), totalBlocks: TOTAL_BLOCKS, context: 'current' },
        ];
        if (!active) {
          const w = windows.get('s2') as Window;
          const instants = await snapshotInstants(writer, 0, s.layer(vmid, disk.name, 's2'), w, TOTAL_BLOCKS, s.root);
          assert.ok(instants.length > 0, 's2 holds the disk at one instant of its window');
          items.push({ path: s.layer(vmid, disk.name, 's2'), blocks: writer.stateAfter(0, instants[0] as number), totalBlocks: TOTAL_BLOCKS, context: 's2' });
        }
        await assertImages(items);
        await checkAllLayers(s.path, vmid);

        // The VM starts again on the repaired chain, and live operations work on it.
        const again = await startVm(s, [volid]);
        try {
          await agree(again, vmid, [disk.name], 'restarted');
          await cliOk(s, ['snapshot', 'create', volid, 's3', '--qmp', again.socket]);
          await agree(again, vmid, [disk.name], 'restarted, after a live snapshot');
          await cliOk(s, ['snapshot', 'delete', volid, 's0', '--qmp', again.socket]);
          await agree(again, vmid, [disk.name], 'restarted, after a live delete');
        } finally {
          await again.stop();
        }
        const r = await cli(s, ['snapshot', 'list', volid]);
        assert.equal(r.code, 0);
        await checkAllLayers(s.path, vmid);
      },
    );
  }
});
