import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  decodeTagValue,
  deletionName,
  encodeTagValue,
  layerTags,
  layersOfVolumes,
  parseLayerTags,
  trustedLayerTags,
  tagChanges,
  volumesOfLv,
} from '../../src/backends/lvm/tags.js';
import { recordOf, vmidsOfLv } from '../../src/backends/lvm/lv-records.js';
import { LV_NAME_MAX } from '../../src/naming/index.js';

/** What lvm2 accepts in a tag (lvm(8): letters, digits, `_ + . -`; we never rely on the newer `/=!:#&`). */
const TAG_CHARS = /^[A-Za-z0-9_+.-]+$/;

test('tag values: LV names pass through except the escape character', () => {
  const cases: [string, string][] = [
    ['vm-100-disk-0.qcow2', 'vm-100-disk-0.qcow2'],
    ['snap_vm-100-disk-0_daily.qcow2', 'snap_vm-100-disk-0_daily.qcow2'],
    ['a+b', 'a+2bb'],
    ['with space', 'with+20space'],
    ['ä', '+c3+a4'],
    ['x,y', 'x+2cy'], // lvs joins tags with ',': it must never appear inside one
  ];
  for (const [value, encoded] of cases) {
    assert.equal(encodeTagValue(value), encoded, value);
    assert.equal(decodeTagValue(encoded), value, encoded);
  }
});

test('tag values: decoding refuses what encoding never produces', () => {
  for (const bad of ['+', '+2', '+zz', '+2B' /* upper-case hex */, 'a b', 'a,b', '+61' /* 'a' needs no escape */, '+ff']) {
    assert.equal(decodeTagValue(bad), undefined, bad);
  }
});

test('tag values: any string round-trips and stays within the tag charset', () => {
  fc.assert(
    fc.property(fc.string({ unit: 'binary', maxLength: 60 }), (value) => {
      const encoded = encodeTagValue(value);
      assert.ok(encoded === '' || TAG_CHARS.test(encoded), encoded);
      // Lone surrogates cannot survive UTF-8; everything else must come back unchanged.
      if (Buffer.from(value, 'utf8').toString('utf8') === value) assert.equal(decodeTagValue(encoded), value);
    }),
  );
});

test("layer tags: what is written is read back; the VM tag is PVE's", () => {
  const tags = layerTags(100, { volume: 'vm-100-disk-0.qcow2', parent: 'snap_vm-100-disk-0_a1.qcow2', virtualSize: 1 << 30 });
  assert.deepEqual(tags, [
    'pve-vm-100',
    'pve-vm-100-disk-0.qcow2',
    'volchain.vol.vm-100-disk-0.qcow2',
    'volchain.parent.snap_vm-100-disk-0_a1.qcow2',
    'volchain.size.1073741824',
  ]);
  for (const t of tags) assert.match(t, TAG_CHARS);
  assert.deepEqual(parseLayerTags(tags), { volume: 'vm-100-disk-0.qcow2', parent: 'snap_vm-100-disk-0_a1.qcow2', virtualSize: 1 << 30 });
  assert.deepEqual(parseLayerTags(layerTags(100, { volume: 'vm-100-disk-0.qcow2', parent: null, virtualSize: 512 })).parent, null);
});

test('layer tags: malformed and conflicting tags count as absent', () => {
  assert.deepEqual(parseLayerTags(['pve-vm-100', 'volchain.size.0', 'volchain.size.12x', 'volchain.parent.+zz', 'other']), {});
  assert.deepEqual(parseLayerTags(['volchain.parent.a1', 'volchain.noparent', 'volchain.size.5', 'volchain.size.6']), {});
  assert.deepEqual(parseLayerTags(['volchain.size.9007199254740993']), {}, 'beyond 2^53 is not a size we trust');
});

test('tag changes: only volchain tags are removed, foreign ones stay', () => {
  const current = ['pve-vm-100', 'volchain.parent.x', 'volchain.size.5', 'backup', 'volchain.vol.v'];
  const wanted = ['pve-vm-100', 'volchain.vol.v', 'volchain.parent.y', 'volchain.size.5'];
  assert.deepEqual(tagChanges(current, wanted), { add: ['volchain.parent.y'], remove: ['volchain.parent.x'] });
  assert.deepEqual(tagChanges(wanted, wanted), { add: [], remove: [] });
  assert.deepEqual(tagChanges(['other'], ['pve-vm-7']), { add: ['pve-vm-7'], remove: [] });
});

test("deletion names: PVE's del- prefix, shortened with a hash to stay a legal LV name", () => {
  assert.equal(deletionName('vm-100-disk-0'), 'del-vm-100-disk-0');
  const long = `snap_vm-100-${'x'.repeat(65)}_${'S'.repeat(40)}.qcow2`;
  assert.ok(long.length <= LV_NAME_MAX);
  const d = deletionName(long);
  assert.ok(d.startsWith('del-') && d.length <= LV_NAME_MAX, d);
  assert.notEqual(deletionName(long), deletionName(`${long.slice(0, -7)}T.qcow2`), 'different names, different del- names');
});

test('volumes of an LV: exact tag, own name, temporary, or (untagged) every volume its name fits', () => {
  const volumes = ['vm-101-a.qcow2', 'vm-101-a_b.qcow2', 'vm-101-disk-1.qcow2', 'vm-101-disk-11.qcow2'];
  const cases: { name: string; tags?: string[]; expected: string[] }[] = [
    { name: 'vm-101-disk-1.qcow2', expected: ['vm-101-disk-1.qcow2'] },
    { name: 'snap_vm-101-disk-1_s1.qcow2', expected: ['vm-101-disk-1.qcow2'] },
    { name: 'snap_vm-101-disk-11_s1.qcow2', expected: ['vm-101-disk-11.qcow2'] },
    { name: 'volchain-tmp-create-vm-101-disk-1.qcow2', expected: ['vm-101-disk-1.qcow2'] },
    // Ambiguous on its own: vm-101-a's snapshot b_cd or vm-101-a_b's snapshot cd ...
    { name: 'snap_vm-101-a_b_cd.qcow2', expected: ['vm-101-a.qcow2', 'vm-101-a_b.qcow2'] },
    // ... settled by the volume tag.
    { name: 'snap_vm-101-a_b_cd.qcow2', tags: ['volchain.vol.vm-101-a_b.qcow2'], expected: ['vm-101-a_b.qcow2'] },
    { name: 'del-vm-101-disk-1.qcow2', tags: ['volchain.vol.vm-101-disk-1.qcow2'], expected: [] },
    { name: 'root', expected: [] },
  ];
  for (const c of cases) assert.deepEqual(volumesOfLv({ name: c.name, tags: c.tags ?? [] }, volumes), c.expected, c.name);
});

test("layers of a volume never include disk-11's when disk-1 is asked for", () => {
  const lvs = [
    'vm-102-disk-1.qcow2',
    'snap_vm-102-disk-1_s1.qcow2',
    'vm-102-disk-11.qcow2',
    'snap_vm-102-disk-11_s1.qcow2',
    'snap_vm-102-disk-11_s2.qcow2',
    'del-vm-102-disk-1.qcow2',
    'vm-1020-disk-1.qcow2',
  ].map((name) => ({ name, tags: [] as string[] }));
  const pick = (v: string): string[] => layersOfVolumes(lvs, new Set([v])).map((l) => l.name);
  assert.deepEqual(pick('vm-102-disk-1.qcow2'), ['vm-102-disk-1.qcow2', 'snap_vm-102-disk-1_s1.qcow2']);
  assert.deepEqual(pick('vm-102-disk-11.qcow2'), ['vm-102-disk-11.qcow2', 'snap_vm-102-disk-11_s1.qcow2', 'snap_vm-102-disk-11_s2.qcow2']);
});

test('VM ids of an LV: exact pve-vm tag or vm-<id>- in the name, never a prefix of another id', () => {
  assert.deepEqual(vmidsOfLv({ name: 'vm-100-disk-0.qcow2', tags: ['pve-vm-100'] }), [100]);
  assert.deepEqual(vmidsOfLv({ name: 'snap_vm-100-disk-0_s.qcow2', tags: [] }), [100]);
  assert.deepEqual(vmidsOfLv({ name: 'del-vm-100-disk-0', tags: [] }), [100]);
  assert.deepEqual(vmidsOfLv({ name: 'vm-1000-disk-0', tags: ['pve-vm-1000'] }), [1000]);
  assert.deepEqual(vmidsOfLv({ name: 'root', tags: ['pve-vm-100x'] }), []);
  assert.deepEqual(vmidsOfLv({ name: 'xvm-100-disk-0', tags: [] }), []);
});

test('records: a qcow2 LV needs parent and size tags; a raw LV is its own size', () => {
  assert.deepEqual(
    recordOf({ name: 'vm-100-disk-0.qcow2', sizeBytes: 99, tags: layerTags(100, { volume: 'vm-100-disk-0.qcow2', parent: null, virtualSize: 64 }) }),
    { volume: 'vm-100-disk-0.qcow2', parent: null, virtualSize: 64 },
  );
  assert.equal(recordOf({ name: 'vm-100-disk-0.qcow2', sizeBytes: 99, tags: ['pve-vm-100'] }), undefined, 'made by PVE: nothing recorded');
  assert.deepEqual(recordOf({ name: 'vm-100-disk-1', sizeBytes: 4194304, tags: [] }), { volume: 'vm-100-disk-1', parent: null, virtualSize: 4194304 });
});

test("layer tags: PVE's per-volume tag on qcow2 layers only, as PVE 9 writes it", () => {
  assert.ok(layerTags(100, { volume: 'vm-100-disk-0.qcow2', parent: null, virtualSize: 512 }).includes('pve-vm-100-disk-0.qcow2'));
  assert.ok(
    layerTags(100, { volume: 'vm-100-disk-0.qcow2', parent: 'snap_vm-100-disk-0_a.qcow2', virtualSize: 512 }).includes('pve-vm-100-disk-0.qcow2'),
    "a snapshot layer carries its volume's tag, not its own name",
  );
  assert.deepEqual(layerTags(100, { volume: 'vm-100-disk-1' }), ['pve-vm-100', 'volchain.vol.vm-100-disk-1']);
});

test("layer tags: volchain's record is ignored once PVE (or lvrename) moved the LV to another volume", () => {
  const record = layerTags(100, { volume: 'vm-100-disk-0.qcow2', parent: null, virtualSize: 512 });
  const own = { volume: 'vm-100-disk-0.qcow2', parent: null, virtualSize: 512 };
  assert.deepEqual(trustedLayerTags({ name: 'vm-100-disk-0.qcow2', tags: record }), own);
  // PVE's rename_volume (disk reassigned to VM 101): lvrename, then pve-vm-101 and pve-<new name> replace PVE's tags.
  const reassigned = record.filter((t) => !t.startsWith('pve-')).concat(['pve-vm-101', 'pve-vm-101-disk-0.qcow2']);
  assert.deepEqual(trustedLayerTags({ name: 'vm-101-disk-0.qcow2', tags: reassigned }), {});
  assert.deepEqual(volumesOfLv({ name: 'vm-101-disk-0.qcow2', tags: reassigned }, ['vm-101-disk-0.qcow2']), ['vm-101-disk-0.qcow2']);
  assert.deepEqual(recordOf({ name: 'vm-101-disk-0.qcow2', sizeBytes: 99, tags: reassigned }), undefined, 'read the header instead');
  // A manual lvrename of the current layer: only the name changed.
  assert.deepEqual(trustedLayerTags({ name: 'vm-100-disk-5.qcow2', tags: record }), {});
  // PVE's tags disagreeing with volchain's on a snapshot layer: another volume's tag, or another VM's.
  const snap = { volume: 'vm-100-disk-0.qcow2', parent: null, virtualSize: 512 };
  const snapTags = layerTags(100, snap);
  assert.deepEqual(trustedLayerTags({ name: 'snap_vm-100-disk-0_a.qcow2', tags: snapTags }), snap);
  const otherVolume = snapTags.filter((t) => t !== 'pve-vm-100-disk-0.qcow2').concat('pve-vm-100-disk-3.qcow2');
  assert.deepEqual(trustedLayerTags({ name: 'snap_vm-100-disk-0_a.qcow2', tags: otherVolume }), {});
  const otherVm = snapTags.filter((t) => t !== 'pve-vm-100').concat('pve-vm-7');
  assert.deepEqual(trustedLayerTags({ name: 'snap_vm-100-disk-0_a.qcow2', tags: otherVm }), {});
  // Made by volchain before it wrote PVE's volume tag: still believed.
  const older = snapTags.filter((t) => t !== 'pve-vm-100-disk-0.qcow2');
  assert.deepEqual(trustedLayerTags({ name: 'snap_vm-100-disk-0_a.qcow2', tags: older }), snap);
});
