/**
 * Issue 17 on thick LVM: `convert` makes a raw LV `vm-<vmid>-disk-<n>` into the qcow2 LV PVE 9 would name
 * `vm-<vmid>-disk-<n>.qcow2` (sized for a fully written image, tagged like every volchain layer), with the
 * same data; the result takes snapshots; a crash after the rename is finished by repair; `template`
 * is refused on thick LVM (PVE's LVM plugin makes no base volumes), changing nothing.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BIN, checkClean, runCommand, type RunResult } from '../integration/helpers.js';
import { MiB, VG, cleanupState, fullLvSize, lv, lvmStorage, lvs, mustLv, qemuIo, removeVmLvs, requireVg, shOk } from './helpers.js';

const VMIDS = [7310, 7311];
/** This file's LVs only: the other LVM test files run beside it on the same VG. */
const ownLvs = async (): Promise<Awaited<ReturnType<typeof lvs>>> => (await lvs()).filter((r) => VMIDS.some((id) => r.name.includes(`vm-${id}-`)));
const SIZE = 16 * MiB;
const DATA = [
  { byte: 0x6a, offset: 0, len: 2 * MiB },
  { byte: 0, offset: 2 * MiB, len: 6 * MiB },
  { byte: 0x6b, offset: 8 * MiB, len: MiB },
  { byte: 0, offset: 9 * MiB, len: SIZE - 9 * MiB },
];
let scratch: string | undefined;

after(async () => {
  if (scratch) await rm(scratch, { recursive: true, force: true });
  if (VG === '') return; // nothing was created without a VG
  await removeVmLvs(VMIDS);
  await cleanupState();
});

function volchain(cfg: string, args: readonly string[], env: Record<string, string> = {}): Promise<RunResult> {
  return runCommand(process.execPath, [BIN, '--config', cfg, ...args], { env: { ...process.env, LC_ALL: 'C', VOLCHAIN_WIPE: 'foreground', ...env } });
}

async function volchainOk(cfg: string, args: readonly string[]): Promise<string> {
  const r = await volchain(cfg, args);
  assert.equal(r.code, 0, `volchain ${args.join(' ')}: ${r.stderr}${r.stdout}`);
  return r.stdout;
}

/** A raw LV of `vmid` holding DATA, every byte written (qemu-io), and a copy of it as a reference file. */
async function rawLv(s: Awaited<ReturnType<typeof lvmStorage>>, vmid: number): Promise<{ volid: string; reference: string }> {
  const volid = await s.vc.alloc(s.id, vmid, SIZE, { format: 'raw' });
  const path = s.path(`vm-${vmid}-disk-0`);
  const args = ['-f', 'raw'];
  // Zeroes too: a new raw LV shows whatever its extents held before (a removed journal LV, say), never zeroes.
  for (const d of DATA) args.push('-c', `write -P 0x${d.byte.toString(16)} ${d.offset} ${d.len}`);
  await shOk('qemu-io', [...args, path]);
  scratch ??= await mkdtemp(join(tmpdir(), 'volchain-lvm-convert-'));
  const reference = join(scratch, `${vmid}.raw`);
  await shOk('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', path, reference]);
  return { volid, reference };
}

test('a raw LV becomes vm-<vmid>-disk-<n>.qcow2 with the same data, full size and tags, and takes snapshots', async () => {
  requireVg();
  const s = await lvmStorage({ id: 'tconv', saferemove: true, wipe: 'foreground' });
  const { volid, reference } = await rawLv(s, 7310);
  assert.equal(volid, `${s.id}:vm-7310-disk-0`);
  const before = (await ownLvs()).map((r) => `${r.name} ${r.sizeBytes} ${r.tags.join(',')}`).sort();
  const dry = await volchainOk(s.cfg, ['convert', volid, '--format', 'qcow2', '--dry-run']);
  assert.match(dry, /into qcow2 tconv:vm-7310-disk-0\.qcow2/);
  assert.deepEqual((await ownLvs()).map((r) => `${r.name} ${r.sizeBytes} ${r.tags.join(',')}`).sort(), before, 'the dry run changed nothing');
  const out = await volchainOk(s.cfg, ['convert', volid, '--format', 'qcow2']);
  const name = 'vm-7310-disk-0.qcow2';
  assert.equal(out.trim(), `${s.id}:${name}`, 'prints the new volid');
  assert.equal(await lv('vm-7310-disk-0'), undefined, 'the raw LV is gone (saferemove: wiped, then removed)');
  assert.equal((await ownLvs()).filter((r) => r.name.includes('volchain-tmp') || r.name.startsWith('del-')).length, 0, 'no temporary or del- LV left');
  const row = await mustLv(name);
  assert.equal(row.sizeBytes, await fullLvSize(SIZE), 'sized for a fully written image');
  assert.ok(row.tags.includes('pve-vm-7310'), `tagged for its VM: ${row.tags.join(',')}`);
  await qemuIo(s.path(name), DATA, [], 'after convert');
  await shOk('qemu-img', ['compare', '-f', 'qcow2', '-F', 'raw', s.path(name), reference]);
  await checkClean(s.path(name));
  await s.vc.snapshotCreate(`${s.id}:${name}`, 'c1');
  await qemuIo(s.path(name), [], [{ byte: 0x6c, offset: 0, len: MiB }]);
  await s.vc.snapshotRollback(`${s.id}:${name}`, 'c1');
  await qemuIo(s.path(name), DATA, [], 'after rollback');
  await qemuIo(s.path(name, 'c1'), DATA, [], 'snapshot layer');
});

test('killed after the rename, before the raw LV is removed: repair finishes the convert with nothing lost', async () => {
  requireVg();
  const s = await lvmStorage({ id: 'tconv', saferemove: true, wipe: 'foreground' });
  // One point here to keep the guest suite short (TCG: about a minute per point); dir covers every step.
  for (const [i, point] of ['4:started'].entries()) {
    const vmid = 7311 + i;
    const { volid, reference } = await rawLv(s, vmid);
    const r = await volchain(s.cfg, ['convert', volid, '--format', 'qcow2'], { VOLCHAIN_CRASH_AT: `convert:${point}` });
    assert.equal(r.code, 128, `${point}: killed (${r.stderr})`);
    await volchainOk(s.cfg, ['repair', volid]);
    const name = `vm-${vmid}-disk-0.qcow2`;
    assert.equal(await lv(`vm-${vmid}-disk-0`), undefined, `${point}: the raw LV is gone`);
    await qemuIo(s.path(name), DATA, [], `${point}: after repair`);
    await shOk('qemu-img', ['compare', '-f', 'qcow2', '-F', 'raw', s.path(name), reference]);
    await checkClean(s.path(name));
  }
  const status = JSON.parse(await volchainOk(s.cfg, ['status', '--json'])) as { pending: unknown[] };
  assert.equal(status.pending.length, 0, 'nothing pending');
});

test('template is refused on thick LVM (exit 5, as PVE: no base volumes there), changing nothing', async () => {
  requireVg();
  const s = await lvmStorage({ id: 'tconv' });
  const before = (await ownLvs()).map((r) => `${r.name} ${r.tags.join(',')}`).sort();
  const r = await volchain(s.cfg, ['template', `${s.id}:vm-7310-disk-0.qcow2`]);
  assert.equal(r.code, 5, r.stderr);
  assert.match(r.stderr, /no template base volumes/);
  assert.deepEqual((await ownLvs()).map((x) => `${x.name} ${x.tags.join(',')}`).sort(), before);
});
