/**
 * Base protection in the planners (issue 14): a linked clone's bottom layer notes its base (`../101/base-…`)
 * outside the tree; no plan ever writes the base, and a template's base volume takes no snapshot or resize.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { planFree, planResize } from '../../src/engine/planners/volume.js';
import { planSnapshotCreate } from '../../src/engine/planners/snapshot-create.js';
import { planSnapshotDelete } from '../../src/engine/planners/snapshot-delete.js';
import { planSnapshotRollback } from '../../src/engine/planners/snapshot-rollback.js';
import { type PlanContext } from '../../src/engine/planners/rules.js';
import type { LayerNode, VolumeTree } from '../../src/engine/read/volume-tree.js';
import { volumeTree } from '../fixtures/volume-tree.js';
import type { Step } from '../../src/model/plan.js';
import { NotSupportedError, UnsafeImageError } from '../../src/errors.js';
import { checkRebaseTarget } from '../../src/engine/read/clone-base.js';

const VOL = 'vm-102-disk-0.qcow2';
const REF = '../101/base-101-disk-0.qcow2';
const ctx: PlanContext = { kind: 'dir', volumeChain: true, fixedSizeLayers: false };
const snapLayer = (s: string): string => `snap-${s}-${VOL}`;

/** A clone's tree: `{snapshot: parent}` (null: backed by the base) plus the current layer's parent. */
const cloneTree = (
  parents: Record<string, string | null>,
  currentParent: string | null,
  defined: Record<string, number> = {},
  baseFormat: 'qcow2' | 'raw' = 'qcow2',
): VolumeTree => volumeTree(parents, currentParent, { base: baseFormat, defined });

/** Every layer name a step writes, removes or replaces (reads excluded). */
function written(step: Step): string[] {
  switch (step.kind) {
    case 'commit':
      return [step.base, step.top];
    case 'rebase':
      return [step.layer];
    case 'remove':
    case 'resize':
    case 'freeze':
    case 'grow':
      return [step.layer];
    case 'rename':
    case 'replace':
      return [step.from, step.to];
    case 'create-overlay':
      return [step.layer];
    default:
      return [];
  }
}

test('deleting the oldest snapshot of a clone rebases its children onto the base with the base format', () => {
  for (const fmt of ['qcow2', 'raw'] as const) {
    const t = cloneTree({ s1: null, s2: 's1' }, 's2', { s1: 10, s2: 1 << 20, current: 1 << 20 }, fmt);
    const plan = planSnapshotDelete(t, ctx, 's1');
    assert.deepEqual(plan.steps[0], { kind: 'rebase', layer: snapLayer('s2'), from: snapLayer('s1'), onto: t.base?.ref, bytes: 10, ontoFormat: fmt });
  }
});

test('when committing the child moves less, the child is committed into the snapshot, not the snapshot into the base', () => {
  const t = cloneTree({ s1: null }, 's1', { s1: 1 << 30, current: 10 });
  const plan = planSnapshotDelete(t, ctx, 's1');
  assert.match(plan.summary, /commit-child/);
  assert.deepEqual(
    plan.steps.filter((s) => s.kind === 'commit'),
    [{ kind: 'commit', top: VOL, base: snapLayer('s1'), bytes: 10 }],
  );
});

test('no plan on a clone writes, removes or renames the base (any tree, any snapshot, any sizes)', () => {
  const shape = fc.array(fc.nat(), { minLength: 1, maxLength: 6 }).chain((picks) =>
    fc.record({
      picks: fc.constant(picks),
      current: fc.nat(),
      sizes: fc.array(fc.nat({ max: 1 << 20 }), { minLength: picks.length + 1, maxLength: picks.length + 1 }),
    }),
  );
  fc.assert(
    fc.property(shape, ({ picks, current, sizes }) => {
      // Snapshot i's parent: null (the base) or an earlier snapshot.
      const parents: Record<string, string | null> = {};
      picks.forEach((p, i) => (parents[`s${i}`] = i === 0 || p % (i + 1) === i ? null : `s${p % i}`));
      const names = Object.keys(parents);
      const defined: Record<string, number> = { current: sizes[names.length] ?? 0 };
      names.forEach((n, i) => (defined[n] = sizes[i] ?? 0));
      const t = cloneTree(parents, names[current % names.length] ?? null, defined);
      const plans = [
        ...names.map((n) => planSnapshotDelete(t, ctx, n)),
        ...names.map((n) => planSnapshotRollback(t, ctx, n, { purgeNewer: true })),
        planSnapshotCreate(t, ctx, 'fresh'),
        planFree(t),
      ];
      for (const plan of plans) for (const step of plan.steps) assert.ok(!written(step).some((n) => n.includes('base-')), JSON.stringify(step));
    }),
  );
});

test("a template's base volume takes no snapshot, rollback, delete or resize (exit 5); free is planned", () => {
  const t = cloneTree({}, null);
  t.volume = { storage: 'local', kind: 'dir', vmid: 101, name: 'base-101-disk-0.qcow2', format: 'qcow2', volname: '101/base-101-disk-0.qcow2', template: true };
  t.volid = 'local:101/base-101-disk-0.qcow2';
  t.current = 'base-101-disk-0.qcow2';
  t.layers = new Map([[t.current, { ...(t.layers.get(VOL) as LayerNode), name: t.current, base: undefined }]]);
  delete t.base;
  const refused = (e: unknown): boolean => e instanceof NotSupportedError && e.message.includes("template's base volume, which is read-only");
  assert.throws(() => planSnapshotCreate(t, ctx, 'xx'), refused);
  assert.throws(() => planSnapshotRollback(t, ctx, 'xx'), refused);
  assert.throws(() => planSnapshotDelete(t, ctx, 'xx'), refused);
  assert.throws(() => planResize(t, 2 << 30, ctx), refused);
  assert.deepEqual(planFree(t).steps, [{ kind: 'remove', layer: 'base-101-disk-0.qcow2' }]);
});

test('a rebase step (perhaps read from a journal file) may only target a layer name, nothing, or a base with its format', () => {
  const ok: [string | null, unknown][] = [
    [null, undefined],
    ['snap-a-vm-102-disk-0.qcow2', undefined],
    [REF, 'qcow2'],
    ['../101/base-101-disk-0.raw', 'raw'],
  ];
  for (const [onto, fmt] of ok) assert.doesNotThrow(() => checkRebaseTarget('x', onto, fmt), String(onto));
  const bad: [string | null, unknown][] = [
    [REF, undefined], // a base without its format: -F qcow2 would be assumed
    [REF, 'raw'], // a format the base's name does not have
    ['../101/base-101-disk-0.raw', 'qcow2'],
    ['snap-a-vm-102-disk-0.qcow2', 'raw'],
    ['/etc/shadow', undefined],
    ['../103/vm-103-disk-0.qcow2', undefined],
    ['nbd:host:1', undefined],
    [null, 'raw'],
  ];
  for (const [onto, fmt] of bad) assert.throws(() => checkRebaseTarget('x', onto, fmt), UnsafeImageError, `${String(onto)} ${String(fmt)}`);
});
