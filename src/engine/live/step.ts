/**
 * Running one step of a plan through a QMP connection: the qmp-* steps (the job steps in step-jobs.ts), and
 * dispatchStep, the one place that tells live steps from offline ones, for engine/run/executor.ts's runStep
 * (one plan, and repair) and engine/live/group.ts (one live operation); it is here rather than in
 * engine/run/executor.ts so that neither executor module imports the other (no cycle).
 *
 * Every step can run twice (repair redoes the step that was running): before acting it looks at QEMU (is the
 * node there, is the job still running, is the chain already switched) and at the headers. Without QEMU
 * (it is gone when repair runs), a live step runs its offline equivalent (engine/plan/live-steps.ts).
 */
import type { Backend } from '../../backends/backend.js';
import { VolchainError } from '../../errors.js';
import { blockdevAdd, blockdevDel, blockdevSnapshot, cont, queryNamedBlockNodes, queryStatus } from '../../qmp/commands.js';
import { overlayBlockdevs } from '../../qmp/blockdev.js';
import { qmpHasDiscardNoUnref } from '../../qmp/qemu-features.js';
import type { LiveStep, Step } from '../../model/plan.js';
import { isLiveStep, offlineEquivalent } from '../plan/live-steps.js';
import { runOfflineStep } from '../run/offline-step.js';
import { describeStep } from '../plan/describe-step.js';
import { delIfPresent, runQmpRename } from './rename.js';
import { isSwitched, type LiveStepContext } from './qemu-session.js';
import { runQmpCommit, runQmpPivot, runQmpStream } from './step-jobs.js';

/** Runs any step: live ones (qmp-*) here, every other one with engine/run/offline-step.ts. */
export async function dispatchStep(backend: Backend, vmid: number, step: Step, ctx: LiveStepContext): Promise<void> {
  if (isLiveStep(step)) return runLiveStep(backend, vmid, step, ctx);
  return runOfflineStep(backend, vmid, step, { onProgress: ctx.onProgress, redo: ctx.redo });
}

export async function runLiveStep(backend: Backend, vmid: number, step: LiveStep, ctx: LiveStepContext): Promise<void> {
  const live = ctx.live;
  if (!live) {
    if (!ctx.redo) {
      throw new VolchainError('INTERNAL', `step '${describeStep(step)}' needs a connection to the running QEMU`);
    }
    // Repair after QEMU is gone: reach the same state on disk without it.
    const equivalent = offlineEquivalent(step);
    if (equivalent) await runOfflineStep(backend, vmid, equivalent, { onProgress: ctx.onProgress, redo: true });
    return;
  }
  const c = live.client;
  switch (step.kind) {
    case 'qmp-open': {
      const existing = new Set((await queryNamedBlockNodes(c)).map((n) => n['node-name']));
      const { nodes } = overlayBlockdevs(
        backend.id,
        { name: step.layer, path: backend.layerPath(vmid, step.layer), names: { format: step.node, protocol: step.protocolNode } },
        { discardNoUnref: await qmpHasDiscardNoUnref(c) },
      );
      const [proto, format] = nodes;
      if (!existing.has(proto['node-name'])) await blockdevAdd(c, proto);
      if (existing.has(format['node-name'])) return;
      try {
        await blockdevAdd(c, format);
      } catch (err) {
        await blockdevDel(c, proto['node-name']).catch(() => undefined);
        throw err;
      }
      return;
    }
    case 'qmp-snapshot':
      if (await isSwitched(live, step)) return;
      await blockdevSnapshot(c, { node: step.node, overlay: step.overlay });
      return;
    case 'qmp-stream':
      return runQmpStream(backend, vmid, step, live, ctx);
    case 'qmp-commit':
      return runQmpCommit(backend, vmid, step, live, ctx);
    case 'qmp-pivot':
      return runQmpPivot(backend, vmid, step, live);
    case 'qmp-resume': {
      if (!step.resume) return;
      const status = await queryStatus(c);
      if (!status.running && status.status === 'paused') await cont(c);
      return;
    }
    case 'qmp-rename':
      return runQmpRename(
        c,
        live.socket,
        backend.layerPath(vmid, step.layer),
        step.openedAs !== undefined ? backend.layerPath(vmid, step.openedAs) : undefined,
        step,
      );
    case 'qmp-close':
      // One at a time: deleting a format node also frees a file node nested in it (nodes volchain's
      // qmp-rename or PVE opened), and nested nodes are freed with their parent.
      for (const node of step.nodes) await delIfPresent(c, node);
      return;
  }
}
