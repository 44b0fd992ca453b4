/**
 * Activation and space figures on real thick LVM: `activate` / `deactivate` act on every layer of a chain
 * (checked with `lvs` itself), deactivating LVs that are open fails with LVM's "in use" named on one line;
 * `list` and `info` of an inactive chain report `snapshotBytes` = the frozen LVs' sizes and
 * `fullSizeSnapshotBytes` = what PVE 9's full-size layers would take; the dry run of a snapshot predicts the
 * space the real one then takes.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { open } from 'node:fs/promises';
import { VolchainError } from '../../src/errors.js';
import type { Plan } from '../../src/model/plan.js';
import { roundUpTo } from '../../src/tools/lvm.js';
import { BIN, runCommand, type RunResult } from '../integration/helpers.js';
import { BLOCK, MiB, requireVg, VG, cleanupState, fullLvSize, lvmStorage, mustLv, qemuIo, removeVmLvs, shOk, vg, type LvmTestStorage } from './helpers.js';

const VMIDS = [7401, 7402];
after(async () => {
  if (VG === '') return; // nothing was created without a VG
  await removeVmLvs(VMIDS);
  await cleanupState();
});

/** `lvs` itself (not volchain's parser): name -> size in bytes and whether the LV is active here. */
async function lvsOf(names: readonly string[]): Promise<Map<string, { sizeBytes: number; active: boolean }>> {
  const out = await shOk('lvs', ['--units', 'b', '--nosuffix', '--noheadings', '--separator', '|', '-o', 'lv_name,lv_size,lv_attr', '--', VG]);
  const rows = new Map<string, { sizeBytes: number; active: boolean }>();
  for (const line of out.split('\n')) {
    const [name, size, attr] = line.trim().split('|');
    if (name === undefined || size === undefined || attr === undefined || !names.includes(name)) continue;
    rows.set(name, { sizeBytes: Number(size), active: attr[4] === 'a' });
  }
  assert.deepEqual([...rows.keys()].sort(), [...names].sort(), 'lvs lists every layer');
  return rows;
}

async function activeStates(names: readonly string[]): Promise<boolean[]> {
  const rows = await lvsOf(names);
  return names.map((n) => rows.get(n)?.active ?? false);
}

function volchainCli(s: LvmTestStorage, args: readonly string[]): Promise<RunResult> {
  return runCommand(process.execPath, [BIN, '--config', s.cfg, ...args], { env: { ...process.env, LC_ALL: 'C' } });
}

/** `qemu-img check` image end of a qcow2 LV, as settleFrozen reads it. */
async function imageEnd(path: string): Promise<number> {
  const out = await shOk('qemu-img', ['check', '-f', 'qcow2', '--output=json', path]);
  const end = (JSON.parse(out) as { 'image-end-offset'?: number })['image-end-offset'];
  assert.ok(typeof end === 'number' && end > 0, `image end of ${path}: ${out}`);
  return end;
}

test('activate and deactivate every layer; list and info of the inactive chain report its snapshot space', async () => {
  requireVg();
  const s = await lvmStorage({ id: 'tact' });
  const name = 'vm-7401-disk-0.qcow2';
  const size = 16 * MiB;
  const volid = await s.vc.alloc(s.id, 7401, size);
  await qemuIo(s.path(name), [], [{ byte: 0xb1, offset: 0, len: 2 * MiB }]);
  await s.vc.snapshotCreate(volid, 'sa');
  await qemuIo(s.path(name), [], [{ byte: 0xb2, offset: 2 * MiB, len: MiB }]);
  await s.vc.snapshotCreate(volid, 'sb');
  await qemuIo(s.path(name), [], [{ byte: 0xb3, offset: 4 * MiB, len: BLOCK }]);
  const frozen = [s.snapLayer(name, 'sa'), s.snapLayer(name, 'sb')];
  const layers = [name, ...frozen];

  // Deactivate (library): no layer active any more, as lvs says.
  assert.deepEqual(await s.vc.deactivate(volid), { volid, storage: s.id, layers, active: false });
  assert.deepEqual(await activeStates(layers), [false, false, false]);

  // list and info of the inactive chain (a new Volchain: nothing cached) read it from the tags.
  const fresh = await lvmStorage({ id: 'tact' });
  const rows = await lvsOf(layers);
  const frozenBytes = frozen.reduce((sum, n) => sum + (rows.get(n)?.sizeBytes ?? NaN), 0);
  const full = await fullLvSize(size);
  assert.ok(frozenBytes < 2 * full, `the frozen layers were shrunk (${frozenBytes} < ${2 * full})`);
  const info = await fresh.vc.info(volid);
  assert.deepEqual(info.snapshots, ['sa', 'sb']);
  assert.equal(info.snapshotBytes, frozenBytes, "snapshotBytes = the frozen LVs' sizes");
  assert.equal(info.fullSizeSnapshotBytes, 2 * full, 'fullSizeSnapshotBytes = snapshots x the full LV size');
  assert.equal(info.usedBytes, rows.get(name)?.sizeBytes);
  assert.equal(info.chainUsedBytes, info.usedBytes + info.snapshotBytes);
  const listed = await fresh.vc.list(fresh.id, { vmid: 7401 });
  assert.deepEqual(
    listed.map((v) => [v.volid, v.snapshotBytes, v.fullSizeSnapshotBytes]),
    [[volid, frozenBytes, 2 * full]],
  );
  assert.deepEqual(await activeStates(layers), [false, false, false], 'reading activated nothing');

  // A dry-run snapshot of the inactive chain: the image end cannot be read, so what shrinking gives back is unknown.
  const blind = (await fresh.vc.snapshotCreate(volid, 'sc', { dryRun: true })).space;
  assert.deepEqual(blind, {
    allocatedBytes: full,
    releasedBytes: null,
    netBytes: null,
    fullSize: { allocatedBytes: full, releasedBytes: 0, netBytes: full },
  });

  // Activate through the CLI: every layer active, the JSON says which.
  const on = await volchainCli(s, ['activate', volid, '--json']);
  assert.equal(on.code, 0, on.stderr);
  assert.deepEqual(JSON.parse(on.stdout), { volid, storage: s.id, layers, active: true });
  assert.deepEqual(await activeStates(layers), [true, true, true]);
  await qemuIo(
    s.path(name),
    [
      { byte: 0xb1, offset: 0, len: 2 * MiB },
      { byte: 0xb2, offset: 2 * MiB, len: MiB },
      { byte: 0xb3, offset: 4 * MiB, len: BLOCK },
    ],
    [],
    'after deactivate + activate',
  );

  // Open LVs (here: this process holds the top open, as a running QEMU would): deactivate fails, naming it.
  const held = await open(s.path(name), 'r');
  try {
    await assert.rejects(
      fresh.vc.deactivate(volid),
      (e: unknown) =>
        e instanceof VolchainError && e.code === 'LOCKED' && e.message.startsWith(`cannot deactivate ${volid}: `) && e.message.includes(`${VG}/${name} in use`),
    );
    const r = await volchainCli(s, ['deactivate', volid]);
    assert.equal(r.code, 6, `exit status of deactivate while open: ${r.stderr}`);
    assert.equal(r.stdout, '');
    assert.match(
      r.stderr,
      new RegExp(
        `^volchain: cannot deactivate ${volid.replace(/[.]/g, '\\.')}: .*${name.replace(/[.]/g, '\\.')} in use \\(open on this host, e\\.g\\. by a running VM\\)\\n$`,
      ),
    );
    assert.equal((await activeStates([name]))[0], true, 'the open top is still active');
  } finally {
    await held.close();
  }
  const off = await volchainCli(s, ['deactivate', volid]);
  assert.equal(off.code, 0, off.stderr);
  assert.equal(off.stdout.trim(), `deactivated ${volid} (3 layers)`);
  assert.deepEqual(await activeStates(layers), [false, false, false]);
  await s.vc.activate(volid);
  assert.deepEqual(await activeStates(layers), [true, true, true]);
  await s.vc.free(volid);
});

test("the dry run of a snapshot predicts its space, against PVE 9's full-size layers (also VM-wide)", async () => {
  requireVg();
  const s = await lvmStorage({ id: 'tdry' });
  const size = 24 * MiB;
  const names = ['vm-7402-disk-0.qcow2', 'vm-7402-disk-1.qcow2'];
  const volids = [await s.vc.alloc(s.id, 7402, size), await s.vc.alloc(s.id, 7402, size)];
  await qemuIo(s.path(names[0] as string), [], [{ byte: 0xd1, offset: 0, len: 3 * MiB }]);
  await qemuIo(s.path(names[1] as string), [], [{ byte: 0xd2, offset: 8 * MiB, len: 5 * MiB }]);
  const full = await fullLvSize(size);
  const extent = (await vg()).extentSizeBytes;

  const [volid, name] = [volids[0] as string, names[0] as string];
  const before = (await mustLv(name)).sizeBytes;
  assert.equal(before, full);
  const shrunk = Math.min(before, roundUpTo(await imageEnd(s.path(name)), extent));
  assert.ok(shrunk < before, 'a 3 MiB image is far below its full LV');
  const plan = await s.vc.snapshotCreate(volid, 'pre', { dryRun: true });
  assert.deepEqual(plan.space, {
    allocatedBytes: full,
    releasedBytes: before - shrunk,
    netBytes: full - (before - shrunk),
    fullSize: { allocatedBytes: full, releasedBytes: 0, netBytes: full },
  });
  // The CLI prints both ways.
  const text = await volchainCli(s, ['snapshot', 'create', volid, 'pre', '--dry-run']);
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /^space: allocates .* gives back .* by shrinking the frozen layer to its image end: takes .* in all$/m);
  assert.match(text.stdout, /with PVE 9's full-size layers: allocates .*, gives back 0 B: takes .* in all$/m);

  // The real snapshot takes what the dry run said (counted on this volume's LVs: other test files share the VG).
  await s.vc.snapshotCreate(volid, 'pre');
  const frozenLv = (await mustLv(s.snapLayer(name, 'pre'))).sizeBytes;
  const topLv = (await mustLv(name)).sizeBytes;
  assert.equal(frozenLv, shrunk, 'the frozen layer was shrunk as predicted');
  assert.equal(topLv, full, 'the new top is a full-size LV');
  assert.equal(frozenLv + topLv - before, plan.space?.netBytes, 'the volume grew by the predicted net');
  assert.equal(
    (await s.vc.info(volid)).fullSizeSnapshotBytes - (await s.vc.info(volid)).snapshotBytes,
    before - shrunk,
    'info: the full-size figure exceeds the real one by what the shrink gave back',
  );

  // VM-wide: one estimate per disk and their total.
  const plans: Plan[] = await s.vc.vmSnapshot(7402, 'both', { dryRun: true, storage: s.id });
  assert.equal(plans.length, 2);
  for (const p of plans) {
    assert.equal(p.space?.allocatedBytes, full, p.volid);
    assert.equal(p.space?.fullSize.netBytes, full, p.volid);
    assert.ok(p.space?.releasedBytes !== null && (p.space?.releasedBytes ?? 0) > 0, `${p.volid}: something given back`);
  }
  const vmText = await volchainCli(s, ['vm', 'snapshot', '7402', 'both', '--storage', s.id, '--dry-run']);
  assert.equal(vmText.code, 0, vmText.stderr);
  assert.match(vmText.stdout, /^total for 2 disks: allocates .*$/m);
  const json = JSON.parse((await volchainCli(s, ['vm', 'snapshot', '7402', 'both', '--storage', s.id, '--dry-run', '--json'])).stdout) as { plans: Plan[] };
  assert.deepEqual(
    json.plans.map((p) => p.space),
    plans.map((p) => p.space),
  );
  for (const v of volids) await s.vc.free(v);
});
