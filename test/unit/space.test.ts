import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { renderPlan, renderSpace } from '../../src/cli/render.js';
import type { Plan } from '../../src/model/plan.js';
import { planFree, planResize } from '../../src/engine/planners/volume.js';
import { planSnapshotCreate } from '../../src/engine/planners/snapshot-create.js';
import { planSnapshotDelete } from '../../src/engine/planners/snapshot-delete.js';
import { planSnapshotRollback } from '../../src/engine/planners/snapshot-rollback.js';
import { type PlanContext } from '../../src/engine/planners/rules.js';
import { estimatePlanSpace, layersFrozenBy, snapshotSpace, spaceEstimable, totalPlanSpace, type PlanSizes } from '../../src/engine/plan/space.js';
import type { PlanSpace } from '../../src/model/plan.js';
import type { LayerNode, VolumeTree } from '../../src/engine/read/volume-tree.js';

const VOL = 'vm-100-disk-0.qcow2';
const MiB = 1024 * 1024;
const lvmCtx: PlanContext = { kind: 'lvm', volumeChain: true, fixedSizeLayers: true };
const dirCtx: PlanContext = { kind: 'dir', volumeChain: true, fixedSizeLayers: false };

/** An LVM volume with snapshots `snaps` in a line (oldest first), the current layer on top of the last. */
function lvmTree(snaps: string[], virtualSize = 64 * MiB, usedBytes = 70 * MiB): VolumeTree {
  const layers = new Map<string, LayerNode>();
  const snapLayer = (s: string): string => `snap_vm-100-disk-0_${s}.qcow2`;
  const node = (name: string, snapshot: string | undefined, parent: string | undefined): LayerNode => ({
    name,
    snapshot,
    parent,
    children: [],
    path: `/dev/vg/${name}`,
    virtualSize,
    definedBytes: 0,
    usedBytes,
    header: undefined,
  });
  let parent: string | undefined;
  for (const s of snaps) {
    layers.set(snapLayer(s), node(snapLayer(s), s, parent));
    parent = snapLayer(s);
  }
  layers.set(VOL, node(VOL, undefined, parent));
  for (const l of layers.values()) if (l.parent) layers.get(l.parent)?.children.push(l.name);
  return {
    volume: { storage: 'vg', kind: 'lvm', vmid: 100, name: VOL, format: 'qcow2', volname: VOL },
    volid: `vg:${VOL}`,
    current: VOL,
    layers,
    leftovers: [],
  };
}

/** Sizes as on an LVM storage: full size = virtual + 6 MiB, every existing layer 70 MiB, VOL's image end 5 MiB. */
function sizes(frozen: number | 'unknown' = 5 * MiB): PlanSizes {
  return {
    fullLayerBytes: (v) => v + 6 * MiB,
    layerBytes: (name) => (name === VOL || name.startsWith('snap_') ? 70 * MiB : undefined),
    frozenLayerBytes: (name) => (name === VOL && frozen !== 'unknown' ? frozen : undefined),
  };
}

test("snapshot space: the snapshot layers' own bytes, and the same layers at full size", () => {
  const layers = [
    { virtualSize: 64 * MiB, usedBytes: 8 * MiB },
    { virtualSize: 64 * MiB, usedBytes: 12 * MiB },
    { virtualSize: 128 * MiB, usedBytes: 4 * MiB },
  ];
  const full = (v: number): number => v + 6 * MiB;
  assert.deepEqual(snapshotSpace(layers, full), {
    snapshotBytes: 24 * MiB,
    fullSizeSnapshotBytes: 2 * 70 * MiB + 134 * MiB,
  });
  // Storages whose layers grow on demand: the full-size figure is what the layers take.
  assert.deepEqual(snapshotSpace(layers), { snapshotBytes: 24 * MiB, fullSizeSnapshotBytes: 24 * MiB });
  assert.deepEqual(snapshotSpace([], full), { snapshotBytes: 0, fullSizeSnapshotBytes: 0 });
});

test('a snapshot create on LVM: new full-size top, the frozen layer shrunk to its image end; PVE keeps it full', () => {
  const plan = planSnapshotCreate(lvmTree(['sa']), lvmCtx, 'sb');
  assert.ok(spaceEstimable(plan));
  assert.deepEqual(layersFrozenBy(plan), [VOL], 'the current layer is the one frozen (under its new name)');
  const space = estimatePlanSpace(plan, sizes());
  assert.deepEqual(space, {
    allocatedBytes: 70 * MiB,
    releasedBytes: 65 * MiB,
    netBytes: 5 * MiB,
    fullSize: { allocatedBytes: 70 * MiB, releasedBytes: 0, netBytes: 70 * MiB },
  } satisfies PlanSpace);
});

test('an image end not known beforehand (inactive LV) leaves what is given back unknown, not zero', () => {
  const plan = planSnapshotCreate(lvmTree([]), lvmCtx, 'sa');
  const space = estimatePlanSpace(plan, sizes('unknown'));
  assert.equal(space?.allocatedBytes, 70 * MiB);
  assert.equal(space?.releasedBytes, null);
  assert.equal(space?.netBytes, null);
  assert.deepEqual(space?.fullSize, { allocatedBytes: 70 * MiB, releasedBytes: 0, netBytes: 70 * MiB });
  assert.match(renderSpace(space).join('\n'), /known once the LV is active/);
});

test('a layer whose image fills its LV gives nothing back (a frozen layer never grows)', () => {
  const plan = planSnapshotCreate(lvmTree([]), lvmCtx, 'sa');
  assert.equal(estimatePlanSpace(plan, sizes(90 * MiB))?.releasedBytes, 0);
  assert.equal(estimatePlanSpace(plan, sizes(70 * MiB))?.netBytes, 70 * MiB);
});

test('dir plans (no freeze step) still estimate: nothing is given back', () => {
  const plan = planSnapshotCreate(lvmTree([]), dirCtx, 'sa');
  assert.ok(!plan.steps.some((s) => s.kind === 'freeze'));
  assert.deepEqual(layersFrozenBy(plan), []);
  assert.equal(estimatePlanSpace(plan, sizes())?.releasedBytes, 0);
});

test('plans other than a snapshot create get no estimate', () => {
  const t = lvmTree(['sa', 'sb']);
  const plans: Plan[] = [
    planSnapshotRollback(t, lvmCtx, 'sa'),
    planSnapshotDelete(t, lvmCtx, 'sa'),
    planSnapshotDelete(t, lvmCtx, 'sb'),
    planResize(t, 128 * MiB, lvmCtx),
    planFree(t),
  ];
  for (const plan of plans) {
    assert.equal(spaceEstimable(plan), false, plan.summary);
    assert.equal(estimatePlanSpace(plan, sizes()), undefined, plan.summary);
    assert.deepEqual(layersFrozenBy(plan), [], plan.summary);
  }
  assert.equal(estimatePlanSpace({ ...(plans[0] as Plan), steps: [] }, sizes()), undefined, 'an empty plan');
});

test('the estimate follows layers through renames, whatever their order', () => {
  // A hand-made plan: the layer frozen at the end was renamed twice before.
  const plan: Plan = {
    operation: 'snapshot-create',
    volid: `vg:${VOL}`,
    vmid: 100,
    summary: 'x',
    bytesMoved: 0,
    steps: [
      { kind: 'rename', from: VOL, to: 'tmp-a' },
      { kind: 'create-overlay', layer: 'tmp-b', backing: 'snap_x', sizeBytes: 10 * MiB },
      { kind: 'rename', from: 'tmp-a', to: 'snap_x' },
      { kind: 'rename', from: 'tmp-b', to: VOL },
      { kind: 'freeze', layer: 'snap_x' },
      { kind: 'freeze', layer: VOL }, // the new overlay: its image end is not known (nothing is asked for it)
    ],
  };
  assert.deepEqual(layersFrozenBy(plan), [VOL]);
  const asked: string[] = [];
  const space = estimatePlanSpace(plan, { ...sizes(), frozenLayerBytes: (n) => (asked.push(n), n === VOL ? 5 * MiB : undefined) });
  assert.deepEqual(asked, [VOL]);
  assert.equal(space?.allocatedBytes, 16 * MiB);
  assert.equal(space?.releasedBytes, null, 'the second freeze cannot be estimated');
});

test("estimates: net = allocated - released, never more than PVE's, released never more than the layer had", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 1 << 20 }).map((n) => n * 512),
      fc.integer({ min: 1, max: 1 << 30 }),
      fc.option(fc.integer({ min: 0, max: 2 ** 31 }), { nil: undefined }),
      fc.integer({ min: 0, max: 1 << 24 }),
      (virtualSize, layerBytes, frozen, overhead) => {
        const plan = planSnapshotCreate(lvmTree([], virtualSize, layerBytes), lvmCtx, 'sa');
        const space = estimatePlanSpace(plan, {
          fullLayerBytes: (v) => v + overhead,
          layerBytes: (n) => (n === VOL ? layerBytes : undefined),
          frozenLayerBytes: () => frozen,
        });
        assert.ok(space);
        assert.equal(space.allocatedBytes, virtualSize + overhead);
        assert.equal(space.fullSize.netBytes, space.allocatedBytes);
        if (frozen === undefined) {
          assert.equal(space.netBytes, null);
          return;
        }
        assert.ok(space.releasedBytes !== null && space.releasedBytes >= 0 && space.releasedBytes <= layerBytes);
        assert.equal(space.netBytes, space.allocatedBytes - space.releasedBytes);
        assert.ok((space.netBytes ?? Infinity) <= space.fullSize.netBytes);
      },
    ),
  );
});

test("a VM-wide snapshot: the total of every disk, unknown when one disk's is", () => {
  const a = estimatePlanSpace(planSnapshotCreate(lvmTree([]), lvmCtx, 'snap'), sizes()) as PlanSpace;
  const b = estimatePlanSpace(planSnapshotCreate(lvmTree([]), lvmCtx, 'snap'), sizes(20 * MiB)) as PlanSpace;
  const c = estimatePlanSpace(planSnapshotCreate(lvmTree([]), lvmCtx, 'snap'), sizes('unknown')) as PlanSpace;
  assert.deepEqual(totalPlanSpace([a, b]), {
    allocatedBytes: 140 * MiB,
    releasedBytes: 65 * MiB + 50 * MiB,
    netBytes: 25 * MiB,
    fullSize: { allocatedBytes: 140 * MiB, releasedBytes: 0, netBytes: 140 * MiB },
  });
  assert.equal(totalPlanSpace([a, c])?.netBytes, null);
  assert.equal(totalPlanSpace([a, c])?.fullSize.netBytes, 140 * MiB);
  assert.equal(totalPlanSpace([a, undefined]), undefined, 'a disk without an estimate (dir) leaves no total');
  assert.equal(totalPlanSpace([]), undefined);
});

test('the dry-run text shows both ways with their figures', () => {
  const plan = planSnapshotCreate(lvmTree([]), lvmCtx, 'sa');
  const space = estimatePlanSpace(plan, sizes()) as PlanSpace;
  const text = renderPlan({ ...plan, space });
  assert.match(text, /^space: allocates 70 MiB for the new layer\(s\), gives back 65 MiB by shrinking the frozen layer to its image end: takes 5 MiB in all$/m);
  assert.match(text, /with PVE 9's full-size layers: allocates 70 MiB, gives back 0 B: takes 70 MiB in all$/m);
  assert.doesNotMatch(renderPlan(plan), /space:/, 'no estimate, no space lines');
});
