/**
 * The one ownership rule (src/ownership/layer-owners.ts): which volume a layer belongs to, from its name, a
 * trusted record and the headers' backing references, on both storage types. The engine's tree reader, the
 * live matcher and the LVM backend all decide with it (their own tests: volume-tree-names, live-view,
 * lvm-owners, lvm-tags).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { candidateVolumes, layerOwnership, settleOwnership } from '../../src/ownership/layer-owners.js';

// dir: `snap-xy-vm-101-vm-101-d.qcow2` is vm-101-vm-101-d.qcow2's snapshot xy or vm-101-d.qcow2's snapshot xy-vm-101.
const DIR_A = 'vm-101-d.qcow2';
const DIR_B = 'vm-101-vm-101-d.qcow2';
const DIR_AMBIGUOUS = 'snap-xy-vm-101-vm-101-d.qcow2';
// lvm: `snap_vm-100-disk-0_pre_up.qcow2` is vm-100-disk-0.qcow2's snapshot pre_up or vm-100-disk-0_pre.qcow2's up.
const LVM_A = 'vm-100-disk-0.qcow2';
const LVM_B = 'vm-100-disk-0_pre.qcow2';
const LVM_AMBIGUOUS = 'snap_vm-100-disk-0_pre_up.qcow2';

describe('candidateVolumes: which volumes a name (or a trusted record) allows', () => {
  const cases: { kind: 'dir' | 'lvm'; name: string; volumes: string[]; recorded?: string; expected: string[]; why: string }[] = [
    { kind: 'dir', name: DIR_A, volumes: [DIR_A, DIR_B], expected: [DIR_A], why: "a volume's own name is its current layer" },
    { kind: 'dir', name: 'snap-s1-vm-101-d.qcow2', volumes: [DIR_A, DIR_B], expected: [DIR_A], why: 'a snapshot layer name of one volume' },
    { kind: 'dir', name: DIR_AMBIGUOUS, volumes: [DIR_A, DIR_B], expected: [DIR_A, DIR_B], why: 'a dir name that fits two volumes' },
    { kind: 'dir', name: '.volchain-tmp-new-vm-101-d.qcow2', volumes: [DIR_B], expected: [DIR_A], why: 'a temporary names its volume, listed or not' },
    { kind: 'dir', name: 'snap-s1-vm-102-d.qcow2', volumes: [DIR_A, DIR_B], expected: [], why: "another VM's layer is none of these volumes'" },
    { kind: 'lvm', name: LVM_AMBIGUOUS, volumes: [LVM_A, LVM_B], expected: [LVM_A, LVM_B], why: 'an LVM name that fits two volumes' },
    { kind: 'lvm', name: LVM_AMBIGUOUS, volumes: [LVM_A, LVM_B], recorded: LVM_B, expected: [LVM_B], why: 'a trusted record settles the name' },
    { kind: 'lvm', name: 'volchain-tmp-new-vm-100-disk-0.qcow2', volumes: [], expected: [LVM_A], why: 'an LVM temporary' },
  ];
  for (const c of cases) {
    it(`${c.kind} ${c.name}: ${c.why}`, () => {
      assert.deepEqual(candidateVolumes(c.kind, c.name, c.volumes, c.recorded), c.expected);
    });
  }
});

describe('settleOwnership: an ambiguous layer is the volume whose chain its backing references join', () => {
  it("joins disk-0's chain as the backing of its current layer, and takes what hangs below it along", () => {
    // vm-101-d: s1 <- AMBIGUOUS <- current, and a branch AMBIGUOUS <- snap-y; vm-101-vm-101-d: alone.
    const branch = 'snap-zz-vm-101-vm-101-d.qcow2'; // as ambiguous as the layer it hangs below
    const own = layerOwnership(
      'dir',
      [DIR_A, DIR_B],
      [
        { name: DIR_A, backing: DIR_AMBIGUOUS },
        { name: DIR_AMBIGUOUS, backing: 'snap-s1-vm-101-d.qcow2' },
        { name: 'snap-s1-vm-101-d.qcow2', backing: null },
        { name: branch, backing: DIR_AMBIGUOUS },
        { name: DIR_B, backing: null },
      ],
    );
    assert.equal(own.owner.get(DIR_AMBIGUOUS), DIR_A);
    assert.equal(own.owner.get(branch), DIR_A, 'joined through the layer it hangs below');
    assert.deepEqual([...(own.chains.get(DIR_A) ?? [])].sort(), [DIR_AMBIGUOUS, branch, DIR_A, 'snap-s1-vm-101-d.qcow2'].sort());
    assert.deepEqual([...(own.chains.get(DIR_B) ?? [])], [DIR_B]);
  });

  it('a layer whose header was not read joins only as the backing of a layer that was', () => {
    const candidates = new Map([
      [LVM_A, [LVM_A]],
      [LVM_B, [LVM_B]],
      [LVM_AMBIGUOUS, [LVM_A, LVM_B]],
    ]);
    assert.equal(settleOwnership(candidates, new Map([[LVM_B, LVM_AMBIGUOUS]])).owner.get(LVM_AMBIGUOUS), LVM_B);
    assert.equal(settleOwnership(candidates, new Map([[LVM_A, null]])).owner.has(LVM_AMBIGUOUS), false, 'joined to no chain: no owner');
  });

  it('a layer joined to two chains (a corrupt header) has no owner, but is in both chains', () => {
    // disk-0_pre's current layer is backed by it, and it is backed by disk-0's snapshot s1.
    const s1 = 'snap_vm-100-disk-0_s1.qcow2';
    const own = layerOwnership(
      'lvm',
      [LVM_A, LVM_B],
      [
        { name: LVM_A, backing: s1 },
        { name: s1, backing: null },
        { name: LVM_B, backing: LVM_AMBIGUOUS },
        { name: LVM_AMBIGUOUS, backing: s1 },
      ],
    );
    assert.equal(own.owner.has(LVM_AMBIGUOUS), false);
    assert.equal(own.chains.get(LVM_A)?.has(LVM_AMBIGUOUS), true);
    assert.equal(own.chains.get(LVM_B)?.has(LVM_AMBIGUOUS), true);
  });
});
