import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InvalidInputError, NotSupportedError } from '../../src/errors.js';
import {
  isVolchainTemporaryName,
  parseVolumeName,
  snapshotLayerName,
  snapshotOfLayerName,
  temporaryLayerName,
  type StorageKind,
} from '../../src/naming/index.js';

const layers: { description: string; input: { kind: StorageKind; volume: string; snapshot: string }; expected: string }[] = [
  {
    description: 'dir: snap-<S>-<volume> (PVE Plugin.pm get_snap_name, DESIGN.md section 2)',
    input: { kind: 'dir', volume: 'vm-100-disk-0.qcow2', snapshot: 'Snap1' },
    expected: 'snap-Snap1-vm-100-disk-0.qcow2',
  },
  {
    description: 'lvm: snap_<volume without .qcow2>_<S>.qcow2 (PVE LVMPlugin.pm get_snap_name)',
    input: { kind: 'lvm', volume: 'vm-100-disk-0.qcow2', snapshot: 'daily' },
    expected: 'snap_vm-100-disk-0_daily.qcow2',
  },
  {
    description: 'lvm: underscores in the snapshot name stay as they are',
    input: { kind: 'lvm', volume: 'vm-1234-data.qcow2', snapshot: 'pre_upgrade_2' },
    expected: 'snap_vm-1234-data_pre_upgrade_2.qcow2',
  },
  {
    description: "dir: a hyphen in the snapshot name stays (issue 14: PVE's snapshot 'pre-up')",
    input: { kind: 'dir', volume: 'vm-101-disk-0.qcow2', snapshot: 'pre-up' },
    expected: 'snap-pre-up-vm-101-disk-0.qcow2',
  },
];
for (const c of layers) {
  test(`snapshotLayerName ${c.input.kind} (${c.input.volume}, ${c.input.snapshot}): ${c.description}`, () => {
    assert.equal(snapshotLayerName(c.input.kind, c.input.volume, c.input.snapshot), c.expected);
    assert.equal(snapshotOfLayerName(c.input.kind, c.input.volume, c.expected), c.input.snapshot);
  });
}

test('snapshotLayerName refuses raw volumes (PVE: "can\'t snapshot this image format")', () => {
  assert.throws(() => snapshotLayerName('dir', 'vm-100-disk-0.raw', 'daily'), NotSupportedError);
  assert.throws(() => snapshotLayerName('lvm', 'vm-100-disk-0', 'daily'), NotSupportedError);
});

test('snapshotLayerName validates the snapshot name and the volume name first', () => {
  assert.throws(() => snapshotLayerName('dir', 'vm-100-disk-0.qcow2', 'current'), /reserved/);
  assert.throws(() => snapshotLayerName('dir', 'vm-100-disk-0.qcow2', 'a/b'), InvalidInputError);
  assert.throws(() => snapshotLayerName('dir', '../vm-100-disk-0.qcow2', 'daily'), InvalidInputError);
  assert.throws(() => snapshotLayerName('lvm', 'snap_vm-100-disk-0_a.qcow2', 'daily'), /snapshot layer name/);
});

test('snapshotLayerName on LVM refuses a snapshot name that makes an LVM-reserved LV name (lvm(8): "_tmeta", "_rimage", ...)', () => {
  assert.throws(
    () => snapshotLayerName('lvm', 'vm-100-disk-0.qcow2', 'tmeta1'),
    (err: unknown) => err instanceof InvalidInputError && err.message.includes('"_tmeta", reserved by LVM'),
  );
  assert.throws(() => snapshotLayerName('lvm', 'vm-100-disk-0.qcow2', 'x_rimage'), /reserved by LVM/);
  // The same snapshot name is fine on dir, where the layer is a file.
  assert.equal(snapshotLayerName('dir', 'vm-100-disk-0.qcow2', 'tmeta1'), 'snap-tmeta1-vm-100-disk-0.qcow2');
});

test('snapshotLayerName refuses a layer name over the LV name limit for an existing long volume name', () => {
  const volume = `vm-100-${'a'.repeat(100)}.qcow2`; // 113 characters: legal as a PVE LV, too long to snapshot
  parseVolumeName('lvm', volume);
  assert.throws(() => snapshotLayerName('lvm', volume, 'daily_snapshot_1'), /over the lvm limit of 127/);
});

const inverse: { description: string; input: { kind: StorageKind; volume: string; layer: string }; expected: string | undefined }[] = [
  {
    description: 'dir: the volume itself is not a snapshot layer (PVE parse_snap_name returns nothing)',
    input: { kind: 'dir', volume: 'vm-100-disk-0.qcow2', layer: 'vm-100-disk-0.qcow2' },
    expected: undefined,
  },
  {
    description: "dir: another volume's layer",
    input: { kind: 'dir', volume: 'vm-100-disk-0.qcow2', layer: 'snap-daily-vm-100-disk-1.qcow2' },
    expected: undefined,
  },
  {
    description: 'dir: a suffix match with a longer volume name is not ours (disk-1 vs disk-11 bug class)',
    input: { kind: 'dir', volume: 'vm-100-disk-1.qcow2', layer: 'snap-daily-vm-100-disk-11.qcow2' },
    expected: undefined,
  },
  {
    description: 'dir: a PVE snapshot with "-" in its name (pve-configid allows it) is what lies between snap- and -<volume>',
    input: { kind: 'dir', volume: 'vm-100-disk-0.qcow2', layer: 'snap-before-upgrade-vm-100-disk-0.qcow2' },
    expected: 'before-upgrade',
  },
  {
    description: 'dir: given the other volume, the same name reads as another pair (vm-100-x-vm-100-d.qcow2, sn)',
    input: { kind: 'dir', volume: 'vm-100-x-vm-100-d.qcow2', layer: 'snap-sn-vm-100-x-vm-100-d.qcow2' },
    expected: 'sn',
  },
  {
    description: 'dir: ... and given vm-100-d.qcow2 it is snapshot sn-vm-100-x (hence membership by headers)',
    input: { kind: 'dir', volume: 'vm-100-d.qcow2', layer: 'snap-sn-vm-100-x-vm-100-d.qcow2' },
    expected: 'sn-vm-100-x',
  },
  {
    description: 'lvm: a PVE snapshot with "-" in its name',
    input: { kind: 'lvm', volume: 'vm-100-disk-0.qcow2', layer: 'snap_vm-100-disk-0_pre-up.qcow2' },
    expected: 'pre-up',
  },
  {
    description: 'dir: an empty snapshot part',
    input: { kind: 'dir', volume: 'vm-100-disk-0.qcow2', layer: 'snap--vm-100-disk-0.qcow2' },
    expected: undefined,
  },
  {
    description: 'dir: reserved name current (PVE maps current to the volume itself)',
    input: { kind: 'dir', volume: 'vm-100-disk-0.qcow2', layer: 'snap-current-vm-100-disk-0.qcow2' },
    expected: undefined,
  },
  {
    description: 'dir: the LVM form is not a dir layer',
    input: { kind: 'dir', volume: 'vm-100-disk-0.qcow2', layer: 'snap_vm-100-disk-0_daily.qcow2' },
    expected: undefined,
  },
  {
    description: 'dir: a temporary',
    input: { kind: 'dir', volume: 'vm-100-disk-0.qcow2', layer: '.volchain-tmp-create-vm-100-disk-0.qcow2' },
    expected: undefined,
  },
  {
    description: 'dir: raw volumes have no snapshot layers',
    input: { kind: 'dir', volume: 'vm-100-disk-0.raw', layer: 'snap-daily-vm-100-disk-0.raw' },
    expected: undefined,
  },
  {
    description: 'lvm: ambiguity without the volume: snap_vm-101-a_b_cd.qcow2 is snapshot b_cd of vm-101-a.qcow2 ...',
    input: { kind: 'lvm', volume: 'vm-101-a.qcow2', layer: 'snap_vm-101-a_b_cd.qcow2' },
    expected: 'b_cd',
  },
  {
    description: 'lvm: ... and snapshot cd of vm-101-a_b.qcow2 (DESIGN.md section 2: never parse a layer name alone)',
    input: { kind: 'lvm', volume: 'vm-101-a_b.qcow2', layer: 'snap_vm-101-a_b_cd.qcow2' },
    expected: 'cd',
  },
  {
    description: 'lvm: a one-character remainder is not a snapshot name (they have at least two)',
    input: { kind: 'lvm', volume: 'vm-101-a_b.qcow2', layer: 'snap_vm-101-a_b_c.qcow2' },
    expected: undefined,
  },
  {
    description: 'lvm: del- LV of a layer is not a layer',
    input: { kind: 'lvm', volume: 'vm-100-disk-0.qcow2', layer: 'del-snap_vm-100-disk-0_daily.qcow2' },
    expected: undefined,
  },
  { description: 'lvm: missing .qcow2 suffix', input: { kind: 'lvm', volume: 'vm-100-disk-0.qcow2', layer: 'snap_vm-100-disk-0_daily' }, expected: undefined },
  {
    description: 'lvm: the dir form is not an LVM layer',
    input: { kind: 'lvm', volume: 'vm-100-disk-0.qcow2', layer: 'snap-daily-vm-100-disk-0.qcow2' },
    expected: undefined,
  },
];
for (const c of inverse) {
  test(`snapshotOfLayerName ${c.input.kind} ${c.input.layer}: ${c.description}`, () => {
    assert.equal(snapshotOfLayerName(c.input.kind, c.input.volume, c.input.layer), c.expected);
  });
}

test('snapshotOfLayerName throws when the known volume name itself is invalid', () => {
  assert.throws(() => snapshotOfLayerName('dir', '../etc', 'snap-a-../etc'), InvalidInputError);
});

const temporaries: { description: string; input: { kind: StorageKind; volume: string; purpose: string }; expected: string }[] = [
  {
    description: 'dir: hidden by a leading dot from PVE list_images, which globs images/<vmid>/*',
    input: { kind: 'dir', volume: 'vm-100-disk-0.qcow2', purpose: 'create' },
    expected: '.volchain-tmp-create-vm-100-disk-0.qcow2',
  },
  {
    description: 'lvm: no leading dot; PVE list_images only lists LVs starting vm-',
    input: { kind: 'lvm', volume: 'vm-100-disk-0.qcow2', purpose: 'rollback' },
    expected: 'volchain-tmp-rollback-vm-100-disk-0.qcow2',
  },
];
for (const c of temporaries) {
  test(`temporaryLayerName ${c.input.kind} ${c.input.purpose}: ${c.description}`, () => {
    const name = temporaryLayerName(c.input.kind, c.input.volume, c.input.purpose);
    assert.equal(name, c.expected);
    assert.deepEqual(isVolchainTemporaryName(name), { purpose: c.input.purpose, volumeName: c.input.volume });
    assert.deepEqual(isVolchainTemporaryName(name, c.input.kind), { purpose: c.input.purpose, volumeName: c.input.volume });
  });
}

test('temporaryLayerName refuses purposes that could blur where the volume name starts', () => {
  for (const purpose of ['', 'Create', 're-base', 'a_b', 'x'.repeat(17), '1']) {
    assert.throws(() => temporaryLayerName('dir', 'vm-100-disk-0.qcow2', purpose), /1 to 16 lower-case letters/);
  }
});

const notTemporary: { description: string; input: { name: string; kind?: StorageKind } }[] = [
  { description: 'a volume', input: { name: 'vm-100-disk-0.qcow2' } },
  { description: 'a snapshot layer', input: { name: 'snap-a-vm-100-disk-0.qcow2' } },
  { description: 'the dir form asked for as LVM', input: { name: '.volchain-tmp-create-vm-100-disk-0.qcow2', kind: 'lvm' } },
  { description: 'the LVM form asked for as dir', input: { name: 'volchain-tmp-create-vm-100-disk-0.qcow2', kind: 'dir' } },
  { description: 'a temporary whose volume part is not a valid volume name', input: { name: '.volchain-tmp-create-../../etc/passwd' } },
  { description: 'a temporary without purpose', input: { name: '.volchain-tmp--vm-100-disk-0.qcow2' } },
  { description: 'a temporary whose volume part has an extension volchain does not handle', input: { name: '.volchain-tmp-create-vm-100-disk-0.vhdx' } },
];
for (const c of notTemporary) {
  test(`isVolchainTemporaryName(${JSON.stringify(c.input.name)}) is undefined: ${c.description}`, () => {
    assert.equal(isVolchainTemporaryName(c.input.name, c.input.kind), undefined);
  });
}
