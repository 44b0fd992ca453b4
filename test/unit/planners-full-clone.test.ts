/**
 * The full-clone planner (engine/planners/clone.ts) on hand-made trees: which layer's view is copied, the
 * name the clone gets, the space check, the refusals, and the three steps with their undo and repair rules.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { planClone, type CloneRequest } from '../../src/engine/planners/clone.js';
import { undoOf, walkedBackOnRepair } from '../../src/engine/run/step-rules.js';
import type { LayerNode, VolumeTree } from '../../src/engine/read/volume-tree.js';
import type { Qcow2Header } from '../../src/qcow2/index.js';
import type { Step } from '../../src/model/plan.js';
import { AlreadyExistsError, CorruptImageError, InvalidInputError, NoSpaceError, NotFoundError } from '../../src/errors.js';

const VOL = 'vm-100-disk-0.qcow2';
const MiB = 1024 * 1024;
const VIRTUAL = 64 * MiB;
const snapLayer = (s: string): string => `snap-${s}-${VOL}`;

/** s1 <- s2, s1 <- current; each layer defines `defined[key]` bytes; `corrupt` marks one layer corrupt. */
function branched(defined: Record<string, number> = {}, corrupt?: string): VolumeTree {
  const layers = new Map<string, LayerNode>();
  const node = (name: string, snapshot: string | undefined, parent: string | undefined, key: string): LayerNode => ({
    name,
    snapshot,
    parent,
    children: [],
    path: `/s/images/100/${name}`,
    virtualSize: VIRTUAL,
    definedBytes: defined[key] ?? MiB,
    usedBytes: 0,
    header: corrupt === key ? ({ corrupt: true, internalSnapshots: [] } as unknown as Qcow2Header) : undefined,
  });
  layers.set(snapLayer('s1'), node(snapLayer('s1'), 's1', undefined, 's1'));
  layers.set(snapLayer('s2'), node(snapLayer('s2'), 's2', snapLayer('s1'), 's2'));
  layers.set(VOL, node(VOL, undefined, snapLayer('s1'), 'current'));
  for (const l of layers.values()) if (l.parent) layers.get(l.parent)?.children.push(l.name);
  return {
    volume: { storage: 'local', kind: 'dir', vmid: 100, name: VOL, format: 'qcow2', volname: `100/${VOL}` },
    volid: `local:100/${VOL}`,
    current: VOL,
    layers,
    leftovers: [],
  };
}

function request(over: Partial<CloneRequest> = {}, target: Partial<CloneRequest['target']> = {}): CloneRequest {
  return {
    tree: branched(),
    layerPath: (name) => `/s/images/100/${name}`,
    ...over,
    target: {
      storage: 'other',
      kind: 'dir',
      vmid: 200,
      existingNames: [],
      freeBytes: 1 << 30,
      spaceNeeded: (_v, data) => data + MiB,
      ...target,
    },
  };
}

test('the current state: copy, compare, rename into the next free disk name, undo and repair rules per step', () => {
  const plan = planClone(request({}, { existingNames: ['vm-200-disk-0.qcow2', 'vm-200-disk-2.raw'] }));
  assert.equal(plan.operation, 'clone');
  assert.equal(plan.volid, 'other:200/vm-200-disk-1.qcow2');
  assert.equal(plan.vmid, 200);
  const tmp = '.volchain-tmp-clone-vm-200-disk-1.qcow2';
  const source = { volid: 'local:100/vm-100-disk-0.qcow2', layer: VOL, path: `/s/images/100/${VOL}`, format: 'qcow2' };
  assert.deepEqual(plan.steps, [
    { kind: 'copy', layer: tmp, source, sizeBytes: VIRTUAL, bytes: 2 * MiB },
    { kind: 'verify-copy', layer: tmp, source },
    { kind: 'rename', from: tmp, to: 'vm-200-disk-1.qcow2' },
  ]);
  assert.equal(plan.bytesMoved, 2 * MiB, 'the current layer and s1 each define 1 MiB');
  assert.deepEqual(plan.clone, { source: 'local:100/vm-100-disk-0.qcow2', virtualSize: VIRTUAL, spaceNeededBytes: 3 * MiB, freeBytes: 1 << 30 });
  const [copy, verify, rename] = plan.steps as [Step, Step, Step];
  assert.deepEqual(undoOf(copy), { kind: 'remove', layer: tmp });
  assert.equal(undoOf(verify), 'nothing');
  assert.deepEqual(undoOf(rename), { kind: 'rename', from: 'vm-200-disk-1.qcow2', to: tmp });
  assert.deepEqual(plan.steps.map(walkedBackOnRepair), [true, true, false], 'repair walks back a copy, finishes a rename');
});

test("a snapshot's view: its own layer and its ancestors, never the current layer's data", () => {
  const plan = planClone(request({ tree: branched({ s1: 3 * MiB, s2: 2 * MiB, current: 7 * MiB }), snapshot: 's2' }, { name: 'vm-200-from-s2.qcow2' }));
  assert.equal(plan.volid, 'other:200/vm-200-from-s2.qcow2');
  assert.equal(plan.snapshot, 's2');
  assert.equal(plan.bytesMoved, 5 * MiB);
  const copy = plan.steps[0] as Extract<Step, { kind: 'copy' }>;
  assert.equal(copy.source.layer, snapLayer('s2'));
  assert.equal(copy.source.snapshot, 's2');
  assert.equal(copy.layer, '.volchain-tmp-clone-vm-200-from-s2.qcow2');
});

test('bytes to copy never exceed the virtual size; LVM names on an LVM target', () => {
  const plan = planClone(
    request({ tree: branched({ s1: VIRTUAL, current: VIRTUAL }) }, { kind: 'lvm', storage: 'san', existingNames: ['vm-200-disk-0.qcow2'] }),
  );
  assert.equal(plan.bytesMoved, VIRTUAL);
  assert.equal(plan.volid, 'san:vm-200-disk-1.qcow2');
  assert.equal((plan.steps[0] as Extract<Step, { kind: 'copy' }>).layer, 'volchain-tmp-clone-vm-200-disk-1.qcow2');
});

test('refusals: unknown snapshot (with a case hint), taken or non-qcow2 name, a leftover temporary, a corrupt layer, too little space', () => {
  assert.throws(
    () => planClone(request({ snapshot: 'nope' })),
    (e: unknown) => e instanceof NotFoundError && /snapshot 'nope' .* does not exist$/.test(e.message),
  );
  assert.throws(
    () => planClone(request({ snapshot: 'S1' })),
    (e: unknown) => e instanceof NotFoundError && e.message.includes("did you mean 's1'"),
  );
  assert.throws(() => planClone(request({}, { name: 'vm-200-x.qcow2', existingNames: ['vm-200-x.qcow2'] })), AlreadyExistsError);
  assert.throws(
    () => planClone(request({}, { name: 'vm-200-x.raw' })),
    (e: unknown) => e instanceof InvalidInputError && e.message.includes('always qcow2'),
  );
  assert.throws(() => planClone(request({}, { name: 'vm-201-x.qcow2' })), InvalidInputError);
  assert.throws(
    () => planClone(request({}, { name: 'vm-200-x.qcow2', existingNames: ['.volchain-tmp-clone-vm-200-x.qcow2'] })),
    (e: unknown) => e instanceof AlreadyExistsError && /interrupted clone.*repair/.test(e.message),
  );
  assert.throws(() => planClone(request({ tree: branched({}, 's1'), snapshot: 's2' })), CorruptImageError, 'a corrupt ancestor of the view');
  // The corrupt layer is not in s1's view when only the current layer is marked.
  assert.equal(planClone(request({ tree: branched({}, 'current'), snapshot: 's1' })).bytesMoved, MiB);
  assert.throws(
    () => planClone(request({}, { freeBytes: 2 * MiB })),
    (e: unknown) => e instanceof NoSpaceError && e.message.includes('needs 3 MiB (3145728 bytes): 1048576 bytes missing'),
  );
});
