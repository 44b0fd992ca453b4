/**
 * saferemove's wipe after the operation, on real LVM: the remove step only renames to `del-`; a detached
 * `volchain wipe` zeroes in chunks (throttled here by saferemove_throughput, so that it takes seconds and
 * its progress can be watched) and removes the LV; `status` shows it; a wiper killed with SIGKILL is finished
 * by `volchain wipe --wait`, continuing at the recorded offset; the zeroing is proven on the del- LV itself
 * (same uuid) by stopping the wipe between zeroing and lvremove; `del-` LVs PVE made stay untouched.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { PendingRemoval } from '../../src/backends/backend.js';
import { NoSpaceError } from '../../src/errors.js';
import * as lvmTools from '../../src/tools/lvm.js';
import { cli, cliJson } from '../integration/helpers.js';
import {
  BLOCK,
  MiB,
  requireVg,
  VG,
  cleanupState,
  crashingCli,
  lv,
  lvmStorage,
  lvs,
  mustLv,
  qemuIo,
  readsZero,
  removeVmLvs,
  shOk,
  vg,
  type LvmTestStorage,
} from './helpers.js';

const VMIDS = [7411, 7412, 7413, 7414, 7415];
after(async () => {
  if (VG === '') return; // nothing was created without a VG
  await removeVmLvs(VMIDS);
  await cleanupState();
});

/** The background wipers' log (engine/run/wipe.ts starts them with their output there). */
async function wipeLog(): Promise<string> {
  const root = process.env.VOLCHAIN_STATE_DIR ?? '';
  return readFile(join(root, '.wipe', VG, 'wipe.log'), 'utf8').catch(() => '(no wipe log)');
}

/** Polls `fn` until it returns something (not undefined); fails after `timeoutMs` showing the wipe log. */
async function until<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 180_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (value !== undefined) return value;
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}; wipe log:\n${await wipeLog()}`);
    await sleep(200);
  }
}

async function removal(s: LvmTestStorage, layer: string): Promise<PendingRemoval | undefined> {
  return (await s.vc.pendingRemovals()).find((w) => w.layer === layer);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

interface WipeJson {
  wiped: { storage: string; layer: string; vmid: number | null; bytes: number; resumedFromBytes: number }[];
  waited: PendingRemoval[];
  busy: PendingRemoval[];
}

test('the remove step only renames; a background wiper zeroes in chunks, shows progress in status, and removes the LV', async () => {
  requireVg();
  // 256 MiB at 16 MiB/s: 16 chunks, at least 15 seconds.
  const s = await lvmStorage({ id: 'twipe', saferemove: true, throughput: '16M' });
  const name = 'vm-7411-disk-0';
  const volid = await s.vc.alloc(s.id, 7411, 256 * MiB, { format: 'raw' });
  const before = await mustLv(name);
  await s.vc.free(volid);
  assert.equal(await lv(name), undefined, 'the volume is gone for everyone at once');

  const doomed = `del-${name}`;
  const samples: PendingRemoval[] = [];
  await until(`the wipe of ${doomed} to end`, async () => {
    const w = await removal(s, doomed);
    if (w) samples.push(w);
    return w === undefined ? true : undefined;
  });
  assert.ok(samples.length > 0, 'status showed the wipe after the free had returned');
  for (const w of samples) {
    assert.equal(w.totalBytes, before.sizeBytes, 'status: bytes to zero');
    assert.equal(w.storage, s.id);
    assert.equal(w.vmid, 7411);
    assert.equal(w.path, `/dev/${VG}/${doomed}`);
  }
  const midway = samples.find((w) => w.state === 'running' && w.doneBytes > 0 && w.doneBytes < w.totalBytes);
  assert.ok(midway, `status showed it midway: ${JSON.stringify(samples.map((w) => [w.state, w.doneBytes]))}`);
  assert.ok(midway.pid !== null && midway.startedAt !== null);
  assert.equal(midway.doneBytes % (16 * MiB), 0, 'progress moves in chunks of about one second of the limit');
  const doneSeen = samples.map((w) => w.doneBytes);
  assert.deepEqual(
    doneSeen,
    [...doneSeen].sort((a, b) => a - b),
    'progress never goes back',
  );

  assert.equal(await lv(doomed), undefined, 'the del- LV is gone');
  // Its extents are free again: every extent of the VG is either free or in an LV that is listed.
  const { vg: info, lvs: rows } = await lvmTools.reportVg(VG);
  assert.equal(info.freeBytes + rows.reduce((sum, r) => sum + r.sizeBytes, 0), info.sizeBytes, 'no extents held by a removed LV');
  const log = await wipeLog();
  assert.match(log, new RegExp(`zeroing ${doomed} in VG ${VG} \\(${before.sizeBytes} bytes, at most ${16 * MiB} bytes/s\\)`), log);
  assert.match(log, new RegExp(`removed ${doomed} from VG ${VG}`), log);
});

test('a wiper killed with SIGKILL leaves a del- LV; status says so; volchain wipe --wait finishes it where it stopped', async (t) => {
  requireVg();
  // 256 MiB at 16 MiB/s: 16 chunks, at least 15 seconds.
  const s = await lvmStorage({ id: 'twipe', saferemove: true, throughput: '16M' });
  const name = 'vm-7412-disk-0';
  const volid = await s.vc.alloc(s.id, 7412, 256 * MiB, { format: 'raw' });
  const size = (await mustLv(name)).sizeBytes;
  await s.vc.free(volid);
  const doomed = `del-${name}`;
  const running = await until('the background wiper to zero a part', async () => {
    const w = await removal(s, doomed);
    return w?.state === 'running' && w.doneBytes > 0 && w.doneBytes <= size / 2 ? w : undefined;
  });
  const pid = running.pid as number;
  process.kill(pid, 'SIGKILL');
  await until(`pid ${pid} to be gone`, async () => (alive(pid) ? undefined : true));

  const stopped = await removal(s, doomed);
  assert.ok(stopped, 'the del- LV stays');
  assert.equal(stopped.state, 'waiting', 'no wiper runs');
  assert.equal(stopped.pid, pid, 'status names the wiper that stopped');
  assert.ok(stopped.doneBytes >= running.doneBytes && stopped.doneBytes < size, `${stopped.doneBytes} of ${size} recorded`);
  assert.ok(await lv(doomed), 'still in the VG');
  const status = await cli(s, ['status', '--json']);
  if (status.code !== 0 && /journal LV \S+ holds the journal of VM \d+ on storage '(?!twipe')/.test(status.stderr)) {
    // Another test file's journal on this VG, written under another storage id, is not readable from here.
    t.diagnostic(`status --json not checked: ${status.stderr.trim()}`);
  } else {
    assert.equal(status.code, 0, status.stderr);
    const wipes = (JSON.parse(status.stdout) as { wipes: PendingRemoval[] }).wipes.filter((w) => w.layer === doomed);
    assert.deepEqual(
      wipes.map((w) => [w.state, w.doneBytes, w.pid]),
      [['waiting', stopped.doneBytes, pid]],
      'status --json',
    );
  }

  const out = await cliJson<WipeJson>(s, ['wipe', '--storage', s.id, '--vmid', '7412', '--wait']);
  assert.deepEqual(
    out.wiped.map((w) => [w.layer, w.bytes, w.resumedFromBytes]),
    [[doomed, size, stopped.doneBytes]],
    'continued at the recorded offset',
  );
  assert.equal(await lv(doomed), undefined);
  assert.equal(await removal(s, doomed), undefined, 'status is clear');
});

test('the zeroing really zeroes: the same del- LV (same uuid) holds the data after the rename and only zeroes before lvremove', async () => {
  requireVg();
  const s = await lvmStorage({ id: 'twipe', saferemove: true, wipe: 'foreground' });
  const name = 'vm-7413-disk-0';
  const doomed = `del-${name}`;
  const volid = await s.vc.alloc(s.id, 7413, 8 * MiB, { format: 'raw' });
  const original = await mustLv(name);
  await shOk('qemu-io', ['-f', 'raw', '-c', `write -P 0x5e 0 ${original.sizeBytes}`, s.path(name)]);

  // 1. Killed right after the rename: the data is all there under the del- name (the same LV).
  await crashingCli(s.cfg, ['free', volid], 'remove-renamed');
  const renamed = await mustLv(doomed);
  assert.equal(renamed.uuid, original.uuid, 'renamed, not copied');
  assert.ok(renamed.tags.includes('pve-vm-7413') && renamed.tags.includes(`volchain.vol.${name}`), `tags kept: ${renamed.tags.join(',')}`);
  await shOk('qemu-io', ['-f', 'raw', '-r', '-c', `read -P 0x5e 0 ${renamed.sizeBytes}`, `/dev/${VG}/${doomed}`]);
  assert.equal(await readsZero(`/dev/${VG}/${doomed}`, renamed.sizeBytes), false);
  const waiting = await removal(s, doomed);
  assert.deepEqual([waiting?.state, waiting?.doneBytes, waiting?.totalBytes], ['waiting', 0, renamed.sizeBytes]);

  // While it waits, a request for more space than is free says how much the wipe still holds.
  const err = await s.vc.alloc(s.id, 7414, (await vg()).sizeBytes, { format: 'raw' }).then(
    () => assert.fail('an LV as big as the whole VG cannot fit'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof NoSpaceError, String(err));
  assert.match(err.message, /bytes missing; \d+ bytes of \d+ removed LV\(s\) are still being wiped \(saferemove\)/);
  assert.match(err.message, /'volchain wipe --wait' waits for it/);
  assert.ok(Number(/; (\d+) bytes of/.exec(err.message)?.[1]) >= renamed.sizeBytes, err.message);

  // 2. The wipe, killed after zeroing and before its lvremove: the very same LV now reads as zeroes only.
  await crashingCli(s.cfg, ['wipe', '--storage', s.id, '--vmid', '7413'], 'wipe-zeroed');
  const zeroed = await mustLv(doomed);
  assert.equal(zeroed.uuid, original.uuid, 'the same LV, so the same extents');
  assert.ok(await readsZero(`/dev/${VG}/${doomed}`, zeroed.sizeBytes), 'every byte of it is zero');
  assert.equal((await removal(s, doomed))?.doneBytes, zeroed.sizeBytes, 'recorded as zeroed completely');

  // 3. The next wipe has nothing left to zero: it removes the LV.
  const out = await cliJson<WipeJson>(s, ['wipe', '--storage', s.id, '--vmid', '7413']);
  assert.deepEqual(
    out.wiped.map((w) => [w.layer, w.resumedFromBytes]),
    [[doomed, zeroed.sizeBytes]],
  );
  assert.equal(await lv(doomed), undefined);
  await s.vc.repair({ volid }); // the free killed in 1. still has its journal
  assert.deepEqual(
    (await lvs()).filter((r) => /vm-741[34]-/.test(r.name)).map((r) => r.name),
    [],
  );
});

test('a del- LV made by PVE (no volchain tags) is left alone; a removal whose del- name is taken uses del-1-', async () => {
  requireVg();
  const s = await lvmStorage({ id: 'twipe', saferemove: true, wipe: 'foreground' });
  const name = 'vm-7415-disk-0.qcow2';
  const volid = await s.vc.alloc(s.id, 7415, 8 * MiB);
  await qemuIo(s.path(name), [], [{ byte: 0xc1, offset: 0, len: BLOCK }]);
  await s.vc.snapshotCreate(volid, 'sa');
  await qemuIo(s.path(name), [], [{ byte: 0xc2, offset: 0, len: BLOCK }]);
  // As PVE names an LV it is removing; only PVE's own worker may finish it.
  const foreign = `del-${name}`;
  await shOk('lvcreate', ['-q', '-y', '-L', '4m', '-n', foreign, '--addtag', 'pve-vm-7415', '--', VG]);
  const foreignRow = await mustLv(foreign);

  // Rollback replaces the current layer: its LV goes to del-1-<name> and is wiped before the call returns.
  await s.vc.snapshotRollback(volid, 'sa');
  await qemuIo(s.path(name), [{ byte: 0xc1, offset: 0, len: BLOCK }], [], 'rolled back to sa');
  assert.equal(await lv(`del-1-${name}`), undefined, 'wiped and removed');
  await s.vc.list(s.id, { vmid: 7415 });
  assert.deepEqual(await s.vc.wipe({ storage: s.id, vmid: 7415, wait: true }), { finished: [], busy: [], waited: [] }, 'nothing to wipe');
  assert.equal((await mustLv(foreign)).uuid, foreignRow.uuid, "PVE's del- LV is untouched");
  assert.equal(await removal(s, foreign), undefined, 'and not shown as a wipe of volchain');

  await s.vc.free(volid);
  assert.deepEqual(
    (await lvs()).filter((r) => r.name.includes('vm-7415-')).map((r) => r.name),
    [foreign],
  );
});
