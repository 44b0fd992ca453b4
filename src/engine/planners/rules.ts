/**
 * What every offline planner shares (pure): the planning context a backend's capabilities give, and the
 * refusals and checks that come before any plan (raw volumes, templates, leftovers, unknown snapshots, the
 * layer guard). The planners are one module per operation beside this one; all are pure functions of
 * (request, observed tree), so every rule about what is valid is unit-testable with hand-made trees.
 */
import { NotFoundError, NotSupportedError, PendingOperationError } from '../../errors.js';
import { type StorageKind } from '../../naming/index.js';
import { guardSteps } from '../read/layer-guard.js';
import type { Plan, Step } from '../../model/plan.js';
import { findSnapshot, layer, type LayerNode, type VolumeTree } from '../read/volume-tree.js';

export interface PlanContext {
  kind: StorageKind;
  /** snapshot-as-volume-chain: snapshots are layers; otherwise qcow2 internal snapshots. */
  volumeChain: boolean;
  /** Layers need `grow` before being written into and `freeze` once frozen (default: yes, the safe choice). */
  fixedSizeLayers?: boolean;
}

/** Drops the grow/freeze steps that do nothing on storages whose layers grow on demand. */
export function sizing(ctx: PlanContext, steps: Step[]): Step[] {
  if (ctx.fixedSizeLayers ?? true) return steps;
  return steps.filter((s) => s.kind !== 'grow' && s.kind !== 'freeze');
}

export function requireSnapshottable(tree: VolumeTree): void {
  refuseTemplate(tree, 'take, roll back or delete snapshots of it');
  if (tree.volume.format !== 'qcow2') {
    throw new NotSupportedError(`${tree.volid} is a raw volume: snapshots need qcow2 (convert it with 'volchain convert ${tree.volid} --format qcow2')`);
  }
  if (tree.leftovers.length > 0) {
    throw new PendingOperationError(
      `${tree.volid} has leftovers of an interrupted operation (${tree.leftovers.join(', ')}); run 'volchain repair ${tree.volid}'`,
    );
  }
}

/**
 * A template's base volume is never written (its linked clones read it): PVE gives templates no snapshots
 * and never resizes a base either. Exit 5; the clones are where snapshots go.
 */
export function refuseTemplate(tree: VolumeTree, what: string): void {
  if (tree.volume.template) {
    throw new NotSupportedError(
      `${tree.volid} is a template's base volume, which is read-only (linked clones are backed by it): volchain does not ${what}; ` +
        'clone it with PVE, or operate on its clones',
    );
  }
}

export function internalSnapshotNames(tree: VolumeTree): string[] {
  return layer(tree, tree.current).header?.internalSnapshots.map((s) => s.name) ?? [];
}

export function requireSnapshot(tree: VolumeTree, ctx: PlanContext, snapshot: string): LayerNode | undefined {
  if (ctx.volumeChain) {
    const node = findSnapshot(tree, snapshot);
    if (node?.snapshot === snapshot) return node;
    const hint = node ? ` (did you mean '${node.snapshot ?? ''}'?)` : '';
    throw new NotFoundError(`snapshot '${snapshot}' of ${tree.volid} does not exist${hint}`, { fields: { volid: tree.volid, snapshot } });
  }
  if (!internalSnapshotNames(tree).includes(snapshot)) {
    throw new NotFoundError(`snapshot '${snapshot}' of ${tree.volid} does not exist`, { fields: { volid: tree.volid, snapshot } });
  }
  return undefined;
}

/**
 * Returns `plan` once its steps pass engine/read/layer-guard.ts (no corrupt layer written or frozen, no internal snapshot
 * lost). `free` is not guarded: removing the whole volume, internal snapshots and corrupt layers included, is
 * what it is asked to do.
 */
export function guarded(tree: VolumeTree, plan: Plan): Plan {
  guardSteps(tree, plan.steps);
  return plan;
}
