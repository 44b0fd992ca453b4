/**
 * Live operations on a running VM (issue 8), end to end through the CLI: QEMU started from `volchain
 * qemu-args`, a guest writer hammering every disk through HMP qemu-io while snapshots of all disks are taken
 * (one QMP transaction) and deleted (block-stream / block-commit), QEMU's view checked against the headers
 * after every operation, then QEMU stopped and every snapshot's and the current layer's content proven with
 * qemu-io patterns and `qemu-img check`, and offline operations run on the result.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { BLOCK, MiB, checkAllLayers, cliFails, cliJson, cliOk, writePatterns, type Blocks, type TestStorage } from './helpers.js';
import { GuestWriter, assertAgreement, assertImages, diskChain, snapshotInstants, type Window } from './live-helpers.js';
import { startVm, useLiveStorage, type LiveVm } from './live-vm.js';

const VMID = 100;
const SIZE = 32 * MiB;
const TOTAL_BLOCKS = SIZE / BLOCK;
const TEST_TIMEOUT = { timeout: 300_000 };

interface AttachInfoJson {
  running: boolean;
  disks: { volid: string; open: boolean; layers: { layer: string; snapshot: string | null; node: string }[]; problems: string[] }[];
}
interface PlansJson {
  plans: { volid: string; steps: { kind: string }[]; summary: string }[];
}

let s: TestStorage;
useLiveStorage((storage) => (s = storage));

const imagesDir = (): string => join(s.path, 'images', String(VMID));

async function allocDisks(n: number): Promise<{ volids: string[]; names: string[]; initial: Blocks[] }> {
  const volids: string[] = [];
  const initial: Blocks[] = [];
  for (let i = 0; i < n; i++) {
    const volid = (await cliOk(s, ['alloc', s.id, String(VMID), String(SIZE)])).trim();
    volids.push(volid);
    // Data before the VM ever ran: 16 blocks of 0xa0 + disk index.
    const byte = 0xa0 + i;
    const name = volid.split('/').pop() ?? '';
    await writePatterns(s.layer(VMID, name), [{ byte, offset: 0, len: 16 * BLOCK }]);
    initial.push(new Map(Array.from({ length: 16 }, (_, b) => [b, byte])));
  }
  return { volids, names: volids.map((v) => v.split('/').pop() ?? ''), initial };
}

/** Both checks of "QEMU and the headers agree": volchain's own (attach-info) and the independent one. */
async function agree(live: LiveVm, names: readonly string[], context: string): Promise<AttachInfoJson> {
  const info = await cliJson<AttachInfoJson>(s, ['vm', 'attach-info', String(VMID), '--qmp', live.socket]);
  for (const d of info.disks) {
    assert.deepEqual(d.problems, [], `${context}: attach-info of ${d.volid}`);
    assert.ok(d.open, `${context}: ${d.volid} is open`);
    assert.deepEqual(
      d.layers.map((l) => l.layer),
      await diskChain(imagesDir(), d.volid.split('/').pop() ?? ''),
      `${context}: layers of ${d.volid}`,
    );
  }
  await assertAgreement(
    live.vm.client,
    live.vm.pid,
    imagesDir(),
    names.map((volume, i) => ({ id: live.disks[i] as string, volume })),
  );
  return info;
}

describe('live operations on a running VM', () => {
  it('snapshots and deletes snapshots of three disks while the guest writes; every layer holds its data afterwards', TEST_TIMEOUT, async () => {
    const { volids, names, initial } = await allocDisks(3);
    // A snapshot taken offline before the VM starts, deleted live later (the oldest layer).
    await cliOk(s, ['vm', 'snapshot', String(VMID), 'base0']);
    const live = await startVm(s, volids);
    const writer = new GuestWriter(live, initial, { blocks: 128, seed: 8 });
    const windows = new Map<string, Window>([['base0', { lo: 0, hi: 0 }]]);
    const snapshotsOf = names.map(() => new Set(['base0']));
    try {
      await agree(live, names, 'at start');
      writer.start();
      const vmSnapshot = async (snap: string): Promise<void> => {
        const { window } = await writer.window(() => cliOk(s, ['vm', 'snapshot', String(VMID), snap, '--qmp', live.socket]));
        windows.set(snap, window);
        snapshotsOf.forEach((set) => set.add(snap));
        writer.check();
        await agree(live, names, `after snapshot ${snap}`);
      };
      const vmDelete = async (snap: string): Promise<PlansJson> => {
        const plans = await cliJson<PlansJson>(s, ['vm', 'delsnapshot', String(VMID), snap, '--qmp', live.socket]);
        snapshotsOf.forEach((set) => set.delete(snap));
        writer.check();
        await agree(live, names, `after deleting ${snap}`);
        return plans;
      };

      await new Promise((r) => setTimeout(r, 300));
      await vmSnapshot('s1');
      await new Promise((r) => setTimeout(r, 300));
      await vmSnapshot('s2');
      await new Promise((r) => setTimeout(r, 300));
      await vmSnapshot('s3');
      const middle = await vmDelete('s2');
      assert.ok(
        middle.plans.every((p) => p.steps.some((st) => st.kind === 'qmp-stream' || st.kind === 'qmp-commit')),
        'a middle snapshot goes by a block job',
      );
      const oldest = await vmDelete('base0');
      assert.ok(
        oldest.plans.every((p) => p.steps.some((st) => st.kind.startsWith('qmp-'))),
        'the oldest one too',
      );
      await vmSnapshot('s4');
      await new Promise((r) => setTimeout(r, 300));
      const newest = await vmDelete('s4');
      const kinds = newest.plans.flatMap((p) => p.steps.map((st) => st.kind));
      assert.ok(kinds.includes('qmp-commit') || kinds.includes('qmp-stream'), `the newest snapshot goes by a job: ${kinds.join(', ')}`);
      // One volume alone.
      await cliOk(s, ['snapshot', 'delete', volids[1] as string, 's1', '--qmp', live.socket]);
      snapshotsOf[1]?.delete('s1');
      await agree(live, names, 'after deleting s1 of one disk');

      // A socket of a QEMU that has none of the disks open is the wrong one: refused, nothing done offline.
      const stranger = (await cliOk(s, ['alloc', s.id, '101', '1M'])).trim();
      await cliFails(s, ['snapshot', 'create', stranger, 'sx', '--qmp', live.socket], { code: 2, match: /none of the disks of VM 101/ });
      await cliOk(s, ['free', stranger]);

      // Rollback replaces the layer the guest writes into: refused while the VM runs.
      await cliFails(s, ['vm', 'rollback', String(VMID), 's3', '--qmp', live.socket], {
        code: 6,
        match: /running.*: snapshot-rollback of VM \d+'s disks needs the VM stopped/,
      });
      await cliFails(s, ['snapshot', 'rollback', volids[0] as string, 's1', '--qmp', live.socket], {
        code: 6,
        match: /running.*: snapshot-rollback of .* needs the VM stopped/,
      });

      await writer.stop();
      await agree(live, names, 'at the end');
      assert.ok(writer.writes.length >= 50, `the guest wrote throughout (${writer.writes.length} writes)`);
    } catch (err) {
      if (!live.vm.isAlive()) console.error(`QEMU died: ${live.vm.stderr()}`);
      throw err;
    } finally {
      await writer.stop().catch(() => undefined);
      await live.stop();
    }

    // Every snapshot left holds the disk at one instant of its window, the same instant on every disk.
    const items: Parameters<typeof assertImages>[0][number][] = [];
    assert.deepEqual(
      snapshotsOf.map((set) => [...set].sort()),
      [['s1', 's3'], ['s3'], ['s1', 's3']],
    );
    for (const snap of ['s1', 's3']) {
      const window = windows.get(snap) as Window;
      let common: number[] | undefined;
      for (const [d, name] of names.entries()) {
        if (!snapshotsOf[d]?.has(snap)) continue;
        const instants = await snapshotInstants(writer, d, s.layer(VMID, name, snap), window, TOTAL_BLOCKS, s.root);
        assert.ok(instants.length > 0, `snapshot ${snap} of ${name} holds the disk as it was after some write of its window ${window.lo}..${window.hi}`);
        common = common === undefined ? instants : common.filter((j) => instants.includes(j));
        items.push({
          path: s.layer(VMID, name, snap),
          blocks: writer.stateAfter(d, instants[0] as number),
          totalBlocks: TOTAL_BLOCKS,
          context: `snapshot ${snap}`,
        });
      }
      assert.ok(common && common.length > 0, `snapshot ${snap}: one instant for every disk`);
    }
    for (const [d, name] of names.entries()) {
      items.push({ path: s.layer(VMID, name), blocks: writer.stateAfter(d, writer.writes.length), totalBlocks: TOTAL_BLOCKS, context: 'current' });
    }
    await assertImages(items);
    assert.ok((await checkAllLayers(s.path, VMID)) >= 7);

    // Offline operations work on the result.
    await cliOk(s, ['vm', 'snapshot', String(VMID), 'off1']);
    await cliOk(s, ['vm', 'rollback', String(VMID), 's3']);
    const s3 = items.filter((i) => i.context === 'snapshot s3');
    await assertImages(
      names.map((name, d) => ({
        path: s.layer(VMID, name),
        blocks: s3[d]?.blocks ?? new Map(),
        totalBlocks: TOTAL_BLOCKS,
        context: 'current after rollback to s3',
      })),
    );
    await cliOk(s, ['vm', 'delsnapshot', String(VMID), 's3']);
    await cliOk(s, ['vm', 'delsnapshot', String(VMID), 'off1']);
    await assertImages(
      names.map((name, d) => ({
        path: s.layer(VMID, name),
        blocks: s3[d]?.blocks ?? new Map(),
        totalBlocks: TOTAL_BLOCKS,
        context: 'current after deleting s3 and off1',
      })),
    );
    await checkAllLayers(s.path, VMID);
    for (const v of volids) await cliOk(s, ['free', v]);
  });
});
