/**
 * Operation journals on the VG itself (backends/lvm/journal.ts): a crash on one host is seen and finished
 * from another that shares nothing with it but the VG. The "other host" here is this test process with
 * its own state directory, after the crashed host's LVs were deactivated, as they are after it died.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BIN, checkClean, runCommand } from '../integration/helpers.js';
import { BLOCK, MiB, requireVg, VG, cleanupState, lv, lvmStorage, lvs, mustLv, qemuIo, removeVmLvs, shOk } from './helpers.js';

const VMIDS = [7801, 7802, 7803];
after(async () => {
  if (VG === '') return;
  await removeVmLvs(VMIDS);
  const journals = (await lvs()).filter((r) => VMIDS.some((v) => r.name === `volchain-journal-${v}`)).map((r) => `${VG}/${r.name}`);
  if (journals.length > 0) await shOk('lvremove', ['-f', ...journals]);
  await cleanupState();
});

/** The CLI as another host would run it: its own state directory (locks, fallback journal), killed at `crashAt`. */
async function crashOnOtherHost(cfg: string, args: readonly string[], crashAt: string): Promise<void> {
  const state = await mkdtemp(join(tmpdir(), 'volchain-host-a-'));
  try {
    const r = await runCommand(process.execPath, [BIN, '--config', cfg, ...args], {
      env: { ...process.env, LC_ALL: 'C', VOLCHAIN_STATE_DIR: state, VOLCHAIN_CRASH_AT: crashAt },
    });
    assert.equal(r.code, 128, `the CLI should have been killed at ${crashAt}: exit ${r.code} ${r.stderr}`);
  } finally {
    await rm(state, { recursive: true, force: true }); // that host's local disk is gone with it
  }
}

async function deactivate(names: readonly string[]): Promise<void> {
  await shOk('lvchange', ['-an', ...names.map((n) => `${VG}/${n}`)]);
}

test('a delete killed on one host is seen from the VG alone and finished by another host', async () => {
  requireVg();
  const s = await lvmStorage({ id: 'tjrn', shared: true });
  const name = 'vm-7801-disk-0.qcow2';
  const volid = await s.vc.alloc(s.id, 7801, 8 * MiB);
  await qemuIo(s.path(name), [], [{ byte: 0xa1, offset: 0, len: BLOCK }]);
  await s.vc.snapshotCreate(volid, 's1');
  await qemuIo(s.path(name), [], [{ byte: 0xa2, offset: BLOCK, len: BLOCK }]);
  await s.vc.snapshotCreate(volid, 's2');
  await qemuIo(s.path(name), [], [{ byte: 0xa3, offset: 2 * BLOCK, len: BLOCK }]);
  assert.equal(await lv('volchain-journal-7801'), undefined, 'no journal LV once operations are done');

  const plan = await s.vc.snapshotDelete(volid, 's1', { dryRun: true });
  assert.ok(plan.steps.length >= 2, `a multi-step delete: ${plan.steps.length} steps`);
  await crashOnOtherHost(s.cfg, ['snapshot', 'delete', volid, 's1'], `snapshot-delete:2:after`);
  const journal = await mustLv('volchain-journal-7801');
  assert.ok(journal.tags.includes('volchain.journal'), `tags: ${journal.tags.join(' ')}`);
  // The dead host's LVs are no longer active anywhere.
  await deactivate((await lvs()).filter((r) => r.name.includes('7801') && r.active).map((r) => r.name));

  // Readers on the other host see the pending operation from `lvs` alone, and activate nothing.
  const pending = await s.vc.status();
  const mine = pending.filter((p) => p.plan.vmid === 7801);
  assert.equal(mine.length, 1, JSON.stringify(pending));
  assert.equal(mine[0]?.plan.operation, 'snapshot-delete');
  assert.equal(mine[0]?.plan.volid, volid);
  assert.equal(mine[0]?.summaryOnly, true);
  const info = await s.vc.info(volid).catch((e: unknown) => (e instanceof Error ? e : new Error(String(e))));
  assert.ok(
    info instanceof Error ? info.message.includes('repair') : info.pendingOperation?.operation === 'snapshot-delete',
    info instanceof Error ? info.message : JSON.stringify(info),
  );
  await assert.rejects(s.vc.snapshotCreate(volid, 'sx'), /unfinished snapshot-delete.*repair/);
  assert.ok(
    (await lvs()).filter((r) => r.name.includes('7801')).every((r) => !r.active),
    'readers activated nothing',
  );

  // repair on this host reads the journal from the VG and finishes the delete.
  const actions = await s.vc.repair({ volid });
  assert.ok(
    actions.some((a) => a.actions[0]?.startsWith('finish snapshot-delete')),
    JSON.stringify(actions),
  );
  assert.equal(await lv('volchain-journal-7801'), undefined, 'the journal LV went with its last record');
  assert.deepEqual(
    (await s.vc.status()).filter((p) => p.plan.vmid === 7801),
    [],
  );
  assert.deepEqual((await s.vc.info(volid)).snapshots, ['s2']);
  await qemuIo(
    s.path(name, 's2'),
    [
      { byte: 0xa1, offset: 0, len: BLOCK },
      { byte: 0xa2, offset: BLOCK, len: BLOCK },
      { byte: 0, offset: 2 * BLOCK, len: BLOCK },
    ],
    [],
    's2',
  );
  await qemuIo(
    s.path(name),
    [
      { byte: 0xa1, offset: 0, len: BLOCK },
      { byte: 0xa2, offset: BLOCK, len: BLOCK },
      { byte: 0xa3, offset: 2 * BLOCK, len: BLOCK },
    ],
    [],
    'current',
  );
  for (const p of [s.path(name), s.path(name, 's2')]) await checkClean(p);
  await s.vc.free(volid);
});

test('a VM-wide snapshot killed on its second disk: one journal LV for the VM, finished from the VG', async () => {
  requireVg();
  const s = await lvmStorage({ id: 'tjrn' });
  const d0 = await s.vc.alloc(s.id, 7803, 4 * MiB);
  const d1 = await s.vc.alloc(s.id, 7803, 4 * MiB);
  await qemuIo(s.path('vm-7803-disk-0.qcow2'), [], [{ byte: 0xb0, offset: 0, len: BLOCK }]);
  await qemuIo(s.path('vm-7803-disk-1.qcow2'), [], [{ byte: 0xb1, offset: 0, len: BLOCK }]);
  await crashOnOtherHost(s.cfg, ['vm', 'snapshot', '7803', 'before'], 'snapshot-create:1:after:vm-7803-disk-1.qcow2');
  await mustLv('volchain-journal-7803');
  const pending = (await s.vc.status()).filter((p) => p.plan.vmid === 7803);
  assert.deepEqual(
    pending.map((p) => p.plan.volid),
    [d1],
    'disk-0 finished; disk-1 pending',
  );
  assert.ok(pending[0]?.group, 'part of a VM-wide operation');
  // Scoped to the VM: other test files run beside this one on the same VG, each with its own state dir
  // (its own locks), so a repair of everything here could step into their running operations.
  const repaired = await s.vc.repair({ volid: d1 });
  assert.ok(
    repaired.some((r) => r.volid === d1 && r.actions[0]?.startsWith('finish snapshot-create')),
    JSON.stringify(repaired),
  );
  assert.equal(await lv('volchain-journal-7803'), undefined);
  for (const [volid, name, byte] of [
    [d0, 'vm-7803-disk-0.qcow2', 0xb0],
    [d1, 'vm-7803-disk-1.qcow2', 0xb1],
  ] as const) {
    assert.deepEqual((await s.vc.info(volid)).snapshots, ['before'], volid);
    await qemuIo(s.path(name, 'before'), [{ byte, offset: 0, len: BLOCK }], [], `${name} before`);
    await qemuIo(s.path(name), [{ byte, offset: 0, len: BLOCK }], [], `${name} current`);
    await checkClean(s.path(name));
  }
  await s.vc.free(d0);
  await s.vc.free(d1);
});

test('a journal LV holding no record (a crash right after lvcreate) hides nothing and is swept by repair', async () => {
  requireVg();
  const s = await lvmStorage({ id: 'tjrn' });
  const volid = await s.vc.alloc(s.id, 7802, 4 * MiB);
  await shOk('lvcreate', ['-y', '-Zy', '-L', '4M', '-n', 'volchain-journal-7802', VG]);
  assert.equal((await s.vc.info(volid)).pendingOperation, null);
  const dry = await s.vc.repair({ volid }, { dryRun: true });
  assert.ok(
    dry.some((r) => r.actions.some((a) => a.includes('remove empty journal'))),
    JSON.stringify(dry),
  );
  assert.ok(await lv('volchain-journal-7802'), 'dry run removes nothing');
  await s.vc.repair({ volid });
  assert.equal(await lv('volchain-journal-7802'), undefined);
  // And ordinary operations leave no journal LV behind.
  await s.vc.snapshotCreate(volid, 'sa');
  await s.vc.snapshotRollback(volid, 'sa');
  await s.vc.snapshotDelete(volid, 'sa');
  assert.equal(await lv('volchain-journal-7802'), undefined);
  await s.vc.free(volid);
});
