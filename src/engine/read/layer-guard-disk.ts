/**
 * The checks of engine/read/layer-guard.ts once more, against the headers on disk right before a plan's first step.
 *
 * Why twice: planners judge the tree they were given, and on LVM a layer that is inactive on this host is
 * known there only from its LV tags (no header, so no corrupt bit and no internal snapshots to judge). The
 * executor activates the layers a plan uses before anything is written; this reads their headers then, so a
 * plan made from tags is refused exactly like one made from headers, still before anything changes.
 */
import type { Backend } from '../../backends/backend.js';
import { NotFoundError } from '../../errors.js';
import { readQcow2Header } from '../../qcow2/index.js';
import { guardSteps } from './layer-guard.js';
import type { Plan } from '../../model/plan.js';
import type { LayerNode } from './volume-tree.js';

/**
 * Throws what guardSteps throws for `plan`, judged on the current headers of the layers its steps name.
 * Layers that do not exist yet (made by the plan) are skipped. `free` is never judged (it removes everything
 * on purpose), nor are raw volumes (no qcow2 header, no snapshots).
 */
export async function guardPlanOnDisk(backend: Backend, plan: Plan, layerNames: readonly string[]): Promise<void> {
  if (plan.operation === 'free') return;
  // convert reads a raw volume (no header) and makes its only qcow2 layer itself, judged by its verify step;
  // template runs only where bases exist (dir), whose headers the planner read from disk moments before.
  if (plan.operation === 'convert' || plan.operation === 'template') return;
  if (plan.steps.some((s) => s.kind === 'resize' && s.format === 'raw')) return;
  const layers = new Map<string, LayerNode>();
  for (const name of layerNames) {
    const path = backend.layerPath(plan.vmid, name);
    let header;
    try {
      header = await readQcow2Header(path, name);
    } catch (err) {
      if (err instanceof NotFoundError) continue;
      throw err;
    }
    layers.set(name, {
      name,
      snapshot: undefined,
      parent: header.backingFile,
      children: [],
      path,
      virtualSize: header.virtualSize,
      definedBytes: 0,
      usedBytes: 0,
      header,
    });
  }
  guardSteps({ layers }, plan.steps);
}
