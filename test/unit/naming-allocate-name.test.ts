import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AlreadyExistsError, InvalidInputError } from '../../src/errors.js';
import { nextFreeDiskName, type ImageFormat, type StorageKind } from '../../src/naming/index.js';

const cases: { description: string; input: { kind: StorageKind; vmid: number; format: ImageFormat; existing: string[] }; expected: string }[] = [
  {
    description: 'dir, nothing yet: disk-0 (PVE get_next_vm_diskname starts at 0)',
    input: { kind: 'dir', vmid: 100, format: 'qcow2', existing: [] },
    expected: 'vm-100-disk-0.qcow2',
  },
  {
    description: 'dir raw gets the .raw suffix (Plugin alloc_image: add_fmt_suffix)',
    input: { kind: 'dir', vmid: 100, format: 'raw', existing: [] },
    expected: 'vm-100-disk-0.raw',
  },
  {
    description: 'lvm raw has no suffix (LVMPlugin find_free_diskname: suffix only for qcow2)',
    input: { kind: 'lvm', vmid: 100, format: 'raw', existing: [] },
    expected: 'vm-100-disk-0',
  },
  { description: 'lvm qcow2 ends in .qcow2', input: { kind: 'lvm', vmid: 100, format: 'qcow2', existing: [] }, expected: 'vm-100-disk-0.qcow2' },
  {
    description: 'the lowest free number, filling gaps (PVE loops from 0)',
    input: { kind: 'dir', vmid: 100, format: 'qcow2', existing: ['vm-100-disk-0.qcow2', 'vm-100-disk-2.qcow2'] },
    expected: 'vm-100-disk-1.qcow2',
  },
  {
    description: 'any format blocks a number: vm-100-disk-0.raw blocks disk-0.qcow2 (stricter than PVE on dir, which checks only the same extension)',
    input: { kind: 'dir', vmid: 100, format: 'qcow2', existing: ['vm-100-disk-0.raw'] },
    expected: 'vm-100-disk-1.qcow2',
  },
  {
    description: 'lvm: a raw LV blocks the qcow2 number (PVE qcow2 allocation would ignore it)',
    input: { kind: 'lvm', vmid: 100, format: 'qcow2', existing: ['vm-100-disk-0'] },
    expected: 'vm-100-disk-1.qcow2',
  },
  {
    description: 'lvm: a qcow2 LV blocks the raw number (PVE: regex without suffix matches it too)',
    input: { kind: 'lvm', vmid: 100, format: 'raw', existing: ['vm-100-disk-0.qcow2'] },
    expected: 'vm-100-disk-1',
  },
  {
    description: "other VMs' disks do not count, including vmids that contain this one",
    input: { kind: 'lvm', vmid: 100, format: 'raw', existing: ['vm-101-disk-0', 'vm-1100-disk-0', 'vm-10-disk-0'] },
    expected: 'vm-100-disk-0',
  },
  {
    description: 'base- volumes block their number (PVE get_vm_disk_number: (vm|base)-)',
    input: { kind: 'dir', vmid: 100, format: 'qcow2', existing: ['base-100-disk-0.qcow2'] },
    expected: 'vm-100-disk-1.qcow2',
  },
  {
    description: 'lvm: a del- LV still being wiped blocks its number (PVE regex is unanchored over all LVs)',
    input: { kind: 'lvm', vmid: 100, format: 'qcow2', existing: ['del-vm-100-disk-0.qcow2'] },
    expected: 'vm-100-disk-1.qcow2',
  },
  {
    description: 'lvm: an orphaned snapshot layer blocks its number',
    input: { kind: 'lvm', vmid: 100, format: 'qcow2', existing: ['snap_vm-100-disk-0_daily.qcow2'] },
    expected: 'vm-100-disk-1.qcow2',
  },
  {
    description: 'dir: a leftover volchain temporary blocks its number',
    input: { kind: 'dir', vmid: 100, format: 'qcow2', existing: ['.volchain-tmp-create-vm-100-disk-0.qcow2'] },
    expected: 'vm-100-disk-1.qcow2',
  },
  {
    description: 'disk-10 does not take disk-1 (digits are read whole)',
    input: { kind: 'dir', vmid: 100, format: 'qcow2', existing: ['vm-100-disk-10.qcow2', 'vm-100-disk-0.qcow2'] },
    expected: 'vm-100-disk-1.qcow2',
  },
  {
    description: 'volids are accepted as existing names (PVE passes volids)',
    input: { kind: 'dir', vmid: 100, format: 'raw', existing: ['local:100/vm-100-disk-0.qcow2'] },
    expected: 'vm-100-disk-1.raw',
  },
  {
    description: 'user-named disks that do not follow disk-<n> take no number',
    input: { kind: 'dir', vmid: 100, format: 'qcow2', existing: ['vm-100-data.qcow2'] },
    expected: 'vm-100-disk-0.qcow2',
  },
];
for (const c of cases) {
  test(`nextFreeDiskName: ${c.description}`, () => {
    assert.equal(nextFreeDiskName(c.input.kind, c.input.vmid, c.input.format, c.input.existing), c.expected);
  });
}

test('nextFreeDiskName gives up after 1024 disks (PVE $MAX_VOLUMES_PER_GUEST)', () => {
  const existing = Array.from({ length: 1023 }, (_, n) => `vm-100-disk-${n}.qcow2`);
  assert.equal(nextFreeDiskName('dir', 100, 'qcow2', existing), 'vm-100-disk-1023.qcow2');
  existing.push('vm-100-disk-1023.raw');
  assert.throws(
    () => nextFreeDiskName('dir', 100, 'qcow2', existing),
    (err: unknown) => err instanceof AlreadyExistsError && err.message.includes('VM 100'),
  );
});

test('nextFreeDiskName accepts any iterable, e.g. a Set of LV names', () => {
  assert.equal(nextFreeDiskName('lvm', 200, 'qcow2', new Set(['vm-200-disk-0.qcow2'])), 'vm-200-disk-1.qcow2');
});

test('nextFreeDiskName validates vmid, format and storage type', () => {
  assert.throws(() => nextFreeDiskName('dir', 99, 'qcow2', []), InvalidInputError);
  assert.throws(() => nextFreeDiskName('dir', 100, 'vmdk' as ImageFormat, []), InvalidInputError);
  assert.throws(() => nextFreeDiskName('zfs' as StorageKind, 100, 'raw', []), InvalidInputError);
});
