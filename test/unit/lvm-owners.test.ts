/**
 * Attribution of LVs whose names fit two volumes (backends/lvm/owners.ts): by the backing chain in the headers, never
 * by guess. The report is a fake one (names, tags and header parents), as `lvs` and the headers would give it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { attributeLayers } from '../../src/backends/lvm/owners.js';
import { isVolumeLv, volumesOfLv } from '../../src/backends/lvm/tags.js';

// Volumes of VM 100, both names PVE accepts: vm-100-disk-0.qcow2 and the custom vm-100-disk-0_pre.qcow2.
// `snap_vm-100-disk-0_pre_up.qcow2` is disk-0's snapshot `pre_up` or disk-0_pre's snapshot `up`.
const A = 'vm-100-disk-0.qcow2';
const B = 'vm-100-disk-0_pre.qcow2';
const AMBIGUOUS = 'snap_vm-100-disk-0_pre_up.qcow2';

/** Candidates as the backend computes them from a fake `lvs` report (no volchain tags: made by PVE). */
function candidatesOf(names: readonly string[]): Map<string, string[]> {
  const volumes = names.filter((n) => isVolumeLv(n));
  return new Map(names.map((n) => [n, volumesOfLv({ name: n, tags: ['pve-vm-100'] }, volumes)]));
}

test('an untagged layer whose name fits two volumes fits both by name alone (the ambiguity)', () => {
  assert.deepEqual(candidatesOf([A, B, AMBIGUOUS]).get(AMBIGUOUS), [A, B]);
});

test("a layer that fits two volumes belongs to disk-0 when disk-0's chain runs through it (snapshot pre_up)", () => {
  // disk-0: s1 <- pre_up <- current; disk-0_pre: current alone.
  const names = [A, B, AMBIGUOUS, 'snap_vm-100-disk-0_s1.qcow2'];
  const parents = new Map<string, string | null>([
    [A, AMBIGUOUS],
    [AMBIGUOUS, 'snap_vm-100-disk-0_s1.qcow2'],
    ['snap_vm-100-disk-0_s1.qcow2', null],
    [B, null],
  ]);
  const owners = attributeLayers(candidatesOf(names), parents);
  assert.equal(owners.get(AMBIGUOUS), A);
  assert.equal(owners.get(B), B);
  assert.equal(owners.get('snap_vm-100-disk-0_s1.qcow2'), A);
});

test("a layer that fits two volumes belongs to disk-0_pre when disk-0_pre's chain runs through it (snapshot up)", () => {
  // disk-0_pre: up <- current, with a branch up <- snapshot zz; disk-0: s1 <- current.
  const z = 'snap_vm-100-disk-0_pre_zz.qcow2'; // as ambiguous: disk-0's pre_zz or disk-0_pre's zz
  const names = [A, B, AMBIGUOUS, z, 'snap_vm-100-disk-0_s1.qcow2'];
  const parents = new Map<string, string | null>([
    [A, 'snap_vm-100-disk-0_s1.qcow2'],
    ['snap_vm-100-disk-0_s1.qcow2', null],
    [B, AMBIGUOUS],
    [AMBIGUOUS, null],
    [z, AMBIGUOUS],
  ]);
  const owners = attributeLayers(candidatesOf(names), parents);
  assert.equal(owners.get(AMBIGUOUS), B, 'the parent of disk-0_pre');
  assert.equal(owners.get(z), B, "a branch below disk-0_pre's layer");
  assert.equal(owners.get('snap_vm-100-disk-0_s1.qcow2'), A);
});

test('a layer that fits two volumes and joins no chain (or whose header was not read) belongs to none', () => {
  const names = [A, B, AMBIGUOUS];
  const parents = new Map<string, string | null>([
    [A, null],
    [B, null],
    [AMBIGUOUS, null],
  ]);
  assert.equal(attributeLayers(candidatesOf(names), parents).has(AMBIGUOUS), false);
  assert.equal(attributeLayers(candidatesOf(names), new Map([[A, AMBIGUOUS]])).get(AMBIGUOUS), A, 'known as the parent of a sure layer');
});
