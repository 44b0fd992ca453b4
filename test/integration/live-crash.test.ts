/**
 * volchain killed (SIGKILL, VOLCHAIN_CRASH_AT) at every step of live plans while QEMU keeps running and the
 * guest keeps writing; `repair` then finishes each operation live, through the QEMU recorded in the journal.
 * After every repair QEMU's view and the headers agree; at the end every layer holds its data.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { BLOCK, MiB, checkAllLayers, cli, cliJson, cliOk, writePatterns, type Blocks, type TestStorage } from './helpers.js';
import { GuestWriter, assertAgreement, assertImages, diskChain, snapshotInstants, type Window } from './live-helpers.js';
import { startVm, useLiveStorage } from './live-vm.js';

const VMID = 300;
const SIZE = 32 * MiB;
const TOTAL_BLOCKS = SIZE / BLOCK;
const TEST_TIMEOUT = { timeout: 600_000 };

let s: TestStorage;
useLiveStorage((storage) => (s = storage));

interface PlansJson {
  plans: { steps: { kind: string }[] }[];
}

describe('volchain killed during live operations', () => {
  it('a failure before the switch undoes every step on every disk: nothing changed, QEMU and the headers agree', TEST_TIMEOUT, async () => {
    const vmid = 310;
    const volids: string[] = [];
    for (let i = 0; i < 2; i++) volids.push((await cliOk(s, ['alloc', s.id, String(vmid), String(SIZE)])).trim());
    const names = volids.map((v) => v.split('/').pop() ?? '');
    const dir = join(s.path, 'images', String(vmid));
    const live = await startVm(s, volids);
    try {
      const files = async (): Promise<string[]> => (await readdir(dir)).sort();
      const before = await files();
      // Step 4 (opening the new top in QEMU) failing on the second disk, then the transaction failing.
      for (const failAt of [`snapshot-create:4:${names[1] ?? ''}`, 'snapshot-create:5']) {
        const r = await cli(s, ['vm', 'snapshot', String(vmid), 'fx', '--qmp', live.socket], { env: { VOLCHAIN_FAIL_AT: failAt } });
        assert.notEqual(r.code, 0, failAt);
        assert.match(r.stderr, /injected failure.*\(nothing was changed\)/, failAt);
        assert.deepEqual(await files(), before, `${failAt}: the same files`);
        assert.deepEqual((await cliJson<{ pending: unknown[] }>(s, ['status'])).pending, [], `${failAt}: nothing pending`);
        await assertAgreement(
          live.vm.client,
          live.vm.pid,
          dir,
          names.map((volume, i) => ({ id: live.disks[i] as string, volume })),
        );
        const info = await cliJson<{ disks: { problems: string[]; detached: unknown[] }[] }>(s, ['vm', 'attach-info', String(vmid), '--qmp', live.socket]);
        assert.deepEqual(
          info.disks.map((d) => [d.problems, d.detached]),
          [
            [[], []],
            [[], []],
          ],
          `${failAt}: no leftover node in QEMU`,
        );
      }
      await cliOk(s, ['vm', 'snapshot', String(vmid), 'fx', '--qmp', live.socket]);
      await assertAgreement(
        live.vm.client,
        live.vm.pid,
        dir,
        names.map((volume, i) => ({ id: live.disks[i] as string, volume })),
      );
    } finally {
      await live.stop();
    }
    await checkAllLayers(s.path, vmid);
  });

  it('repair finishes every live snapshot and delete interrupted at any step, live, while the guest writes', TEST_TIMEOUT, async () => {
    const volid = (await cliOk(s, ['alloc', s.id, String(VMID), String(SIZE)])).trim();
    const name = volid.split('/').pop() ?? '';
    await writePatterns(s.layer(VMID, name), [{ byte: 0xa0, offset: 0, len: 16 * BLOCK }]);
    const initial: Blocks = new Map(Array.from({ length: 16 }, (_, b) => [b, 0xa0]));
    const dir = join(s.path, 'images', String(VMID));
    const live = await startVm(s, [volid]);
    const writer = new GuestWriter(live, [initial], { blocks: 128, seed: 31, pauseMs: 20 });
    const windows = new Map<string, Window>();
    const snapshots: string[] = [];

    const agree = async (context: string): Promise<void> => {
      const info = await cliJson<{ disks: { problems: string[]; layers: { layer: string }[] }[] }>(s, [
        'vm',
        'attach-info',
        String(VMID),
        '--qmp',
        live.socket,
      ]);
      assert.deepEqual(info.disks[0]?.problems, [], `${context}: attach-info`);
      assert.deepEqual(
        info.disks[0]?.layers.map((l) => l.layer),
        await diskChain(dir, name),
        `${context}: layers`,
      );
      await assertAgreement(live.vm.client, live.vm.pid, dir, [{ id: live.disks[0] as string, volume: name }]);
      const status = await cliJson<{ pending: unknown[] }>(s, ['status']);
      assert.deepEqual(status.pending, [], `${context}: nothing left unfinished`);
    };
    /** Runs the command with VOLCHAIN_CRASH_AT, checks volchain died there, repairs; returns the window. */
    const crashAndRepair = async (args: string[], crashAt: string): Promise<Window> => {
      const { window } = await writer.window(async () => {
        const r = await cli(s, [...args, '--qmp', live.socket], { env: { VOLCHAIN_CRASH_AT: crashAt } });
        assert.equal(r.code, 128, `${args.join(' ')} with VOLCHAIN_CRASH_AT=${crashAt} was killed (exit ${r.code}: ${r.stderr})`);
        const pending = await cliJson<{ pending: { completedSteps: number }[] }>(s, ['status']);
        assert.equal(pending.pending.length, 1, `${crashAt}: one unfinished operation`);
        const out = await cliOk(s, ['repair', volid]);
        assert.match(out, /repaired/);
      });
      writer.check();
      await agree(`after repairing ${args.join(' ')} killed at ${crashAt}`);
      return window;
    };
    const steps = async (args: string[]): Promise<string[]> =>
      (await cliJson<PlansJson>(s, [...args, '--qmp', live.socket, '--dry-run'])).plans[0]?.steps.map((st) => st.kind) ?? [];

    try {
      await agree('at start');
      writer.start();

      // Snapshot create: killed at each of its steps.
      const createSteps = await steps(['snapshot', 'create', volid, 'probe']);
      // (dir storage: layers grow on demand, so no grow/freeze steps)
      assert.deepEqual(createSteps, ['create-overlay', 'rename', 'rename', 'qmp-open', 'qmp-snapshot']);
      for (let i = 1; i <= createSteps.length; i++) {
        for (const moment of i === 5 ? ['started', 'after'] : ['started']) {
          const snap = `c${i}${moment === 'after' ? 'a' : ''}`;
          windows.set(snap, await crashAndRepair(['snapshot', 'create', volid, snap], `snapshot-create:${i}:${moment}`));
          snapshots.push(snap);
          await new Promise((r) => setTimeout(r, 150));
        }
      }

      for (const snap of ['p1', 'p2', 'p3']) {
        windows.set(snap, (await writer.window(() => cliOk(s, ['snapshot', 'create', volid, snap, '--qmp', live.socket]))).window);
        snapshots.push(snap);
        await new Promise((r) => setTimeout(r, 150));
      }

      // Deleting the newest snapshot: an active commit with its pivot, killed at each step (and right after the
      // job became ready, and right after the pivot, with the guest still paused).
      const activeSteps = await steps(['snapshot', 'delete', volid, snapshots[snapshots.length - 1] as string]);
      assert.deepEqual(activeSteps, ['qmp-commit', 'qmp-pivot', 'qmp-resume', 'qmp-close', 'replace']);
      const activeCases = [...activeSteps.map((_, i) => `${i + 1}:started`), '1:after', '2:after', '4:after'];
      for (const c of activeCases) {
        const snap = snapshots.pop() as string;
        await crashAndRepair(['snapshot', 'delete', volid, snap], `snapshot-delete:${c}`);
        windows.delete(snap);
      }
      assert.ok(snapshots.length >= 1);

      // Deleting an older snapshot: its child is a snapshot layer, an intermediate commit.
      windows.set('e1', (await writer.window(() => cliOk(s, ['snapshot', 'create', volid, 'e1', '--qmp', live.socket]))).window);
      await new Promise((r) => setTimeout(r, 300));
      windows.set('e2', (await writer.window(() => cliOk(s, ['snapshot', 'create', volid, 'e2', '--qmp', live.socket]))).window);
      const midSteps = await steps(['snapshot', 'delete', volid, 'e1']);
      assert.deepEqual(midSteps, ['qmp-commit', 'qmp-close', 'replace']);
      await crashAndRepair(['snapshot', 'delete', volid, 'e1'], 'snapshot-delete:1:started');
      windows.delete('e1');
      const first = snapshots.shift() as string;
      await crashAndRepair(['snapshot', 'delete', volid, first], 'snapshot-delete:1:after');
      windows.delete(first);
      await writer.stop();
      await agree('at the end');
    } finally {
      await writer.stop().catch(() => undefined);
      await live.stop();
    }

    const items: Parameters<typeof assertImages>[0][number][] = [
      { path: s.layer(VMID, name), blocks: writer.stateAfter(0, writer.writes.length), totalBlocks: TOTAL_BLOCKS, context: 'current' },
    ];
    for (const [snap, window] of windows) {
      const instants = await snapshotInstants(writer, 0, s.layer(VMID, name, snap), window, TOTAL_BLOCKS, s.root);
      assert.ok(instants.length > 0, `snapshot ${snap} holds the disk at one instant of its window ${window.lo}..${window.hi}`);
      items.push({
        path: s.layer(VMID, name, snap),
        blocks: writer.stateAfter(0, instants[0] as number),
        totalBlocks: TOTAL_BLOCKS,
        context: `snapshot ${snap}`,
      });
    }
    await assertImages(items);
    await checkAllLayers(s.path, VMID);
    const listing = await cliJson<{ snapshots: { name: string }[] }>(s, ['snapshot', 'list', volid]);
    assert.deepEqual(listing.snapshots.map((x) => x.name).sort(), [...windows.keys()].sort());
  });
});
