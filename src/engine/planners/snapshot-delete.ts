/**
 * Planning `snapshot delete` (pure): the valid strategies (rebase the children, or commit the only child)
 * weighed by bytes moved; the chosen one's steps, with every strategy considered for `--dry-run`.
 */
import { guardSteps } from '../read/layer-guard.js';
import type { Plan, Step, StrategyOption } from '../../model/plan.js';
import { layer, type VolumeTree } from '../read/volume-tree.js';
import { guarded, requireSnapshot, requireSnapshottable, sizing, type PlanContext } from './rules.js';

export function planSnapshotDelete(tree: VolumeTree, ctx: PlanContext, snapshot: string): Plan {
  requireSnapshottable(tree);
  const target = requireSnapshot(tree, ctx, snapshot);
  const base = { operation: 'snapshot-delete' as const, volid: tree.volid, vmid: tree.volume.vmid, snapshot };
  if (!target) {
    return guarded(tree, {
      ...base,
      bytesMoved: 0,
      summary: `delete internal snapshot '${snapshot}' of ${tree.volid}`,
      steps: [{ kind: 'internal-snapshot', layer: tree.current, action: 'delete', name: snapshot }],
    });
  }
  const children = target.children.map((c) => layer(tree, c));
  const options: { option: StrategyOption; steps: Step[] }[] = [];

  // Strategy 1: every child takes over the data of the snapshot it depends on (safe rebase onto the
  // snapshot's parent). Always valid; the snapshot's layer stays untouched until its final removal.
  const rebaseBytes = children.length * target.definedBytes;
  options.push({
    option: {
      strategy: 'rebase-children',
      valid: true,
      bytesMoved: rebaseBytes,
      reason:
        children.length === 0
          ? 'no layer depends on the snapshot: it is simply removed'
          : `copies up to ${target.definedBytes} bytes of the snapshot into each of its ${children.length} child layer(s)`,
    },
    steps: [
      // The oldest snapshot of a linked clone: its children are rebased onto the base volume, which the
      // rebase only reads. Never onto no backing (that would copy the whole template into each child).
      ...children.map((c): Step => ({
        kind: 'rebase',
        layer: c.name,
        from: target.name,
        onto: target.parent ?? target.base ?? null,
        bytes: target.definedBytes,
        ...(target.parent === undefined && target.base !== undefined && tree.base ? { ontoFormat: tree.base.volume.format } : {}),
      })),
      { kind: 'remove', layer: target.name },
    ],
  });

  // Strategy 2: commit the only child into the snapshot's layer, which then takes the child's name (PVE's
  // way for the oldest snapshot). Moves the child's data, usually small. Needs exactly one child: with two,
  // the other child would see data that is not its own.
  const only = children.length === 1 ? children[0] : undefined;
  if (only) {
    // The snapshot's layer is written into: it must have room for everything the child may hold (on LVM a
    // frozen layer was shrunk, and after a resize the child is bigger than the snapshot).
    const steps: Step[] = [
      { kind: 'grow', layer: target.name, sizeBytes: Math.max(only.virtualSize, target.virtualSize) },
      { kind: 'commit', top: only.name, base: target.name, bytes: only.definedBytes },
      { kind: 'replace', from: target.name, to: only.name },
    ];
    // When the child was itself a snapshot, the merged layer is frozen again under the child's name.
    if (only.snapshot !== undefined) steps.push({ kind: 'freeze', layer: only.name });
    options.push({
      option: {
        strategy: 'commit-child',
        valid: true,
        bytesMoved: only.definedBytes,
        reason: `commits the ${only.definedBytes} bytes of ${only.name} into the snapshot's layer, which then replaces it`,
      },
      steps: sizing(ctx, steps),
    });
  } else {
    options.push({
      option: {
        strategy: 'commit-child',
        valid: false,
        bytesMoved: 0,
        reason: children.length === 0 ? 'the snapshot has no child' : `the snapshot has ${children.length} children`,
      },
      steps: [],
    });
  }

  // Committing the snapshot into its parent is never offered: the parent is itself a snapshot, and its
  // layer must keep holding exactly that snapshot's state; for a linked clone's oldest snapshot the parent
  // is the template's base volume, which is never written. Both strategies above leave it untouched: the
  // rebase only reads it, commit-child writes into the snapshot's own layer.
  // A strategy that would write a corrupt layer or lose internal snapshots is not valid (engine/read/layer-guard.ts);
  // when none is left, the refusal of the first one says why.
  let refusal: unknown;
  for (const o of options) {
    if (!o.option.valid) continue;
    try {
      guardSteps(tree, o.steps);
    } catch (err) {
      refusal ??= err;
      o.option = { ...o.option, valid: false, reason: err instanceof Error ? err.message : String(err) };
    }
  }
  const valid = options.filter((o) => o.option.valid);
  if (valid.length === 0) throw refusal;
  // Fewest bytes wins; on a tie prefer the rebase, which keeps the snapshot intact until its last step.
  const chosen = valid.reduce((best, o) => (o.option.bytesMoved < best.option.bytesMoved ? o : best));
  return {
    ...base,
    bytesMoved: chosen.option.bytesMoved,
    summary: `delete snapshot '${snapshot}' of ${tree.volid} by ${chosen.option.strategy}`,
    steps: chosen.steps,
    strategies: options.map((o) => o.option),
  };
}
