import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { planFree, planResize } from '../../src/engine/planners/volume.js';
import { planSnapshotCreate } from '../../src/engine/planners/snapshot-create.js';
import { planSnapshotDelete } from '../../src/engine/planners/snapshot-delete.js';
import { planSnapshotRollback } from '../../src/engine/planners/snapshot-rollback.js';
import { type PlanContext } from '../../src/engine/planners/rules.js';
import type { VolumeTree } from '../../src/engine/read/volume-tree.js';
import { volumeTree } from '../fixtures/volume-tree.js';
import type { Step } from '../../src/model/plan.js';
import { AlreadyExistsError, InvalidInputError, NotFoundError, NotSupportedError, PendingOperationError } from '../../src/errors.js';

const VOL = 'vm-100-disk-0.qcow2';
const ctx: PlanContext = { kind: 'dir', volumeChain: true };
const snapLayer = (s: string): string => `snap-${s}-${VOL}`;

/** A tree from `{snapshot: parentSnapshot}` plus where current hangs; sizes in bytes per snapshot. */
const tree = (
  parents: Record<string, string | null>,
  currentParent: string | null,
  defined: Record<string, number> = {},
  sizes: Record<string, number> = {},
): VolumeTree => volumeTree(parents, currentParent, { defined, sizes });

test('create freezes the current layer under the snapshot name and continues on a new overlay', () => {
  const plan = planSnapshotCreate(tree({ a: null }, 'a'), ctx, 'bb');
  assert.equal(plan.steps.length, 4);
  const [overlay, freeze, swap, settle] = plan.steps as [Step, Step, Step, Step];
  assert.deepEqual(settle, { kind: 'freeze', layer: snapLayer('bb') });
  assert.equal(overlay.kind, 'create-overlay');
  assert.ok(overlay.kind === 'create-overlay' && overlay.backing === snapLayer('bb'));
  assert.deepEqual(freeze, { kind: 'rename', from: VOL, to: snapLayer('bb') });
  assert.ok(swap.kind === 'rename' && swap.to === VOL && overlay.kind === 'create-overlay' && swap.from === overlay.layer);
});

test('create refuses an existing name, also when it differs only in case', () => {
  assert.throws(() => planSnapshotCreate(tree({ Alpha: null }, 'Alpha'), ctx, 'alpha'), AlreadyExistsError);
  assert.throws(() => planSnapshotCreate(tree({ Alpha: null }, 'Alpha'), ctx, 'Alpha'), AlreadyExistsError);
});

test('create refuses invalid snapshot names', () => {
  for (const bad of ['1abc', 'a', 'current', 'pending', 'Pending', 'x.y', '-xy', 'a'.repeat(41), 'a b', '-rf', '']) {
    assert.throws(() => planSnapshotCreate(tree({}, null), ctx, bad), InvalidInputError, bad);
  }
});

test('snapshots of raw volumes are refused with a message naming qcow2', () => {
  const t = tree({}, null);
  t.volume = { ...t.volume, format: 'raw' };
  assert.throws(
    () => planSnapshotCreate(t, ctx, 'snap1'),
    (e: unknown) => e instanceof NotSupportedError && e.message.includes('qcow2'),
  );
});

test('leftovers of an interrupted operation block new operations until repair', () => {
  const t = tree({}, null);
  t.leftovers = ['.volchain-tmp'];
  assert.throws(() => planSnapshotCreate(t, ctx, 'snap1'), PendingOperationError);
});

test('without volume chains, snapshots are internal to the qcow2 file', () => {
  const plan = planSnapshotCreate(tree({}, null), { kind: 'dir', volumeChain: false }, 'snap1');
  assert.deepEqual(plan.steps, [{ kind: 'internal-snapshot', layer: VOL, action: 'create', name: 'snap1' }]);
});

test('rollback to an older snapshot keeps newer ones unless purging', () => {
  const t = tree({ a: null, b: 'a', c: 'b' }, 'c');
  const keep = planSnapshotRollback(t, ctx, 'a');
  assert.deepEqual(
    keep.steps.map((s) => s.kind),
    ['create-overlay', 'replace'],
  );
  const first = keep.steps[0] as Step;
  assert.ok(first.kind === 'create-overlay' && first.backing === snapLayer('a'));
  const purge = planSnapshotRollback(t, ctx, 'a', { purgeNewer: true });
  const removed = purge.steps.filter((s) => s.kind === 'remove').map((s) => (s.kind === 'remove' ? s.layer : ''));
  assert.deepEqual(removed, [snapLayer('c'), snapLayer('b')], 'leaves first, never the current layer');
});

test('rollback gives the new top the virtual size of the snapshot', () => {
  const t = tree({ a: null }, 'a', {}, { a: 1 << 20, current: 1 << 21 });
  const first = planSnapshotRollback(t, ctx, 'a').steps[0] as Step;
  assert.ok(first.kind === 'create-overlay' && first.sizeBytes === 1 << 20);
});

test('unknown snapshots are not found; a case slip gets a hint', () => {
  const t = tree({ Alpha: null }, 'Alpha');
  assert.throws(() => planSnapshotRollback(t, ctx, 'beta'), NotFoundError);
  assert.throws(() => planSnapshotDelete(t, ctx, 'alpha'), /did you mean 'Alpha'/);
});

test('delete with one small child commits the child into the snapshot (oldest snapshot, PVE way)', () => {
  const t = tree({ a: null }, 'a', { a: 100 << 20, current: 1 << 20 });
  const plan = planSnapshotDelete(t, ctx, 'a');
  assert.match(plan.summary, /commit-child/);
  assert.deepEqual(plan.steps, [
    { kind: 'grow', layer: snapLayer('a'), sizeBytes: 1 << 30 },
    { kind: 'commit', top: VOL, base: snapLayer('a'), bytes: 1 << 20 },
    { kind: 'replace', from: snapLayer('a'), to: VOL },
  ]);
  assert.equal(plan.bytesMoved, 1 << 20);
});

test('delete with one big child rebases the child instead (fewest bytes)', () => {
  const t = tree({ a: null, b: 'a' }, 'b', { a: 1 << 20, b: 50 << 20, current: 0 });
  const plan = planSnapshotDelete(t, ctx, 'b');
  // b has one child (current, 0 bytes): commit-child moves 0; rebase would move 50 MiB
  assert.match(plan.summary, /commit-child/);
  const plan2 = planSnapshotDelete(tree({ a: null, b: 'a' }, 'b', { a: 1 << 20, b: 50 << 20 }), ctx, 'a');
  assert.match(plan2.summary, /rebase-children/);
  assert.deepEqual(plan2.steps, [
    { kind: 'rebase', layer: snapLayer('b'), from: snapLayer('a'), onto: null, bytes: 1 << 20 },
    { kind: 'remove', layer: snapLayer('a') },
  ]);
});

test('delete of a snapshot with two children rebases both onto its parent', () => {
  const t = tree({ a: null, b: 'a', c: 'b' }, 'b', { b: 4096 });
  const plan = planSnapshotDelete(t, ctx, 'b');
  assert.match(plan.summary, /rebase-children/);
  const rebases = plan.steps.filter((s) => s.kind === 'rebase');
  assert.equal(rebases.length, 2);
  for (const r of rebases) assert.ok(r.kind === 'rebase' && r.onto === snapLayer('a'));
  const commit = plan.strategies?.find((s) => s.strategy === 'commit-child');
  assert.equal(commit?.valid, false);
});

test('delete after a resize grows the snapshot before committing a bigger child into it', () => {
  const t = tree({ a: null }, 'a', { a: 1 << 30, current: 1 }, { a: 1 << 20, current: 1 << 21 });
  const plan = planSnapshotDelete(t, ctx, 'a');
  assert.deepEqual(plan.steps[0], { kind: 'grow', layer: snapLayer('a'), sizeBytes: 1 << 21 });
});

test('storages whose layers grow on demand get no grow/freeze steps', () => {
  const files: PlanContext = { ...ctx, fixedSizeLayers: false };
  const create = planSnapshotCreate(tree({ a: null }, 'a'), files, 'bb');
  assert.deepEqual(
    create.steps.map((s) => s.kind),
    ['create-overlay', 'rename', 'rename'],
  );
  const del = planSnapshotDelete(tree({ a: null }, 'a', { a: 1 << 30, current: 1 }), files, 'a');
  assert.deepEqual(
    del.steps.map((s) => s.kind),
    ['commit', 'replace'],
  );
  const t = tree({}, null, {}, { current: 1 << 20 });
  assert.deepEqual(
    planResize(t, 1 << 21, files).steps.map((s) => s.kind),
    ['resize'],
  );
});

test('a branch leaf with no children is simply removed', () => {
  const t = tree({ a: null, b: 'a' }, 'a');
  const plan = planSnapshotDelete(t, ctx, 'b');
  assert.deepEqual(plan.steps, [{ kind: 'remove', layer: snapLayer('b') }]);
  assert.equal(plan.bytesMoved, 0);
});

test('resize only grows', () => {
  const t = tree({}, null, {}, { current: 1 << 20 });
  assert.throws(() => planResize(t, 1 << 19), /cannot shrink/);
  assert.throws(() => planResize(t, 1 << 20), InvalidInputError);
  assert.deepEqual(
    planResize(t, 1 << 21).steps.map((s) => s.kind),
    ['grow', 'resize'],
  );
});

test('free removes the current layer first, then every snapshot layer leaves-first', () => {
  const t = tree({ a: null, b: 'a', c: 'a' }, 'b');
  const removed = planFree(t).steps.map((s) => (s.kind === 'remove' ? s.layer : ''));
  assert.equal(removed[0], VOL);
  assert.equal(removed.at(-1), snapLayer('a'));
  assert.equal(new Set(removed).size, 4);
});

// Property: whatever the tree, the chosen delete strategy is valid and no valid one is cheaper.
test('the delete planner always picks a valid strategy with the fewest bytes', () => {
  const shape = fc.array(fc.nat(), { minLength: 1, maxLength: 12 }).chain((parents) =>
    fc.record({
      parents: fc.constant(parents),
      sizes: fc.array(fc.nat({ max: 1 << 30 }), { minLength: parents.length + 1, maxLength: parents.length + 1 }),
      currentAt: fc.nat({ max: parents.length - 1 }),
      victim: fc.nat({ max: parents.length - 1 }),
    }),
  );
  fc.assert(
    fc.property(shape, ({ parents, sizes, currentAt, victim }) => {
      const names = parents.map((_, i) => `s${i}`);
      const map: Record<string, string | null> = {};
      names.forEach((n, i) => (map[n] = i === 0 ? null : (names[(parents[i] ?? 0) % i] ?? null)));
      const defined: Record<string, number> = { current: sizes[parents.length] ?? 0 };
      names.forEach((n, i) => (defined[n] = sizes[i] ?? 0));
      const t = tree(map, names[currentAt] ?? null, defined);
      const plan = planSnapshotDelete(t, ctx, names[victim] ?? 's0');
      const valid = (plan.strategies ?? []).filter((s) => s.valid);
      assert.ok(valid.length >= 1);
      assert.equal(plan.bytesMoved, Math.min(...valid.map((s) => s.bytesMoved)));
      const children = t.layers.get(snapLayer(names[victim] ?? 's0'))?.children.length ?? 0;
      if (plan.summary.endsWith('commit-child')) assert.equal(children, 1);
      // the deleted layer is gone at the end, by removal or by being replaced under the child's name
      const last = plan.steps.at(-1);
      assert.ok(last && ['remove', 'replace', 'freeze'].includes(last.kind));
    }),
    { numRuns: 300 },
  );
});
