/**
 * The pure planners of `convert` and `template` (engine/planners/convert.ts) on hand-made trees: the new names
 * PVE would give, the step order that keeps one complete volume under a volume name at every step, and the
 * refusals (each with its error class, so its exit status).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { convertedVolumeName, planConvert, planTemplate } from '../../src/engine/planners/convert.js';
import type { PlanContext } from '../../src/engine/planners/rules.js';
import type { LayerNode, VolumeTree } from '../../src/engine/read/volume-tree.js';
import type { ImageFormat, StorageKind } from '../../src/naming/index.js';
import { AlreadyExistsError, InvalidInputError, NotSupportedError, PendingOperationError } from '../../src/errors.js';

const dir: PlanContext = { kind: 'dir', volumeChain: true, fixedSizeLayers: false };
const lvm: PlanContext = { kind: 'lvm', volumeChain: true, fixedSizeLayers: true };

function node(name: string, extra: Partial<LayerNode> = {}): LayerNode {
  return {
    name,
    snapshot: undefined,
    parent: undefined,
    children: [],
    path: `/x/${name}`,
    virtualSize: 8 << 20,
    definedBytes: 1 << 20,
    usedBytes: 8 << 20,
    header: undefined,
    ...extra,
  };
}

/** A one-layer tree of volume `name` (plus snapshot layers `snaps`, for template's refusal). */
function tree(kind: StorageKind, name: string, format: ImageFormat, opts: { snaps?: string[]; leftovers?: string[]; template?: true } = {}): VolumeTree {
  const volname = kind === 'dir' ? `100/${name}` : name;
  const layers = new Map<string, LayerNode>([[name, node(name)]]);
  for (const s of opts.snaps ?? []) layers.set(`snap-${s}-${name}`, node(`snap-${s}-${name}`, { snapshot: s }));
  return {
    volume: { storage: 'st', kind, vmid: 100, name, format, volname, ...(opts.template ? { template: true as const } : {}) },
    volid: `st:${volname}`,
    current: name,
    layers,
    leftovers: opts.leftovers ?? [],
  };
}

test("convertedVolumeName gives PVE's qcow2 name of the same disk on each storage type", () => {
  const cases: [StorageKind, string, string][] = [
    ['dir', 'vm-100-disk-0.raw', 'vm-100-disk-0.qcow2'],
    ['dir', 'vm-100-data.x.raw', 'vm-100-data.x.qcow2'],
    ['lvm', 'vm-100-disk-0', 'vm-100-disk-0.qcow2'],
    ['lvm', 'vm-100-cloudinit', 'vm-100-cloudinit.qcow2'],
  ];
  for (const [kind, raw, qcow2] of cases) assert.equal(convertedVolumeName(kind, raw), qcow2, `${kind} ${raw}`);
});

test('convert: copy to a temporary, verify, rename, and only then remove the raw volume', () => {
  for (const [ctx, name, tmp, next] of [
    [dir, 'vm-100-disk-0.raw', '.volchain-tmp-convert-vm-100-disk-0.qcow2', 'st:100/vm-100-disk-0.qcow2'],
    [lvm, 'vm-100-disk-0', 'volchain-tmp-convert-vm-100-disk-0.qcow2', 'st:vm-100-disk-0.qcow2'],
  ] as const) {
    const newName = 'vm-100-disk-0.qcow2';
    const plan = planConvert(tree(ctx.kind, name, 'raw'), ctx, { names: [name], neededBytes: 123 });
    assert.equal(plan.newVolid, next);
    assert.equal(plan.operation, 'convert');
    assert.deepEqual(plan.steps, [
      { kind: 'convert', from: name, layer: tmp, sizeBytes: 8 << 20, bytes: 1 << 20 },
      { kind: 'verify', layer: tmp, against: name, bytes: 1 << 20 },
      { kind: 'rename', from: tmp, to: newName },
      { kind: 'remove', layer: name },
    ]);
    assert.match(plan.summary, /needs 123 bytes free/);
  }
});

test('convert refuses a qcow2 volume (2), a taken name (4), leftovers or a stray copy (7), an odd size (5)', () => {
  assert.throws(() => planConvert(tree('dir', 'vm-100-disk-0.qcow2', 'qcow2'), dir, { names: [], neededBytes: 0 }), InvalidInputError);
  assert.throws(
    () => planConvert(tree('dir', 'vm-100-disk-0.raw', 'raw'), dir, { names: ['vm-100-disk-0.raw', 'vm-100-disk-0.qcow2'], neededBytes: 0 }),
    AlreadyExistsError,
  );
  assert.throws(
    () => planConvert(tree('lvm', 'vm-100-disk-0', 'raw'), lvm, { names: ['vm-100-disk-0', 'volchain-tmp-convert-vm-100-disk-0.qcow2'], neededBytes: 0 }),
    PendingOperationError,
  );
  assert.throws(
    () => planConvert(tree('dir', 'vm-100-disk-0.raw', 'raw', { leftovers: ['.volchain-tmp-x-vm-100-disk-0.raw'] }), dir, { names: [], neededBytes: 0 }),
    PendingOperationError,
  );
  const odd = tree('dir', 'vm-100-disk-0.raw', 'raw');
  (odd.layers.get('vm-100-disk-0.raw') as LayerNode).virtualSize = 1000;
  assert.throws(() => planConvert(odd, dir, { names: [], neededBytes: 0 }), NotSupportedError);
});

test('template: rename vm- to base- then protect; refuses snapshots (5), a base (2), a taken name (4), leftovers (7)', () => {
  const plan = planTemplate(tree('dir', 'vm-100-disk-0.qcow2', 'qcow2'), dir, ['vm-100-disk-0.qcow2']);
  assert.equal(plan.newVolid, 'st:100/base-100-disk-0.qcow2');
  assert.deepEqual(plan.steps, [
    { kind: 'rename', from: 'vm-100-disk-0.qcow2', to: 'base-100-disk-0.qcow2' },
    { kind: 'protect', layer: 'base-100-disk-0.qcow2' },
  ]);
  assert.equal(planTemplate(tree('dir', 'vm-100-disk-1.raw', 'raw'), dir, []).newVolid, 'st:100/base-100-disk-1.raw');
  assert.throws(() => planTemplate(tree('dir', 'vm-100-disk-0.qcow2', 'qcow2', { snaps: ['s1'] }), dir, []), NotSupportedError);
  assert.throws(() => planTemplate(tree('dir', 'base-100-disk-0.qcow2', 'qcow2', { template: true }), dir, []), InvalidInputError);
  assert.throws(() => planTemplate(tree('dir', 'vm-100-disk-0.qcow2', 'qcow2'), dir, ['base-100-disk-0.qcow2']), AlreadyExistsError);
  assert.throws(
    () => planTemplate(tree('dir', 'vm-100-disk-0.qcow2', 'qcow2', { leftovers: ['.volchain-tmp-create-vm-100-disk-0.qcow2'] }), dir, []),
    PendingOperationError,
  );
});
