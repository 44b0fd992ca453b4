/**
 * storage.cfg as Proxmox VE reads it, end to end through the CLI with real qemu-img/qemu-io: nfs and cifs
 * storages as directories at their path (refused while their share is not mounted, the mount table given
 * with $VOLCHAIN_PROC_MOUNTS), content-dirs, the `format` default, preallocation of snapshot overlays, and
 * `nodes` refusing a storage meant for other hosts.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { MiB, assertPattern, assertSameTree, checkClean, cli, cliFails, cliOk, imageInfo, snapshotOf, writePattern } from './helpers.js';

const NODE = hostname().split('.')[0] ?? '';

interface Place {
  root: string;
  cfg: string;
  mounts: string;
  env: Record<string, string>;
}

let place: Place;

/** A temporary directory holding config and mount table. */
async function makePlace(): Promise<Place> {
  const root = await mkdtemp(join(tmpdir(), 'volchain-cfg-'));
  const mounts = join(root, 'mounts');
  await writeFile(mounts, 'proc /proc proc rw 0 0\n');
  return { root, cfg: join(root, 'storage.cfg'), mounts, env: { VOLCHAIN_PROC_MOUNTS: mounts } };
}

/** /proc/mounts writes a space in a field as \040. */
const escapeMount = (field: string): string => field.replace(/ /g, '\\040');

async function writeConfig(...sections: string[][]): Promise<void> {
  await writeFile(place.cfg, sections.map((s) => s.join('\n') + '\n').join('\n'));
}

async function writeMounts(...entries: [source: string, mountpoint: string, fstype: string][]): Promise<void> {
  const lines = entries.map(([source, mountpoint, fstype]) => `${escapeMount(source)} ${escapeMount(mountpoint)} ${fstype} rw,relatime 0 0`);
  await writeFile(place.mounts, ['proc /proc proc rw 0 0', ...lines, ''].join('\n'));
}

const ok = (args: string[]) => cliOk(place, args, { env: place.env });
const fails = (args: string[], expect: { code?: number; match?: RegExp }) => cliFails(place, args, { ...expect, env: place.env });

describe('storage.cfg: nfs and cifs storages', () => {
  let nasPath = '';
  before(async () => {
    place = await makePlace();
    nasPath = join(place.root, 'mnt-pve', 'nas');
    await mkdir(nasPath, { recursive: true });
    await mkdir(join(place.root, 'smb'));
    await writeConfig(
      ['nfs: nas', `\tpath ${nasPath}`, '\tserver 10.1.2.3', '\texport /export/pve', '\tcontent images', '\tsnapshot-as-volume-chain 1'],
      ['cifs: smb', `\tpath ${join(place.root, 'smb')}`, '\tserver fs1', '\tshare vms', '\tsubdir /pve', '\tcontent images', '\tsnapshot-as-volume-chain 1'],
    );
  });
  after(async () => {
    await rm(place.root, { recursive: true, force: true });
  });

  it('an unmounted nfs share is refused for every operation (exit 5), and nothing is written under its path', async () => {
    // Mounted from another server, and the right share at another place: neither is PVE's match.
    await writeMounts(['10.9.9.9:/export/pve', nasPath, 'nfs4'], ['10.1.2.3:/export/pve', join(place.root, 'elsewhere'), 'nfs']);
    const before = await snapshotOf(nasPath);
    for (const args of [
      ['alloc', 'nas', '100', '4M'],
      ['list', 'nas'],
      ['snapshot', 'create', 'nas:100/vm-100-disk-0.qcow2', 's1'],
    ]) {
      await fails(args, { code: 5, match: /storage 'nas' is not mounted: expected nfs share '10\.1\.2\.3:\/export\/pve' at '.*mnt-pve\/nas'/ });
    }
    assertSameTree(before, await snapshotOf(nasPath), 'refused operations on an unmounted nfs storage');
    const listed = JSON.parse(await ok(['storage', 'list', '--json'])) as {
      storages: { id: string; mounted: boolean | null; shared: boolean; supported: boolean }[];
    };
    assert.deepEqual(
      listed.storages.map((s) => [s.id, s.supported, s.shared, s.mounted]),
      [
        ['nas', true, true, false],
        ['smb', true, true, false],
      ],
    );
    const text = await ok(['storage', 'list']);
    assert.match(text, /^nas\s+nfs\s.*not mounted$/m);
  });

  it('a mounted nfs share (nfs4, source with a trailing slash) holds volumes and snapshot layers under <path>/images', async () => {
    await writeMounts(['10.1.2.3:/export/pve/', nasPath, 'nfs4']);
    const volid = (await ok(['alloc', 'nas', '100', '4M'])).trim();
    assert.equal(volid, 'nas:100/vm-100-disk-0.qcow2');
    const current = join(nasPath, 'images', '100', 'vm-100-disk-0.qcow2');
    await writePattern(current, 0xa1, 0, MiB);
    await ok(['snapshot', 'create', volid, 's1']);
    await writePattern(current, 0xb2, 0, 64 * 1024);
    await assertPattern(join(nasPath, 'images', '100', 'snap-s1-vm-100-disk-0.qcow2'), 0xa1, 0, MiB);
    await assertPattern(current, 0xb2, 0, 64 * 1024);
    await assertPattern(current, 0xa1, 64 * 1024, MiB - 64 * 1024);
    await checkClean(current);
    const r = JSON.parse(await ok(['storage', 'list', '--json'])) as { storages: { id: string; mounted: boolean | null }[] };
    assert.equal(r.storages.find((s) => s.id === 'nas')?.mounted, true);
  });

  it('cifs: the share with its subdir must be mounted (type cifs) at the path', async () => {
    const smbPath = join(place.root, 'smb');
    await writeMounts(['//fs1/vms', smbPath, 'cifs']);
    await fails(['alloc', 'smb', '101', '1M'], { code: 5, match: /expected cifs share '\/\/fs1\/vms\/pve'/ });
    await writeMounts(['//fs1/vms/pve', smbPath, 'cifs']);
    assert.equal((await ok(['alloc', 'smb', '101', '1M'])).trim(), 'smb:101/vm-101-disk-0.qcow2');
    await stat(join(smbPath, 'images', '101', 'vm-101-disk-0.qcow2'));
  });

  it('an unreadable mount table is an error, not "unmounted" or "mounted"', async () => {
    const r = await cli(place, ['list', 'nas'], { env: { VOLCHAIN_PROC_MOUNTS: join(place.root, 'no-such-table') } });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /cannot read the mount table/);
  });
});

describe('storage.cfg: dir options content-dirs, format, preallocation, nodes', () => {
  before(async () => {
    place = await makePlace();
  });
  after(async () => {
    await rm(place.root, { recursive: true, force: true });
  });

  it('content-dirs images=... puts volumes and snapshot layers in that sub-directory', async () => {
    const path = join(place.root, 'cd');
    await writeConfig(['dir: cd', `\tpath ${path}`, '\tcontent images,iso', '\tcontent-dirs images=vm/disks,iso=isos', '\tsnapshot-as-volume-chain 1']);
    const volid = (await ok(['alloc', 'cd', '100', '2M'])).trim();
    const current = join(path, 'vm', 'disks', '100', 'vm-100-disk-0.qcow2');
    assert.equal((await ok(['path', volid])).trim(), current);
    await writePattern(current, 0x5c, 0, MiB);
    await ok(['snapshot', 'create', volid, 'before']);
    await assertPattern(join(path, 'vm', 'disks', '100', 'snap-before-vm-100-disk-0.qcow2'), 0x5c, 0, MiB);
    await assert.rejects(stat(join(path, 'images')), /ENOENT/);
    const listed = JSON.parse(await ok(['list', 'cd', '--json'])) as { volumes: { volid: string; snapshots: string[] }[] };
    assert.deepEqual(
      listed.volumes.map((v) => [v.volid, v.snapshots]),
      [[volid, ['before']]],
    );
  });

  it('format is the default format of alloc; one volchain cannot create is refused with nothing written', async () => {
    const path = join(place.root, 'fmt');
    await writeConfig(
      ['dir: rawdef', `\tpath ${path}`, '\tcontent images', '\tformat raw'],
      ['dir: vmdkdef', `\tpath ${join(place.root, 'vmdk')}`, '\tcontent images', '\tformat vmdk'],
    );
    const volid = (await ok(['alloc', 'rawdef', '100', '1M'])).trim();
    assert.equal(volid, 'rawdef:100/vm-100-disk-0.raw');
    assert.equal((await imageInfo(join(path, 'images', '100', 'vm-100-disk-0.raw'), 'raw')).format, 'raw');
    // --format still wins over the storage's default.
    assert.equal((await ok(['alloc', 'rawdef', '100', '1M', '--format', 'qcow2'])).trim(), 'rawdef:100/vm-100-disk-1.qcow2');
    await fails(['alloc', 'vmdkdef', '100', '1M'], {
      code: 5,
      match: /storage 'vmdkdef' has default format 'vmdk', which volchain cannot create; give --format/,
    });
    await assert.rejects(stat(join(place.root, 'vmdk', 'images', '100')), /ENOENT/);
    assert.equal((await ok(['alloc', 'vmdkdef', '100', '1M', '--format', 'qcow2'])).trim(), 'vmdkdef:100/vm-100-disk-0.qcow2');
  });

  it('snapshot overlays get the storage preallocation as PVE gives them (default metadata), data still read through', async () => {
    const size = 8 * MiB;
    const cases: { id: string; prealloc: string | undefined; check: (st: { size: number; blocks: number }) => void }[] = [
      // metadata: every L2 table written, so the file's apparent size reaches the virtual size.
      { id: 'pdefault', prealloc: undefined, check: (st) => assert.ok(st.size >= size, `apparent size ${st.size}`) },
      { id: 'pmeta', prealloc: 'metadata', check: (st) => assert.ok(st.size >= size, `apparent size ${st.size}`) },
      { id: 'poff', prealloc: 'off', check: (st) => assert.ok(st.size < MiB, `apparent size ${st.size}`) },
      { id: 'pfalloc', prealloc: 'falloc', check: (st) => assert.ok(st.blocks * 512 >= size, `allocated ${st.blocks * 512}`) },
    ];
    await writeConfig(
      ...cases.map((c) => [
        `dir: ${c.id}`,
        `\tpath ${join(place.root, c.id)}`,
        '\tcontent images',
        '\tsnapshot-as-volume-chain 1',
        ...(c.prealloc === undefined ? [] : [`\tpreallocation ${c.prealloc}`]),
      ]),
    );
    for (const c of cases) {
      const volid = (await ok(['alloc', c.id, '100', String(size)])).trim();
      const current = join(place.root, c.id, 'images', '100', 'vm-100-disk-0.qcow2');
      await writePattern(current, 0x3e, 0, MiB);
      await ok(['snapshot', 'create', volid, 'one']);
      c.check(await stat(current));
      // The overlay's preallocated clusters must not hide the backing data (extended L2: subclusters stay unallocated).
      await assertPattern(current, 0x3e, 0, MiB);
      await assertPattern(current, 0, MiB, size - MiB);
      await checkClean(current);
    }
  });

  it('nodes: a storage for other nodes is refused for every operation and shown as such; this node is fine', async () => {
    const here = join(place.root, 'here');
    const other = join(place.root, 'other');
    await writeConfig(
      ['dir: here', `\tpath ${here}`, '\tcontent images', `\tnodes ${NODE},othernode`],
      ['dir: other', `\tpath ${other}`, '\tcontent images', '\tnodes othernode,third'],
    );
    assert.equal((await ok(['alloc', 'here', '100', '1M'])).trim(), 'here:100/vm-100-disk-0.qcow2');
    const message = new RegExp(`storage 'other' is not available on node '${NODE}' \\(its nodes: othernode, third\\)`);
    for (const args of [
      ['alloc', 'other', '100', '1M'],
      ['list', 'other'],
      ['info', 'other:100/vm-100-disk-0.qcow2'],
      ['repair', 'other:100/vm-100-disk-0.qcow2'],
    ]) {
      await fails(args, { code: 5, match: message });
    }
    await assert.rejects(stat(other), /ENOENT/);
    // Commands over every storage skip it, as PVE's listings do on a node it is not for.
    const status = JSON.parse(await ok(['status', '--json'])) as { pending: unknown[] };
    assert.deepEqual(status.pending, []);
    const listed = JSON.parse(await ok(['storage', 'list', '--json'])) as { storages: { id: string; availableHere: boolean; nodes: string[] | null }[] };
    assert.deepEqual(
      listed.storages.map((s) => [s.id, s.availableHere, s.nodes]),
      [
        ['here', true, [NODE, 'othernode']],
        ['other', false, ['othernode', 'third']],
      ],
    );
    assert.match(await ok(['storage', 'list']), /^other\s+dir\s.*not on this node$/m);
  });
});

describe('storage.cfg: types without volume chains in PVE', () => {
  before(async () => {
    place = await makePlace();
  });
  after(async () => {
    await rm(place.root, { recursive: true, force: true });
  });
  it('cephfs and btrfs are listed as unsupported and refused (exit 5)', async () => {
    await writeConfig(
      ['cephfs: cfs', `\tpath ${join(place.root, 'cfs')}`, '\tcontent images'],
      ['btrfs: bt', `\tpath ${join(place.root, 'bt')}`, '\tcontent images'],
    );
    for (const id of ['cfs', 'bt']) {
      await fails(['alloc', id, '100', '1M'], {
        code: 5,
        match: new RegExp(`storage '${id}' has type '\\w+', which volchain does not drive \\(supported: dir, nfs, cifs, lvm\\)`),
      });
    }
    assert.match(await ok(['storage', 'list']), /^cfs\s+cephfs\s.*unsupported$/m);
    await assert.rejects(stat(join(place.root, 'cfs')), /ENOENT/);
  });
});

describe('storage.cfg: invalid dir-family options are refused naming file and line (exit 2)', () => {
  before(async () => {
    place = await makePlace();
  });
  after(async () => {
    await rm(place.root, { recursive: true, force: true });
  });
  const cases: { name: string; section: string[]; line: number; match: RegExp }[] = [
    { name: 'nfs without export', section: ['nfs: n1', '\tserver s', '\tcontent images'], line: 1, match: /nfs storage needs the 'export' option/ },
    { name: 'cifs without share', section: ['cifs: c1', '\tserver s'], line: 1, match: /cifs storage needs the 'share' option/ },
    {
      name: 'content-dirs escaping with ..',
      section: ['dir: d1', '\tpath /x', '\tcontent-dirs images=../etc'],
      line: 3,
      match: /content-dirs entry 'images=\.\.\/etc' must be/,
    },
    {
      name: 'content-dirs of an unknown content type',
      section: ['dir: d1', '\tpath /x', '\tcontent-dirs disks=d'],
      line: 3,
      match: /unknown content type 'disks'/,
    },
    {
      name: 'format PVE does not know',
      section: ['dir: d1', '\tpath /x', '\tformat qed'],
      line: 3,
      match: /format must be one of raw, qcow2, vmdk, subvol on dir storage, got 'qed'/,
    },
    {
      name: 'format subvol on nfs',
      section: ['nfs: n1', '\tserver s', '\texport /e', '\tformat subvol'],
      line: 4,
      match: /format must be one of raw, qcow2, vmdk on nfs storage/,
    },
    {
      name: 'relative is_mountpoint',
      section: ['dir: d1', '\tpath /x', '\tis_mountpoint mnt'],
      line: 3,
      match: /is_mountpoint must be yes, no or an absolute path/,
    },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      await writeConfig(c.section);
      const line = await cliFails(place, ['storage', 'list'], { code: 2, match: c.match });
      assert.ok(line.includes(`${place.cfg}:${c.line}:`), line);
    });
  }
});
