/**
 * Space figures that need the backend (one `qemu-img measure` per layer size on fixed-size storages): the
 * full size of layers for listings, and a dry run's space estimate (engine/plan/space.ts does the sums).
 * Reads only.
 */
import type { Backend } from '../../backends/backend.js';
import { VolchainError } from '../../errors.js';
import type { Plan } from '../../model/plan.js';
import { estimatePlanSpace, layersFrozenBy, spaceEstimable } from '../plan/space.js';
import type { VolumeTree } from './volume-tree.js';

/**
 * Full sizes of layers of these virtual sizes, from a backend with fixed-size layers (one `qemu-img measure`
 * per distinct size, cached); undefined for storages whose layers grow on demand.
 */
export async function fullSizes(backend: Backend, virtualSizes: readonly number[]): Promise<((virtualSize: number) => number) | undefined> {
  if (!backend.capabilities.layerSizing) return undefined;
  const sizes = new Map<number, number>();
  for (const v of virtualSizes) if (!sizes.has(v)) sizes.set(v, await backend.fullLayerBytes(v));
  return (v) => {
    const bytes = sizes.get(v);
    if (bytes === undefined) throw new VolchainError('INTERNAL', `no full layer size measured for ${v} bytes`);
    return bytes;
  };
}

/**
 * A dry run's plan with its space estimate (space.ts) when the backend has fixed-size layers and the plan is
 * one the estimate covers (a snapshot create); otherwise the plan as it is.
 */
export async function withSpace(backend: Backend, tree: VolumeTree, plan: Plan): Promise<Plan> {
  if (!backend.capabilities.layerSizing || !spaceEstimable(plan)) return plan;
  const full = await fullSizes(
    backend,
    plan.steps.flatMap((s) => (s.kind === 'create-overlay' ? [s.sizeBytes] : [])),
  );
  const frozen = new Map<string, number | undefined>();
  for (const name of layersFrozenBy(plan)) frozen.set(name, await backend.frozenLayerBytes(tree.volume.vmid, name));
  const space = estimatePlanSpace(plan, {
    fullLayerBytes: (v) => (full ? full(v) : 0),
    layerBytes: (name) => tree.layers.get(name)?.usedBytes,
    frozenLayerBytes: (name) => frozen.get(name),
  });
  return space ? { ...plan, space } : plan;
}
