/**
 * Interop on dir storage, both ways (issue 14), with real qemu-img/qemu-io on real files:
 * - volchain on a storage Proxmox VE 9 made (test/fixtures/pve-dir-made.ts, built with PVE's command lines
 *   only): list, snapshot, roll back (newest and older), delete (first, middle, newest), resize, free;
 * - PVE's bare command sequences (test/fixtures/pve-dir-commands.ts) on chains volchain made, including the
 *   tree volchain leaves after a rollback to an older snapshot (PVE's delete of the branch point breaks the
 *   branch, so next to PVE volchain refuses to make one: engine/plan/branch-policy.ts).
 * Every cell checks the guest view of every layer (qemu-io pattern reads), that layers which must not change
 * kept their bytes (sha256), and `qemu-img check` of every qcow2 layer. README "Interop with Proxmox VE
 * (dir storage)" shows the matrix these tests prove.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as pve from '../fixtures/pve-dir-commands.js';
import type { PveDirStorage, PveVolume } from '../fixtures/pve-dir-commands.js';
import { BLOCK, makePveDirFixture, over, run, viewsOf, writeBlocks } from '../fixtures/pve-dir-made.js';
import type { PveClone, PveDirFixture, View } from '../fixtures/pve-dir-made.js';
import { fileFingerprint } from '../fixtures/pve-dir-fixture.js';
import { spawnSync } from 'node:child_process';
import { assertManyPatterns, assertSameTree, checkAllLayers, cli, cliFails, cliOk, expectsFor, makeStorage, runCommand, snapshotOf } from './helpers.js';
import type { RunResult, TestStorage } from './helpers.js';

// ---- checks -----------------------------------------------------------------------------------------------

/** Every listed layer (file) shows exactly `view` over `blocks` 64 KiB blocks (zeroes elsewhere). */
async function assertViews(items: [path: string, view: View, blocks: number][], context: string): Promise<void> {
  await assertManyPatterns(items.map(([path, v, blocks]) => ({ path, expects: expectsFor(v, blocks), context: `${context} ${path.split('/').pop() ?? ''}` })));
}

const sha = (path: string): string => createHash('sha256').update(readFileSync(path)).digest('hex');
const shas = (paths: string[]): string[] => paths.map(sha);

const layerFile = (s: PveDirStorage, vol: PveVolume, snap?: string): string => pve.filesystemPath(s, vol, snap);

/** The files of images/<vmid>/ (no hidden temporaries expected after an operation). */
const filesOf = (s: PveDirStorage, vmid: number): string[] => (existsSync(pve.imagesDir(s, vmid)) ? readdirSync(pve.imagesDir(s, vmid)).sort() : []);

// ---- volchain on the storage PVE made ----------------------------------------------------------------------

describe('volchain on a dir storage Proxmox VE made (hyphenated snapshots, cloud-init, vmstate, vmdk, nfs, cifs)', () => {
  let f: PveDirFixture;
  const ok = (args: string[]): Promise<string> => cliOk(f, args, { env: f.env });
  const json = async <T>(args: string[]): Promise<T> => JSON.parse(await ok([...args, '--json'])) as T;
  const d0 = (): PveVolume => f.disk0.vol;
  const S = (): PveDirStorage => f.storages.pvedir;
  const VOLID = 'pvedir:101/vm-101-disk-0.qcow2';
  const B = 64; // disk0: 4 MiB
  /** disk0's views as PVE made them: pre-up, a-b-c, current. */
  const views = (): Map<string, View> => viewsOf(f.disk0);

  before(async () => {
    f = await makePveDirFixture();
  });
  after(async () => {
    await f.cleanup();
  });

  it('the fixture holds what PVE wrote: every layer of every volume, every qcow2 checks clean', async () => {
    const items: [string, View, number][] = [];
    for (const d of [f.disk0, f.dataFoo, f.nasDisk, f.smbDisk]) {
      const blocks = (d.sizeKiB * 1024) / BLOCK;
      for (const [snap, v] of viewsOf(d)) items.push([layerFile(d.storage, d.vol, snap === 'current' ? undefined : snap), v, blocks]);
    }
    await assertViews(items, 'PVE-made');
    for (const s of Object.values(f.storages)) assert.ok((await checkAllLayers(s.path)) > 0);
  });

  it('list: every volume of every storage (dir, nfs, cifs) with its snapshots; the vmdk with its problem; exit 0', async () => {
    interface Entry {
      volid: string;
      vmid: number;
      template: boolean;
      base?: string | null;
      clones: string[];
      format: string | null;
      virtualSize?: number;
      fileBytes?: number | null;
      snapshots?: string[];
      problem: { code: string; message: string } | null;
    }
    const dir = await json<{ volumes: Entry[] }>(['list', 'pvedir']);
    assert.deepEqual(
      dir.volumes.map((v) => [v.volid, v.format, v.virtualSize, v.snapshots, v.problem?.code ?? null]),
      [
        ['pvedir:101/vm-101-cloudinit.qcow2', 'qcow2', 4 * 1024 * 1024, [], null],
        ['pvedir:101/vm-101-data-foo.qcow2', 'qcow2', 1024 * 1024, ['s-1'], null],
        [VOLID, 'qcow2', 4 * 1024 * 1024, ['a-b-c', 'pre-up'], null],
        // PVE's vmdk is listed with why volchain does not operate on it (issue 14); operations on it exit 5.
        ['pvedir:101/vm-101-disk-1.vmdk', 'vmdk', undefined, undefined, 'NOT_SUPPORTED'],
        ['pvedir:101/vm-101-state-pre-up.raw', 'raw', 1024 * 1024, [], null],
        ['pvedir:110/base-110-disk-0.qcow2', 'qcow2', 4 * 1024 * 1024, [], null],
        ['pvedir:110/base-110-disk-0.qcow2/111/vm-111-disk-0.qcow2', 'qcow2', 4 * 1024 * 1024, [], null],
        ['pvedir:110/base-110-disk-0.qcow2/112/vm-112-disk-0.qcow2', 'qcow2', 4 * 1024 * 1024, [], null],
      ],
    );
    // The template's base with its clones, each clone with its base.
    const linked = dir.volumes.filter((v) => v.vmid >= 110).map((v) => [v.volid, v.template, v.base ?? null, v.clones]);
    const BASE = f.template.volid;
    assert.deepEqual(linked, [
      [BASE, true, null, f.template.clones.map((c) => c.volid)],
      [f.template.clones[0]?.volid, false, BASE, []],
      [f.template.clones[1]?.volid, false, BASE, []],
    ]);
    const vmdk = dir.volumes.find((v) => v.volid === 'pvedir:101/vm-101-disk-1.vmdk');
    assert.match(vmdk?.problem?.message ?? '', /format "vmdk": volchain handles only raw and qcow2 images/);
    assert.equal(vmdk?.fileBytes, statSync(layerFile(S(), f.vmdk)).size);
    const table = await ok(['list', 'pvedir']);
    assert.match(table, /^pvedir:101\/vm-101-disk-1\.vmdk\s+vmdk\s+\d/m);
    assert.match(table, /^pvedir:101\/vm-101-disk-1\.vmdk: cannot be read \(NOT_SUPPORTED\): .*format "vmdk"/m);
    const vmdkBefore = sha(layerFile(S(), f.vmdk));
    for (const args of [
      ['info', 'pvedir:101/vm-101-disk-1.vmdk'],
      ['snapshot', 'create', 'pvedir:101/vm-101-disk-1.vmdk', 'x1'],
      ['free', 'pvedir:101/vm-101-disk-1.vmdk'],
    ]) {
      await cliFails(f, args, { code: 5, env: f.env, match: /format "vmdk"/ });
    }
    assert.equal(sha(layerFile(S(), f.vmdk)), vmdkBefore);
    const nas = await json<{ volumes: Entry[] }>(['list', 'nas']);
    assert.deepEqual(
      nas.volumes.map((v) => [v.volid, v.snapshots, v.problem]),
      [['nas:102/vm-102-disk-0.qcow2', ['pre-up'], null]],
    );
    const smb = await json<{ volumes: Entry[] }>(['list', 'smb']);
    assert.deepEqual(
      smb.volumes.map((v) => [v.volid, v.snapshots, v.problem]),
      [['smb:103/vm-103-disk-0.qcow2', [], null]],
    );
    const storages = await json<{ storages: { id: string; type: string; mounted: boolean | null; supported: boolean }[] }>(['storage', 'list']);
    assert.deepEqual(
      storages.storages.map((x) => [x.id, x.type, x.mounted, x.supported]),
      [
        ['pvedir', 'dir', null, true],
        ['nas', 'nfs', true, true],
        ['smb', 'cifs', true, true],
        ['pvelvm', 'lvm', null, true],
      ],
    );
    const text = await ok(['snapshot', 'list', VOLID]);
    assert.match(text, /pre-up[\s\S]*a-b-c[\s\S]*current/);
  });

  it('on the nfs and cifs storages: snapshot create and delete of the PVE-made snapshot, data right', async () => {
    for (const d of [f.nasDisk, f.smbDisk]) {
      const volid = `${d.storage.id}:${d.vol.vmid}/${d.vol.name}`;
      const v = viewsOf(d);
      await ok(['snapshot', 'create', volid, 'vc-n']);
      for (const [snap] of d.snapshots) await ok(['snapshot', 'delete', volid, snap]);
      const blocks = (d.sizeKiB * 1024) / BLOCK;
      await assertViews(
        [
          [layerFile(d.storage, d.vol, 'vc-n'), v.get('current') as View, blocks],
          [layerFile(d.storage, d.vol), v.get('current') as View, blocks],
        ],
        d.storage.id,
      );
      assert.deepEqual(filesOf(d.storage, d.vol.vmid), [`snap-vc-n-${d.vol.name}`, d.vol.name]);
      await checkAllLayers(d.storage.path);
    }
  });

  it("vm snapshot takes the disks of the VM config (not cloud-init, vmstate, unused vmdk); PVE's frozen layers keep their bytes", async () => {
    const frozen = [layerFile(S(), d0(), 'pre-up'), layerFile(S(), d0(), 'a-b-c'), layerFile(S(), f.dataFoo.vol, 's-1')];
    const others = [layerFile(S(), f.cloudinit), layerFile(S(), f.state), layerFile(S(), f.vmdk)];
    const before = shas([...frozen, ...others]);
    // Without the config, every storage is searched for VM 101's disks; the lvm section's VG is absent here, so
    // that storage is skipped with a warning (stderr, and `warnings` with --json), not a failure (issue 14).
    const dry = await cli(f, ['vm', 'snapshot', '101', 'vc-1', '--dry-run', '--json'], { env: f.env });
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stderr, /^warning: storage 'pvelvm' skipped while looking for VM 101's disks: volume group pve-absent does not exist/m);
    const planned = JSON.parse(dry.stdout) as { plans: { volid: string }[]; warnings?: string[] };
    assert.deepEqual(planned.plans.map((p) => p.volid).sort(), ['pvedir:101/vm-101-data-foo.qcow2', VOLID]);
    assert.equal(planned.warnings?.length, 1);
    assert.match(planned.warnings?.[0] ?? '', /storage 'pvelvm' skipped/);
    // The nfs and cifs shares not mounted: skipped too, each with its warning; the dir disks are still found.
    const noMounts = join(f.root, 'mounts-none');
    writeFileSync(noMounts, 'proc /proc proc rw 0 0\n');
    const unmounted = await cli(f, ['vm', 'snapshot', '101', 'vc-1', '--dry-run', '--json'], { env: { VOLCHAIN_PROC_MOUNTS: noMounts } });
    assert.equal(unmounted.code, 0, unmounted.stderr);
    const w = (JSON.parse(unmounted.stdout) as { warnings?: string[] }).warnings ?? [];
    assert.deepEqual(
      w.map((x) => /^storage '(\w+)' skipped/.exec(x)?.[1]),
      ['nas', 'smb', 'pvelvm'],
    );
    assert.match(w[0] ?? '', /storage 'nas' is not mounted/);
    await cliFails(f, ['vm', 'snapshot', '101', 'vc-1', '--storage', 'nas'], {
      code: 5,
      env: { VOLCHAIN_PROC_MOUNTS: noMounts },
      match: /storage 'nas' is not mounted/,
    });
    // Named with --storage, the unavailable storage's error is the answer.
    await cliFails(f, ['vm', 'snapshot', '101', 'vc-1', '--storage', 'pvelvm'], { code: 3, env: f.env, match: /volume group pve-absent does not exist/ });
    await ok(['vm', 'snapshot', '101', 'vc-1', '--vm-config', f.vmConfig]);
    assert.deepEqual(shas([...frozen, ...others]), before, 'PVE-made frozen layers and the other volumes unchanged');
    assert.deepEqual(filesOf(S(), 101), [
      'snap-a-b-c-vm-101-disk-0.qcow2',
      'snap-pre-up-vm-101-disk-0.qcow2',
      'snap-s-1-vm-101-data-foo.qcow2',
      'snap-vc-1-vm-101-data-foo.qcow2',
      'snap-vc-1-vm-101-disk-0.qcow2',
      'vm-101-cloudinit.qcow2',
      'vm-101-data-foo.qcow2',
      'vm-101-disk-0.qcow2',
      'vm-101-disk-1.vmdk',
      'vm-101-state-pre-up.raw',
    ]);
    writeBlocks(layerFile(S(), d0()), run(60, 61, 0x71));
    const v = views();
    await assertViews(
      [
        [layerFile(S(), d0(), 'pre-up'), v.get('pre-up') as View, B],
        [layerFile(S(), d0(), 'a-b-c'), v.get('a-b-c') as View, B],
        [layerFile(S(), d0(), 'vc-1'), v.get('current') as View, B],
        [layerFile(S(), d0()), over(v.get('current') as View, run(60, 61, 0x71)), B],
      ],
      'after vm snapshot vc-1',
    );
    await checkAllLayers(S().path, 101);
  });

  it('rollback to the newest snapshot, then to an older one (pre-up): the newer ones stay, every view right', async () => {
    const v = views();
    const frozen = [layerFile(S(), d0(), 'pre-up'), layerFile(S(), d0(), 'a-b-c'), layerFile(S(), d0(), 'vc-1')];
    const before = shas(frozen);
    await ok(['snapshot', 'rollback', VOLID, 'vc-1']);
    await assertViews([[layerFile(S(), d0()), v.get('current') as View, B]], 'after rollback to vc-1');
    await ok(['snapshot', 'rollback', VOLID, 'pre-up']);
    assert.deepEqual(shas(frozen), before, 'frozen layers unchanged by rollbacks');
    await assertViews(
      [
        [layerFile(S(), d0()), v.get('pre-up') as View, B],
        [layerFile(S(), d0(), 'a-b-c'), v.get('a-b-c') as View, B],
        [layerFile(S(), d0(), 'vc-1'), v.get('current') as View, B],
      ],
      'after rollback to pre-up',
    );
    await checkAllLayers(S().path, 101);
  });
});

// ---- TEMPLATE + LINKED CLONES on the same PVE-made storage (template 110, clones 111 and 112, made with PVE's
// create_base / clone_image): snapshot / roll back / delete on each clone VM, and check by sha256 + mtime that
// the base (../110/base-110-disk-0.qcow2) was never written, as the cells above do for frozen layers. (The
// listing of the base with its clones is in the list cell above.)

describe('volchain on the linked clones of a template Proxmox VE made (same PVE-made storage)', () => {
  let f: PveDirFixture;
  const ok = (args: string[]): Promise<string> => cliOk(f, args, { env: f.env });
  const B = 64; // 4 MiB

  before(async () => {
    f = await makePveDirFixture();
  });
  after(async () => {
    await f.cleanup();
  });

  it('vm snapshot (no config: every storage searched), rollback, delete on each clone VM; base never written; data right', async () => {
    const base = await fileFingerprint(f.template.basePath);
    const baseRef = `../110/${f.template.base.name}`;
    for (const [i, c] of f.template.clones.entries()) {
      const other = f.template.clones[1 - i] as PveClone;
      const otherBefore = sha(other.path);
      const snapFile = join(pve.imagesDir(f.storages.pvedir, c.vmid), `snap-c-1-${c.name}`);
      // No VM config for the clone: volchain searches the storages (pvelvm, absent here, skipped with a warning).
      const r = await cli(f, ['vm', 'snapshot', String(c.vmid), 'c-1'], { env: f.env });
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /warning: storage 'pvelvm' skipped/);
      assert.deepEqual(filesOf(f.storages.pvedir, c.vmid), [`snap-c-1-${c.name}`, c.name]);
      // The snapshot layer is now the clone's bottom: it, not the current layer, names the base.
      assert.equal(backingOf(snapFile), baseRef);
      const written = run(30 + i, 31 + i, 0xf1 + i);
      writeBlocks(c.path, written);
      await assertViews(
        [
          [snapFile, c.view, B],
          [c.path, over(c.view, written), B],
          [f.template.basePath, f.template.view, B],
        ],
        `clone ${c.vmid} after snapshot`,
      );
      assert.equal(await fileFingerprint(f.template.basePath), base, 'base unchanged by vm snapshot');

      const listed = JSON.parse(await ok(['snapshot', 'list', c.volid, '--json'])) as { snapshots: { name: string }[] };
      assert.deepEqual(
        listed.snapshots.map((x) => x.name),
        ['c-1'],
      );
      await ok(['vm', 'rollback', String(c.vmid), 'c-1', '--storage', 'pvedir']);
      await assertViews(
        [
          [c.path, c.view, B],
          [snapFile, c.view, B],
        ],
        `clone ${c.vmid} after rollback`,
      );
      assert.equal(await fileFingerprint(f.template.basePath), base, 'base unchanged by rollback');

      const later = run(40 + i, 40 + i, 0xf5 + i);
      writeBlocks(c.path, later);
      await ok(['vm', 'delsnapshot', String(c.vmid), 'c-1', '--storage', 'pvedir']);
      assert.deepEqual(filesOf(f.storages.pvedir, c.vmid), [c.name]);
      assert.equal(backingOf(c.path), baseRef, 'the clone reads its base again, by the same reference');
      await assertViews(
        [
          [c.path, over(c.view, later), B],
          [f.template.basePath, f.template.view, B],
        ],
        `clone ${c.vmid} after delete`,
      );
      assert.equal(await fileFingerprint(f.template.basePath), base, 'base unchanged by delete');
      assert.equal(sha(other.path), otherBefore, 'the other clone untouched');
    }
    // Still the template with its two clones; free of the base is refused, naming them.
    const info = JSON.parse(await ok(['info', f.template.volid, '--json'])) as { clones: string[] };
    assert.deepEqual(
      info.clones,
      f.template.clones.map((c) => c.volid),
    );
    await cliFails(f, ['free', f.template.volid], { code: 5, env: f.env, match: /vm-111-disk-0\.qcow2/ });
    assert.equal(await fileFingerprint(f.template.basePath), base);
    await checkAllLayers(f.storages.pvedir.path);
  });
});

/** The backing file name a qcow2 layer's header holds (qemu-img info, no chain followed). */
function backingOf(path: string): string | undefined {
  const r = spawnSync('qemu-img', ['info', '--output=json', '-U', path], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return (JSON.parse(r.stdout) as { 'backing-filename'?: string })['backing-filename'];
}

describe('volchain deletes first, middle and newest snapshot of a chain PVE made; resize; free', () => {
  let f: PveDirFixture;
  const ok = (args: string[]): Promise<string> => cliOk(f, args, { env: f.env });
  const VOLID = 'pvedir:101/vm-101-disk-0.qcow2';
  const B = 64;
  let v: Map<string, View>;
  const file = (snap?: string): string => layerFile(f.storages.pvedir, f.disk0.vol, snap);

  before(async () => {
    f = await makePveDirFixture();
    // A third snapshot, by PVE too, so the chain has a middle: pre-up <- a-b-c <- z_9 <- current.
    await pve.volumeSnapshot(f.storages.pvedir, f.disk0.vol, 'z_9');
    writeBlocks(file(), run(40, 41, 0x91));
    v = viewsOf(f.disk0);
    v.set('z_9', v.get('current') as View);
    v.set('current', over(v.get('current') as View, run(40, 41, 0x91)));
  });
  after(async () => {
    await f.cleanup();
  });

  it('rollback to the newest (z_9, made by PVE), then delete the middle (a-b-c), the first (pre-up), the newest (z_9)', async () => {
    const frozen = shas([file('pre-up'), file('a-b-c'), file('z_9')]);
    await ok(['snapshot', 'rollback', VOLID, 'z_9']);
    v.set('current', v.get('z_9') as View);
    assert.deepEqual(shas([file('pre-up'), file('a-b-c'), file('z_9')]), frozen);
    await assertViews([[file(), v.get('current') as View, B]], 'after rollback to z_9');
    writeBlocks(file(), run(42, 42, 0x92));
    v.set('current', over(v.get('z_9') as View, run(42, 42, 0x92)));
    await ok(['snapshot', 'delete', VOLID, 'a-b-c']);
    assert.ok(!existsSync(file('a-b-c')));
    await assertViews(
      [
        [file('pre-up'), v.get('pre-up') as View, B],
        [file('z_9'), v.get('z_9') as View, B],
        [file(), v.get('current') as View, B],
      ],
      'after delete a-b-c',
    );
    await ok(['snapshot', 'delete', VOLID, 'pre-up']);
    assert.ok(!existsSync(file('pre-up')));
    await assertViews(
      [
        [file('z_9'), v.get('z_9') as View, B],
        [file(), v.get('current') as View, B],
      ],
      'after delete pre-up',
    );
    await ok(['snapshot', 'delete', VOLID, 'z_9']);
    await assertViews([[file(), v.get('current') as View, B]], 'after delete z_9');
    assert.deepEqual(
      filesOf(f.storages.pvedir, 101).filter((n) => n.includes('disk-0')),
      ['vm-101-disk-0.qcow2'],
    );
    await checkAllLayers(f.storages.pvedir.path, 101);
  });

  it('resize grows the current layer; PVE reads the new size; free removes every layer of the volume only', async () => {
    await pve.volumeSnapshot(f.storages.pvedir, f.disk0.vol, 'pre-up');
    await ok(['resize', VOLID, '8M']);
    const info = await pve.volumeSnapshotInfo(f.storages.pvedir, f.disk0.vol);
    assert.equal(info.get('current')?.['virtual-size'], 8 * 1024 * 1024);
    assert.equal(info.get('pre-up')?.['virtual-size'], 4 * 1024 * 1024);
    await assertViews(
      [
        [file(), v.get('current') as View, 128],
        [file('pre-up'), v.get('current') as View, 64],
      ],
      'after resize',
    );
    const others = ['vm-101-cloudinit.qcow2', 'vm-101-state-pre-up.raw', 'vm-101-disk-1.vmdk', 'vm-101-data-foo.qcow2', 'snap-s-1-vm-101-data-foo.qcow2'];
    const before = shas(others.map((n) => join(pve.imagesDir(f.storages.pvedir, 101), n)));
    await ok(['free', VOLID]);
    assert.deepEqual(filesOf(f.storages.pvedir, 101), [...others].sort());
    assert.deepEqual(shas(others.map((n) => join(pve.imagesDir(f.storages.pvedir, 101), n))), before);
  });
});

// ---- PVE on chains volchain made ---------------------------------------------------------------------------

/** A chain made by volchain: s-1 <- s-2 <- s-3 <- current on a 2 MiB disk (32 blocks), data in each layer. */
const VC_WRITES: [string, [number, number][]][] = [
  ['s-1', [...run(0, 9, 0xa1), ...run(20, 21, 0xa2)]],
  ['s-2', [...run(2, 3, 0xb1), ...run(12, 13, 0xb2)]],
  ['s-3', [...run(3, 4, 0xc1), ...run(25, 25, 0xc2)]],
];
const VC_CURRENT = [...run(0, 0, 0xd1), ...run(13, 14, 0xd2)];
const VB = 32;

interface VcChain {
  t: TestStorage;
  s: PveDirStorage;
  vol: PveVolume;
  volid: string;
  v: Map<string, View>;
  file(snap?: string): string;
}

async function volchainChain(): Promise<VcChain> {
  const t = await makeStorage({ id: 'vcdir' });
  const volid = (await cliOk(t, ['alloc', 'vcdir', '200', '2M'])).trim();
  const vol = { vmid: 200, name: 'vm-200-disk-0.qcow2' };
  const s: PveDirStorage = { id: 'vcdir', path: t.path, chain: true };
  const file = (snap?: string): string => pve.filesystemPath(s, vol, snap);
  const v = new Map<string, View>();
  let cur: View = new Map();
  for (const [snap, writes] of VC_WRITES) {
    writeBlocks(file(), writes);
    cur = over(cur, writes);
    v.set(snap, cur);
    await cliOk(t, ['snapshot', 'create', volid, snap]);
  }
  writeBlocks(file(), VC_CURRENT);
  v.set('current', over(cur, VC_CURRENT));
  return { t, s, vol, volid, v, file };
}

/** Every named layer shows its view (names: snapshots, 'current'). */
async function assertChain(c: VcChain, names: string[], context: string, views: Map<string, View> = c.v): Promise<void> {
  await assertViews(
    names.map((n) => [c.file(n === 'current' ? undefined : n), views.get(n) as View, VB]),
    context,
  );
  await checkAllLayers(c.t.path, 200);
}

/** volchain reads the volume afterwards: its snapshot names in the current chain. */
async function volchainSees(c: VcChain): Promise<string[]> {
  const r = JSON.parse(await cliOk(c.t, ['snapshot', 'list', c.volid, '--json'])) as { snapshots: { name: string }[] };
  return r.snapshots.map((x) => x.name).sort();
}

describe('PVE 9 commands on a linear chain volchain made', () => {
  let c: VcChain;
  before(async () => {
    c = await volchainChain();
  });
  after(async () => {
    await c.t.cleanup();
  });

  it("PVE sees volchain's snapshots in order; refuses a rollback to an older one and changes nothing", async () => {
    const info = await pve.volumeSnapshotInfo(c.s, c.vol);
    assert.deepEqual(
      [...info.entries()].map(([n, e]) => [n, e.order, e.parent ?? null]),
      [
        ['current', 0, 's-3'],
        ['s-3', 1, 's-2'],
        ['s-2', 2, 's-1'],
        ['s-1', 3, null],
      ],
    );
    const before = shas(['s-1', 's-2', 's-3', undefined].map((n) => c.file(n)));
    await assert.rejects(pve.snapshotRollback(c.s, c.vol, 's-1'), /'s-1' is not most recent snapshot/);
    await assert.rejects(pve.volumeSnapshot(c.s, c.vol, 's-2'), /target snapshot 's-2' already exists/);
    assert.deepEqual(shas(['s-1', 's-2', 's-3', undefined].map((n) => c.file(n))), before);
    assert.deepEqual(readdirSync(pve.imagesDir(c.s, 200)).sort(), [
      'snap-s-1-vm-200-disk-0.qcow2',
      'snap-s-2-vm-200-disk-0.qcow2',
      'snap-s-3-vm-200-disk-0.qcow2',
      'vm-200-disk-0.qcow2',
    ]);
  });

  it('PVE snapshot, rollback to the newest, delete middle / first / newest: views right, volchain reads it', async () => {
    await pve.volumeSnapshot(c.s, c.vol, 'p-4');
    c.v.set('p-4', c.v.get('current') as View);
    assert.deepEqual(await volchainSees(c), ['p-4', 's-1', 's-2', 's-3']);
    writeBlocks(c.file(), run(30, 30, 0xe1));
    await pve.snapshotRollback(c.s, c.vol, 'p-4');
    c.v.set('current', c.v.get('p-4') as View);
    await assertChain(c, ['s-1', 's-2', 's-3', 'p-4', 'current'], 'after PVE snapshot + rollback');
    assert.equal(await pve.volumeSnapshotDelete(c.s, c.vol, 's-2'), 'rebase');
    await assertChain(c, ['s-1', 's-3', 'p-4', 'current'], 'after PVE delete middle s-2');
    assert.equal(await pve.volumeSnapshotDelete(c.s, c.vol, 's-1'), 'commit');
    await assertChain(c, ['s-3', 'p-4', 'current'], 'after PVE delete first s-1');
    assert.equal(await pve.volumeSnapshotDelete(c.s, c.vol, 'p-4'), 'rebase');
    await assertChain(c, ['s-3', 'current'], 'after PVE delete newest p-4');
    assert.deepEqual(await volchainSees(c), ['s-3']);
  });

  it('PVE resize grows the current layer; volchain then snapshots and deletes the smaller first snapshot by PVE', async () => {
    await pve.resizeVm(c.s, c.vol, 4 * 1024 * 1024);
    await assert.rejects(pve.resizeVm(c.s, c.vol, 1024 * 1024), /shrinking disks is not supported/);
    const info = JSON.parse(await cliOk(c.t, ['info', c.volid, '--json'])) as { virtualSize: number };
    assert.equal(info.virtualSize, 4 * 1024 * 1024);
    await cliOk(c.t, ['snapshot', 'create', c.volid, 'big']);
    c.v.set('big', c.v.get('current') as View);
    // PVE's offline delete of the first snapshot commits a 4 MiB child into the 2 MiB s-3 (qemu-img grows it).
    assert.equal(await pve.volumeSnapshotDelete(c.s, c.vol, 's-3'), 'commit');
    await assertViews(
      [
        [c.file('big'), c.v.get('big') as View, 64],
        [c.file(), c.v.get('current') as View, 64],
      ],
      'after PVE delete of the smaller first snapshot',
    );
    await checkAllLayers(c.t.path, 200);
  });

  it('PVE free removes the volume and every snapshot layer; volchain lists nothing', async () => {
    assert.deepEqual(await pve.freeImage(c.s, c.vol), []);
    assert.ok(!existsSync(pve.imagesDir(c.s, 200)));
    const r = JSON.parse(await cliOk(c.t, ['list', 'vcdir', '--json'])) as { volumes: unknown[] };
    assert.deepEqual(r.volumes, []);
  });
});

describe('PVE 9 commands on the tree volchain leaves after a rollback to an older snapshot', () => {
  let c: VcChain;
  before(async () => {
    c = await volchainChain();
    await cliOk(c.t, ['snapshot', 'rollback', c.volid, 's-1']); // s-2 <- s-3 stay as a branch off s-1
    c.v.set('current', c.v.get('s-1') as View);
    writeBlocks(c.file(), run(16, 16, 0xf1));
    c.v.set('current', over(c.v.get('s-1') as View, run(16, 16, 0xf1)));
  });
  after(async () => {
    await c.t.cleanup();
  });

  it('PVE sees only the current chain (s-1); its snapshot and its rollback to s-1 work and keep the branch', async () => {
    const info = await pve.volumeSnapshotInfo(c.s, c.vol);
    assert.deepEqual([...info.keys()], ['current', 's-1']);
    await pve.volumeSnapshot(c.s, c.vol, 'p-1');
    c.v.set('p-1', c.v.get('current') as View);
    await pve.snapshotRollback(c.s, c.vol, 'p-1');
    await assertChain(c, ['s-1', 's-2', 's-3', 'p-1', 'current'], 'after PVE snapshot + rollback on the tree');
    assert.deepEqual(await volchainSees(c), ['p-1', 's-1', 's-2', 's-3']);
  });

  it('PVE deletes its newest snapshot by rebase (the branch untouched)', async () => {
    assert.equal(await pve.volumeSnapshotDelete(c.s, c.vol, 'p-1'), 'rebase');
    await assertChain(c, ['s-1', 's-2', 's-3', 'current'], 'after PVE delete p-1');
  });

  it('PVE resize (its bare command line) of the tree, then volchain resize of it: every layer of both branches keeps its data', async () => {
    const frozen = ['s-1', 's-2', 's-3'];
    const sizeOf = (path: string): number =>
      (JSON.parse(spawnSync('qemu-img', ['info', '--output=json', '-f', 'qcow2', path], { encoding: 'utf8' }).stdout) as { 'virtual-size': number })[
        'virtual-size'
      ];
    // PVE's Plugin.pm volume_resize: qemu-img resize of the current layer only; the branch s-2 <- s-3 is off its chain.
    await pve.resizeVm(c.s, c.vol, 3 * 1024 * 1024);
    writeBlocks(c.file(), run(40, 41, 0xf2)); // past the old end
    c.v.set('current', over(c.v.get('current') as View, run(40, 41, 0xf2)));
    await assertViews(
      [...frozen.map((n): [string, View, number] => [c.file(n), c.v.get(n) as View, VB]), [c.file(), c.v.get('current') as View, 48]],
      'after PVE resize of the tree',
    );
    assert.equal(await checkAllLayers(c.t.path, 200), 4);
    assert.deepEqual(await volchainSees(c), frozen);
    // volchain on the tree PVE resized: grows the current layer again, no frozen layer of either branch touched.
    const before = shas(frozen.map((n) => c.file(n)));
    await cliOk(c.t, ['resize', c.volid, '4M'], { env: { VOLCHAIN_BRANCHES: 'yes' } });
    writeBlocks(c.file(), run(60, 63, 0xf3));
    c.v.set('current', over(c.v.get('current') as View, run(60, 63, 0xf3)));
    await assertViews(
      [...frozen.map((n): [string, View, number] => [c.file(n), c.v.get(n) as View, VB]), [c.file(), c.v.get('current') as View, 64]],
      'after volchain resize of the tree',
    );
    assert.deepEqual(shas(frozen.map((n) => c.file(n))), before, 'the frozen layers keep their bytes');
    assert.deepEqual(
      [...frozen, undefined].map((n) => sizeOf(c.file(n))),
      [2, 2, 2, 4].map((m) => m * 1024 * 1024),
    );
    assert.equal(await checkAllLayers(c.t.path, 200), 4);
    const info = JSON.parse(await cliOk(c.t, ['info', c.volid, '--json'])) as { virtualSize: number };
    assert.equal(info.virtualSize, 4 * 1024 * 1024);
  });

  it('PVE free removes the chain it sees and leaves the branch layers without their backing file', async () => {
    assert.deepEqual(await pve.freeImage(c.s, c.vol), []);
    assert.deepEqual(readdirSync(pve.imagesDir(c.s, 200)).sort(), ['snap-s-2-vm-200-disk-0.qcow2', 'snap-s-3-vm-200-disk-0.qcow2']);
    assert.notEqual((await runQemuImgInfo(c.file('s-3'))).code, 0);
  });
});

describe('next to PVE, volchain makes no branch: a rollback that would keep newer snapshots is refused', () => {
  let c: VcChain;
  const asPve = { VOLCHAIN_BRANCHES: 'no' }; // what 'auto' gives when the config is /etc/pve/storage.cfg
  before(async () => {
    c = await volchainChain();
  });
  after(async () => {
    await c.t.cleanup();
  });

  it("why: on a tree, PVE deleting the branch point (first: commit+rename, middle: rebase+unlink) takes the branch's backing file away", async () => {
    for (const [point, child, way] of [
      ['s-1', 's-2', 'commit'],
      ['s-2', 's-3', 'rebase'],
    ] as const) {
      const t = await volchainChain();
      try {
        await cliOk(t.t, ['snapshot', 'rollback', t.volid, point]); // VOLCHAIN_BRANCHES unset, not PVE's config: kept
        assert.equal(await pve.volumeSnapshotDelete(t.s, t.vol, point), way);
        const r = await runQemuImgInfo(t.file(child));
        assert.notEqual(r.code, 0, `${child} lost its backing file snap-${point}-...`);
        assert.match(r.stderr, new RegExp(`snap-${point}-vm-200-disk-0\\.qcow2`));
      } finally {
        await t.t.cleanup();
      }
    }
  });

  it('snapshot rollback and vm rollback to an older snapshot: exit 5, nothing changed; --purge-newer works', async () => {
    const before = await snapshotOf(c.t.path);
    await cliFails(c.t, ['snapshot', 'rollback', c.volid, 's-1'], {
      code: 5,
      env: asPve,
      match: /keep newer snapshot\(s\) "s-3", "s-2" as a branch.*--purge-newer.*VOLCHAIN_BRANCHES=yes/,
    });
    await cliFails(c.t, ['vm', 'rollback', '200', 's-2'], { code: 5, env: asPve, match: /"s-3" as a branch/ });
    assertSameTree(before, await snapshotOf(c.t.path), 'refused rollbacks');
    await cliOk(c.t, ['snapshot', 'rollback', c.volid, 's-3'], { env: asPve }); // the newest: no branch
    await cliOk(c.t, ['snapshot', 'rollback', c.volid, 's-2', '--purge-newer'], { env: asPve });
    assert.ok(!existsSync(c.file('s-3')));
    c.v.set('current', c.v.get('s-2') as View);
    await assertChain(c, ['s-1', 's-2', 'current'], 'after rollback --purge-newer');
    // The chain stays linear, so PVE's delete of the first snapshot is safe again.
    assert.equal(await pve.volumeSnapshotDelete(c.s, c.vol, 's-1'), 'commit');
    await assertChain(c, ['s-2', 'current'], 'after PVE delete s-1');
  });

  it('VOLCHAIN_BRANCHES must be auto, yes or no (exit 2)', async () => {
    await cliFails(c.t, ['list', 'vcdir'], { code: 2, env: { VOLCHAIN_BRANCHES: 'maybe' }, match: /VOLCHAIN_BRANCHES must be auto, yes, no, got "maybe"/ });
  });
});

function runQemuImgInfo(path: string): Promise<RunResult> {
  return runCommand('qemu-img', ['info', '--backing-chain', '-f', 'qcow2', path], { env: { ...process.env, LC_ALL: 'C' } });
}
