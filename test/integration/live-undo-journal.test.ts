/**
 * A live operation on a VM's disks that fails before its point of no return is walked back on every disk,
 * and that undo is journaled as offline (engine/run/undo.ts): volchain killed (VOLCHAIN_CRASH_AT=...:undo-*)
 * in the middle of it leaves every disk's record saying "undoing", and `repair` finishes the undo, live
 * through the QEMU that still runs, instead of redoing the operation forward (which would switch QEMU onto a
 * new top on one disk and fail on the other, whose new node the undo had closed already).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { BLOCK, MiB, assertPattern, checkAllLayers, cli, cliJson, cliOk, writePattern, type TestStorage } from './helpers.js';
import { assertAgreement } from './live-helpers.js';
import { startVm, useLiveStorage } from './live-vm.js';

const VMID = 330;
const SIZE = 32 * MiB;
const TEST_TIMEOUT = { timeout: 600_000 };

let s: TestStorage;
useLiveStorage((storage) => (s = storage));

interface Pending {
  pending: { plan: { volid: string }; completedSteps: number; undo?: { failedStep: number; undone: number } }[];
}

describe('volchain killed while undoing a live operation', () => {
  it('repair finishes the undo on every disk: nothing changed, QEMU and the headers agree, the data is intact', TEST_TIMEOUT, async () => {
    const volids: string[] = [];
    for (let i = 0; i < 2; i++) volids.push((await cliOk(s, ['alloc', s.id, String(VMID), String(SIZE)])).trim());
    const names = volids.map((v) => v.split('/').pop() ?? '');
    const [n0, n1] = names as [string, string];
    for (const [i, name] of names.entries()) await writePattern(s.layer(VMID, name), 0xa0 + i, 0, 16 * BLOCK);
    const dir = join(s.path, 'images', String(VMID));
    const files = async (): Promise<string[]> => (await readdir(dir)).sort();
    const before = await files();
    const live = await startVm(s, volids);
    try {
      const plans = await cliJson<{ plans: { steps: { kind: string }[] }[] }>(s, ['vm', 'snapshot', String(VMID), 'probe', '--qmp', live.socket, '--dry-run']);
      // (dir storage: layers grow on demand, so no grow/freeze steps) Steps 1-4 of each disk are undone when
      // step 5 fails: 4 closes the new top's nodes in QEMU, 3 and 2 rename back, 1 removes the new top.
      assert.deepEqual(
        plans.plans.map((p) => p.steps.map((st) => st.kind)),
        [0, 1].map(() => ['create-overlay', 'rename', 'rename', 'qmp-open', 'qmp-snapshot']),
      );
      const cases = [
        // The switch fails on both disks; killed in the middle of the first disk's undo (the disks are undone
        // last first), its renames half walked back, the other disk's undo not begun.
        { failAt: 'snapshot-create:5', crashAt: `snapshot-create:2:undo-before:${n1}` },
        // Killed after QEMU closed the new top of the disk undone second: the other disk is undone already.
        { failAt: 'snapshot-create:5', crashAt: `snapshot-create:4:undo-after:${n0}` },
        // Opening the new top fails on the second disk; killed right after its first rename was walked back.
        { failAt: `snapshot-create:4:${n1}`, crashAt: `snapshot-create:3:undo-after:${n1}` },
      ];
      for (const { failAt, crashAt } of cases) {
        const context = `failed at ${failAt}, killed at ${crashAt}`;
        const r = await cli(s, ['vm', 'snapshot', String(VMID), 'fx', '--qmp', live.socket], { env: { VOLCHAIN_FAIL_AT: failAt, VOLCHAIN_CRASH_AT: crashAt } });
        assert.equal(r.code, 128, `${context}: volchain was expected to die during the undo (exit ${r.code}: ${r.stderr})`);
        const pending = await cliJson<Pending>(s, ['status']);
        assert.deepEqual(
          pending.pending.map((p) => [p.plan.volid, p.undo !== undefined]).sort(),
          volids.map((v) => [v, true]).sort(),
          `${context}: every disk's record says its steps are being undone`,
        );
        const dry = await cliOk(s, ['repair', '--all', '--dry-run']);
        assert.match(dry, /finish undoing snapshot-create/, `${context}: repair says it finishes the undo`);
        await cliOk(s, ['repair', '--all']);
        assert.deepEqual(await files(), before, `${context}: the same files as before`);
        assert.deepEqual((await cliJson<Pending>(s, ['status'])).pending, [], `${context}: nothing pending`);
        const info = await cliJson<{ disks: { problems: string[]; detached: unknown[] }[] }>(s, ['vm', 'attach-info', String(VMID), '--qmp', live.socket]);
        assert.deepEqual(
          info.disks.map((d) => [d.problems, d.detached]),
          names.map(() => [[], []]),
          `${context}: no leftover node in QEMU`,
        );
        await assertAgreement(
          live.vm.client,
          live.vm.pid,
          dir,
          names.map((volume, i) => ({ id: live.disks[i] as string, volume })),
        );
      }
      // The VM's disks still take snapshots.
      await cliOk(s, ['vm', 'snapshot', String(VMID), 'fx', '--qmp', live.socket]);
    } finally {
      await live.stop();
    }
    for (const [i, name] of names.entries()) {
      await assertPattern(s.layer(VMID, name, 'fx'), 0xa0 + i, 0, 16 * BLOCK);
      await assertPattern(s.layer(VMID, name), 0xa0 + i, 0, 16 * BLOCK);
    }
    await checkAllLayers(s.path, VMID);
  });
});
