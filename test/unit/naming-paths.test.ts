import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InvalidInputError } from '../../src/errors.js';
import { dirImagesDir, dirLayerPath, lvmLayerPath } from '../../src/naming/index.js';

test('dirImagesDir is <path>/images/<vmid> (PVE get_subdir for images plus "/$vmid")', () => {
  assert.equal(dirImagesDir('/var/lib/vz', 100), '/var/lib/vz/images/100');
  assert.equal(dirImagesDir('/var/lib/vz/', 100), '/var/lib/vz/images/100');
});

test('dirImagesDir refuses relative storage paths, NUL and invalid vmids', () => {
  assert.throws(() => dirImagesDir('var/lib/vz', 100), InvalidInputError);
  assert.throws(() => dirImagesDir('/var/lib\0/vz', 100), InvalidInputError);
  assert.throws(() => dirImagesDir('/var/lib/vz', 99), InvalidInputError);
  assert.throws(() => dirImagesDir('/var/lib/vz', 100.5), InvalidInputError);
});

const dirPaths: { description: string; input: [string, number, string]; expected: string | RegExp }[] = [
  {
    description: 'a volume file (PVE filesystem_path: <dir>/<vmid>/<name>)',
    input: ['/var/lib/vz', 100, 'vm-100-disk-0.qcow2'],
    expected: '/var/lib/vz/images/100/vm-100-disk-0.qcow2',
  },
  {
    description: 'a snapshot layer (PVE filesystem_path with snapshot-as-volume-chain)',
    input: ['/var/lib/vz', 100, 'snap-a-vm-100-disk-0.qcow2'],
    expected: '/var/lib/vz/images/100/snap-a-vm-100-disk-0.qcow2',
  },
  {
    description: 'a temporary dot file',
    input: ['/mnt/nfs', 100, '.volchain-tmp-create-vm-100-disk-0.qcow2'],
    expected: '/mnt/nfs/images/100/.volchain-tmp-create-vm-100-disk-0.qcow2',
  },
  { description: 'parent traversal', input: ['/var/lib/vz', 100, '..'], expected: /not valid/ },
  { description: 'current directory', input: ['/var/lib/vz', 100, '.'], expected: /not valid/ },
  { description: 'a path inside the name', input: ['/var/lib/vz', 100, '../101/vm-101-disk-0.qcow2'], expected: /not valid/ },
  { description: 'an absolute name', input: ['/var/lib/vz', 100, '/etc/shadow'], expected: /not valid/ },
  { description: 'NUL', input: ['/var/lib/vz', 100, 'a\0b'], expected: /not valid/ },
  { description: 'empty', input: ['/var/lib/vz', 100, ''], expected: /not valid/ },
];
for (const c of dirPaths) {
  test(`dirLayerPath(${JSON.stringify(c.input[2])}): ${c.description}`, () => {
    if (typeof c.expected === 'string') assert.equal(dirLayerPath(...c.input), c.expected);
    else
      assert.throws(
        () => dirLayerPath(...c.input),
        (err: unknown) => err instanceof InvalidInputError && (c.expected as RegExp).test(err.message),
      );
  });
}

const lvmPaths: { description: string; input: [string, string]; expected: string | RegExp }[] = [
  {
    description: 'an LV (PVE LVMPlugin filesystem_path: /dev/<vg>/<name>)',
    input: ['vg_san', 'vm-100-disk-0.qcow2'],
    expected: '/dev/vg_san/vm-100-disk-0.qcow2',
  },
  { description: 'an LVM snapshot layer', input: ['pve', 'snap_vm-100-disk-0_a.qcow2'], expected: '/dev/pve/snap_vm-100-disk-0_a.qcow2' },
  { description: 'a del- LV', input: ['pve', 'del-vm-100-disk-0'], expected: '/dev/pve/del-vm-100-disk-0' },
  { description: 'VG name with a slash', input: ['../etc', 'x'], expected: /volume group name/ },
  { description: 'VG name ".."', input: ['..', 'sda'], expected: /volume group name/ },
  { description: 'LV name ".."', input: ['pve', '..'], expected: /LV name/ },
  { description: 'LV name starting with "-" (lvm(8): option injection)', input: ['pve', '-vm-100-disk-0'], expected: /LV name/ },
  { description: 'LV name with a character LVM does not allow', input: ['pve', 'vm-100-disk:0'], expected: /LV name/ },
  { description: 'LV name longer than 127', input: ['pve', `vm-100-${'a'.repeat(130)}`], expected: /LV name/ },
  { description: 'empty VG name', input: ['', 'vm-100-disk-0'], expected: /volume group name/ },
];
for (const c of lvmPaths) {
  test(`lvmLayerPath(${JSON.stringify(c.input[0])}, ${JSON.stringify(c.input[1]).slice(0, 40)}): ${c.description}`, () => {
    if (typeof c.expected === 'string') assert.equal(lvmLayerPath(...c.input), c.expected);
    else
      assert.throws(
        () => lvmLayerPath(...c.input),
        (err: unknown) => err instanceof InvalidInputError && (c.expected as RegExp).test(err.message),
      );
  });
}
