import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError } from '../../src/errors.js';
import { readSettings } from '../../src/settings.js';
import {
  DRIVE_KEYS,
  driveTarget,
  isCloudinitVolume,
  loadVmConfig,
  mainSection,
  parseDriveValue,
  parseVmConfig,
  snapshotDrives,
} from '../../src/config/qemu-server-config.js';

/**
 * A config as qemu-server writes it (write_vm_config): description as '#' lines, keys sorted, then
 * [PENDING], [special:cloudinit], then the snapshot sections sorted by name.
 */
const PVE_CONFIG = [
  '#web server',
  '#second line of the description',
  'agent: 1',
  'boot: order=scsi0;ide2;net0',
  'cores: 2',
  'efidisk0: local:100/vm-100-disk-1.qcow2,efitype=4m,pre-enrolled-keys=1,size=528K',
  'ide0: local:100/vm-100-cloudinit.qcow2,media=cdrom',
  'ide2: local:iso/debian-12.iso,media=cdrom,size=628M',
  'memory: 2048',
  'meta: creation-qemu=9.2.0,ctime=1733300000',
  'name: web',
  'net0: virtio=BC:24:11:2E:3A:01,bridge=vmbr0,firewall=1',
  'parent: before-upgrade',
  'scsi0: local:100/vm-100-disk-0.qcow2,iothread=1,size=32G',
  'scsi30: file=san:vm-100-disk-4.qcow2,backup=0,size=8G',
  'scsihw: virtio-scsi-single',
  'smbios1: uuid=5e2a7c1a-0d5f-4c43-9a56-4b7c3bb0a001',
  'tpmstate0: local:100/vm-100-disk-2.raw,size=4M,version=v2.0',
  'unused0: local:100/vm-100-disk-3.qcow2',
  'virtio15: volume=local:100/vm-100-disk-5.qcow2,cache=writeback',
  'vmgenid: 1b7f9c3e-4a5d-4f4e-8b2a-1c9d7e6f5a40',
  '',
  '[PENDING]',
  'scsi1: local:100/vm-100-disk-6.qcow2,size=4G',
  '',
  '[special:cloudinit]',
  'name: web',
  '',
  '[before-upgrade]',
  'boot: order=scsi0;ide2;net0',
  'scsi0: local:100/vm-100-disk-0.qcow2,iothread=1,size=32G',
  'scsi2: local:100/vm-100-disk-7.qcow2,size=1G',
  'snaptime: 1733300000',
  'vmstate: local:100/vm-100-state-before-upgrade.raw',
  '',
].join('\n');

describe('PVE VM config: main section', () => {
  it('reads only the lines before the first [section] ([PENDING], [special:*] and snapshots are other states)', () => {
    const keys = mainSection(PVE_CONFIG).map((l) => l.key);
    assert.ok(keys.includes('scsi0'));
    assert.ok(!keys.includes('scsi1'), 'scsi1 is only pending');
    assert.ok(!keys.includes('scsi2'), 'scsi2 is only in a snapshot');
    assert.ok(!keys.includes('snaptime') && !keys.includes('vmstate'));
  });

  it('ends the main section at any [...] line, even one PVE does not know', () => {
    const lines = mainSection('scsi0: local:100/vm-100-disk-0.qcow2\n[weird section!]\nscsi1: local:100/vm-100-disk-1.qcow2\n');
    assert.deepEqual(
      lines.map((l) => l.key),
      ['scsi0'],
    );
  });

  it("reads 'cdrom:' as ide2, lets a later line for a key win, trims values and CRLF, skips comments and junk", () => {
    const lines = mainSection('#scsi0: x:y\ncdrom: local:iso/a.iso\nscsi0: a:1\r\nscsi0:   b:2   \r\nnot a line\nSCSI1: c:3\n');
    assert.deepEqual(
      lines.map((l) => [l.key, l.value, l.line]),
      [
        ['ide2', 'local:iso/a.iso', 2],
        ['scsi0', 'b:2', 4],
      ],
    );
  });
});

describe('PVE VM config: drive values (parse_property_string)', () => {
  const ok: { value: string; file: string; options?: Record<string, string> }[] = [
    { value: 'local:100/vm-100-disk-0.qcow2', file: 'local:100/vm-100-disk-0.qcow2' },
    { value: 'local:100/vm-100-disk-0.qcow2,iothread=1,size=32G', file: 'local:100/vm-100-disk-0.qcow2', options: { iothread: '1', size: '32G' } },
    { value: 'file=san:vm-100-disk-0.qcow2,cache=none', file: 'san:vm-100-disk-0.qcow2', options: { cache: 'none' } },
    { value: 'volume=san:vm-100-disk-0.qcow2', file: 'san:vm-100-disk-0.qcow2' },
    { value: 'size=8G,local:100/vm-100-disk-0.qcow2', file: 'local:100/vm-100-disk-0.qcow2', options: { size: '8G' } },
    { value: 'local:100/vm-100-disk-0.qcow2,,size=1G', file: 'local:100/vm-100-disk-0.qcow2', options: { size: '1G' } },
    { value: 'none,media=cdrom', file: 'none', options: { media: 'cdrom' } },
    { value: 'serial=a=b,local:1/x', file: 'local:1/x', options: { serial: 'a=b' } },
  ];
  for (const c of ok) {
    it(`parses ${JSON.stringify(c.value)}`, () => {
      assert.deepEqual(parseDriveValue(c.value), { file: c.file, options: c.options ?? {} });
    });
  }
  const bad: { value: string; match: RegExp }[] = [
    { value: 'local:1/a,local:1/b', match: /duplicate key.*file/ },
    { value: 'file=local:1/a,local:1/b', match: /duplicate key.*file/ },
    { value: 'local:1/a,volume=local:1/b', match: /duplicate key.*file/ },
    { value: 'local:1/a,size=1G,size=2G', match: /duplicate key.*size/ },
    { value: 'local:1/a,size=', match: /missing key/ },
    { value: '=x,local:1/a', match: /missing key/ },
    { value: 'size=1G,media=disk', match: /'file'/ },
  ];
  for (const c of bad) {
    it(`refuses ${JSON.stringify(c.value)}`, () => {
      assert.throws(() => parseDriveValue(c.value), c.match);
    });
  }
});

describe('PVE VM config: what a drive names (pve-volume-id-or-qm-path, filename_to_volume_id)', () => {
  const cases: { key: string; file: string; expect: ReturnType<typeof driveTarget> }[] = [
    { key: 'scsi0', file: 'local:100/vm-100-disk-0.qcow2', expect: { kind: 'volume', volid: 'local:100/vm-100-disk-0.qcow2', storage: 'local' } },
    { key: 'ide2', file: 'local:iso/debian.iso', expect: { kind: 'volume', volid: 'local:iso/debian.iso', storage: 'local' } },
    // A bare file name fails the schema (pve-volume-id) before filename_to_volume_id could turn it into a volid.
    { key: 'scsi0', file: 'vm-100-disk-0.qcow2', expect: undefined },
    { key: 'scsi0', file: '9local:100/vm-100-disk-0.qcow2', expect: undefined },
    { key: 'virtio0', file: '/dev/sdb', expect: { kind: 'path', path: '/dev/sdb' } },
    { key: 'sata1', file: '/mnt/disk.img', expect: undefined },
    { key: 'sata1', file: 'sub/disk.img', expect: undefined },
    { key: 'efidisk0', file: '/var/lib/efi.raw', expect: { kind: 'path', path: '/var/lib/efi.raw' } },
    { key: 'efidisk0', file: 'vm-100-disk-1.raw', expect: undefined },
    { key: 'scsi3', file: 'none', expect: { kind: 'empty', value: 'none' } },
    { key: 'ide1', file: 'cdrom', expect: { kind: 'empty', value: 'cdrom' } },
    { key: 'tpmstate0', file: 'san:vm-100-disk-2.raw', expect: { kind: 'volume', volid: 'san:vm-100-disk-2.raw', storage: 'san' } },
  ];
  for (const c of cases) {
    it(`${c.key}: ${c.file}`, () => {
      assert.deepEqual(driveTarget(c.key, c.file), c.expect);
    });
  }

  it('recognises cloud-init volumes as drive_is_cloudinit does', () => {
    for (const yes of ['local:100/vm-100-cloudinit.qcow2', 'san:vm-100-cloudinit', 'local:100/cloudinit.raw', 'x:vm-7-cloudinit.vmdk']) {
      assert.equal(isCloudinitVolume(yes), true, yes);
    }
    for (const no of ['local:100/vm-100-disk-0.qcow2', 'local:100/vm-100-cloudinit2.qcow2', 'local:100/vm-100-cloudinit.iso', 'cloudinit']) {
      assert.equal(isCloudinitVolume(no), false, no);
    }
  });
});

describe('PVE VM config: the drives a snapshot takes', () => {
  it('has exactly qemu-server’s drive keys (ide0-3, scsi0-30, virtio0-15, sata0-5, efidisk0, tpmstate0)', () => {
    assert.equal(DRIVE_KEYS.length, 4 + 31 + 16 + 6 + 2);
    for (const k of ['ide3', 'scsi30', 'virtio15', 'sata5', 'efidisk0', 'tpmstate0']) assert.ok(DRIVE_KEYS.includes(k), k);
    for (const k of ['ide4', 'scsi31', 'virtio16', 'sata6', 'efidisk1', 'tpmstate1', 'unused0', 'cdrom']) assert.ok(!DRIVE_KEYS.includes(k), k);
  });

  it('lists every drive of the main section in PVE order, and snapshots all but cdrom and cloud-init', () => {
    const config = parseVmConfig(PVE_CONFIG, '/etc/pve/qemu-server/100.conf', 100);
    assert.deepEqual(
      config.drives.map((d) => d.key),
      ['ide0', 'ide2', 'scsi0', 'scsi30', 'virtio15', 'efidisk0', 'tpmstate0'],
    );
    const snap = snapshotDrives(config);
    assert.deepEqual(
      snap.map((d) => (d.target.kind === 'volume' ? `${d.key}=${d.target.volid}` : d.key)),
      [
        'scsi0=local:100/vm-100-disk-0.qcow2',
        'scsi30=san:vm-100-disk-4.qcow2',
        'virtio15=local:100/vm-100-disk-5.qcow2',
        'efidisk0=local:100/vm-100-disk-1.qcow2',
        'tpmstate0=local:100/vm-100-disk-2.raw',
      ],
    );
    assert.deepEqual(snap[1]?.options, { backup: '0', size: '8G' });
  });

  it('skips a cloud-init volume even without media=cdrom, and keys beyond the ranges (PVE drops them)', () => {
    const config = parseVmConfig(
      'scsi0: local:100/vm-100-disk-0.qcow2\nscsi31: local:100/vm-100-disk-9.qcow2\nsata0: local:100/vm-100-cloudinit.qcow2\n',
      'f',
      100,
    );
    assert.deepEqual(
      snapshotDrives(config).map((d) => d.key),
      ['scsi0'],
    );
  });

  it('leaves out a cdrom drive PVE would drop (a bare ISO name), rather than refuse the VM', () => {
    const config = parseVmConfig('ide2: debian.iso,media=cdrom\nscsi0: local:100/vm-100-disk-0.qcow2\n', 'f', 100);
    assert.deepEqual(
      config.drives.map((d) => d.key),
      ['scsi0'],
    );
  });

  it('refuses a drive PVE could not parse, naming the file, line and key', () => {
    assert.throws(
      () => parseVmConfig('name: x\nscsi0: local:100/a.qcow2,local:100/b.qcow2\n', '/x/100.conf', 100),
      (err: unknown) => err instanceof ConfigError && err.message.startsWith('/x/100.conf:2: scsi0: cannot parse drive'),
    );
    assert.throws(
      () => parseVmConfig('virtio1: ../../etc/shadow\n', '/x/100.conf', 100),
      (err: unknown) => err instanceof ConfigError && /virtio1: '..\/..\/etc\/shadow' is neither a volume id/.test(err.message),
    );
  });
});

describe('PVE VM config: finding the file', () => {
  let dir = '';
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'volchain-vmconf-'));
    await writeFile(join(dir, '100.conf'), 'scsi0: local:100/vm-100-disk-0.qcow2\n');
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('reads <dir>/<vmid>.conf, and finds none for a VM without one', async () => {
    const env = { VOLCHAIN_VM_CONFIG_DIR: dir };
    const found = await loadVmConfig(100, { settings: readSettings(env) });
    assert.equal(found?.source, join(dir, '100.conf'));
    assert.equal(found.drives.length, 1);
    assert.equal(await loadVmConfig(101, { settings: readSettings(env) }), undefined);
  });

  it('requires a file given with --vm-config to exist, and to be the VM’s own when named <vmid>.conf', async () => {
    await assert.rejects(
      loadVmConfig(100, { path: join(dir, 'missing.conf'), settings: readSettings({}) }),
      (err: unknown) => err instanceof ConfigError && err.message.includes('no such file'),
    );
    await assert.rejects(
      loadVmConfig(101, { path: join(dir, '100.conf'), settings: readSettings({}) }),
      (err: unknown) => err instanceof ConfigError && err.message.includes('config of VM 100, not of VM 101'),
    );
    const given = await loadVmConfig(100, { path: join(dir, '100.conf'), settings: readSettings({}) });
    assert.equal(given?.drives[0]?.key, 'scsi0');
  });
});
