/**
 * Which plans may touch which layers (engine/read/layer-guard.ts): corrupt layers are never written, frozen, built on or
 * copied from; layers with internal snapshots are never removed, replaced, committed into/out of or rebased;
 * no chain grows past 1000 layers. Pure: hand-made trees whose headers carry only the two flags judged.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chainDepths, checkTreeDepth } from '../../src/engine/read/chain-depth.js';
import { guardSteps } from '../../src/engine/read/layer-guard.js';
import { planLiveSnapshotDelete, type LiveDisk } from '../../src/engine/planners/live.js';
import { planFree, planResize } from '../../src/engine/planners/volume.js';
import { planSnapshotCreate } from '../../src/engine/planners/snapshot-create.js';
import { planSnapshotDelete } from '../../src/engine/planners/snapshot-delete.js';
import { planSnapshotRollback } from '../../src/engine/planners/snapshot-rollback.js';
import { type PlanContext } from '../../src/engine/planners/rules.js';
import type { LayerNode, VolumeTree } from '../../src/engine/read/volume-tree.js';
import { volumeTree } from '../fixtures/volume-tree.js';
import { CorruptImageError, NotSupportedError, UnsafeImageError } from '../../src/errors.js';
import type { Qcow2Header } from '../../src/qcow2/index.js';

const VOL = 'vm-100-disk-0.qcow2';
const ctx: PlanContext = { kind: 'dir', volumeChain: true, fixedSizeLayers: true };
const snapLayer = (s: string): string => `snap-${s}-${VOL}`;

interface Flags {
  corrupt?: boolean;
  internal?: string[];
}

/** Only the fields engine/read/layer-guard.ts reads; the rest of a header plays no part in these rules. */
function header(flags: Flags): Qcow2Header {
  const internalSnapshots = (flags.internal ?? []).map((name, i) => ({
    id: String(i + 1),
    name,
    l1TableOffset: 0n,
    l1Size: 0,
    dateSec: 0,
    dateNsec: 0,
    date: new Date(0),
    vmClockNsec: 0n,
    vmStateSize: 0,
    virtualSize: 1 << 20,
    icount: undefined,
  }));
  return { corrupt: flags.corrupt ?? false, internalSnapshots } as unknown as Qcow2Header;
}

/** `parents`: snapshot -> parent snapshot; `flags` by snapshot name, 'current' for the current layer. */
function tree(parents: Record<string, string | null>, currentParent: string | null, flags: Record<string, Flags> = {}): VolumeTree {
  return volumeTree(parents, currentParent, { virtualSize: 1 << 20, defined: 1000, header: (key) => header(flags[key] ?? {}) });
}

/** A straight chain s1 <- s2 <- ... <- s<n-1> <- current: `n` layers. */
function linear(n: number): VolumeTree {
  const parents: Record<string, string | null> = {};
  for (let i = 1; i < n; i++) parents[`s${i}`] = i === 1 ? null : `s${i - 1}`;
  return tree(parents, n > 1 ? `s${n - 1}` : null);
}

test('create refuses to freeze a corrupt current layer, naming it and qemu-img check -r', () => {
  assert.throws(
    () => planSnapshotCreate(tree({ aa: null }, 'aa', { current: { corrupt: true } }), ctx, 'bb'),
    (err: unknown) =>
      err instanceof CorruptImageError &&
      err.message.startsWith(`${VOL}: `) &&
      err.message.includes('frozen as a snapshot') &&
      err.message.includes('qemu-img check -r all -f qcow2 /s/images/100/vm-100-disk-0.qcow2'),
  );
  // A corrupt snapshot below is neither written nor frozen by a create.
  assert.equal(planSnapshotCreate(tree({ aa: null }, 'aa', { aa: { corrupt: true } }), ctx, 'bb').operation, 'snapshot-create');
});

test('create keeps internal snapshots of the current layer: it only freezes it', () => {
  const plan = planSnapshotCreate(tree({}, null, { current: { internal: ['old1'] } }), ctx, 'bb');
  assert.deepEqual(
    plan.steps.map((s) => s.kind),
    ['create-overlay', 'rename', 'rename', 'freeze'],
  );
});

test('delete refuses every strategy that drops or re-bases internal snapshots', () => {
  // The snapshot's own layer with two children: only rebase-children is possible, and it removes the layer.
  assert.throws(
    () => planSnapshotDelete(tree({ aa: null, bb: 'aa' }, 'aa', { aa: { internal: ['old1', 'old2'] } }), ctx, 'aa'),
    (err: unknown) => err instanceof UnsafeImageError && err.message.startsWith(`${snapLayer('aa')}: `) && /"old1", "old2".*removed/.test(err.message),
  );
  // Its child: rebased (rebase-children) or committed out of and replaced (commit-child).
  assert.throws(
    () => planSnapshotDelete(tree({ aa: null, bb: 'aa' }, 'bb', { bb: { internal: ['old1'] } }), ctx, 'aa'),
    (err: unknown) => err instanceof UnsafeImageError && err.message.startsWith(`${snapLayer('bb')}: `),
  );
  assert.throws(() => planSnapshotDelete(tree({ aa: null }, 'aa', { current: { internal: ['x1'] } }), ctx, 'aa'), /"x1".*(rebased|replaced)/);
  // The parent keeps its internal snapshots whichever way: it is only read.
  const plan = planSnapshotDelete(tree({ aa: null, bb: 'aa' }, 'bb', { aa: { internal: ['old1'] } }), ctx, 'bb');
  assert.ok(
    plan.strategies?.every((s) => s.valid),
    JSON.stringify(plan.strategies),
  );
});

test('delete commits the only child into a layer with internal snapshots: they stay, in the merged layer', () => {
  const plan = planSnapshotDelete(tree({ aa: null }, 'aa', { aa: { internal: ['old1'] } }), ctx, 'aa');
  assert.match(plan.summary, /by commit-child$/);
  const rebase = plan.strategies?.find((s) => s.strategy === 'rebase-children');
  assert.equal(rebase?.valid, false);
  assert.match(rebase?.reason ?? '', /"old1" that would be lost if it were removed/);
});

test('delete falls back to the strategy that leaves a corrupt parent alone, and says why the other is invalid', () => {
  // rebase-children would read the corrupt parent 'aa' as the child's new backing; commit-child does not touch it.
  const plan = planSnapshotDelete(tree({ aa: null, bb: 'aa' }, 'bb', { aa: { corrupt: true } }), ctx, 'bb');
  assert.match(plan.summary, /by commit-child$/);
  const rebase = plan.strategies?.find((s) => s.strategy === 'rebase-children');
  assert.equal(rebase?.valid, false);
  assert.match(rebase?.reason ?? '', /marked corrupt/);
});

test('delete refuses to commit into, copy out of or rebase a corrupt layer, and allows just removing one', () => {
  assert.throws(() => planSnapshotDelete(tree({ aa: null }, 'aa', { aa: { corrupt: true } }), ctx, 'aa'), CorruptImageError);
  assert.throws(() => planSnapshotDelete(tree({ aa: null }, 'aa', { current: { corrupt: true } }), ctx, 'aa'), CorruptImageError);
  // A leaf snapshot (a branch left by a rollback) is simply removed: nothing corrupt is written or read.
  const plan = planSnapshotDelete(tree({ aa: null, bb: 'aa' }, 'aa', { bb: { corrupt: true } }), ctx, 'bb');
  assert.deepEqual(plan.steps, [{ kind: 'remove', layer: snapLayer('bb') }]);
});

test('rollback refuses to replace a current layer that has internal snapshots or to purge a layer that has some', () => {
  assert.throws(() => planSnapshotRollback(tree({ aa: null }, 'aa', { current: { internal: ['old1'] } }), ctx, 'aa'), /replaced/);
  const branchy = tree({ aa: null, bb: 'aa' }, 'bb', { bb: { internal: ['keep'] } });
  assert.equal(planSnapshotRollback(branchy, ctx, 'aa').operation, 'snapshot-rollback');
  assert.throws(() => planSnapshotRollback(branchy, ctx, 'aa', { purgeNewer: true }), /"keep".*removed/);
});

test('rollback refuses to build on a corrupt snapshot, but may discard a corrupt current layer', () => {
  assert.throws(() => planSnapshotRollback(tree({ aa: null }, 'aa', { aa: { corrupt: true } }), ctx, 'aa'), /base of a new layer/);
  assert.equal(planSnapshotRollback(tree({ aa: null }, 'aa', { current: { corrupt: true } }), ctx, 'aa').steps.length, 2);
});

test('resize refuses a corrupt layer and keeps internal snapshots; free removes anything', () => {
  assert.throws(() => planResize(tree({}, null, { current: { corrupt: true } }), 2 << 20, ctx), CorruptImageError);
  assert.equal(planResize(tree({}, null, { current: { internal: ['old1'] } }), 2 << 20, ctx).operation, 'resize');
  const doomed = tree({ aa: null }, 'aa', { aa: { corrupt: true, internal: ['x1'] }, current: { corrupt: true, internal: ['y1'] } });
  assert.equal(planFree(doomed).steps.length, 2);
});

test('internal-snapshot storages: no snapshot is taken, applied or deleted in a corrupt image', () => {
  const internal: PlanContext = { kind: 'dir', volumeChain: false };
  const t = tree({}, null, { current: { corrupt: true, internal: ['old1'] } });
  assert.throws(() => planSnapshotCreate(t, internal, 'new1'), CorruptImageError);
  assert.throws(() => planSnapshotRollback(t, internal, 'old1'), CorruptImageError);
  assert.throws(() => planSnapshotDelete(t, internal, 'old1'), CorruptImageError);
  const sound = tree({}, null, { current: { internal: ['old1'] } });
  assert.equal(planSnapshotDelete(sound, internal, 'old1').steps[0]?.kind, 'internal-snapshot');
});

test('layers known only from LV tags (no header here) are not judged', () => {
  const t = tree({ aa: null }, 'aa');
  for (const l of t.layers.values()) l.header = undefined;
  assert.doesNotThrow(() => guardSteps(t, planSnapshotDelete(t, ctx, 'aa').steps));
});

test('live delete is refused like the offline one (its plan builds on the offline planner)', () => {
  const t = tree({ aa: null }, 'aa', { current: { internal: ['old1'] } });
  const disk: LiveDisk = {
    storage: 'local',
    socket: '/run/q.qmp',
    guestRunning: true,
    streamSafe: true,
    nodes: new Map([
      [VOL, { node: 'n-top', protocolNode: 'p-top' }],
      [snapLayer('aa'), { node: 'n-a', protocolNode: 'p-a' }],
    ]),
  };
  // Stream into the current layer (a rebase) or commit it into aa and replace it: both lose 'old1'.
  assert.throws(() => planLiveSnapshotDelete(t, ctx, 'aa', disk), UnsafeImageError);
  assert.throws(() => planLiveSnapshotDelete(t, ctx, 'aa', { ...disk, streamSafe: false }), UnsafeImageError);
});

test('chain depth counts layers from each layer down to its root', () => {
  const depths = chainDepths(tree({ aa: null, bb: 'aa', cc: 'aa' }, 'bb'));
  assert.deepEqual(Object.fromEntries(depths), { [snapLayer('aa')]: 1, [snapLayer('bb')]: 2, [snapLayer('cc')]: 2, [VOL]: 3 });
});

test('a tree of 1000 layers is read, one of 1001 is refused naming the deepest layer (exit 8)', () => {
  assert.doesNotThrow(() => checkTreeDepth(linear(1000)));
  assert.throws(
    () => checkTreeDepth(linear(1001)),
    (err: unknown) =>
      err instanceof UnsafeImageError &&
      err.exitStatus === 8 &&
      err.message.startsWith(`${VOL}: `) &&
      err.message.includes('1001 layers deep, more than the limit of 1000'),
  );
});

test('create and rollback refuse to make a chain deeper than 1000 layers (exit 5), one layer less is fine', () => {
  assert.equal(planSnapshotCreate(linear(999), ctx, 'new1').operation, 'snapshot-create');
  assert.throws(
    () => planSnapshotCreate(linear(1000), ctx, 'new1'),
    (err: unknown) => err instanceof NotSupportedError && err.exitStatus === 5 && err.message.includes('1001 layers deep, more than the limit of 1000'),
  );
  // Rolling back to the snapshot right under a 1000-layer current gives a top at depth 1000: allowed.
  assert.equal(planSnapshotRollback(linear(1000), ctx, 's999').operation, 'snapshot-rollback');
  // A branch snapshot at depth 1000 (once a current layer) cannot get a new top.
  const t = linear(1000);
  const leaf = t.layers.get(VOL) as LayerNode;
  t.layers.delete(VOL);
  t.layers.set(snapLayer('tip'), { ...leaf, name: snapLayer('tip'), snapshot: 'tip' });
  t.layers.set(VOL, { ...leaf, parent: snapLayer('s1'), children: [] });
  assert.throws(() => planSnapshotRollback(t, ctx, 'tip'), NotSupportedError);
});
