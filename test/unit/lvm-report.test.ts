import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AlreadyExistsError, CommandFailedError, LockedError, NoSpaceError, NotFoundError } from '../../src/errors.js';
import {
  classifyLvmFailure,
  dmName,
  hasLockManager,
  parseByteCount,
  parseLvsReport,
  parseVgFieldsOfLvs,
  parseVgsReport,
  roundUpTo,
  sizeArg,
} from '../../src/tools/lvm.js';
import { measureFullyAllocated, parseMeasure } from '../../src/tools/lvm-measure.js';

// Captured from lvm2 2.03.16 (Debian 12) in the test guest.
const LVS = `  {
      "report": [
          {
              "lv": [
                  {"lv_name":"dup2", "lv_uuid":"SJrA8M-Jo6f-zlEa-rPVA-iDqA-8A9g-M9Dg3k", "lv_size":"4194304", "lv_attr":"-wi-------", "lv_tags":"", "vg_name":"vg0", "vg_extent_size":"4194304", "vg_free":"994050048", "vg_size":"1069547520", "vg_lock_type":""},
                  {"lv_name":"vm-100-disk-0.qcow2", "lv_uuid":"T1aEbm-Z4O2-OcnW-9yM3-A7L1-bYUc-gs7vO7", "lv_size":"67108864", "lv_attr":"-wi-ao----", "lv_tags":"pve-vm-100,volchain.vol.vm-100-disk-0.qcow2", "vg_name":"vg0", "vg_extent_size":"4194304", "vg_free":"994050048", "vg_size":"1069547520", "vg_lock_type":""}
              ]
          }
      ]
  }
`;

const VGS = `  {
      "report": [
          {
              "vg": [
                  {"vg_name":"vg0", "vg_extent_size":"4194304", "vg_free":"1002438656", "vg_size":"1069547520", "vg_lock_type":"sanlock"}
              ]
          }
      ]
  }
`;

test('lvs JSON report: names, exact byte sizes, tags, activation and open state', () => {
  const rows = parseLvsReport(LVS);
  assert.deepEqual(rows, [
    { name: 'dup2', uuid: 'SJrA8M-Jo6f-zlEa-rPVA-iDqA-8A9g-M9Dg3k', sizeBytes: 4194304, tags: [], attr: '-wi-------', active: false, open: false },
    {
      name: 'vm-100-disk-0.qcow2',
      uuid: 'T1aEbm-Z4O2-OcnW-9yM3-A7L1-bYUc-gs7vO7',
      sizeBytes: 67108864,
      tags: ['pve-vm-100', 'volchain.vol.vm-100-disk-0.qcow2'],
      attr: '-wi-ao----',
      active: true,
      open: true,
    },
  ]);
  assert.deepEqual(parseVgFieldsOfLvs(LVS), [{ name: 'vg0', extentSizeBytes: 4194304, freeBytes: 994050048, sizeBytes: 1069547520, lockType: '' }]);
  assert.deepEqual(parseVgFieldsOfLvs('{"report":[{"lv":[]}]}'), [], 'a VG without LVs: ask vgs');
});

test('vgs JSON report and lock managers', () => {
  const [vg] = parseVgsReport(VGS);
  assert.deepEqual(vg, { name: 'vg0', extentSizeBytes: 4194304, freeBytes: 1002438656, sizeBytes: 1069547520, lockType: 'sanlock' });
  assert.equal(hasLockManager(vg), true);
  assert.equal(hasLockManager({ ...vg, lockType: '' }), false);
  assert.equal(hasLockManager({ ...vg, lockType: 'none' }), false);
});

test('reports that are not what we asked for are errors, not guesses', () => {
  assert.throws(() => parseLvsReport('not json'), /no valid JSON/);
  assert.throws(() => parseLvsReport('{"x":1}'), /without 'report'/);
  assert.throws(() => parseLvsReport('{"report":[{"lv":[{"lv_name":"a"}]}]}'), /lacks field/);
  assert.throws(
    () => parseLvsReport('{"report":[{"lv":[{"lv_name":"a","lv_uuid":"u","lv_size":"64.00m","lv_attr":"-wi-a-----","lv_tags":""}]}]}'),
    /expected a byte count/,
  );
  for (const bad of ['', '1.5', '-1', '4m', '99999999999999999999', null]) assert.throws(() => parseByteCount(bad, 'x'), String(bad));
  assert.equal(parseByteCount(' 42 ', 'x'), 42);
});

test('sizes: rounded up to whole extents, at least one; passed to LVM in bytes', () => {
  const cases: [number, number, number][] = [
    [0, 4 << 20, 4 << 20],
    [1, 4 << 20, 4 << 20],
    [4 << 20, 4 << 20, 4 << 20],
    [(4 << 20) + 1, 4 << 20, 8 << 20],
    [67764224, 4 << 20, 71303168],
    [1099663147008, 4 << 20, 1099666817024],
  ];
  for (const [bytes, extent, expected] of cases) assert.equal(roundUpTo(bytes, extent), expected, `${bytes}/${extent}`);
  assert.throws(() => roundUpTo(-1, 4));
  assert.throws(() => roundUpTo(1, 0));
  assert.equal(sizeArg(71303168), '71303168b');
});

test('device-mapper names double the hyphens', () => {
  assert.equal(dmName('vg0', 'vm-100-disk-0.qcow2'), 'vg0-vm--100--disk--0.qcow2');
  assert.equal(dmName('my-vg', 'a'), 'my--vg-a');
});

function failure(stderr: string): CommandFailedError {
  return new CommandFailedError(['lvcreate', 'x'], 5, stderr);
}

test('LVM failures (exit 5 for everything) are told apart by their message', () => {
  const space = classifyLvmFailure(failure('  Volume group "vg0" has insufficient free space (236 extents): 25600 required.\n'), 'LV big', 4194304);
  assert.ok(space instanceof NoSpaceError);
  assert.match(space.message, /107374182400 bytes needed, 989855744 free, 106384326656 bytes missing/);
  assert.ok(space.cause instanceof CommandFailedError);
  assert.ok(classifyLvmFailure(failure('  Logical Volume "dup" already exists in volume group "vg0"\n'), 'LV dup') instanceof AlreadyExistsError);
  assert.ok(classifyLvmFailure(failure('  Failed to find logical volume "vg0/dup2"\n'), 'LV dup2') instanceof NotFoundError);
  assert.ok(classifyLvmFailure(failure('  Existing logical volume "nonexist" not found in volume group "vg0"\n'), 'LV x') instanceof NotFoundError);
  assert.ok(classifyLvmFailure(failure('  Volume group "nope" not found\n  Cannot process volume group nope\n'), 'VG nope') instanceof NotFoundError);
  const other = classifyLvmFailure(failure('  LV locked by other host: vg/lv\n  Failed to lock logical volume vg/lv.\n'), 'LV lv');
  assert.ok(other instanceof LockedError);
  assert.match(other.message, /in use by another host/);
  const mine = classifyLvmFailure(failure('  VG vg lock skipped: error -221\n  Cannot access VG vg due to failed lock.\n'), 'LV lv');
  assert.ok(mine instanceof LockedError);
  assert.match(mine.message, /this host's cluster lock for the VG is not usable.*lvmlockctl --info/);
  assert.doesNotMatch(mine.message, /another host holds/);
  const either = classifyLvmFailure(failure('  Failed to lock logical volume vg/lv.\n'), 'LV lv');
  assert.ok(either instanceof LockedError);
  assert.match(either.message, /another host holds it, or this host's lockspace is not running/);
  const internal = failure('  Internal error: something\n');
  assert.equal(classifyLvmFailure(internal, 'LV x'), internal, 'anything else stays a CommandFailedError with argv and stderr');
});

test("qemu-img measure: fully-allocated size; far above the seed's 4 KiB per GiB", async () => {
  assert.deepEqual(parseMeasure('{ "required": 655360, "fully-allocated": 67764224 }'), { required: 655360, fullyAllocated: 67764224 });
  assert.throws(() => parseMeasure('{}'), /expected/);
  const tib = 1024 ** 4;
  const overhead = (await measureFullyAllocated(tib)) - tib;
  // DESIGN.md section 4: about 144.5 MiB of metadata for 1 TiB with 128k clusters and extended L2.
  assert.ok(overhead > 144 * 1024 ** 2 && overhead < 145 * 1024 ** 2, `overhead ${overhead}`);
  assert.ok(overhead > 256 * 4096 * 100, 'the seed formula (4 KiB per GiB = 1 MiB per TiB) is >100x too small');
});

test('an LV open on this host ("in use") is a LockedError naming the LV, readable on one line', () => {
  // lvm2 2.03.16: `lvchange -an` of LVs a running QEMU holds open.
  const busy = failure('  Logical volume vg0/vm-100-disk-0.qcow2 in use.\n  Logical volume vg0/snap_vm-100-disk-0_a.qcow2 in use.\n');
  const error = classifyLvmFailure(busy, 'LV(s) vm-100-disk-0.qcow2, snap_vm-100-disk-0_a.qcow2 in VG vg0');
  assert.ok(error instanceof LockedError);
  assert.equal(
    error.message,
    'Logical volume vg0/vm-100-disk-0.qcow2 in use; Logical volume vg0/snap_vm-100-disk-0_a.qcow2 in use (open on this host, e.g. by a running VM)',
  );
  assert.ok(error.cause instanceof CommandFailedError);
  assert.ok(!(classifyLvmFailure(failure('  Logical volume vg0/x contains a filesystem in use.\n'), 'LV x') instanceof LockedError));
});
