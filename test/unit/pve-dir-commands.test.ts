/**
 * The pure parts of the PVE 9 dir command model (test/fixtures/pve-dir-commands.ts), table-checked against
 * what the Perl code does, so the interop tests run PVE's behaviour and not a guess of it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { filesystemPath, getSnapName, parseNameDir, preallocationCmdOpt, pveSnapshotNameProblem } from '../fixtures/pve-dir-commands.js';
import type { PveDirStorage } from '../fixtures/pve-dir-commands.js';

const dir: PveDirStorage = { id: 'local', path: '/var/lib/vz', chain: true };

test('pve-configid snapshot names: hyphens allowed, 2..40 characters, current and pending (any case) reserved', () => {
  for (const ok of ['pre-up', 'a-b-c', 'z_9', 'Ab', 'x'.repeat(40)]) assert.equal(pveSnapshotNameProblem(ok), undefined, ok);
  for (const bad of ['a', '1ab', '-ab', 'a.b', 'a b', 'x'.repeat(41), '']) assert.match(pveSnapshotNameProblem(bad) ?? '', /invalid configuration ID/, bad);
  assert.match(pveSnapshotNameProblem('current') ?? '', /unable to use snapshot name/);
  assert.match(pveSnapshotNameProblem('PenDing') ?? '', /unable to use snapshot name/);
  assert.equal(pveSnapshotNameProblem('Current'), undefined, "qemu-server compares 'current' exactly");
});

test('parse_name_dir: vm-/base- names of any shape, other names only as plain files, snapshot names refused', () => {
  const table: [string, { format: string; isBase: boolean } | RegExp][] = [
    ['vm-101-disk-0.qcow2', { format: 'qcow2', isBase: false }],
    ['vm-101-data-foo.qcow2', { format: 'qcow2', isBase: false }],
    ['vm-101-cloudinit.qcow2', { format: 'qcow2', isBase: false }],
    ['vm-101-state-pre-up.raw', { format: 'raw', isBase: false }],
    ['vm-101-disk-1.vmdk', { format: 'vmdk', isBase: false }],
    ['base-100-disk-0.qcow2', { format: 'qcow2', isBase: true }],
    ['mydisk.raw', { format: 'raw', isBase: false }],
    ['snap-pre-up-vm-101-disk-0.qcow2', /is a snapshot filename, not a volume/],
    ['vm-101-disk-0.img', /unable to parse volume filename/],
  ];
  for (const [name, expected] of table) {
    if (expected instanceof RegExp) assert.throws(() => parseNameDir(name), expected, name);
    else assert.deepEqual(parseNameDir(name), expected, name);
  }
});

test('get_snap_name / filesystem_path: snap-<snap>-<volume> beside the volume; content-dirs honoured', () => {
  const vol = { vmid: 101, name: 'vm-101-disk-0.qcow2' };
  assert.equal(getSnapName(vol, 'current'), 'vm-101-disk-0.qcow2');
  assert.equal(getSnapName(vol, 'a-b-c'), 'snap-a-b-c-vm-101-disk-0.qcow2');
  assert.equal(filesystemPath(dir, vol, 'pre-up'), '/var/lib/vz/images/101/snap-pre-up-vm-101-disk-0.qcow2');
  assert.equal(filesystemPath({ ...dir, imagesSubdir: 'vm/disks' }, vol), '/var/lib/vz/vm/disks/101/vm-101-disk-0.qcow2');
  assert.throws(() => filesystemPath(dir, { vmid: 101, name: 'vm-101-disk-1.raw' }, 's1'), /can't snapshot this image format/);
});

test('preallocation_cmd_opt: qcow2 defaults to metadata, raw to off (metadata means off), vmdk gets none', () => {
  assert.equal(preallocationCmdOpt(dir, 'qcow2'), 'metadata');
  assert.equal(preallocationCmdOpt(dir, 'raw'), 'off');
  assert.equal(preallocationCmdOpt({ ...dir, preallocation: 'metadata' }, 'raw'), 'off');
  assert.equal(preallocationCmdOpt({ ...dir, preallocation: 'falloc' }, 'raw'), 'falloc');
  assert.equal(preallocationCmdOpt({ ...dir, preallocation: 'off' }, 'qcow2'), 'off');
  assert.equal(preallocationCmdOpt({ ...dir, preallocation: 'full' }, 'vmdk'), undefined);
});
