/**
 * Issue 17, `volchain template <volid>` on dir storage: the volume becomes a template's base volume as PVE's
 * create_base makes one (`base-<vmid>-…`, mode 0444, immutable where the file system allows), with its data
 * unchanged; list and info show it as a base, a linked clone PVE makes of it is read like any PVE clone, and
 * the base cannot be freed while the clone needs it. Refused (nothing changed): a volume with snapshots (as
 * PVE), a base already, a name taken, a running VM. A SIGKILL at every step, then repair, leaves the base.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import {
  MiB,
  assertPatterns,
  checkClean,
  cli,
  cliFails,
  cliJson,
  cliOk,
  makeStorage,
  snapshotOf,
  writePatterns,
  type Expect,
  type TestStorage,
} from './helpers.js';
import { startQemu } from './qemu-harness.js';
import { clearImmutableFlags, pveCloneImage } from '../fixtures/pve-dir-fixture.js';

const SIZE = 4 * MiB;
const DATA: Expect[] = [
  { byte: 0xd4, offset: 0, len: MiB },
  { byte: 0, offset: MiB, len: SIZE - MiB },
];

interface ListEntry {
  volid: string;
  template: boolean;
  base: string | null;
  clones: string[];
}

/** A volume of VM `vmid` holding DATA; returns its volid. */
async function volume(s: TestStorage, vmid: number, format: 'qcow2' | 'raw' = 'qcow2'): Promise<string> {
  const volid = (await cliOk(s, ['alloc', s.id, String(vmid), String(SIZE), '--format', format])).trim();
  await writePatterns(s.layer(vmid, volid.split('/')[1] as string), DATA, format);
  return volid;
}

/** Every base volume file under the storage (their immutable flags must go before the storage is removed). */
async function baseFiles(s: TestStorage): Promise<string[]> {
  const out: string[] = [];
  const images = join(s.path, 'images');
  if (!existsSync(images)) return out;
  for (const vmid of await readdir(images)) {
    for (const name of await readdir(join(images, vmid))) if (name.startsWith('base-')) out.push(join(images, vmid, name));
  }
  return out;
}

describe('template on dir storage', () => {
  let s: TestStorage;
  before(async () => {
    s = await makeStorage();
  });
  after(async () => {
    await clearImmutableFlags(await baseFiles(s)).catch(() => undefined);
    await s.cleanup();
  });

  it('renames to base-<vmid>-…, makes it read-only, keeps its data; list and info show a base; a PVE linked clone of it works', async () => {
    const volid = await volume(s, 100);
    const out = await cliOk(s, ['template', volid]);
    const baseVolid = `${s.id}:100/base-100-disk-0.qcow2`;
    assert.equal(out.trim(), baseVolid, 'prints the new volid');
    const path = s.layer(100, 'base-100-disk-0.qcow2');
    assert.deepEqual(await readdir(join(s.path, 'images', '100')), ['base-100-disk-0.qcow2']);
    assert.equal((await stat(path)).mode & 0o777, 0o444, 'mode 0444 as PVE gives a base');
    await assertPatterns(path, DATA, 'base volume');
    await checkClean(path);
    const listed = await cliJson<{ volumes: ListEntry[] }>(s, ['list', s.id, '--vmid', '100']);
    assert.deepEqual(
      listed.volumes.map((v) => [v.volid, v.template]),
      [[baseVolid, true]],
    );
    // A linked clone as PVE's clone_image makes it: volchain reads it, snapshots it, and protects the base.
    await pveCloneImage(s.path, 100, 'base-100-disk-0.qcow2', 120, 'vm-120-disk-0.qcow2');
    const cloneVolid = `${s.id}:100/base-100-disk-0.qcow2/120/vm-120-disk-0.qcow2`;
    const info = await cliJson<{ template: boolean; clones: string[] }>(s, ['info', baseVolid]);
    assert.equal(info.template, true);
    assert.deepEqual(info.clones, [cloneVolid]);
    await assertPatterns(s.layer(120, 'vm-120-disk-0.qcow2'), DATA, 'the clone reads the base');
    await cliOk(s, ['snapshot', 'create', cloneVolid, 'c1']);
    await writePatterns(s.layer(120, 'vm-120-disk-0.qcow2'), [{ byte: 0xe5, offset: 0, len: MiB }]);
    await assertPatterns(path, DATA, 'the base unchanged by writes to its clone');
    await cliFails(s, ['free', baseVolid], { code: 5, match: /linked clone/ });
    await cliFails(s, ['snapshot', 'create', baseVolid, 's1'], { code: 5, match: /base volume/ });
    await cliOk(s, ['free', cloneVolid]);
    await cliOk(s, ['free', baseVolid]);
    assert.equal(existsSync(path), false, 'a base without clones can be freed');
  });

  it('a raw volume becomes a raw base volume', async () => {
    const volid = await volume(s, 101, 'raw');
    assert.equal((await cliOk(s, ['template', volid])).trim(), `${s.id}:101/base-101-disk-0.raw`);
    const path = s.layer(101, 'base-101-disk-0.raw');
    await assertPatterns(path, DATA, 'raw base', 'raw');
    assert.equal((await stat(path)).mode & 0o777, 0o444);
    const listed = await cliJson<{ volumes: ListEntry[] }>(s, ['list', s.id, '--vmid', '101']);
    assert.deepEqual(
      listed.volumes.map((v) => [v.volid, v.template]),
      [[`${s.id}:101/base-101-disk-0.raw`, true]],
    );
  });

  it('--dry-run prints the rename and the protection and changes nothing', async () => {
    const volid = await volume(s, 102);
    const before = await snapshotOf(s.path);
    const doc = await cliJson<{ plans: { operation: string; newVolid: string; steps: { kind: string }[] }[] }>(s, ['template', volid, '--dry-run']);
    assert.equal(doc.plans[0]?.operation, 'template');
    assert.equal(doc.plans[0]?.newVolid, `${s.id}:102/base-102-disk-0.qcow2`);
    assert.deepEqual(
      doc.plans[0]?.steps.map((st) => st.kind),
      ['rename', 'protect'],
    );
    assert.deepEqual(await snapshotOf(s.path), before, 'nothing changed');
  });

  it('refuses a volume with snapshots (as PVE), a base, a taken name, a missing volume and a running VM, changing nothing', async () => {
    const withSnap = await volume(s, 103);
    await cliOk(s, ['snapshot', 'create', withSnap, 'keep']);
    const base = await volume(s, 104);
    await cliOk(s, ['template', base]);
    // VM 104 gets a new vm-104-disk-0.qcow2 beside base-104-disk-0.qcow2: its base name is taken.
    await cliOk(s, ['alloc', s.id, '104', String(SIZE), '--name', 'vm-104-disk-0.qcow2']);
    const running = await volume(s, 105);
    const before = await snapshotOf(s.path);
    await cliFails(s, ['template', withSnap], { code: 5, match: /has snapshots \(keep\).*delete them first/ });
    await cliFails(s, ['template', `${s.id}:104/base-104-disk-0.qcow2`], { code: 2, match: /base volume already/ });
    await cliFails(s, ['template', `${s.id}:104/vm-104-disk-0.qcow2`], { code: 4, match: /base-104-disk-0\.qcow2 already exists/ });
    await cliFails(s, ['template', `${s.id}:103/vm-103-disk-9.qcow2`], { code: 3, match: /does not exist/ });
    const socket = join(s.root, 'vm105.qmp');
    const vm = await startQemu({ extraArgs: ['-qmp', `unix:${socket},server=on,wait=off`] });
    try {
      await cliFails(s, ['template', running, '--qmp', socket], { code: 6, match: /VM 105 is running \(QMP socket .*\): template of .* needs the VM stopped/ });
    } finally {
      await vm.stop();
    }
    assert.deepEqual(await snapshotOf(s.path), before, 'nothing changed');
  });

  it('a SIGKILL at every step, then repair, leaves the read-only base with its data', async () => {
    const points = ['1:before', '1:started', '1:after', '2:started', '2:after'];
    for (const [i, point] of points.entries()) {
      const vmid = 130 + i;
      const volid = await volume(s, vmid);
      const r = await cli(s, ['template', volid], { env: { VOLCHAIN_CRASH_AT: `template:${point}` } });
      assert.notEqual(r.code, 0, `${point}: the crash hook killed the template`);
      await cliOk(s, ['repair', volid]);
      const path = s.layer(vmid, `base-${vmid}-disk-0.qcow2`);
      assert.deepEqual(await readdir(join(s.path, 'images', String(vmid))), [`base-${vmid}-disk-0.qcow2`], `${point}: only the base`);
      assert.equal((await stat(path)).mode & 0o777, 0o444, `${point}: read-only`);
      await assertPatterns(path, DATA, `${point}: base data`);
      assert.equal((await cliJson<{ pending: unknown[] }>(s, ['status'])).pending.length, 0, `${point}: nothing pending`);
    }
  });
});
