/**
 * storage.cfg read as Proxmox VE reads it (pure parts): the dir family (dir/nfs/cifs) options, the mount table
 * and PVE's mount matches, `nodes`, and PVE's fix-up of the `local` storage.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, NotSupportedError } from '../../src/errors.js';
import { readSettings } from '../../src/settings.js';
import {
  assertAvailableHere,
  availableOnNode,
  defaultAllocFormat,
  describeStorage,
  isMounted,
  loadStorageConfig,
  mountPresent,
  parseMountTable,
  parseSections,
  parseStorageConfig,
  withPveLocal,
  type DirStorage,
  type MountEntry,
  type StorageDefinition,
} from '../../src/config/index.js';

const FILE = 'storage.cfg';
const lines = (...ls: string[]): string => ls.join('\n') + '\n';
const one = (...ls: string[]): StorageDefinition => {
  const [def] = parseStorageConfig(lines(...ls), FILE).storages;
  assert.ok(def);
  return def;
};
const dir = (...ls: string[]): DirStorage => {
  const def = one(...ls);
  assert.ok(def.supported && def.backend === 'dir', `${def.id} is a dir-family storage`);
  return def;
};

describe('dir family: nfs and cifs are directories at their path', () => {
  it('nfs without path sits at /mnt/pve/<id>, shared, content images by default', () => {
    const nas = dir('nfs: nas', '\tserver nas.lan', '\texport /pve');
    assert.equal(nas.type, 'nfs');
    assert.equal(nas.path, '/mnt/pve/nas');
    assert.equal(nas.shared, true);
    assert.deepEqual(nas.content, ['images']);
    assert.deepEqual(nas.mount, { mountpoint: '/mnt/pve/nas', fstype: 'nfs', source: 'nas.lan:/pve' });
  });
  it('an IPv6 server is bracketed in the share source, as /proc/mounts shows it', () => {
    assert.equal(dir('nfs: n6', '\tserver fd00::1', '\texport /e').mount?.source, '[fd00::1]:/e');
    assert.equal(dir('cifs: c6', '\tserver fd00::2', '\tshare s').mount?.source, '//[fd00::2]/s');
  });
  it('cifs: //server/share plus subdir', () => {
    const smb = dir('cifs: smb', '\tpath /srv/smb', '\tserver fs1', '\tshare vms', '\tsubdir /a/b');
    assert.deepEqual(smb.mount, { mountpoint: '/srv/smb', fstype: 'cifs', source: '//fs1/vms/a/b' });
  });
  it('cephfs and btrfs stay unsupported (PVE offers no snapshot-as-volume-chain there)', () => {
    assert.equal(one('cephfs: cfs', '\tpath /mnt/pve/cfs').supported, false);
    assert.equal(one('btrfs: bt', '\tpath /b').supported, false);
  });
});

describe('dir family: is_mountpoint, content-dirs, format', () => {
  const mountCases: { value: string; expect: DirStorage['mount'] }[] = [
    { value: 'yes', expect: { mountpoint: '/d' } },
    { value: '1', expect: { mountpoint: '/d' } },
    { value: 'On', expect: { mountpoint: '/d' } },
    { value: 'no', expect: undefined },
    { value: '0', expect: undefined },
    { value: '/mnt/disk', expect: { mountpoint: '/mnt/disk' } },
  ];
  for (const c of mountCases) {
    it(`is_mountpoint ${c.value}`, () => {
      assert.deepEqual(dir('dir: d1', '\tpath /d', `\tis_mountpoint ${c.value}`).mount, c.expect);
    });
  }

  const subdirCases: { value: string; imagesDir: string }[] = [
    { value: 'images=vm-disks', imagesDir: 'vm-disks' },
    { value: 'iso=isos,images=a/b', imagesDir: 'a/b' },
    { value: 'iso=isos', imagesDir: 'images' },
    // PVE builds "$path/$subdir": a leading slash still means inside the storage.
    { value: 'images=/abs//x/', imagesDir: 'abs/x' },
    { value: 'images=./x', imagesDir: 'x' },
    { value: 'images=.hidden', imagesDir: '.hidden' },
  ];
  for (const c of subdirCases) {
    it(`content-dirs ${c.value} puts images in '${c.imagesDir}'`, () => {
      const d = dir('dir: d1', '\tpath /d', `\tcontent-dirs ${c.value}`);
      assert.equal(d.imagesDir, c.imagesDir);
      assert.equal(describeStorage(d, { node: 'n', mounts: [] }).imagesPath, c.imagesDir === 'images' ? '/d/images' : `/d/${c.imagesDir}`);
    });
  }
  const badSubdirs = ['images=../x', 'images=a/../../x', 'images=x/.', 'images=', 'images', 'Images=x', 'disks=x', 'images=a,images=b'];
  for (const value of badSubdirs) {
    it(`content-dirs ${value} is refused on its line`, () => {
      assert.throws(
        () => parseStorageConfig(lines('dir: d1', '\tpath /d', `\tcontent-dirs ${value}`), FILE),
        (err: unknown) => err instanceof ConfigError && err.line === 3 && err.message.includes('content-dirs'),
      );
    });
  }

  it('format: the alloc default; qcow2 without it; refused for formats volchain cannot create', () => {
    assert.equal(defaultAllocFormat(dir('dir: d1', '\tpath /d', '\tformat raw')), 'raw');
    assert.equal(defaultAllocFormat(dir('dir: d1', '\tpath /d', '\tformat qcow2')), 'qcow2');
    assert.equal(defaultAllocFormat(dir('dir: d1', '\tpath /d')), 'qcow2');
    assert.equal(defaultAllocFormat(one('lvm: l1', '\tvgname vg')), 'qcow2');
    assert.throws(() => defaultAllocFormat(dir('dir: d1', '\tpath /d', '\tformat vmdk')), NotSupportedError);
    assert.throws(() => parseStorageConfig(lines('nfs: n1', '\tserver s', '\texport /e', '\tformat subvol'), FILE), ConfigError);
  });
});

describe('mount table', () => {
  it('reads /proc/mounts lines, decoding octal escapes', () => {
    const table = parseMountTable(
      lines('sysfs /sys sysfs rw 0 0', '10.0.0.1:/ex\\040port /mnt/pve/my\\040nas nfs4 rw,vers=4.2 0 0', '', '//fs/s\\134x /m\\011t cifs rw 0 0'),
    );
    assert.deepEqual(table, [
      { source: 'sysfs', mountpoint: '/sys', fstype: 'sysfs' },
      { source: '10.0.0.1:/ex port', mountpoint: '/mnt/pve/my nas', fstype: 'nfs4' },
      { source: '//fs/s\\x', mountpoint: '/m\tt', fstype: 'cifs' },
    ]);
  });

  const nfs = { mountpoint: '/mnt/pve/nas', fstype: 'nfs', source: 'srv:/export' } as const;
  const cases: { name: string; table: MountEntry[]; expect: boolean }[] = [
    { name: 'nfs at the path', table: [{ source: 'srv:/export', mountpoint: '/mnt/pve/nas', fstype: 'nfs' }], expect: true },
    { name: 'nfs4, trailing slash on the source', table: [{ source: 'srv:/export/', mountpoint: '/mnt/pve/nas', fstype: 'nfs4' }], expect: true },
    { name: 'another export', table: [{ source: 'srv:/export2', mountpoint: '/mnt/pve/nas', fstype: 'nfs' }], expect: false },
    { name: 'another file system type', table: [{ source: 'srv:/export', mountpoint: '/mnt/pve/nas', fstype: 'ext4' }], expect: false },
    { name: 'another place', table: [{ source: 'srv:/export', mountpoint: '/mnt/pve/nas2', fstype: 'nfs' }], expect: false },
    { name: 'nothing mounted', table: [], expect: false },
  ];
  for (const c of cases) {
    it(`nfs requirement: ${c.name} -> ${c.expect ? 'mounted' : 'not mounted'}`, () => {
      assert.equal(isMounted(nfs, c.table), c.expect);
    });
  }

  let root = '';
  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'volchain-mounts-'));
    await mkdir(join(root, 'real'));
    await symlink(join(root, 'real'), join(root, 'link'));
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });
  it('is_mountpoint resolves symlinks (PVE realpath) and a missing path is not mounted', () => {
    const table: MountEntry[] = [{ source: '/dev/sdb1', mountpoint: join(root, 'real'), fstype: 'ext4' }];
    assert.equal(mountPresent({ mountpoint: join(root, 'link') }, table), true);
    assert.equal(mountPresent({ mountpoint: join(root, 'missing') }, table), false);
    assert.equal(mountPresent({ mountpoint: root }, table), false);
  });
});

describe('availability on this node', () => {
  const restricted = dir('dir: d1', '\tpath /d', '\tnodes pve1,pve2');
  it('nodes lists where the storage exists; no nodes means everywhere', () => {
    assert.equal(availableOnNode(restricted, 'pve1'), true);
    assert.equal(availableOnNode(restricted, 'pve3'), false);
    assert.equal(availableOnNode(dir('dir: d2', '\tpath /d'), 'anything'), true);
  });
  it('assertAvailableHere refuses another node, then an unmounted share, with exit status 5', () => {
    assert.throws(
      () => assertAvailableHere(restricted, { node: 'pve3', mounts: [] }),
      (err: unknown) =>
        err instanceof NotSupportedError && err.exitStatus === 5 && err.message.includes("not available on node 'pve3' (its nodes: pve1, pve2)"),
    );
    assert.doesNotThrow(() => assertAvailableHere(restricted, { node: 'pve2', mounts: [] }));
    const nas = dir('nfs: nas', '\tserver s', '\texport /e', '\tnodes pve1');
    assert.throws(
      () => assertAvailableHere(nas, { node: 'pve1', mounts: [] }),
      /storage 'nas' is not mounted: expected nfs share 's:\/e' at '\/mnt\/pve\/nas'/,
    );
    assert.doesNotThrow(() => assertAvailableHere(nas, { node: 'pve1', mounts: [{ source: 's:/e', mountpoint: '/mnt/pve/nas', fstype: 'nfs' }] }));
  });
  it('describeStorage shows availability and mount state', () => {
    const nas = dir('nfs: nas', '\tserver s', '\texport /e', '\tnodes pve1');
    assert.deepEqual(
      [true, false].map((m) => {
        const d = describeStorage(nas, { node: 'pve2', mounts: m ? [{ source: 's:/e', mountpoint: '/mnt/pve/nas', fstype: 'nfs4' }] : [] });
        return [d.availableHere, d.mounted, d.path, d.imagesPath];
      }),
      [
        [false, true, '/mnt/pve/nas', '/mnt/pve/nas/images'],
        [false, false, '/mnt/pve/nas', '/mnt/pve/nas/images'],
      ],
    );
  });
});

describe("PVE's local storage (Plugin.pm parse_config)", () => {
  const PVE_LOCAL = {
    type: 'dir',
    id: 'local',
    options: { path: '/var/lib/vz', 'prune-backups': 'keep-all=1', content: 'backup,images,iso,rootdir,snippets,vztmpl' },
  };
  const plain = (text: string) => withPveLocal(parseSections(text, FILE)).map((s) => ({ type: s.type, id: s.id, options: s.options }));
  const cases: { name: string; text: string; expect: { type: string; id: string; options: Record<string, string> }[] }[] = [
    {
      name: 'added first when the file has none',
      text: lines('lvm: san', '\tvgname vg'),
      expect: [PVE_LOCAL, { type: 'lvm', id: 'san', options: { vgname: 'vg' } }],
    },
    {
      name: 'replaced when it is not a dir',
      text: lines('lvm: san', '\tvgname vg', '', 'lvm: local', '\tvgname other'),
      expect: [PVE_LOCAL, { type: 'lvm', id: 'san', options: { vgname: 'vg' } }],
    },
    {
      name: 'replaced when its path is not /var/lib/vz',
      text: lines('dir: local', '\tpath /srv/elsewhere', '\tcontent images', '\tsnapshot-as-volume-chain 1'),
      expect: [PVE_LOCAL],
    },
    {
      name: 'kept in place with its options, nodes dropped, path filled in when missing',
      text: lines('dir: a1', '\tpath /a', '', 'dir: local', '\tcontent images', '\tnodes pve1', '\tsnapshot-as-volume-chain 1'),
      expect: [
        { type: 'dir', id: 'a1', options: { path: '/a' } },
        { type: 'dir', id: 'local', options: { content: 'images', 'snapshot-as-volume-chain': '1', path: '/var/lib/vz' } },
      ],
    },
    {
      name: 'a bare path counts as missing (PVE skips a value-less option)',
      text: lines('dir: local', '\tpath', '\tcontent images'),
      expect: [{ type: 'dir', id: 'local', options: { path: '/var/lib/vz', content: 'images' } }],
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      assert.deepEqual(plain(c.text), c.expect);
    });
  }

  let root = '';
  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'volchain-local-'));
    await writeFile(join(root, 'pve.cfg'), lines('dir: local', '\tpath /srv/x', '', 'dir: b1', '\tpath /b'));
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });
  it("applies to PVE's own file, not to one given with --config or $VOLCHAIN_CONFIG", async () => {
    const file = join(root, 'pve.cfg');
    const fromPve = await loadStorageConfig({ settings: readSettings({}), pveConfigPath: file });
    const local = fromPve.storages[0];
    assert.ok(local?.supported && local.backend === 'dir');
    assert.equal(local.path, '/var/lib/vz');
    assert.deepEqual(local.content, ['backup', 'images', 'iso', 'rootdir', 'snippets', 'vztmpl']);
    assert.equal(local.snapshotAsVolumeChain, false);
    assert.deepEqual(
      fromPve.storages.map((s) => s.id),
      ['local', 'b1'],
    );
    for (const opts of [{ configPath: file, settings: readSettings({}) }, { settings: readSettings({ VOLCHAIN_CONFIG: file }) }]) {
      const given = await loadStorageConfig({ ...opts, pveConfigPath: join(root, 'none.cfg') });
      const asWritten = given.storages[0];
      assert.ok(asWritten?.supported && asWritten.backend === 'dir');
      assert.equal(asWritten.path, '/srv/x');
    }
  });
});
