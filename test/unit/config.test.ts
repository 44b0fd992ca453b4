import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { ConfigError, InvalidInputError, NotFoundError } from '../../src/errors.js';
import { readSettings } from '../../src/settings.js';
import {
  defaultStorageConfig,
  describeStorage,
  findStorage,
  formatStorageConfig,
  loadStorageConfig,
  parseSections,
  parseStorageConfig,
  type StorageDefinition,
  type StorageSection,
} from '../../src/config/index.js';

const FILE = 'storage.cfg';
const lines = (...ls: string[]): string => ls.join('\n') + '\n';
/** The dir-family fields every plain `dir` section without those options reads as. */
const DIR_DEFAULTS = { backend: 'dir', imagesDir: 'images', contentDirs: {}, format: undefined, mount: undefined } as const;
const byId = (storages: StorageDefinition[], id: string): StorageDefinition => {
  const found = storages.find((s) => s.id === id);
  assert.ok(found, `storage ${id} parsed`);
  return found;
};

describe('parseStorageConfig: valid files', () => {
  it('reads the DESIGN.md example into typed dir and lvm definitions', () => {
    const text = lines(
      'dir: local',
      '\tpath /var/lib/vz',
      '\tcontent iso,vztmpl,backup,images',
      '\tsnapshot-as-volume-chain 1',
      '',
      'lvm: san',
      '\tvgname vg_san',
      '\tcontent images',
      '\tshared 1',
      '\tsaferemove 1',
      '\tsnapshot-as-volume-chain 1',
    );
    const config = parseStorageConfig(text, FILE);
    assert.equal(config.source, FILE);
    assert.deepEqual(config.storages, [
      {
        id: 'local',
        type: 'dir',
        supported: true,
        ...DIR_DEFAULTS,
        path: '/var/lib/vz',
        preallocation: undefined,
        content: ['iso', 'vztmpl', 'backup', 'images'],
        shared: false,
        disable: false,
        nodes: undefined,
        snapshotAsVolumeChain: true,
        options: { path: '/var/lib/vz', content: 'iso,vztmpl,backup,images', 'snapshot-as-volume-chain': '1' },
      },
      {
        id: 'san',
        type: 'lvm',
        supported: true,
        backend: 'lvm',
        vgname: 'vg_san',
        saferemove: true,
        content: ['images'],
        shared: true,
        disable: false,
        nodes: undefined,
        snapshotAsVolumeChain: true,
        options: {
          vgname: 'vg_san',
          content: 'images',
          shared: '1',
          saferemove: '1',
          'snapshot-as-volume-chain': '1',
        },
      },
    ]);
  });

  it('keeps every type and key of a realistic PVE cluster file, driving only dir, nfs, cifs and lvm', () => {
    const text = lines(
      'dir: local',
      '\tpath /var/lib/vz',
      '\tcontent iso,vztmpl,backup',
      '\tprune-backups keep-all=1',
      '\tshared 0',
      '',
      'lvmthin: local-lvm',
      '\tthinpool data',
      '\tvgname pve',
      '\tcontent rootdir,images',
      '',
      'zfspool: tank',
      '\tpool tank/vmdata',
      '\tcontent images,rootdir',
      '\tmountpoint /tank/vmdata',
      '\tsparse 1',
      '\tnodes pve1,pve2',
      '',
      'rbd: ceph-vm',
      '\tcontent images',
      '\tkrbd 0',
      '\tpool vm',
      '\tmonhost 10.0.0.1 10.0.0.2 10.0.0.3',
      '\tusername admin',
      '',
      'nfs: nas',
      '\texport /volume1/pve',
      '\tpath /mnt/pve/nas',
      '\tserver 192.168.1.10',
      '\tcontent backup,iso',
      '\toptions vers=4.2,soft',
      '\tprune-backups keep-last=3,keep-weekly=2',
      '',
      'cifs: smb',
      '\tpath /mnt/pve/smb',
      '\tserver fileserver',
      '\tshare vms',
      '\tusername backup',
      '\tcontent images',
      '\tdisable',
      '',
      'pbs: backup-server',
      '\tdatastore store1',
      '\tserver pbs.example.com',
      '\tcontent backup',
      '\tfingerprint 4e:9f:aa:00:11:22',
      '\tusername root@pam',
      '',
      'lvm: san',
      '\tvgname vg_san',
      '\tbase iscsi-lun:0.0.1.scsi-36001405abcdef',
      '\tshared 1',
      '\ttagged_only 1',
      '\tsaferemove-stepsize 16',
      '\tcontent images',
      '\tnodes pve1;pve2 pve3',
      '',
      'dir: fast',
      '\tpath /srv/fast',
      '\tcontent images',
      '\tpreallocation falloc',
      '\tsnapshot-as-volume-chain 1',
      '\tis_mountpoint yes',
      '\tmkdir 0',
    );
    const { storages } = parseStorageConfig(text, FILE);
    assert.deepEqual(
      storages.map((s) => [s.id, s.type, s.supported]),
      [
        ['local', 'dir', true],
        ['local-lvm', 'lvmthin', false],
        ['tank', 'zfspool', false],
        ['ceph-vm', 'rbd', false],
        ['nas', 'nfs', true],
        ['smb', 'cifs', true],
        ['backup-server', 'pbs', false],
        ['san', 'lvm', true],
        ['fast', 'dir', true],
      ],
    );
    const tank = byId(storages, 'tank');
    assert.deepEqual(tank.options, {
      pool: 'tank/vmdata',
      content: 'images,rootdir',
      mountpoint: '/tank/vmdata',
      sparse: '1',
      nodes: 'pve1,pve2',
    });
    assert.deepEqual(tank.nodes, ['pve1', 'pve2']);
    // Values keep their inner spaces; PVE's split_list reads commas, semicolons and spaces alike.
    assert.equal(byId(storages, 'ceph-vm').options.monhost, '10.0.0.1 10.0.0.2 10.0.0.3');
    assert.deepEqual(byId(storages, 'san').nodes, ['pve1', 'pve2', 'pve3']);
    // PVE forces `shared` on network types whatever the file says; a bare `disable` is a set flag.
    assert.equal(byId(storages, 'nas').shared, true);
    assert.equal(byId(storages, 'ceph-vm').shared, true);
    assert.equal(byId(storages, 'tank').shared, false);
    assert.equal(byId(storages, 'smb').disable, true);
    assert.equal(byId(storages, 'smb').options.disable, '1');
    const fast = byId(storages, 'fast');
    assert.ok(fast.supported && fast.type === 'dir');
    assert.equal(fast.preallocation, 'falloc');
    // is_mountpoint yes: the path itself must be a mount point (DirPlugin's path_is_mounted).
    assert.deepEqual(fast.mount, { mountpoint: '/srv/fast' });
    const nas = byId(storages, 'nas');
    assert.ok(nas.supported && nas.backend === 'dir');
    assert.deepEqual(nas.mount, { mountpoint: '/mnt/pve/nas', fstype: 'nfs', source: '192.168.1.10:/volume1/pve' });
    const smb = byId(storages, 'smb');
    assert.ok(smb.supported && smb.backend === 'dir');
    assert.deepEqual(smb.mount, { mountpoint: '/mnt/pve/smb', fstype: 'cifs', source: '//fileserver/vms' });
    // Unknown-to-volchain keys of a supported type are kept, not validated.
    assert.equal(fast.options.mkdir, '0');
    const san = byId(storages, 'san');
    assert.ok(san.supported && san.type === 'lvm');
    assert.equal(san.saferemove, false);
    assert.equal(san.options['saferemove-stepsize'], '16');
  });

  const syntaxCases: { name: string; text: string; expect: Pick<StorageSection, 'type' | 'id' | 'options'>[] }[] = [
    {
      name: 'comments anywhere (column 0, indented, between options, before the first section) are skipped',
      text: lines(
        '# cluster storage',
        '   # indented comment before anything',
        'dir: a1',
        '# inside the section',
        '\tpath /a',
        '\t# indented inside the section',
        '\tcontent images',
        '',
        '# between sections',
        '',
        'dir: b2',
        '\tpath /b',
      ),
      expect: [
        { type: 'dir', id: 'a1', options: { path: '/a', content: 'images' } },
        { type: 'dir', id: 'b2', options: { path: '/b' } },
      ],
    },
    {
      name: 'a # inside a value is data, not a comment (PVE has no trailing comments)',
      text: lines('cifs: smb', '\tserver fs1', '\tshare vms', '\tpassword se#cret # really'),
      expect: [{ type: 'cifs', id: 'smb', options: { server: 'fs1', share: 'vms', password: 'se#cret # really' } }],
    },
    {
      name: 'tabs and spaces both indent and separate; trailing whitespace is dropped, inner kept',
      text: lines('dir: mixed', '\tpath /a', '    content\timages', ' \t shared  \t 1 \t', '  comment two  words '),
      expect: [{ type: 'dir', id: 'mixed', options: { path: '/a', content: 'images', shared: '1', comment: 'two  words' } }],
    },
    {
      name: 'a key without a value reads as "1", known flag or unknown key',
      text: lines('lvm: vg1', '\tvgname vg1', '\tshared', '\tsaferemove', '\tsomething-new'),
      expect: [
        {
          type: 'lvm',
          id: 'vg1',
          options: { vgname: 'vg1', shared: '1', saferemove: '1', 'something-new': '1' },
        },
      ],
    },
    {
      name: 'header without space after the colon, trailing blanks, upper-case type and id',
      text: lines('DIR:Local-1  ', '\tpath /x', '', '', '', 'zfspool:   z.2'),
      expect: [
        { type: 'dir', id: 'Local-1', options: { path: '/x' } },
        { type: 'zfspool', id: 'z.2', options: {} },
      ],
    },
    {
      name: 'a line of only spaces inside a section is ignored, as in PVE',
      text: lines('dir: a1', '\tpath /a', '  \t', '\tcontent images'),
      expect: [{ type: 'dir', id: 'a1', options: { path: '/a', content: 'images' } }],
    },
    {
      name: 'no newline at the end, empty file sections, CR at line ends of values',
      text: 'dir: a1\n\tpath /a\r\n\tcontent images',
      expect: [{ type: 'dir', id: 'a1', options: { path: '/a', content: 'images' } }],
    },
    {
      name: 'option names like __proto__ are stored as data',
      text: lines('dir: a1', '\tpath /a', '\t__proto__ x', '\tconstructor y'),
      expect: [{ type: 'dir', id: 'a1', options: { path: '/a', ['__proto__']: 'x', constructor: 'y' } }],
    },
    { name: 'an empty file has no storages', text: '', expect: [] },
    { name: 'only comments and blank lines', text: lines('# nothing', '', '   ', '#'), expect: [] },
  ];
  for (const c of syntaxCases) {
    it(c.name, () => {
      const sections = parseSections(c.text, FILE).map(({ type, id, options }) => ({ type, id, options }));
      // Object.fromEntries-style comparison so an own `__proto__` key is compared as data.
      assert.deepEqual(
        sections.map((s) => ({ ...s, options: Object.entries(s.options) })),
        c.expect.map((s) => ({ ...s, options: Object.entries(s.options) })),
      );
      // The semantic layer accepts every one of them too.
      parseStorageConfig(c.text, FILE);
    });
  }

  it('records header and option line numbers', () => {
    const [section] = parseSections(lines('# c', '', 'dir: a1', '\tpath /a', '# c', '\tshared'), FILE);
    assert.ok(section);
    assert.equal(section.line, 3);
    assert.deepEqual(section.optionLines, { path: 4, shared: 6 });
    assert.deepEqual(section.bareKeys, ['shared']);
  });

  const contentCases: { name: string; section: string[]; content: string[] }[] = [
    { name: "dir default content is PVE's images,rootdir", section: ['dir: d1', '\tpath /d'], content: ['images', 'rootdir'] },
    { name: "lvm default content is PVE's images", section: ['lvm: l1', '\tvgname v'], content: ['images'] },
    { name: '`none` is the empty list', section: ['dir: d1', '\tpath /d', '\tcontent none'], content: [] },
    {
      name: 'commas, semicolons and spaces separate; duplicates dropped',
      section: ['dir: d1', '\tpath /d', '\tcontent images;iso, backup,images'],
      content: ['images', 'iso', 'backup'],
    },
  ];
  for (const c of contentCases) {
    it(`content: ${c.name}`, () => {
      const [storage] = parseStorageConfig(lines(...c.section), FILE).storages;
      assert.deepEqual(storage?.content, c.content);
    });
  }

  it('reads values in unsupported types leniently (PVE would complain, volchain never drives them)', () => {
    const [storage] = parseStorageConfig(lines('zfspool: z1', '\tshared yes', '\tnodes bad_node', '\tpath'), FILE).storages;
    assert.ok(storage && !storage.supported);
    assert.equal(storage.shared, false);
    assert.deepEqual(storage.nodes, ['bad_node']);
    assert.equal(storage.options.path, '1');
  });
});

describe('parseStorageConfig: errors name the file and line', () => {
  const cases: { name: string; text: string; line: number; message: RegExp }[] = [
    { name: 'header without colon', text: lines('dir local', '\tpath /a'), line: 1, message: /expected a section header/ },
    { name: 'header without id', text: lines('dir:', '\tpath /a'), line: 1, message: /expected a section header/ },
    { name: 'header with extra words', text: lines('dir: a1 b2'), line: 1, message: /expected a section header/ },
    { name: 'header with empty type', text: lines(': a1'), line: 1, message: /expected a section header/ },
    { name: 'id starting with a digit', text: lines('# x', 'dir: 1abc'), line: 2, message: /invalid storage id '1abc'/ },
    { name: 'one-character id', text: lines('dir: a', '\tpath /a'), line: 1, message: /invalid storage id 'a'/ },
    { name: 'id ending with _', text: lines('dir: ab_'), line: 1, message: /invalid storage id 'ab_'/ },
    { name: 'id with a colon', text: lines('dir: a:b'), line: 1, message: /invalid storage id 'a:b'/ },
    { name: 'id with a slash', text: lines('dir: a/b'), line: 1, message: /invalid storage id 'a\/b'/ },
    {
      name: 'duplicate id, even across types',
      text: lines('dir: s1', '\tpath /a', '', 'lvm: s1', '\tvgname v'),
      line: 4,
      message: /duplicate storage id 's1' \(first defined at line 1\)/,
    },
    {
      name: 'option line before any section',
      text: lines('# header comment', '\tpath /a', 'dir: a1'),
      line: 2,
      message: /option line outside any section: "path \/a"/,
    },
    {
      name: 'option line after the empty line that ended the section',
      text: lines('dir: a1', '\tpath /a', '', '\tcontent images'),
      line: 4,
      message: /outside any section \(the empty line 3 ended section 'a1'\)/,
    },
    {
      name: 'header directly after a section (PVE would merge it)',
      text: lines('dir: a1', '\tpath /a', 'dir: b2', '\tpath /b'),
      line: 3,
      message: /must follow an empty line; Proxmox VE would read it as part of section 'a1'/,
    },
    {
      name: 'header after a whitespace-only line',
      text: lines('dir: a1', '\tpath /a', ' \t', 'dir: b2', '\tpath /b'),
      line: 4,
      message: /a line of only spaces or tabs does not end a section/,
    },
    {
      name: 'duplicate key',
      text: lines('dir: a1', '\tpath /a', '\tcontent images', '\tpath /b'),
      line: 4,
      message: /duplicate option 'path' in section 'a1' \(first set at line 2\)/,
    },
    {
      name: 'duplicate unknown key in an unknown type',
      text: lines('zfspool: z1', '\tpool a', '\tpool b'),
      line: 3,
      message: /duplicate option 'pool'/,
    },
    { name: 'carriage return inside a value', text: 'dir: a1\n\tpath /a\rb\n', line: 2, message: /contains a line break/ },
    {
      name: 'boolean "yes"',
      text: lines('dir: a1', '\tpath /a', '\tshared yes'),
      line: 3,
      message: /storage 'a1': option 'shared' must be 0 or 1, got 'yes'/,
    },
    {
      name: 'boolean "2" for snapshot-as-volume-chain',
      text: lines('lvm: l1', '\tvgname v', '\tsnapshot-as-volume-chain 2'),
      line: 3,
      message: /'snapshot-as-volume-chain' must be 0 or 1/,
    },
    { name: 'boolean "true" for disable', text: lines('dir: a1', '\tdisable true', '\tpath /a'), line: 2, message: /'disable' must be 0 or 1/ },
    { name: 'boolean "on" for saferemove', text: lines('lvm: l1', '\tvgname v', '\tsaferemove on'), line: 3, message: /'saferemove' must be 0 or 1/ },
    {
      name: 'bad preallocation',
      text: lines('dir: a1', '\tpath /a', '\tpreallocation sparse'),
      line: 3,
      message: /preallocation must be one of off, metadata, falloc, full, got 'sparse'/,
    },
    { name: 'dir without path (reported at the header)', text: lines('', 'dir: a1', '\tcontent images'), line: 2, message: /a dir storage needs a 'path'/ },
    { name: 'dir with a relative path', text: lines('dir: a1', '\tcontent images', '\tpath var/lib/vz'), line: 3, message: /absolute directory/ },
    { name: 'dir with path /', text: lines('dir: a1', '\tpath /'), line: 2, message: /other than '\/'/ },
    { name: 'dir with a bare path', text: lines('dir: a1', '\tpath'), line: 2, message: /option 'path' needs a value/ },
    { name: 'lvm without vgname', text: lines('lvm: l1', '\tcontent images'), line: 1, message: /an lvm storage needs a 'vgname'/ },
    { name: 'vgname starting with -', text: lines('lvm: l1', '\tvgname -vg'), line: 2, message: /invalid volume group name '-vg'/ },
    { name: 'vgname with a slash', text: lines('lvm: l1', '\tvgname vg/../x'), line: 2, message: /invalid volume group name/ },
    { name: 'vgname ..', text: lines('lvm: l1', '\tvgname ..'), line: 2, message: /invalid volume group name '\.\.'/ },
    { name: 'vgname too long', text: lines('lvm: l1', `\tvgname ${'v'.repeat(128)}`), line: 2, message: /invalid volume group name/ },
    { name: 'content none with others', text: lines('dir: a1', '\tpath /a', '\tcontent none,images'), line: 3, message: /'none' cannot be combined/ },
    { name: 'invalid node name', text: lines('dir: a1', '\tpath /a', '\tnodes pve1,bad_node'), line: 3, message: /invalid node name 'bad_node'/ },
    { name: 'bare nodes', text: lines('lvm: l1', '\tvgname v', '\tnodes'), line: 3, message: /option 'nodes' needs a value/ },
    {
      name: "an error in a later section reports that section's line",
      text: lines('# c', 'dir: a1', '\tpath /a', '', '# c', 'lvm: l1', '\tvgname v', '\tshared maybe'),
      line: 8,
      message: /storage 'l1'/,
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      assert.throws(
        () => parseStorageConfig(c.text, FILE),
        (err: unknown) => {
          assert.ok(err instanceof ConfigError, `ConfigError, got ${String(err)}`);
          assert.equal(err.code, 'CONFIG');
          assert.equal(err.file, FILE);
          assert.equal(err.line, c.line, err.message);
          assert.match(err.message, c.message);
          assert.ok(err.message.startsWith(`${FILE}:${c.line}: `), err.message);
          return true;
        },
      );
    });
  }
});

describe('findStorage', () => {
  const config = parseStorageConfig(lines('dir: a1', '\tpath /a', '', 'lvm: l1', '\tvgname v'), FILE);
  it('returns the storage with that exact id', () => {
    assert.equal(findStorage(config, 'l1').type, 'lvm');
  });
  it('throws NotFoundError naming the id, the source and the known ids', () => {
    assert.throws(
      () => findStorage(config, 'A1'),
      (err: unknown) => err instanceof NotFoundError && err.message.includes("'A1'") && err.message.includes(FILE) && err.message.includes('a1, l1'),
    );
    assert.throws(() => findStorage({ source: FILE, storages: [] }, 'x1'), /defines no storage/);
  });
});

describe('formatStorageConfig', () => {
  it("writes PVE's layout", () => {
    const text = formatStorageConfig([
      { type: 'dir', id: 'a1', options: { path: '/a', content: 'images' } },
      { type: 'rbd', id: 'r1', options: {} },
    ]);
    assert.equal(text, 'dir: a1\n\tpath /a\n\tcontent images\n\nrbd: r1\n');
  });
  const refusals: { name: string; section: Pick<StorageSection, 'type' | 'id' | 'options'> }[] = [
    { name: 'a multi-line value', section: { type: 'dir', id: 'a1', options: { path: '/a\ndir: evil' } } },
    { name: 'an empty value', section: { type: 'dir', id: 'a1', options: { note: '' } } },
    { name: 'a value with trailing space', section: { type: 'dir', id: 'a1', options: { note: 'x ' } } },
    { name: 'a key with a space', section: { type: 'dir', id: 'a1', options: { 'a b': 'x' } } },
    { name: 'a key that reads as a comment', section: { type: 'dir', id: 'a1', options: { '#x': 'x' } } },
    { name: 'an invalid id', section: { type: 'dir', id: '9', options: {} } },
    { name: 'an upper-case type', section: { type: 'DIR', id: 'a1', options: {} } },
  ];
  for (const r of refusals) {
    it(`refuses ${r.name}`, () => {
      assert.throws(() => formatStorageConfig([r.section]), InvalidInputError);
    });
  }
  it('refuses a duplicate id', () => {
    const s = { type: 'dir', id: 'a1', options: {} };
    assert.throws(() => formatStorageConfig([s, s]), InvalidInputError);
  });
});

describe('describeStorage', () => {
  const { storages } = parseStorageConfig(
    lines('dir: d1', '\tpath /d', '\tnodes n1', '', 'lvm: l1', '\tvgname vg', '\tsaferemove 1', '\tdisable 1', '', 'zfspool: z1', '\tpool tank'),
    FILE,
  );
  const cases: { id: string; expect: ReturnType<typeof describeStorage> }[] = [
    {
      id: 'd1',
      expect: {
        id: 'd1',
        type: 'dir',
        path: '/d',
        vgname: null,
        content: ['images', 'rootdir'],
        shared: false,
        disabled: false,
        nodes: ['n1'],
        availableHere: true,
        mounted: null,
        snapshotAsVolumeChain: false,
        preallocation: 'metadata',
        imagesPath: '/d/images',
        format: null,
        saferemove: null,
        supported: true,
      },
    },
    {
      id: 'l1',
      expect: {
        id: 'l1',
        type: 'lvm',
        path: null,
        vgname: 'vg',
        content: ['images'],
        shared: false,
        disabled: true,
        nodes: null,
        availableHere: true,
        mounted: null,
        snapshotAsVolumeChain: false,
        preallocation: null,
        imagesPath: null,
        format: null,
        saferemove: true,
        supported: true,
      },
    },
    {
      id: 'z1',
      expect: {
        id: 'z1',
        type: 'zfspool',
        path: null,
        vgname: null,
        content: [],
        shared: false,
        disabled: false,
        nodes: null,
        availableHere: true,
        mounted: null,
        snapshotAsVolumeChain: false,
        preallocation: null,
        imagesPath: null,
        format: null,
        saferemove: null,
        supported: false,
      },
    },
  ];
  for (const c of cases) {
    it(`gives the stable JSON shape for ${c.id}`, () => {
      const described = describeStorage(byId(storages, c.id), { node: 'n1', mounts: [] });
      assert.deepEqual(described, c.expect);
      // Plain JSON: survives a round trip unchanged, and every field is present (null, never missing).
      assert.deepEqual(JSON.parse(JSON.stringify(described)), c.expect);
    });
  }
});

describe('defaultStorageConfig', () => {
  const cases: { name: string; env: NodeJS.ProcessEnv; path: string }[] = [
    { name: 'uses $XDG_DATA_HOME first', env: { XDG_DATA_HOME: '/x/data', HOME: '/home/u' }, path: '/x/data/volchain' },
    { name: 'falls back to $HOME/.local/share', env: { HOME: '/home/u' }, path: '/home/u/.local/share/volchain' },
    { name: 'ignores an empty $XDG_DATA_HOME', env: { XDG_DATA_HOME: '', HOME: '/home/u' }, path: '/home/u/.local/share/volchain' },
    {
      name: 'ignores a relative $XDG_DATA_HOME (invalid per the XDG spec)',
      env: { XDG_DATA_HOME: 'data', HOME: '/home/u' },
      path: '/home/u/.local/share/volchain',
    },
    { name: 'normalises trailing slashes', env: { HOME: '/home/u/' }, path: '/home/u/.local/share/volchain' },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const config = defaultStorageConfig(readSettings(c.env));
      assert.equal(config.source, '(embedded default)');
      assert.deepEqual(config.storages, [
        {
          id: 'local',
          type: 'dir',
          supported: true,
          ...DIR_DEFAULTS,
          path: c.path,
          preallocation: 'metadata',
          content: ['images'],
          shared: false,
          disable: false,
          nodes: undefined,
          snapshotAsVolumeChain: true,
          options: { path: c.path, content: 'images', 'snapshot-as-volume-chain': '1', preallocation: 'metadata' },
        },
      ]);
      // The default could be written out as a file and read back the same.
      assert.deepEqual(parseStorageConfig(formatStorageConfig(config.storages), 'x').storages, config.storages);
    });
  }
  const failures: { name: string; env: NodeJS.ProcessEnv; message: RegExp }[] = [
    { name: 'neither variable set', env: {}, message: /neither \$XDG_DATA_HOME nor \$HOME is set/ },
    { name: 'both empty', env: { HOME: '', XDG_DATA_HOME: '' }, message: /neither/ },
    { name: 'relative HOME', env: { HOME: 'home' }, message: /\$HOME \('home'\) is not absolute/ },
  ];
  for (const f of failures) {
    it(`fails when ${f.name}`, () => {
      assert.throws(
        () => defaultStorageConfig(readSettings(f.env)),
        (err: unknown) => err instanceof ConfigError && err.line === undefined && f.message.test(err.message),
      );
    });
  }
});

describe('loadStorageConfig: discovery order', () => {
  let dir = '';
  let flagFile = '';
  let envFile = '';
  let pveFile = '';
  const home = { HOME: '/home/u' };
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'volchain-config-'));
    flagFile = join(dir, 'flag.cfg');
    envFile = join(dir, 'env.cfg');
    pveFile = join(dir, 'pve', 'storage.cfg');
    await mkdir(join(dir, 'pve'));
    await mkdir(join(dir, 'pve-dir', 'storage.cfg'), { recursive: true });
    await writeFile(flagFile, lines('dir: from-flag', '\tpath /flag'));
    await writeFile(envFile, lines('dir: from-env', '\tpath /env'));
    await writeFile(pveFile, lines('dir: from-pve', '\tpath /pve'));
    await writeFile(join(dir, 'broken.cfg'), lines('dir: ok1', '\tpath /a', '', 'lvm: l1'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const ids = (config: { storages: StorageDefinition[] }): string[] => config.storages.map((s) => s.id);
  const cases: {
    name: string;
    opts: () => Parameters<typeof loadStorageConfig>[0];
    ids: string[];
    source: () => string;
  }[] = [
    {
      name: '--config wins over $VOLCHAIN_CONFIG and /etc/pve',
      opts: () => ({ configPath: flagFile, settings: readSettings({ ...home, VOLCHAIN_CONFIG: envFile }), pveConfigPath: pveFile }),
      ids: ['from-flag'],
      source: () => flagFile,
    },
    {
      name: '$VOLCHAIN_CONFIG wins over /etc/pve',
      opts: () => ({ settings: readSettings({ ...home, VOLCHAIN_CONFIG: envFile }), pveConfigPath: pveFile }),
      ids: ['from-env'],
      source: () => envFile,
    },
    {
      name: 'an empty --config and an empty $VOLCHAIN_CONFIG count as unset',
      opts: () => ({ configPath: '', settings: readSettings({ ...home, VOLCHAIN_CONFIG: '' }), pveConfigPath: pveFile }),
      // PVE's own file gets PVE's `local` (added first, see the local tests below).
      ids: ['local', 'from-pve'],
      source: () => pveFile,
    },
    {
      name: '/etc/pve/storage.cfg when it exists',
      opts: () => ({ settings: readSettings(home), pveConfigPath: pveFile }),
      // PVE's own file gets PVE's `local` (added first, see the local tests below).
      ids: ['local', 'from-pve'],
      source: () => pveFile,
    },
    {
      name: 'the embedded default when nothing exists',
      opts: () => ({ settings: readSettings(home), pveConfigPath: join(dir, 'missing', 'storage.cfg') }),
      ids: ['local'],
      source: () => '(embedded default)',
    },
    {
      name: 'the embedded default when the PVE path runs through a file (ENOTDIR)',
      opts: () => ({ settings: readSettings(home), pveConfigPath: join(flagFile, 'storage.cfg') }),
      ids: ['local'],
      source: () => '(embedded default)',
    },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      const config = await loadStorageConfig(c.opts());
      assert.deepEqual(ids(config), c.ids);
      assert.equal(config.source, c.source());
    });
  }

  const failures: { name: string; opts: () => Parameters<typeof loadStorageConfig>[0]; file: () => string; line: number | undefined; message: RegExp }[] = [
    {
      name: 'a missing --config file is an error, not a fallback',
      opts: () => ({ configPath: join(dir, 'nope.cfg'), settings: readSettings(home), pveConfigPath: pveFile }),
      file: () => join(dir, 'nope.cfg'),
      line: undefined,
      message: /given with --config.*no such file/,
    },
    {
      name: 'a missing $VOLCHAIN_CONFIG file is an error, not a fallback',
      opts: () => ({ settings: readSettings({ ...home, VOLCHAIN_CONFIG: join(dir, 'nope.cfg') }), pveConfigPath: pveFile }),
      file: () => join(dir, 'nope.cfg'),
      line: undefined,
      message: /\$VOLCHAIN_CONFIG.*no such file/,
    },
    {
      name: 'a directory given as --config',
      opts: () => ({ configPath: dir, settings: readSettings(home) }),
      file: () => dir,
      line: undefined,
      message: /is a directory/,
    },
    {
      name: 'an unreadable PVE file does not silently fall back to the default',
      opts: () => ({ settings: readSettings(home), pveConfigPath: join(dir, 'pve-dir', 'storage.cfg') }),
      file: () => join(dir, 'pve-dir', 'storage.cfg'),
      line: undefined,
      message: /exists but cannot be read/,
    },
    {
      name: 'a parse error names the loaded file and line',
      opts: () => ({ configPath: join(dir, 'broken.cfg'), settings: readSettings(home) }),
      file: () => join(dir, 'broken.cfg'),
      line: 4,
      message: /needs a 'vgname'/,
    },
    {
      name: 'no file anywhere and no HOME',
      opts: () => ({ settings: readSettings({}), pveConfigPath: join(dir, 'missing.cfg') }),
      file: () => '(embedded default)',
      line: undefined,
      message: /neither/,
    },
  ];
  for (const f of failures) {
    it(f.name, async () => {
      await assert.rejects(loadStorageConfig(f.opts()), (err: unknown) => {
        assert.ok(err instanceof ConfigError, String(err));
        assert.equal(err.file, f.file());
        assert.equal(err.line, f.line);
        assert.match(err.message, f.message);
        return true;
      });
    });
  }
});

// ---------------------------------------------------------------------------------------------------------
// Property: any valid config, however it is laid out, reads back as the same storages.

type Section = Pick<StorageSection, 'type' | 'id' | 'options'>;

const storageIdArb = fc.stringMatching(/^[a-zA-Z][a-zA-Z0-9._-]{0,8}[a-zA-Z0-9]$/);
const valueArb = fc.stringMatching(/^[!-~]([ -~]{0,12}[!-~])?$/);
const boolArb = fc.constantFrom('0', '1');
const nodeArb = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,6}[a-z0-9])?$/);
const pathArb = fc
  .array(fc.stringMatching(/^[A-Za-z0-9._-]([A-Za-z0-9._ -]{0,6}[A-Za-z0-9._-])?$/), { minLength: 1, maxLength: 3 })
  .map((parts) => `/${parts.join('/')}`);
const contentArb = fc.oneof(
  fc.constant('none'),
  fc.subarray(['images', 'rootdir', 'iso', 'vztmpl', 'backup', 'snippets', 'import'], { minLength: 1 }).map((l) => l.join(',')),
);
const keyArb = fc.oneof(fc.stringMatching(/^[a-z][a-z0-9_-]{0,12}$/), fc.constantFrom('__proto__', 'constructor', 'toString'));

const DIR_KEYS = ['path', 'content', 'nodes', 'shared', 'disable', 'snapshot-as-volume-chain', 'preallocation', 'format', 'content-dirs', 'is_mountpoint'];
const KNOWN: Record<string, Set<string>> = {
  dir: new Set(DIR_KEYS),
  nfs: new Set([...DIR_KEYS, 'server', 'export']),
  cifs: new Set([...DIR_KEYS, 'server', 'share', 'subdir']),
  lvm: new Set(['vgname', 'content', 'nodes', 'shared', 'disable', 'snapshot-as-volume-chain', 'saferemove']),
};
/** Known keys whose value is text: written bare they are an error, so the noisy writer never drops their value. */
const TEXT_KEYS = new Set(['path', 'vgname', 'content', 'nodes', 'preallocation', 'server', 'export', 'share', 'subdir']);

function sectionArb(): fc.Arbitrary<Section> {
  const common = {
    content: contentArb,
    nodes: fc.array(nodeArb, { minLength: 1, maxLength: 3 }).map((l) => l.join(',')),
    shared: boolArb,
    disable: boolArb,
    'snapshot-as-volume-chain': boolArb,
  };
  const extra = (type: string): fc.Arbitrary<[string, string][]> =>
    fc.uniqueArray(fc.tuple(keyArb, valueArb), { selector: ([k]) => k, maxLength: 4 }).map((pairs) => pairs.filter(([k]) => !(KNOWN[type]?.has(k) ?? false)));
  const build = (type: string, known: fc.Arbitrary<Record<string, string>>): fc.Arbitrary<Section> =>
    fc.tuple(storageIdArb, known, extra(type)).map(([id, options, more]) => ({
      type,
      id,
      options: Object.fromEntries([...Object.entries(options), ...more]),
    }));
  return fc.oneof(
    build('dir', fc.record({ path: pathArb, ...common, preallocation: fc.constantFrom('off', 'metadata', 'falloc', 'full') }, { requiredKeys: ['path'] })),
    build(
      'lvm',
      fc.record(
        {
          vgname: fc.stringMatching(/^[a-zA-Z0-9+_.][a-zA-Z0-9+_.-]{0,10}$/).filter((v) => v !== '.' && v !== '..'),
          ...common,
          saferemove: boolArb,
        },
        { requiredKeys: ['vgname'] },
      ),
    ),
    build(
      'nfs',
      fc.record({ path: pathArb, server: fc.constantFrom('nas', '10.0.0.5', 'fd00::5'), export: pathArb, ...common }, { requiredKeys: ['server', 'export'] }),
    ),
    build(
      'cifs',
      fc.record(
        { path: pathArb, server: fc.constantFrom('fs1', '10.0.0.6'), share: fc.constantFrom('vms', 'pve'), subdir: pathArb, ...common },
        { requiredKeys: ['server', 'share'] },
      ),
    ),
    fc.constantFrom('zfspool', 'rbd', 'cephfs', 'btrfs', 'pbs', 'lvmthin', 'my-plugin').chain((type) => build(type, fc.constant({}))),
  );
}

const configArb = fc.uniqueArray(sectionArb(), { selector: (s) => s.id, maxLength: 6 });

/** A writer with a human's habits: comments everywhere, spaces or tabs, bare flags, extra blank lines. */
interface Layout {
  indent: string;
  separator: string;
  trailing: string;
  commentBefore: boolean;
  bareFlag: boolean;
  /** A line of only spaces/tabs after an option: ignored inside a section, as in PVE. */
  padAfter: boolean;
  blankLines: number;
}
const layoutArb: fc.Arbitrary<Layout> = fc.record({
  indent: fc.constantFrom('\t', ' ', '  ', '    ', '\t ', ' \t'),
  separator: fc.constantFrom(' ', '\t', '  ', ' \t '),
  trailing: fc.constantFrom('', ' ', '\t', ' \t'),
  commentBefore: fc.boolean(),
  bareFlag: fc.boolean(),
  padAfter: fc.boolean(),
  blankLines: fc.integer({ min: 1, max: 3 }),
});
const commentArb = fc.constantFrom('#', '# a comment', '   # indented', '\t#\tdir: not-a-section', '#path /nowhere');

function formatNoisily(config: Section[], layouts: Layout[], comments: string[]): string {
  const out: string[] = [];
  let n = 0;
  const layoutAt = (): Layout => layouts[n++ % layouts.length] as Layout;
  const comment = (): string => comments[n++ % comments.length] as string;
  for (const section of config) {
    const l = layoutAt();
    if (l.commentBefore) out.push(comment());
    out.push(`${section.type}:${l.separator}${section.id}${l.trailing}`);
    for (const [key, value] of Object.entries(section.options)) {
      const o = layoutAt();
      if (o.commentBefore) out.push(comment());
      const canBeBare = value === '1' && !(section.type in KNOWN && TEXT_KEYS.has(key));
      out.push(o.bareFlag && canBeBare ? `${o.indent}${key}${o.trailing}` : `${o.indent}${key}${o.separator}${value}${o.trailing}`);
      if (o.padAfter) out.push(`${o.indent}${o.trailing}`);
    }
    for (let i = 0; i < l.blankLines; i++) out.push('');
  }
  return out.join('\n');
}

describe('storage.cfg round trip (property)', () => {
  const plain = (sections: Section[]): [string, string, [string, string][]][] => sections.map((s) => [s.type, s.id, Object.entries(s.options)]);

  it('formatting a random valid config and parsing it back gives the same sections and storages', () => {
    fc.assert(
      fc.property(configArb, (config) => {
        const parsed = parseStorageConfig(formatStorageConfig(config), FILE);
        assert.deepEqual(plain(parsed.storages), plain(config));
        // And a parsed config, written out again, reads back as identical definitions.
        const again = parseStorageConfig(formatStorageConfig(parsed.storages), FILE);
        assert.deepEqual(again.storages, parsed.storages);
      }),
      { numRuns: 300 },
    );
  });

  it('layout (comments, tabs or spaces, bare flags, blank lines) never changes what is read', () => {
    fc.assert(
      fc.property(
        configArb,
        fc.array(layoutArb, { minLength: 1, maxLength: 8 }),
        fc.array(commentArb, { minLength: 1, maxLength: 4 }),
        (config, layouts, comments) => {
          const canonical = parseStorageConfig(formatStorageConfig(config), FILE);
          const noisy = parseStorageConfig(formatNoisily(config, layouts, comments), FILE);
          assert.deepEqual(noisy.storages, canonical.storages);
        },
      ),
      { numRuns: 300 },
    );
  });
});
