import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InvalidInputError, NotSupportedError, type VolchainError } from '../../src/errors.js';
import {
  formatVolid,
  parseVmid,
  parseVolname,
  parseVolumeName,
  splitVolid,
  validateStorageId,
  validateVolumeName,
  type StorageKind,
  type VolumeRef,
} from '../../src/naming/index.js';

type ErrorClass = new (...args: never[]) => VolchainError;

function throwsWith(fn: () => unknown, cls: ErrorClass, message: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof cls, `expected ${cls.name}, got ${String(err)}`);
    assert.match(err.message, message);
    return true;
  });
}

// ---------------------------------------------------------------------------------------------------------
// splitVolid: PVE parse_volume_id, `^([a-z][a-z0-9\-\_\.]*[a-z0-9]):(.+)$` (case-insensitive)

const splits: { description: string; input: string; expected: { storage: string; volname: string } }[] = [
  {
    description: 'a dir volid (DESIGN.md example)',
    input: 'local:100/vm-100-disk-0.qcow2',
    expected: { storage: 'local', volname: '100/vm-100-disk-0.qcow2' },
  },
  { description: 'an lvm volid', input: 'san:vm-100-disk-0.qcow2', expected: { storage: 'san', volname: 'vm-100-disk-0.qcow2' } },
  {
    description: 'storage ids may contain - _ . and upper case (parse_volume_id is /i)',
    input: 'My-Store_1.x:vm-100-a',
    expected: { storage: 'My-Store_1.x', volname: 'vm-100-a' },
  },
  {
    description: 'only the first ":" splits: storage ids never contain one, PVE volnames may',
    input: 'local:iso/a:b.iso',
    expected: { storage: 'local', volname: 'iso/a:b.iso' },
  },
];
for (const c of splits) {
  test(`splitVolid(${JSON.stringify(c.input)}): ${c.description}`, () => {
    assert.deepEqual(splitVolid(c.input), c.expected);
  });
}

const badSplits: { description: string; input: string; message: RegExp }[] = [
  { description: 'empty', input: '', message: /must not be empty/ },
  { description: 'no ":" (PVE: unable to parse volume ID)', input: 'vm-100-disk-0', message: /has no ':'/ },
  { description: 'nothing after ":" (PVE needs .+)', input: 'local:', message: /nothing after ':'/ },
  { description: 'empty storage id', input: ':100/vm-100-disk-0.raw', message: /valid storage id/ },
  { description: 'one-character storage id (parse_volume_id needs two)', input: 'a:vm-100-a', message: /valid storage id/ },
  { description: 'storage id starting with a digit', input: '1local:vm-100-a', message: /valid storage id/ },
  { description: 'storage id ending with "-"', input: 'local-:vm-100-a', message: /valid storage id/ },
  { description: 'storage id with a slash', input: 'lo/cal:vm-100-a', message: /valid storage id/ },
  { description: 'trailing newline, which Perl $ lets PVE accept', input: 'local:100/vm-100-disk-0.raw\n', message: /control character/ },
];
for (const c of badSplits) {
  test(`splitVolid rejects ${JSON.stringify(c.input)}: ${c.description}`, () => {
    throwsWith(() => splitVolid(c.input), InvalidInputError, c.message);
  });
}

test('validateStorageId follows pve-storage-id', () => {
  validateStorageId('local');
  validateStorageId('local-lvm');
  throwsWith(() => validateStorageId('x'), InvalidInputError, /at least 2 characters/);
  throwsWith(() => validateStorageId('local lvm'), InvalidInputError, /"local lvm"/);
});

// ---------------------------------------------------------------------------------------------------------
// parseVmid: pve-vmid, `^[1-9][0-9]{2,8}$` (100..999999999)

const vmids: { description: string; input: string; expected: number | RegExp }[] = [
  { description: 'the smallest pve-vmid', input: '100', expected: 100 },
  { description: 'the largest pve-vmid', input: '999999999', expected: 999_999_999 },
  { description: 'below 100 (pve-vmid minimum)', input: '99', expected: /100 to 999999999/ },
  { description: 'ten digits, beyond pve-vmid', input: '1000000000', expected: /100 to 999999999/ },
  { description: 'a leading zero (pve-vmid starts with [1-9])', input: '0100', expected: /leading zeros/ },
  { description: 'a sign', input: '+100', expected: /not valid/ },
  { description: 'a fraction', input: '100.0', expected: /not valid/ },
  { description: 'whitespace', input: ' 100', expected: /not valid/ },
  { description: 'empty', input: '', expected: /not valid/ },
];
for (const c of vmids) {
  test(`parseVmid(${JSON.stringify(c.input)}): ${c.description}`, () => {
    if (typeof c.expected === 'number') assert.equal(parseVmid(c.input), c.expected);
    else throwsWith(() => parseVmid(c.input), InvalidInputError, c.expected);
  });
}

// ---------------------------------------------------------------------------------------------------------
// parseVolname, accepted names. Cases mirror pve-storage test/parse_volname_test.pm (dir) and
// LVMPlugin.pm parse_volname (lvm), restricted to what volchain handles.

const parsed: { description: string; input: { kind: StorageKind; storage: string; volname: string }; expected: VolumeRef }[] = [
  {
    description: 'dir qcow2 disk (parse_volname_test: VM disk image, qcow2)',
    input: { kind: 'dir', storage: 'local', volname: '1234/vm-1234-disk-1.qcow2' },
    expected: { storage: 'local', kind: 'dir', vmid: 1234, name: 'vm-1234-disk-1.qcow2', format: 'qcow2', volname: '1234/vm-1234-disk-1.qcow2' },
  },
  {
    description: 'dir raw disk (parse_volname_test: VM disk image, raw)',
    input: { kind: 'dir', storage: 'local', volname: '1234/vm-1234-disk-1.raw' },
    expected: { storage: 'local', kind: 'dir', vmid: 1234, name: 'vm-1234-disk-1.raw', format: 'raw', volname: '1234/vm-1234-disk-1.raw' },
  },
  {
    description: 'dir user-chosen name vm-<vmid>-<rest> (parse_name_dir: vm-(\\d+)-[^/\\s]+)',
    input: { kind: 'dir', storage: 'nfs1', volname: '100/vm-100-my.data_disk+v2.qcow2' },
    expected: { storage: 'nfs1', kind: 'dir', vmid: 100, name: 'vm-100-my.data_disk+v2.qcow2', format: 'qcow2', volname: '100/vm-100-my.data_disk+v2.qcow2' },
  },
  {
    description: 'dir: the last extension decides the format (parse_name_dir anchors it at the end)',
    input: { kind: 'dir', storage: 'local', volname: '100/vm-100-disk-0.qcow2.raw' },
    expected: { storage: 'local', kind: 'dir', vmid: 100, name: 'vm-100-disk-0.qcow2.raw', format: 'raw', volname: '100/vm-100-disk-0.qcow2.raw' },
  },
  {
    description: 'lvm raw LV without suffix (LVMPlugin parse_volname: no .qcow2 means raw; run_test_lvmplugin vm-102-disk-1)',
    input: { kind: 'lvm', storage: 'san', volname: 'vm-102-disk-1' },
    expected: { storage: 'san', kind: 'lvm', vmid: 102, name: 'vm-102-disk-1', format: 'raw', volname: 'vm-102-disk-1' },
  },
  {
    description: 'lvm qcow2 LV (LVMPlugin parse_volname: .qcow2 suffix, snapshot-as-volume-chain)',
    input: { kind: 'lvm', storage: 'san', volname: 'vm-100-disk-0.qcow2' },
    expected: { storage: 'san', kind: 'lvm', vmid: 100, name: 'vm-100-disk-0.qcow2', format: 'qcow2', volname: 'vm-100-disk-0.qcow2' },
  },
  {
    description: 'lvm existing raw LV ending in .raw is raw, as in PVE (anything not .qcow2 is raw)',
    input: { kind: 'lvm', storage: 'san', volname: 'vm-100-disk-0.raw' },
    expected: { storage: 'san', kind: 'lvm', vmid: 100, name: 'vm-100-disk-0.raw', format: 'raw', volname: 'vm-100-disk-0.raw' },
  },
  {
    description: 'lvm vmid is taken from the LV name (LVMPlugin parse_volname ^vm-(\\d+)-)',
    input: { kind: 'lvm', storage: 'san', volname: 'vm-999999999-x' },
    expected: { storage: 'san', kind: 'lvm', vmid: 999_999_999, name: 'vm-999999999-x', format: 'raw', volname: 'vm-999999999-x' },
  },
];
for (const c of parsed) {
  test(`parseVolname ${c.input.kind} ${JSON.stringify(c.input.volname)}: ${c.description}`, () => {
    const ref = parseVolname(c.input.kind, c.input.storage, c.input.volname);
    assert.deepEqual(ref, c.expected);
    assert.equal(formatVolid(ref), `${c.input.storage}:${c.input.volname}`);
  });
}

// ---------------------------------------------------------------------------------------------------------
// parseVolname, every rejection class

const rejectedVolnames: { description: string; input: { kind: StorageKind; volname: string }; error: ErrorClass; message: RegExp }[] = [
  // structure of the dir volname
  { description: 'dir: empty', input: { kind: 'dir', volname: '' }, error: InvalidInputError, message: /must not be empty/ },
  {
    description: 'dir: no "<vmid>/" (parse_volname: unable to parse directory volume name)',
    input: { kind: 'dir', volname: 'vm-100-disk-0.qcow2' },
    error: InvalidInputError,
    message: /expected '<vmid>\/<file name>'/,
  },
  { description: 'dir: absolute path', input: { kind: 'dir', volname: '/etc/passwd' }, error: InvalidInputError, message: /absolute path/ },
  {
    description: 'dir: a non-numeric owner (parse_volname_test: failed match ssss/...)',
    input: { kind: 'dir', volname: 'ssss/vm-100-disk-0.raw' },
    error: InvalidInputError,
    message: /VM id from 100/,
  },
  {
    description: 'dir: owner with a leading zero (not canonical)',
    input: { kind: 'dir', volname: '0100/vm-100-disk-0.raw' },
    error: InvalidInputError,
    message: /leading zeros/,
  },
  {
    description: 'dir: owner below 100 (pve-vmid)',
    input: { kind: 'dir', volname: '99/vm-99-disk-0.raw' },
    error: InvalidInputError,
    message: /VM id from 100/,
  },
  {
    description: 'dir: traversal out of images/<vmid>',
    input: { kind: 'dir', volname: '100/../101/vm-101-disk-0.qcow2' },
    error: InvalidInputError,
    message: /expected '<vmid>\/<file name>'/,
  },
  { description: 'dir: traversal in the file part', input: { kind: 'dir', volname: '100/..' }, error: InvalidInputError, message: /'\.\.'/ },
  {
    description: 'dir: trailing slash',
    input: { kind: 'dir', volname: '100/vm-100-disk-0.qcow2/' },
    error: InvalidInputError,
    message: /expected '<vmid>\/<file name>'/,
  },
  { description: 'dir: empty file name', input: { kind: 'dir', volname: '100/' }, error: InvalidInputError, message: /must not be empty/ },
  // content volchain does not manage
  {
    description: 'dir: ISO image (parse_volname_test: ISO image, iso)',
    input: { kind: 'dir', volname: 'iso/some-installation-disk.iso' },
    error: NotSupportedError,
    message: /VM disks only/,
  },
  {
    description: 'dir: backup (parse_volname_test: backup)',
    input: { kind: 'dir', volname: 'backup/vzdump-qemu-100-2020_03_30-21_12_40.vma' },
    error: NotSupportedError,
    message: /VM disks only/,
  },
  {
    description: 'dir: container subvol (parse_volname_test: Container rootdir, subvol)',
    input: { kind: 'dir', volname: '1234/subvol-1234-disk-0.subvol' },
    error: NotSupportedError,
    message: /container subvolume/,
  },
  {
    description: 'dir: vmdk (parse_volname_test accepts it; volchain handles raw and qcow2 only)',
    input: { kind: 'dir', volname: '1234/vm-1234-disk-1.vmdk' },
    error: NotSupportedError,
    message: /raw and qcow2/,
  },
  // name shape
  {
    description: 'dir: vmid in the name differs from the owner directory (PVE would accept it)',
    input: { kind: 'dir', volname: '100/vm-101-disk-0.qcow2' },
    error: InvalidInputError,
    message: /belongs to VM 101, not to VM 100/,
  },
  {
    description: 'dir: vmid in the name with a leading zero',
    input: { kind: 'dir', volname: '100/vm-0100-disk-0.qcow2' },
    error: InvalidInputError,
    message: /leading zeros/,
  },
  {
    description: 'dir: a name not starting vm-<vmid>- (PVE parse_name_dir would accept any *.qcow2)',
    input: { kind: 'dir', volname: '100/disk.qcow2' },
    error: InvalidInputError,
    message: /expected 'vm-<vmid>-<name>\.qcow2'/,
  },
  {
    description: 'dir: unknown extension (parse_volname_test: .vhdx fails)',
    input: { kind: 'dir', volname: '100/vm-100-disk-0.vhdx' },
    error: InvalidInputError,
    message: /must end in '\.qcow2' or '\.raw'/,
  },
  { description: 'dir: no extension', input: { kind: 'dir', volname: '100/vm-100-disk-0' }, error: InvalidInputError, message: /must end in/ },
  {
    description: 'dir: nothing between vm-<vmid>- and the extension (parse_name_dir needs [^/\\s]+)',
    input: { kind: 'dir', volname: '100/vm-100-.qcow2' },
    error: InvalidInputError,
    message: /nothing between/,
  },
  {
    description: 'dir: snapshot layer (parse_name_dir: "is a snapshot filename, not a volume!")',
    input: { kind: 'dir', volname: '100/snap-daily-vm-100-disk-0.qcow2' },
    error: InvalidInputError,
    message: /snapshot layer name, not a volume/,
  },
  {
    description: 'dir: volchain temporary layer',
    input: { kind: 'dir', volname: '100/.volchain-tmp-create-vm-100-disk-0.qcow2' },
    error: InvalidInputError,
    message: /temporary layer/,
  },
  { description: 'dir: ".." inside the name', input: { kind: 'dir', volname: '100/vm-100-a..b.qcow2' }, error: InvalidInputError, message: /'\.\.'/ },
  {
    description: 'dir: name starting with "-" (option injection)',
    input: { kind: 'dir', volname: '100/-vm-100-disk-0.qcow2' },
    error: InvalidInputError,
    message: /starts with '-'/,
  },
  {
    description: 'dir: whitespace (parse_name_dir [^/\\s])',
    input: { kind: 'dir', volname: '100/vm-100-my disk.qcow2' },
    error: InvalidInputError,
    message: /whitespace/,
  },
  { description: 'dir: NUL', input: { kind: 'dir', volname: '100/vm-100-a\0.qcow2' }, error: InvalidInputError, message: /NUL/ },
  { description: 'dir: control character', input: { kind: 'dir', volname: '100/vm-100-a\x1b.qcow2' }, error: InvalidInputError, message: /control character/ },
  {
    description: 'dir: ":" would read as a protocol prefix to QEMU',
    input: { kind: 'dir', volname: '100/vm-100-nbd:x.qcow2' },
    error: InvalidInputError,
    message: /contains ":"/,
  },
  {
    description: 'dir: "," splits QEMU option strings',
    input: { kind: 'dir', volname: '100/vm-100-a,b.qcow2' },
    error: InvalidInputError,
    message: /contains ","/,
  },
  { description: 'dir: non-ASCII', input: { kind: 'dir', volname: '100/vm-100-dïsk.qcow2' }, error: InvalidInputError, message: /contains "ï"/ },
  {
    description: 'dir: longer than 255 bytes (NAME_MAX)',
    input: { kind: 'dir', volname: `100/vm-100-${'a'.repeat(250)}.qcow2` },
    error: InvalidInputError,
    message: /at most 255/,
  },
  {
    description: 'dir: 255 bytes counted in UTF-8, not characters',
    input: { kind: 'dir', volname: `100/vm-100-${'é'.repeat(123)}.qcow2` },
    error: InvalidInputError,
    message: /bytes long: at most 255/,
  },
  // lvm
  { description: 'lvm: a "/" in the LV name', input: { kind: 'lvm', volname: '100/vm-100-disk-0' }, error: InvalidInputError, message: /without '\/'/ },
  { description: 'lvm: absolute device path', input: { kind: 'lvm', volname: '/dev/vg/vm-100-disk-0' }, error: InvalidInputError, message: /without '\/'/ },
  {
    description: 'lvm: not vm-<vmid>- (LVMPlugin: unable to parse lvm volume name)',
    input: { kind: 'lvm', volname: 'root' },
    error: InvalidInputError,
    message: /expected 'vm-<vmid>-<name>' \(raw\)/,
  },
  {
    description: 'lvm: snapshot layer LV',
    input: { kind: 'lvm', volname: 'snap_vm-100-disk-0_daily.qcow2' },
    error: InvalidInputError,
    message: /snapshot layer name/,
  },
  {
    description: 'lvm: LV being removed (del- prefix of free_image with saferemove)',
    input: { kind: 'lvm', volname: 'del-vm-100-disk-0' },
    error: InvalidInputError,
    message: /being removed/,
  },
  {
    description: 'lvm: base volume (LVM has no templates in PVE either)',
    input: { kind: 'lvm', volname: 'base-100-disk-0' },
    error: NotSupportedError,
    message: /LVM storage has no base volumes/,
  },
  {
    description: 'lvm: "+" is LVM-legal but not in PVE parse_lvm_name',
    input: { kind: 'lvm', volname: 'vm-100-a+b' },
    error: InvalidInputError,
    message: /contains "\+"/,
  },
  {
    description: 'lvm: must end with a letter or digit (parse_lvm_name)',
    input: { kind: 'lvm', volname: 'vm-100-disk.' },
    error: InvalidInputError,
    message: /end with a letter or digit/,
  },
  {
    description: 'lvm: LVM-reserved substring (lvm(8) VALID NAMES)',
    input: { kind: 'lvm', volname: 'vm-100-x_tmeta' },
    error: InvalidInputError,
    message: /"_tmeta", reserved by LVM/,
  },
  { description: 'lvm: vmid below 100 in the LV name', input: { kind: 'lvm', volname: 'vm-99-disk-0' }, error: InvalidInputError, message: /from 100/ },
  {
    description: 'lvm: nothing after vm-<vmid>- but the suffix',
    input: { kind: 'lvm', volname: 'vm-100-.qcow2' },
    error: InvalidInputError,
    message: /nothing after/,
  },
  {
    description: 'lvm: longer than 127 characters (lvm2 NAME_LEN)',
    input: { kind: 'lvm', volname: `vm-100-${'a'.repeat(121)}` },
    error: InvalidInputError,
    message: /at most 127/,
  },
];
for (const c of rejectedVolnames) {
  test(`parseVolname ${c.input.kind} rejects ${JSON.stringify(c.input.volname).slice(0, 70)}: ${c.description}`, () => {
    throwsWith(() => parseVolname(c.input.kind, 'store', c.input.volname), c.error, c.message);
  });
}

test('parseVolname rejects an invalid storage id and an unknown storage type', () => {
  throwsWith(() => parseVolname('dir', 'x', '100/vm-100-disk-0.raw'), InvalidInputError, /storage id "x"/);
  throwsWith(() => parseVolname('zfs' as StorageKind, 'local', 'vm-100-disk-0'), NotSupportedError, /"zfs" is not supported/);
});

test('parseVolname error messages quote the whole volid', () => {
  throwsWith(() => parseVolname('dir', 'local', '/etc/passwd'), InvalidInputError, /"local:\/etc\/passwd"/);
});

// ---------------------------------------------------------------------------------------------------------
// formatVolid

test('formatVolid writes dir volids as storage:vmid/name and lvm volids as storage:name (PVE alloc_image return values)', () => {
  assert.equal(formatVolid({ storage: 'local', kind: 'dir', vmid: 100, name: 'vm-100-disk-0.qcow2' }), 'local:100/vm-100-disk-0.qcow2');
  assert.equal(formatVolid({ storage: 'san', kind: 'lvm', vmid: 100, name: 'vm-100-disk-0.qcow2' }), 'san:vm-100-disk-0.qcow2');
});

test('formatVolid refuses to write a volid that would not parse back', () => {
  throwsWith(() => formatVolid({ storage: 'san', kind: 'lvm', vmid: 101, name: 'vm-100-disk-0' }), InvalidInputError, /belongs to VM 100/);
  throwsWith(() => formatVolid({ storage: 'local', kind: 'dir', vmid: 100, name: '../x' }), InvalidInputError, /'\/'/);
  throwsWith(() => formatVolid({ storage: 'local', kind: 'dir', vmid: 5, name: 'vm-5-a.raw' }), InvalidInputError, /VM id 5/);
});

// ---------------------------------------------------------------------------------------------------------
// validateVolumeName: names users give to alloc

const newNames: {
  description: string;
  input: { kind: StorageKind; vmid: number; name: string };
  expected: 'raw' | 'qcow2' | { error: ErrorClass; message: RegExp };
}[] = [
  { description: 'dir qcow2 (alloc_image: extension gives the format)', input: { kind: 'dir', vmid: 100, name: 'vm-100-disk-3.qcow2' }, expected: 'qcow2' },
  { description: 'dir raw', input: { kind: 'dir', vmid: 100, name: 'vm-100-scratch.raw' }, expected: 'raw' },
  {
    description: 'lvm raw has no suffix (LVMPlugin %LVM_FORMAT_EXTENSIONS raw => "")',
    input: { kind: 'lvm', vmid: 100, name: 'vm-100-disk-3' },
    expected: 'raw',
  },
  { description: 'lvm qcow2 ends in .qcow2', input: { kind: 'lvm', vmid: 100, name: 'vm-100-disk-3.qcow2' }, expected: 'qcow2' },
  {
    description: 'lvm .raw is refused for new LVs (PVE would create an LV literally named ….raw)',
    input: { kind: 'lvm', vmid: 100, name: 'vm-100-disk-3.raw' },
    expected: { error: InvalidInputError, message: /did you mean "vm-100-disk-3"/ },
  },
  {
    description: 'the vmid inside must match the VM the disk is for (Content API: vm-<vmid>-*)',
    input: { kind: 'lvm', vmid: 100, name: 'vm-101-disk-0' },
    expected: { error: InvalidInputError, message: /belongs to VM 101, not to VM 100/ },
  },
  {
    description: 'a reserved prefix snap-',
    input: { kind: 'dir', vmid: 100, name: 'snap-a-vm-100-disk-0.qcow2' },
    expected: { error: InvalidInputError, message: /snapshot layer/ },
  },
  {
    description: 'a reserved prefix snap_',
    input: { kind: 'lvm', vmid: 100, name: 'snap_vm-100-disk-0_a.qcow2' },
    expected: { error: InvalidInputError, message: /snapshot layer/ },
  },
  {
    description: 'a reserved prefix del-',
    input: { kind: 'lvm', vmid: 100, name: 'del-vm-100-disk-0' },
    expected: { error: InvalidInputError, message: /being removed/ },
  },
  {
    description: 'a reserved prefix base- (bases are made from volumes, by volchain template or PVE)',
    input: { kind: 'dir', vmid: 100, name: 'base-100-disk-0.qcow2' },
    expected: { error: NotSupportedError, message: /base volume is not allocated, it is made from a volume by 'volchain template'/ },
  },
  { description: 'an invalid vmid', input: { kind: 'dir', vmid: 42, name: 'vm-42-disk-0.qcow2' }, expected: { error: InvalidInputError, message: /VM id 42/ } },
  {
    description: 'dir: too long to leave room for a 40-character snapshot layer name',
    input: { kind: 'dir', vmid: 100, name: `vm-100-${'a'.repeat(200)}.qcow2` },
    expected: { error: InvalidInputError, message: /at most 209 characters/ },
  },
  {
    description: 'lvm: too long to leave room for snap_<name>_<40 chars>.qcow2 within 127',
    input: { kind: 'lvm', vmid: 100, name: `vm-100-${'a'.repeat(70)}.qcow2` },
    expected: { error: InvalidInputError, message: /at most 81 characters/ },
  },
];
for (const c of newNames) {
  test(`validateVolumeName ${c.input.kind} ${JSON.stringify(c.input.name).slice(0, 60)}: ${c.description}`, () => {
    if (typeof c.expected === 'string') assert.equal(validateVolumeName(c.input.kind, c.input.vmid, c.input.name), c.expected);
    else {
      const { error, message } = c.expected;
      throwsWith(() => validateVolumeName(c.input.kind, c.input.vmid, c.input.name), error, message);
    }
  });
}

test('parseVolumeName gives vmid and format of an existing name', () => {
  assert.deepEqual(parseVolumeName('lvm', 'vm-123-disk-0.qcow2'), { vmid: 123, format: 'qcow2' });
  assert.deepEqual(parseVolumeName('dir', 'vm-123-disk-0.raw', 123), { vmid: 123, format: 'raw' });
});
