/**
 * The move and reassign planners (engine/planners/move.ts, reassign.ts) on a hand-made branched tree: the
 * order of the copies (parents first), each layer's backing and bytes (deltas, the bottom's whole view), the
 * names on the target, the space check, the refusals, the finish plan, and the undo and repair rules.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { planMove, type MoveRequest } from '../../src/engine/planners/move.js';
import { nameForVmid, planReassign } from '../../src/engine/planners/reassign.js';
import { undoOf, walkedBackOnRepair } from '../../src/engine/run/step-rules.js';
import type { LayerNode, VolumeTree } from '../../src/engine/read/volume-tree.js';
import type { Step } from '../../src/model/plan.js';
import { AlreadyExistsError, InvalidInputError, NoSpaceError, NotSupportedError } from '../../src/errors.js';

const VOL = 'vm-100-disk-0.qcow2';
const MiB = 1024 * 1024;
const VIRTUAL = 64 * MiB;
const snap = (s: string, vol = VOL): string => `snap-${s}-${vol}`;

/** s1 <- s2, s1 <- current; s1 defines 2 MiB, the others 1 MiB. */
function branched(): VolumeTree {
  const layers = new Map<string, LayerNode>();
  const node = (name: string, snapshot: string | undefined, parent: string | undefined, defined: number): LayerNode => ({
    name,
    snapshot,
    parent,
    children: [],
    path: `/s/images/100/${name}`,
    virtualSize: VIRTUAL,
    definedBytes: defined,
    usedBytes: 0,
    header: undefined,
  });
  layers.set(VOL, node(VOL, undefined, snap('s1'), MiB));
  layers.set(snap('s2'), node(snap('s2'), 's2', snap('s1'), MiB));
  layers.set(snap('s1'), node(snap('s1'), 's1', undefined, 2 * MiB));
  for (const l of layers.values()) if (l.parent) layers.get(l.parent)?.children.push(l.name);
  return {
    volume: { storage: 'aa', kind: 'dir', vmid: 100, name: VOL, format: 'qcow2', volname: `100/${VOL}` },
    volid: `aa:100/${VOL}`,
    current: VOL,
    layers,
    leftovers: [],
  };
}

function request(target: Partial<MoveRequest['target']> = {}): MoveRequest {
  return {
    tree: branched(),
    layerPath: (name) => `/s/images/100/${name}`,
    target: { storage: 'bb', kind: 'lvm', vmid: 100, existingNames: [], freeBytes: 1 << 30, spaceNeeded: (v, data, frozen) => (frozen ? data : v), ...target },
  };
}

test('move copies each layer once, parents first, onto its copied parent; checks every view; removes the source leaves first', () => {
  const plan = planMove(request());
  assert.equal(plan.operation, 'move');
  assert.equal(plan.volid, 'bb:vm-100-disk-0.qcow2');
  assert.equal(plan.newVolid, 'bb:vm-100-disk-0.qcow2');
  const lvSnap = (s: string): string => `snap_vm-100-disk-0_${s}.qcow2`;
  const copies = plan.steps.filter((s) => s.kind === 'copy-layer');
  assert.deepEqual(
    copies.map((s) => [s.layer, s.backing, s.bytes, s.source.layer]),
    [
      [lvSnap('s1'), null, 2 * MiB, snap('s1')],
      [lvSnap('s2'), lvSnap('s1'), MiB, snap('s2')],
      [VOL, lvSnap('s1'), MiB, VOL],
    ],
  );
  assert.ok(copies.every((s) => s.volume === VOL));
  assert.deepEqual(
    plan.steps.filter((s) => s.kind === 'verify-layer').map((s) => s.layer),
    [lvSnap('s1'), lvSnap('s2'), VOL],
  );
  assert.equal(plan.bytesMoved, 4 * MiB, 'every layer once: not one flattened view per snapshot');
  // Snapshot layers their data (2 + 1 MiB), the current layer its full size, plus one snapshot layer written full-size at a time.
  assert.equal(plan.move?.spaceNeededBytes, 3 * MiB + VIRTUAL + (VIRTUAL - MiB));
  const finish = plan.move.finish;
  assert.equal(finish?.operation, 'move-finish');
  assert.equal(finish.volid, 'aa:100/vm-100-disk-0.qcow2');
  assert.deepEqual(
    finish.steps.map((s) => (s.kind === 'remove' ? s.layer : s.kind)),
    [VOL, snap('s2'), snap('s1')],
  );
  const [copy] = copies as [Step];
  assert.deepEqual(undoOf(copy), { kind: 'remove', layer: lvSnap('s1') });
  assert.ok(plan.steps.every(walkedBackOnRepair), 'repair walks an unfinished move back: its source is on another storage');
  assert.ok(!finish.steps.some(walkedBackOnRepair), 'the removal of the source is finished forward');
});

test('move refuses a taken name (4), too little space (9), a raw volume (5); --vmid keeps the disk number when free', () => {
  assert.throws(() => planMove(request({ existingNames: ['snap_vm-100-disk-0_s2.qcow2'] })), AlreadyExistsError);
  assert.throws(
    () => planMove(request({ freeBytes: MiB })),
    (err: unknown) => err instanceof NoSpaceError && err.message.includes('bytes missing'),
  );
  const raw = request();
  raw.tree.volume = { ...raw.tree.volume, format: 'raw', name: 'vm-100-disk-0.raw' };
  assert.throws(() => planMove(raw), NotSupportedError);
  assert.equal(planMove(request({ vmid: 300 })).newVolid, 'bb:vm-300-disk-0.qcow2');
  assert.equal(planMove(request({ vmid: 300, existingNames: ['vm-300-disk-0.qcow2'] })).newVolid, 'bb:vm-300-disk-1.qcow2');
});

test('nameForVmid: the same suffix when free, else the next free disk number', () => {
  const cases: [string, readonly string[], string][] = [
    ['vm-100-disk-3.qcow2', [], 'vm-200-disk-3.qcow2'],
    ['vm-100-disk-3.qcow2', ['vm-200-disk-3.qcow2'], 'vm-200-disk-0.qcow2'],
    ['vm-100-data.qcow2', [], 'vm-200-data.qcow2'],
    ['vm-100-data.qcow2', ['vm-200-data.qcow2', 'vm-200-disk-0.qcow2'], 'vm-200-disk-1.qcow2'],
  ];
  for (const [name, existing, expected] of cases)
    assert.equal(nameForVmid('dir', name, 'qcow2', 200, existing), expected, `${name} with ${existing.join(',')}`);
});

test('reassign renames every layer (parents first), then relinks every child; each step has its way back', () => {
  const plan = planReassign({ tree: branched(), storage: 'aa', kind: 'dir', newVmid: 200, existingNames: [] });
  assert.equal(plan.operation, 'reassign');
  assert.equal(plan.volid, 'aa:100/vm-100-disk-0.qcow2');
  assert.equal(plan.newVolid, 'aa:200/vm-200-disk-0.qcow2');
  assert.equal(plan.bytesMoved, 0);
  const NEW = 'vm-200-disk-0.qcow2';
  assert.deepEqual(
    plan.steps.map((s) => (s.kind === 'reassign-layer' ? `${s.name}>${s.newName}` : s.kind === 'relink' ? `${s.name}:${s.oldParent}>${s.parent}` : s.kind)),
    [
      `${snap('s1')}>${snap('s1', NEW)}`,
      `${snap('s2')}>${snap('s2', NEW)}`,
      `${VOL}>${NEW}`,
      `${snap('s2', NEW)}:${snap('s1')}>${snap('s1', NEW)}`,
      `${NEW}:${snap('s1')}>${snap('s1', NEW)}`,
    ],
  );
  const [first] = plan.steps as [Step];
  assert.deepEqual(undoOf(first), { kind: 'reassign-layer', vmid: 200, name: snap('s1', NEW), newVmid: 100, newName: snap('s1'), volume: NEW });
  const relink = plan.steps[3] as Step;
  assert.deepEqual(undoOf(relink), { kind: 'relink', vmid: 200, name: snap('s2', NEW), parent: snap('s1'), oldParent: snap('s1', NEW), volume: NEW });
  assert.ok(!plan.steps.some(walkedBackOnRepair), 'repair finishes a reassign');
  assert.throws(() => planReassign({ tree: branched(), storage: 'aa', kind: 'dir', newVmid: 100, existingNames: [] }), InvalidInputError);
  assert.throws(() => planReassign({ tree: branched(), storage: 'aa', kind: 'dir', newVmid: 200, existingNames: [snap('s2', NEW)] }), AlreadyExistsError);
});
