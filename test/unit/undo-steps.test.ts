/**
 * The undo of a whole plan, as a VM-wide snapshot walks back the disks it had finished when a later disk
 * failed (engine/run/vm-undo.ts): every step of a snapshot create has a way back, including the freeze
 * (a frozen LVM layer was shrunk: it is grown back before it becomes the writable top again) and an
 * internal snapshot's creation.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { undoStepsOf } from '../../src/engine/run/undo.js';
import type { Plan, Step } from '../../src/model/plan.js';

const VOL = 'vm-100-disk-0.qcow2';
const plan = (steps: Step[]): Plan => ({ operation: 'snapshot-create', volid: `thick:${VOL}`, vmid: 100, summary: 'test', steps, bytesMoved: 0 });

test('a finished snapshot create on LVM walks back last step first, growing the frozen layer before it is the top again', () => {
  const p = plan([
    { kind: 'create-overlay', layer: `tmp-${VOL}`, backing: `snap-s1-${VOL}`, sizeBytes: 1 << 30 },
    { kind: 'rename', from: VOL, to: `snap-s1-${VOL}` },
    { kind: 'rename', from: `tmp-${VOL}`, to: VOL },
    { kind: 'freeze', layer: `snap-s1-${VOL}` },
  ]);
  assert.deepEqual(undoStepsOf(p, 4), [
    { of: 3, step: { kind: 'grow', layer: `snap-s1-${VOL}`, sizeBytes: 1 << 30 } },
    { of: 2, step: { kind: 'rename', from: VOL, to: `tmp-${VOL}` } },
    { of: 1, step: { kind: 'rename', from: `snap-s1-${VOL}`, to: VOL } },
    { of: 0, step: { kind: 'remove', layer: `tmp-${VOL}` } },
  ]);
  assert.deepEqual(
    undoStepsOf(p, 3).map((u) => u.of),
    [2, 1, 0],
    'a failure at the freeze undoes the steps before it only',
  );
});

test("a freeze whose layer's size the plan does not give has nothing to undo, as before", () => {
  const p = plan([
    { kind: 'rename', from: `a-${VOL}`, to: `b-${VOL}` },
    { kind: 'freeze', layer: `b-${VOL}` },
  ]);
  assert.deepEqual(undoStepsOf(p, 2), [{ of: 0, step: { kind: 'rename', from: `b-${VOL}`, to: `a-${VOL}` } }]);
});

test('an internal snapshot taken is walked back by deleting it; applying or deleting one has no way back', () => {
  assert.deepEqual(undoStepsOf(plan([{ kind: 'internal-snapshot', layer: VOL, action: 'create', name: 's1' }]), 1), [
    { of: 0, step: { kind: 'internal-snapshot', layer: VOL, action: 'delete', name: 's1' } },
  ]);
  for (const action of ['apply', 'delete'] as const) {
    assert.throws(() => undoStepsOf(plan([{ kind: 'internal-snapshot', layer: VOL, action, name: 's1' }]), 1), /cannot be undone/);
  }
});
