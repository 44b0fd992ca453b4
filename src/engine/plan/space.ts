/**
 * Space figures, pure: what a volume's snapshot layers take on the storage against what they would take as
 * Proxmox VE 9 allocates them, and what a plan allocates against the same operation with PVE's full-size
 * layers. The sizes come from the backend (LVM: LV sizes, `qemu-img measure`, `qemu-img check`); nothing
 * here does I/O.
 *
 * On thick LVM, PVE 9 makes every layer an LV of the full size of its virtual size, and keeps a layer at
 * that size once it is a snapshot; volchain shrinks a layer that becomes a snapshot to its image end. On
 * storages whose layers grow on demand (dir) both are the same files, so both figures are equal there.
 */
import type { Plan, PlanSpace, Step } from '../../model/plan.js';

export interface SnapshotSpace {
  /** Bytes the volume's snapshot layers take on the storage. */
  snapshotBytes: number;
  /** Bytes the same snapshot layers would take as full-size layers (PVE 9 on LVM); = snapshotBytes on dir. */
  fullSizeSnapshotBytes: number;
}

/**
 * `layers` are the snapshot layers of one volume. `fullLayerBytes` gives the full size of a layer of a
 * virtual size (absent: layers grow on demand, the full-size figure is what they take).
 */
export function snapshotSpace(
  layers: readonly { virtualSize: number; usedBytes: number }[],
  fullLayerBytes?: (virtualSizeBytes: number) => number,
): SnapshotSpace {
  let snapshotBytes = 0;
  let fullSizeSnapshotBytes = 0;
  for (const l of layers) {
    snapshotBytes += l.usedBytes;
    fullSizeSnapshotBytes += fullLayerBytes ? fullLayerBytes(l.virtualSize) : l.usedBytes;
  }
  return { snapshotBytes, fullSizeSnapshotBytes };
}

export interface PlanSizes {
  /** Bytes of a writable layer of this virtual size (LVM: `qemu-img measure` fully allocated, extent-rounded). */
  fullLayerBytes(virtualSizeBytes: number): number;
  /** Bytes an existing layer takes now; undefined when it does not exist. */
  layerBytes(layer: string): number | undefined;
  /** Bytes an existing layer will take once frozen (its image end); undefined when unknown. */
  frozenLayerBytes(layer: string): number | undefined;
}

/** Step kinds whose effect on space this module understands (a snapshot create is made of them). */
const UNDERSTOOD: ReadonlySet<Step['kind']> = new Set(['create-overlay', 'rename', 'freeze']);

/** True for plans estimatePlanSpace covers (a snapshot create on a volume chain). */
export function spaceEstimable(plan: Plan): boolean {
  return plan.steps.length > 0 && plan.steps.every((s) => UNDERSTOOD.has(s.kind));
}

/**
 * The plan's steps, each with the name before the plan of the layer it acts on (a rename: its source),
 * followed through earlier renames; undefined for a layer the plan itself creates.
 */
function* stepsWithOrigins(plan: Plan): Generator<{ step: Step; origin: string | undefined }> {
  const origin = new Map<string, string | undefined>();
  const originOf = (name: string): string | undefined => (origin.has(name) ? origin.get(name) : name);
  for (const step of plan.steps) {
    if (step.kind === 'create-overlay') {
      origin.set(step.layer, undefined);
      yield { step, origin: undefined };
    } else if (step.kind === 'rename') {
      const from = originOf(step.from);
      origin.delete(step.from);
      origin.set(step.to, from);
      yield { step, origin: from };
    } else if (step.kind === 'freeze') {
      yield { step, origin: originOf(step.layer) };
    }
  }
}

/**
 * The existing layers a plan freezes (under whatever name it renames them to): the layers whose image end
 * the caller must look up for `estimatePlanSpace`. Empty for plans estimatePlanSpace does not cover.
 */
export function layersFrozenBy(plan: Plan): string[] {
  if (!spaceEstimable(plan)) return [];
  const out: string[] = [];
  for (const { step, origin } of stepsWithOrigins(plan)) {
    if (step.kind === 'freeze' && origin !== undefined && !out.includes(origin)) out.push(origin);
  }
  return out;
}

/**
 * Space estimate of a plan made of create-overlay, rename and freeze steps (a snapshot create); undefined for
 * any other plan. Layers are followed through renames: a freeze acts on the layer that existed before the
 * plan under its old name.
 */
export function estimatePlanSpace(plan: Plan, sizes: PlanSizes): PlanSpace | undefined {
  if (!spaceEstimable(plan)) return undefined;
  let allocated = 0;
  let released: number | null = 0;
  const frozenAlready = new Set<string>();
  for (const { step, origin } of stepsWithOrigins(plan)) {
    if (step.kind === 'create-overlay') {
      allocated += sizes.fullLayerBytes(step.sizeBytes);
    } else if (step.kind === 'freeze') {
      // A layer the plan created has no image end to look up beforehand.
      if (origin === undefined) {
        released = null;
        continue;
      }
      const bytes = sizes.layerBytes(origin);
      if (bytes === undefined || frozenAlready.has(origin)) continue; // no such layer, or shrunk already
      frozenAlready.add(origin);
      const frozen = sizes.frozenLayerBytes(origin);
      if (frozen === undefined) released = null;
      else if (released !== null) released += bytes - Math.min(bytes, frozen);
    }
  }
  return {
    allocatedBytes: allocated,
    releasedBytes: released,
    netBytes: released === null ? null : allocated - released,
    fullSize: { allocatedBytes: allocated, releasedBytes: 0, netBytes: allocated },
  };
}

/** The sum of several plans' estimates (a VM-wide snapshot); undefined when any plan has none. */
export function totalPlanSpace(spaces: readonly (PlanSpace | undefined)[]): PlanSpace | undefined {
  if (spaces.length === 0 || spaces.some((s) => s === undefined)) return undefined;
  const all = spaces as readonly PlanSpace[];
  const sum = (f: (s: PlanSpace) => number): number => all.reduce((n, s) => n + f(s), 0);
  const released = all.some((s) => s.releasedBytes === null) ? null : sum((s) => s.releasedBytes ?? 0);
  const allocated = sum((s) => s.allocatedBytes);
  return {
    allocatedBytes: allocated,
    releasedBytes: released,
    netBytes: released === null ? null : allocated - released,
    fullSize: {
      allocatedBytes: sum((s) => s.fullSize.allocatedBytes),
      releasedBytes: sum((s) => s.fullSize.releasedBytes),
      netBytes: sum((s) => s.fullSize.netBytes),
    },
  };
}
