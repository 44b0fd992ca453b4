/**
 * Pure planners: (request, observed tree) -> plan. No I/O here, so every rule about what is valid lives in
 * one place and is unit-testable with hand-made trees.
 */
import { AlreadyExistsError, InvalidInputError, NotFoundError, NotSupportedError, PendingOperationError } from '../../errors.js';
import { snapshotLayerName, temporaryLayerName, validateSnapshotName, type StorageKind } from '../../naming/index.js';
import { guardSteps, refuseDeeperChain } from '../read/layer-guard.js';
import type { Plan, Step, StrategyOption } from '../../model/plan.js';
import { descendants, findSnapshot, layer, snapshotLayers, type LayerNode, type VolumeTree } from '../read/volume-tree.js';

export interface PlanContext {
  kind: StorageKind;
  /** snapshot-as-volume-chain: snapshots are layers; otherwise qcow2 internal snapshots. */
  volumeChain: boolean;
  /** Layers need `grow` before being written into and `freeze` once frozen (default: yes, the safe choice). */
  fixedSizeLayers?: boolean;
}

/** Drops the grow/freeze steps that do nothing on storages whose layers grow on demand. */
function sizing(ctx: PlanContext, steps: Step[]): Step[] {
  if (ctx.fixedSizeLayers ?? true) return steps;
  return steps.filter((s) => s.kind !== 'grow' && s.kind !== 'freeze');
}

function requireSnapshottable(tree: VolumeTree): void {
  refuseTemplate(tree, 'take, roll back or delete snapshots of it');
  if (tree.volume.format !== 'qcow2') {
    throw new NotSupportedError(`${tree.volid} is a raw volume: snapshots need qcow2 (convert it with 'qemu-img convert -O qcow2' into a new volume)`);
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
function refuseTemplate(tree: VolumeTree, what: string): void {
  if (tree.volume.template) {
    throw new NotSupportedError(
      `${tree.volid} is a template's base volume, which is read-only (linked clones are backed by it): volchain does not ${what}; ` +
        'clone it with PVE, or operate on its clones',
    );
  }
}

function internalSnapshotNames(tree: VolumeTree): string[] {
  return layer(tree, tree.current).header?.internalSnapshots.map((s) => s.name) ?? [];
}

function requireSnapshot(tree: VolumeTree, ctx: PlanContext, snapshot: string): LayerNode | undefined {
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

export function planSnapshotCreate(tree: VolumeTree, ctx: PlanContext, snapshot: string): Plan {
  validateSnapshotName(snapshot);
  requireSnapshottable(tree);
  const base = { operation: 'snapshot-create' as const, volid: tree.volid, vmid: tree.volume.vmid, snapshot, bytesMoved: 0 };
  const current = layer(tree, tree.current);
  if (!ctx.volumeChain) {
    const clash = internalSnapshotNames(tree).find((n) => n.toLowerCase() === snapshot.toLowerCase());
    if (clash !== undefined) throw new AlreadyExistsError(`snapshot '${clash}' of ${tree.volid} already exists`);
    return guarded(tree, {
      ...base,
      summary: `take internal snapshot '${snapshot}' of ${tree.volid}`,
      steps: [{ kind: 'internal-snapshot', layer: tree.current, action: 'create', name: snapshot }],
    });
  }
  const clash = findSnapshot(tree, snapshot);
  if (clash)
    throw new AlreadyExistsError(
      `snapshot '${clash.snapshot ?? snapshot}' of ${tree.volid} already exists${clash.snapshot !== snapshot ? ' (names that differ only in case are refused)' : ''}`,
    );
  refuseDeeperChain(tree, tree.current, `snapshot create '${snapshot}'`);
  const frozen = snapshotLayerName(ctx.kind, tree.volume.name, snapshot);
  // With '-' in snapshot names one layer name can fit two volumes (layer-names.ts): never take another's.
  if (tree.foreignLayers?.includes(frozen)) {
    throw new AlreadyExistsError(
      `snapshot '${snapshot}' of ${tree.volid} would be layer ${frozen}, which another volume's chain already uses: choose another name`,
    );
  }
  const tmp = temporaryLayerName(ctx.kind, tree.volume.name, 'create');
  return guarded(tree, {
    ...base,
    summary: `freeze the current layer of ${tree.volid} as ${frozen} and continue on a new empty top`,
    steps: sizing(ctx, [
      // The overlay names the frozen layer before it exists (-u), so the two renames below complete it.
      { kind: 'create-overlay', layer: tmp, backing: frozen, sizeBytes: current.virtualSize },
      { kind: 'rename', from: tree.current, to: frozen },
      { kind: 'rename', from: tmp, to: tree.current },
      { kind: 'freeze', layer: frozen },
    ]),
  });
}

export interface RollbackOptions {
  purgeNewer?: boolean;
}

export function planSnapshotRollback(tree: VolumeTree, ctx: PlanContext, snapshot: string, opts: RollbackOptions = {}): Plan {
  requireSnapshottable(tree);
  const target = requireSnapshot(tree, ctx, snapshot);
  const base = { operation: 'snapshot-rollback' as const, volid: tree.volid, vmid: tree.volume.vmid, snapshot, bytesMoved: 0 };
  if (!target) {
    if (opts.purgeNewer) throw new NotSupportedError('--purge-newer needs snapshot-as-volume-chain storage (internal snapshots form no tree)');
    return guarded(tree, {
      ...base,
      summary: `revert ${tree.volid} to internal snapshot '${snapshot}'`,
      steps: [{ kind: 'internal-snapshot', layer: tree.current, action: 'apply', name: snapshot }],
    });
  }
  refuseDeeperChain(tree, target.name, `rollback to '${snapshot}'`);
  const tmp = temporaryLayerName(ctx.kind, tree.volume.name, 'rollback');
  const steps: Step[] = [
    { kind: 'create-overlay', layer: tmp, backing: target.name, sizeBytes: target.virtualSize },
    // Point of no return: what the current layer held since the last snapshot is discarded here.
    { kind: 'replace', from: tmp, to: tree.current },
  ];
  const purged = opts.purgeNewer ? descendants(tree, target.name).filter((l) => l.name !== tree.current) : [];
  for (const node of purged) steps.push({ kind: 'remove', layer: node.name });
  const keep = purged.length > 0 ? `, deleting ${purged.length} newer snapshot(s)` : '';
  return guarded(tree, {
    ...base,
    summary: `discard the current state of ${tree.volid} and continue from snapshot '${snapshot}'${keep}`,
    steps,
  });
}

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

export function planResize(tree: VolumeTree, sizeBytes: number, ctx?: PlanContext): Plan {
  refuseTemplate(tree, 'resize it');
  const current = layer(tree, tree.current);
  if (sizeBytes < current.virtualSize) {
    throw new InvalidInputError(`cannot shrink ${tree.volid} from ${current.virtualSize} to ${sizeBytes} bytes: volchain only grows volumes`);
  }
  if (sizeBytes === current.virtualSize) {
    throw new InvalidInputError(`${tree.volid} already has ${sizeBytes} bytes`);
  }
  return guarded(tree, {
    operation: 'resize',
    volid: tree.volid,
    vmid: tree.volume.vmid,
    bytesMoved: 0,
    summary: `grow ${tree.volid} from ${current.virtualSize} to ${sizeBytes} bytes`,
    steps: sizing(ctx ?? { kind: tree.volume.kind, volumeChain: true }, [
      { kind: 'grow', layer: tree.current, sizeBytes },
      { kind: 'resize', layer: tree.current, format: tree.volume.format, sizeBytes },
    ]),
  });
}

export function planFree(tree: VolumeTree): Plan {
  // The current layer goes first: once it is gone the volume no longer exists for anyone, and a crash
  // leaves only snapshot layers that repair recognises and removes.
  const layers = [tree.current, ...orderedLeavesFirst(tree).filter((n) => n !== tree.current), ...tree.leftovers];
  return {
    operation: 'free',
    volid: tree.volid,
    vmid: tree.volume.vmid,
    bytesMoved: 0,
    summary: `remove ${tree.volid} and its ${snapshotLayers(tree).length} snapshot layer(s)`,
    steps: layers.map((l): Step => ({ kind: 'remove', layer: l })),
  };
}

/**
 * Returns `plan` once its steps pass engine/read/layer-guard.ts (no corrupt layer written or frozen, no internal snapshot
 * lost). `free` is not guarded: removing the whole volume, internal snapshots and corrupt layers included, is
 * what it is asked to do.
 */
function guarded(tree: VolumeTree, plan: Plan): Plan {
  guardSteps(tree, plan.steps);
  return plan;
}

function orderedLeavesFirst(tree: VolumeTree): string[] {
  const roots = [...tree.layers.values()].filter((l) => l.parent === undefined);
  return roots.flatMap((r) => [...descendants(tree, r.name).map((d) => d.name), r.name]);
}
