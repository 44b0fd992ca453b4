/**
 * Issue 17 on thick LVM: templates and linked clones, volchain's own extension behind the opt-in
 * VOLCHAIN_LVM_TEMPLATES. Without it `template` is refused (exit 5, saying how to opt in), changing nothing.
 * With it: the volume's LV becomes the read-only base LV `base-<vmid>-….qcow2`; `clone --linked` makes a
 * full-size qcow2 LV backed by it; the clone is written, takes a snapshot that is deleted again, while the
 * base's bytes never change; free of the base is refused while the clone exists. Only this file's LVs
 * (VMs 7531–7536) are looked at: other LVM test files run beside it on the same VG.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { BIN, runCommand, type RunResult } from '../integration/helpers.js';
import { MiB, VG, cleanupState, fullLvSize, lv, lvmStorage, lvs, mustLv, qemuIo, removeVmLvs, requireVg, shOk } from './helpers.js';

const VMIDS = [7531, 7532, 7533];
const ownLvs = async (): Promise<string[]> =>
  (await lvs())
    .filter((r) => VMIDS.some((id) => r.name.includes(`-${id}-`)))
    .map((r) => `${r.name} ${r.attr.slice(0, 2)} ${[...r.tags].sort().join(',')}`)
    .sort();
const SIZE = 16 * MiB;
const BASE = 'base-7531-disk-0.qcow2';
const CLONE = 'vm-7532-disk-0.qcow2';
const OPT_IN = { VOLCHAIN_LVM_TEMPLATES: 'other, tlnk' };

after(async () => {
  if (VG === '') return;
  // A read-only base LV is removed like any other (lvremove needs no write permission).
  await removeVmLvs(VMIDS);
  await cleanupState();
});

function volchain(cfg: string, args: readonly string[], env: Record<string, string> = {}): Promise<RunResult> {
  return runCommand(process.execPath, [BIN, '--config', cfg, ...args], { env: { ...process.env, LC_ALL: 'C', VOLCHAIN_WIPE: 'foreground', ...env } });
}

async function volchainOk(cfg: string, args: readonly string[], env: Record<string, string> = OPT_IN): Promise<string> {
  const r = await volchain(cfg, args, env);
  assert.equal(r.code, 0, `volchain ${args.join(' ')}: ${r.stderr}${r.stdout}`);
  return r.stdout;
}

const sha256 = async (path: string): Promise<string> => (await shOk('sha256sum', [path])).split(' ')[0] ?? '';

test('LVM templates: refused without the opt-in; with it a read-only base LV, a linked clone written and snapshotted, the base unchanged, free of the base refused while cloned, then freed', async () => {
  requireVg();
  const s = await lvmStorage({ id: 'tlnk' });
  const volume = 'vm-7531-disk-0.qcow2';
  await volchainOk(s.cfg, ['alloc', s.id, '7531', String(SIZE), '--name', volume], {});
  await qemuIo(s.path(volume), [], [{ byte: 0xa1, offset: 0, len: 2 * MiB }], 'the future template');

  // Without the opt-in: exit 5, why and how to opt in, nothing changed.
  const before = await ownLvs();
  const refused = await volchain(s.cfg, ['template', s.volid(volume)]);
  assert.equal(refused.code, 5, refused.stderr);
  assert.match(refused.stderr, /Proxmox VE.*'base-' LVs.*opt in with VOLCHAIN_LVM_TEMPLATES=tlnk/);
  assert.deepEqual(await ownLvs(), before, 'a refused template changes nothing');

  // A raw LV gets no LVM template, even with the opt-in (exit 5, how to go on), and nothing changes.
  await volchainOk(s.cfg, ['alloc', s.id, '7533', String(SIZE), '--name', 'vm-7533-disk-0', '--format', 'raw'], {});
  const rawBefore = await ownLvs();
  const raw = await volchain(s.cfg, ['template', s.volid('vm-7533-disk-0')], OPT_IN);
  assert.equal(raw.code, 5, raw.stderr);
  assert.match(raw.stderr, /is a raw LV: templates on LVM are qcow2 volumes only; convert it first/);
  assert.deepEqual(await ownLvs(), rawBefore, 'a refused raw template changes nothing');
  await volchainOk(s.cfg, ['free', s.volid('vm-7533-disk-0')], {});

  // With it: the LV is renamed, retagged and made read-only.
  assert.equal((await volchainOk(s.cfg, ['template', s.volid(volume)])).trim(), s.volid(BASE));
  assert.equal(await lv(volume), undefined, 'the volume LV took the base name');
  const base = await mustLv(BASE);
  assert.equal(base.attr.charAt(1), 'r', `the base LV is read-only (lv_attr ${base.attr})`);
  assert.ok(base.tags.includes('pve-vm-7531') && base.tags.includes(`volchain.vol.${BASE}`), `tags of the base: ${base.tags.join(',')}`);
  const baseSum = await sha256(s.path(BASE));

  // A linked clone: a full-size qcow2 LV whose header names the base LV.
  assert.match(await volchainOk(s.cfg, ['clone', '--linked', s.volid(BASE), s.id, '7532']), new RegExp(`: ${s.volid(CLONE)}$`, 'm'));
  const clone = await mustLv(CLONE);
  assert.equal(clone.sizeBytes, await fullLvSize(SIZE), 'a clone LV holds a fully written image');
  assert.ok(clone.tags.includes('pve-vm-7532') && clone.tags.includes(`volchain.parent.${BASE}`), `tags of the clone: ${clone.tags.join(',')}`);
  const info = JSON.parse(await shOk('qemu-img', ['info', '--output=json', '-f', 'qcow2', s.path(CLONE)])) as Record<string, unknown>;
  assert.equal(info['backing-filename'], BASE);
  assert.equal(info['backing-filename-format'], 'qcow2');

  // Written, snapshotted, the snapshot deleted again: the views hold, the base never changes.
  await qemuIo(s.path(CLONE), [{ byte: 0xa1, offset: 0, len: 2 * MiB }], [{ byte: 0xb1, offset: 0, len: 256 * 1024 }], 'clone');
  await volchainOk(s.cfg, ['snapshot', 'create', s.volid(CLONE), 's1']);
  await qemuIo(s.path(CLONE), [], [{ byte: 0xb2, offset: MiB, len: 256 * 1024 }], 'clone after s1');
  await qemuIo(s.path(CLONE, 's1'), [
    { byte: 0xb1, offset: 0, len: 256 * 1024 },
    { byte: 0xa1, offset: 256 * 1024, len: 2 * MiB - 256 * 1024 },
  ]);
  await volchainOk(s.cfg, ['snapshot', 'delete', s.volid(CLONE), 's1']);
  await qemuIo(s.path(CLONE), [
    { byte: 0xb1, offset: 0, len: 256 * 1024 },
    { byte: 0xa1, offset: 256 * 1024, len: MiB - 256 * 1024 },
    { byte: 0xb2, offset: MiB, len: 256 * 1024 },
    { byte: 0xa1, offset: MiB + 256 * 1024, len: MiB - 256 * 1024 },
    { byte: 0, offset: 2 * MiB, len: SIZE - 2 * MiB },
  ]);
  assert.equal(await sha256(s.path(BASE)), baseSum, "the base LV's bytes are unchanged");

  // Listed as template and clone; free of the base refused while the clone exists.
  const listed = JSON.parse(await volchainOk(s.cfg, ['list', s.id, '--json'])) as { volumes: { volid: string; clones: string[]; base: string | null }[] };
  assert.deepEqual(listed.volumes.find((v) => v.volid === s.volid(BASE))?.clones, [s.volid(CLONE)]);
  assert.equal(listed.volumes.find((v) => v.volid === s.volid(CLONE))?.base, s.volid(BASE));
  const lvsBefore = await ownLvs();
  const free = await volchain(s.cfg, ['free', s.volid(BASE)], OPT_IN);
  assert.equal(free.code, 5, free.stderr);
  assert.ok(free.stderr.includes(s.volid(CLONE)), `the refusal names the clone: ${free.stderr}`);
  assert.deepEqual(await ownLvs(), lvsBefore, 'the refused free changes nothing');
  // Without the opt-in the base is no volume to clone either (exit 5), and nothing changes.
  const unopted = await volchain(s.cfg, ['clone', '--linked', s.volid(BASE), s.id, '7533']);
  assert.equal(unopted.code, 5, unopted.stderr);
  assert.match(unopted.stderr, /VOLCHAIN_LVM_TEMPLATES=tlnk/);
  assert.deepEqual(await ownLvs(), lvsBefore, 'the refused clone changes nothing');
  assert.equal(await sha256(s.path(BASE)), baseSum);

  // Once its clone is gone, the base is freed (made writable again first).
  await volchainOk(s.cfg, ['free', s.volid(CLONE)]);
  await volchainOk(s.cfg, ['free', s.volid(BASE)]);
  assert.deepEqual(await ownLvs(), [], 'no LV of this file is left');
});
