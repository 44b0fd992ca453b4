/**
 * VM-wide operations pick the disks PVE would (issue 14): from the VM's PVE config when there is one
 * (`--vm-config FILE`, or <dir>/<vmid>.conf), else every volume of the VM but cloud-init and saved VM states.
 * Real qcow2/raw files, patterns written and read back with qemu-io, configs written as qemu-server writes them.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  MiB,
  assertPattern,
  assertSameTree,
  checkClean,
  cliFails,
  cliJson,
  cliOk,
  makeStorage,
  snapshotOf,
  writePattern,
  type TestStorage,
} from './helpers.js';

const exists = async (path: string): Promise<boolean> =>
  stat(path).then(
    () => true,
    () => false,
  );

describe('vm commands: which disks', () => {
  let s: TestStorage;
  before(async () => {
    s = await makeStorage();
  });
  after(async () => {
    await s.cleanup();
  });

  /** Allocates volumes of `vmid` (qcow2 unless the name ends in .raw), 4 MiB each. */
  const alloc = async (vmid: number, ...names: string[]): Promise<void> => {
    for (const name of names) await s.vc.alloc(s.id, vmid, 4 * MiB, { name, format: name.endsWith('.raw') ? 'raw' : 'qcow2' });
  };
  /** A VM config file as qemu-server writes it. */
  const writeConf = async (name: string, lines: string[]): Promise<string> => {
    const file = join(s.root, name);
    await writeFile(file, `${lines.join('\n')}\n`);
    return file;
  };

  it('without a config, vm snapshot skips the cloud-init volume and a saved VM state, and snapshots the disks', async () => {
    await alloc(110, 'vm-110-disk-0.qcow2', 'vm-110-cloudinit.qcow2', 'vm-110-state-old.raw');
    await writePattern(s.layer(110, 'vm-110-disk-0.qcow2'), 0xa1, 0, MiB);
    const cloudinit = await readFile(s.layer(110, 'vm-110-cloudinit.qcow2'));
    const state = await readFile(s.layer(110, 'vm-110-state-old.raw'));

    await cliOk(s, ['vm', 'snapshot', '110', 's1']);

    await assertPattern(s.layer(110, 'vm-110-disk-0.qcow2', 's1'), 0xa1, 0, MiB);
    await checkClean(s.layer(110, 'vm-110-disk-0.qcow2'));
    assert.equal(await exists(s.layer(110, 'vm-110-cloudinit.qcow2', 's1')), false, 'cloud-init volume snapshotted');
    assert.equal(await exists(s.layer(110, 'vm-110-state-old.raw', 's1')), false, 'VM state snapshotted');
    assert.deepEqual(await readFile(s.layer(110, 'vm-110-cloudinit.qcow2')), cloudinit);
    assert.deepEqual(await readFile(s.layer(110, 'vm-110-state-old.raw')), state);

    await cliOk(s, ['vm', 'delsnapshot', '110', 's1']);
    await assertPattern(s.layer(110, 'vm-110-disk-0.qcow2'), 0xa1, 0, MiB);
    assert.equal(await exists(s.layer(110, 'vm-110-disk-0.qcow2', 's1')), false);
  });

  it('with --vm-config, snapshot, rollback and delsnapshot act on the main section’s drives only, with the right data in each layer', async () => {
    await alloc(
      120,
      'vm-120-disk-0.qcow2',
      'vm-120-disk-1.qcow2',
      'vm-120-disk-2.qcow2',
      'vm-120-disk-3.qcow2',
      'vm-120-disk-4.qcow2',
      'vm-120-cloudinit.qcow2',
    );
    const conf = await writeConf('120.conf', [
      '#database VM',
      'boot: order=scsi0;ide2',
      'cores: 2',
      `ide0: ${s.id}:120/vm-120-cloudinit.qcow2,media=cdrom`,
      'ide2: none,media=cdrom',
      'memory: 1024',
      'parent: older',
      `scsi0: ${s.id}:120/vm-120-disk-0.qcow2,iothread=1,size=4M`,
      'scsihw: virtio-scsi-single',
      `unused0: ${s.id}:120/vm-120-disk-3.qcow2`,
      `virtio1: file=${s.id}:120/vm-120-disk-1.qcow2,cache=writeback,size=4M`,
      '',
      '[PENDING]',
      `scsi2: ${s.id}:120/vm-120-disk-4.qcow2,size=4M`,
      '',
      '[older]',
      `scsi0: ${s.id}:120/vm-120-disk-0.qcow2,iothread=1,size=4M`,
      `scsi1: ${s.id}:120/vm-120-disk-2.qcow2,size=4M`,
      'snaptime: 1733300000',
    ]);
    const confBytes = await readFile(conf);
    const disk0 = s.layer(120, 'vm-120-disk-0.qcow2');
    const disk1 = s.layer(120, 'vm-120-disk-1.qcow2');
    await writePattern(disk0, 0xa1, 0, MiB);
    await writePattern(disk1, 0xa2, MiB, MiB);

    const dry = await cliJson<{ plans: { volid: string }[] }>(s, ['vm', 'snapshot', '120', 'before', '--vm-config', conf, '--dry-run']);
    assert.deepEqual(
      dry.plans.map((p) => p.volid),
      [`${s.id}:120/vm-120-disk-0.qcow2`, `${s.id}:120/vm-120-disk-1.qcow2`],
    );

    await cliOk(s, ['vm', 'snapshot', '120', 'before', '--vm-config', conf]);
    for (const other of ['vm-120-disk-2.qcow2', 'vm-120-disk-3.qcow2', 'vm-120-disk-4.qcow2', 'vm-120-cloudinit.qcow2']) {
      assert.equal(await exists(s.layer(120, other, 'before')), false, `${other} is not a current drive, yet was snapshotted`);
    }
    await assertPattern(s.layer(120, 'vm-120-disk-0.qcow2', 'before'), 0xa1, 0, MiB);
    await assertPattern(s.layer(120, 'vm-120-disk-1.qcow2', 'before'), 0xa2, MiB, MiB);

    await writePattern(disk0, 0xb1, 0, MiB);
    await writePattern(disk1, 0xb2, MiB, MiB);
    await cliOk(s, ['vm', 'rollback', '120', 'before', '--vm-config', conf]);
    await assertPattern(disk0, 0xa1, 0, MiB);
    await assertPattern(disk1, 0xa2, MiB, MiB);

    await cliOk(s, ['vm', 'delsnapshot', '120', 'before', '--vm-config', conf]);
    assert.equal(await exists(s.layer(120, 'vm-120-disk-0.qcow2', 'before')), false);
    assert.equal(await exists(s.layer(120, 'vm-120-disk-1.qcow2', 'before')), false);
    await assertPattern(disk0, 0xa1, 0, MiB);
    await assertPattern(disk1, 0xa2, MiB, MiB);
    for (const d of [disk0, disk1]) await checkClean(d);
    assert.deepEqual(await readFile(conf), confBytes, 'the VM config was written');
  });

  it('finds <vmid>.conf in the VM config directory by itself (the /etc/pve/qemu-server default, moved for the test)', async () => {
    await alloc(130, 'vm-130-disk-0.qcow2', 'vm-130-disk-1.qcow2');
    const dir = join(s.root, 'qemu-server');
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, '130.conf'), `scsi0: ${s.id}:130/vm-130-disk-1.qcow2,size=4M\nunused0: ${s.id}:130/vm-130-disk-0.qcow2\n`);
    const dry = await cliJson<{ plans: { volid: string }[] }>(s, ['vm', 'snapshot', '130', 'xx', '--dry-run']);
    assert.equal(dry.plans.length, 2, 'without the directory, both volumes are taken');
    const out = await cliOk(s, ['vm', 'snapshot', '130', 'xx', '--dry-run', '--json'], { env: { VOLCHAIN_VM_CONFIG_DIR: dir } });
    assert.deepEqual(
      (JSON.parse(out) as { plans: { volid: string }[] }).plans.map((p) => p.volid),
      [`${s.id}:130/vm-130-disk-1.qcow2`],
    );
  });

  it('--storage keeps only the config’s drives on that storage', async () => {
    await alloc(135, 'vm-135-disk-0.qcow2');
    const conf = await writeConf('135.conf', [`scsi0: ${s.id}:135/vm-135-disk-0.qcow2`, 'scsi1: other:vm-135-disk-0', 'sata0: /dev/sdz']);
    const dry = await cliJson<{ plans: { volid: string }[] }>(s, ['vm', 'snapshot', '135', 'xx', '--vm-config', conf, '--storage', s.id, '--dry-run']);
    assert.deepEqual(
      dry.plans.map((p) => p.volid),
      [`${s.id}:135/vm-135-disk-0.qcow2`],
    );
    await cliFails(s, ['vm', 'snapshot', '135', 'xx', '--vm-config', conf, '--storage', 'nosuch'], {
      code: 3,
      match: /VM 135 has no disks on storage 'nosuch' in .*135\.conf/,
    });
  });

  describe('refusals: the drive named, the right exit status, nothing changed', () => {
    const refusals: { what: string; vmid: number; lines: (id: string) => string[]; code: number; match: RegExp }[] = [
      {
        what: 'a raw efidisk (PVE: snapshot feature is not available)',
        vmid: 140,
        lines: (id) => [`efidisk0: ${id}:140/vm-140-disk-1.raw,efitype=4m,size=528K`, `scsi0: ${id}:140/vm-140-disk-0.qcow2,size=4M`],
        code: 5,
        match: /vm-140-disk-1\.raw is a raw volume/,
      },
      {
        what: 'a drive on a storage missing from storage.cfg',
        vmid: 141,
        lines: (id) => [`scsi0: ${id}:141/vm-141-disk-0.qcow2`, 'scsi1: ceph:vm-141-disk-1'],
        code: 3,
        match: /VM 141's scsi1 \(ceph:vm-141-disk-1\) cannot be snapshotted by volchain: storage 'ceph' is not defined/,
      },
      {
        what: 'a host device path',
        vmid: 142,
        lines: (id) => [`scsi0: ${id}:142/vm-142-disk-0.qcow2`, 'virtio0: /dev/disk/by-id/ata-SSD,size=100G'],
        code: 5,
        match: /VM 142's virtio0 is the host path '\/dev\/disk\/by-id\/ata-SSD'/,
      },
      {
        what: 'an empty non-cdrom drive',
        vmid: 143,
        lines: (id) => [`scsi0: ${id}:143/vm-143-disk-0.qcow2`, 'sata2: none'],
        code: 5,
        match: /VM 143's sata2 is 'none' without media=cdrom/,
      },
      {
        what: 'another VM’s disk',
        vmid: 144,
        lines: (id) => [`scsi0: ${id}:144/vm-144-disk-0.qcow2`, `scsi1: ${id}:110/vm-110-disk-0.qcow2`],
        code: 5,
        match: /VM 144's scsi1 \(\S+:110\/vm-110-disk-0\.qcow2\) is a disk of VM 110/,
      },
      {
        what: 'a volume that does not exist',
        vmid: 145,
        lines: (id) => [`scsi0: ${id}:145/vm-145-disk-0.qcow2`, `scsi7: ${id}:145/vm-145-disk-9.qcow2,size=4M`],
        code: 3,
        match: /VM 145's scsi7 \(\S+:145\/vm-145-disk-9\.qcow2\) does not exist/,
      },
      {
        what: 'a drive value PVE cannot parse',
        vmid: 146,
        lines: (id) => ['name: broken', `scsi0: ${id}:146/vm-146-disk-0.qcow2,size=4M,size=8M`],
        code: 2,
        match: /146\.conf:2: scsi0: cannot parse drive .*duplicate key/,
      },
    ];
    for (const r of refusals) {
      it(`refuses ${r.what}`, async () => {
        const names = [`vm-${r.vmid}-disk-0.qcow2`, ...(r.vmid === 140 ? ['vm-140-disk-1.raw'] : [])];
        await alloc(r.vmid, ...names);
        await writePattern(s.layer(r.vmid, names[0] ?? ''), 0xc3, 0, MiB);
        const conf = await writeConf(`${r.vmid}.conf`, r.lines(s.id));
        const before = await snapshotOf(s.path);
        await cliFails(s, ['vm', 'snapshot', String(r.vmid), 'xx', '--vm-config', conf], { code: r.code, match: r.match });
        await cliFails(s, ['vm', 'snapshot', String(r.vmid), 'xx', '--vm-config', conf, '--dry-run'], { code: r.code, match: r.match });
        assertSameTree(before, await snapshotOf(s.path), r.what);
      });
    }

    it('refuses a drive on a storage of a type volchain does not drive, naming it', async () => {
      const cfg = join(s.root, 'with-rbd.cfg');
      await writeFile(cfg, `${await readFile(s.cfg, 'utf8')}\nrbd: ceph\n\tpool vms\n\tcontent images\n`);
      await alloc(147, 'vm-147-disk-0.qcow2');
      const conf = await writeConf('147.conf', [`scsi0: ${s.id}:147/vm-147-disk-0.qcow2`, 'scsi1: ceph:vm-147-disk-1,size=8G']);
      const before = await snapshotOf(s.path);
      await cliFails({ cfg }, ['vm', 'snapshot', '147', 'xx', '--vm-config', conf], {
        code: 5,
        match: /VM 147's scsi1 \(ceph:vm-147-disk-1\) cannot be snapshotted by volchain: storage 'ceph' has type 'rbd'/,
      });
      assertSameTree(before, await snapshotOf(s.path), 'rbd drive');
    });

    it('refuses a --vm-config file that is missing, or another VM’s', async () => {
      await cliFails(s, ['vm', 'rollback', '110', 's1', '--vm-config', join(s.root, 'nope.conf')], { code: 2, match: /nope\.conf: cannot read VM config/ });
      await cliFails(s, ['vm', 'delsnapshot', '110', 's1', '--vm-config', join(s.root, '120.conf')], {
        code: 2,
        match: /is the config of VM 120, not of VM 110/,
      });
    });
  });
});
