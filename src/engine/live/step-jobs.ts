/**
 * The qmp-* steps that run a block job (stream, commit, and the pivot that completes an active commit), and
 * how a job is followed: progress, cancellation through the session's signal, the rate limit
 * (VOLCHAIN_JOB_SPEED), and putting a layer back read-only when a job left it writable.
 *
 * Each can run twice (repair redoes the step that was running): before starting a job it looks whether the
 * job still runs, or whether QEMU's chain shows the job's effect already.
 */
import type { Backend } from '../../backends/backend.js';
import { InvalidInputError, VolchainError } from '../../errors.js';
import { parseSize } from '../../naming/index.js';
import { readQcow2Header } from '../../qcow2/index.js';
import { blockCommit, blockStream, jobCancel, jobComplete, queryJobs, queryStatus, stop } from '../../qmp/commands.js';
import { qmpHasDiscardNoUnref } from '../../qmp/qemu-features.js';
import { QmpJobError } from '../../qmp/errors.js';
import { waitForJob, type JobProgress } from '../../qmp/jobs.js';
import { readBlockView } from '../../qmp/live-view.js';
import type { LiveStep } from '../../model/plan.js';
import { isVolumeName } from '../run/step-rules.js';
import { chainOf, type LiveSession, type LiveStepContext } from './qemu-session.js';

/** block-stream of the snapshot's data into its child on QEMU's chain; the child's header then names the new backing. */
export async function runQmpStream(
  backend: Backend,
  vmid: number,
  step: Extract<LiveStep, { kind: 'qmp-stream' }>,
  live: LiveSession,
  ctx: LiveStepContext,
): Promise<void> {
  await runJobOnce(live, step.jobId, { onProgress: ctx.onProgress, untilReady: false }, async () => {
    const chain = await chainOf(live, step.node);
    const below = chain.layers[chain.layers.findIndex((l) => l.node === step.node) + 1]?.node ?? null;
    if (below === step.baseNode && ctx.redo) return undefined; // streamed already (the job ended before the journal could say so)
    // Data copied into a frozen layer needs room (LVM); files grow by themselves.
    const header = await readQcow2Header(backend.layerPath(vmid, step.layer), step.layer);
    await backend.prepareGrow(vmid, step.layer, header.virtualSize);
    return () =>
      blockStream(live.client, {
        jobId: step.jobId,
        ...jobSpeed(live),
        device: step.node,
        ...(step.baseNode !== null ? { baseNode: step.baseNode } : {}),
        ...(step.onto !== null ? { backingFile: step.onto } : {}),
      });
  });
  // QEMU wrote the backing name into the child's header on completion: prove it.
  const header = await readQcow2Header(backend.layerPath(vmid, step.layer), step.layer);
  if (header.backingFile !== (step.onto ?? undefined)) {
    throw new VolchainError(
      'INTERNAL',
      `after streaming into ${step.layer} its header names ${JSON.stringify(header.backingFile ?? null)} as backing, expected ${JSON.stringify(step.onto)}`,
    );
  }
  await backend.layerChanged(vmid, step.layer);
  if (!isVolumeName(backend, step.layer)) await backend.settleFrozen(vmid, step.layer);
}

/** block-commit of a layer into the snapshot below it; for the active layer, until the job is ready (the pivot completes it). */
export async function runQmpCommit(
  backend: Backend,
  vmid: number,
  step: Extract<LiveStep, { kind: 'qmp-commit' }>,
  live: LiveSession,
  ctx: LiveStepContext,
): Promise<void> {
  // QEMU 7.2 leaves the base of a cancelled active commit writable: put back as it was if the job fails.
  const follow = { onProgress: ctx.onProgress, untilReady: step.active, ...(step.active ? { readOnlyOnFailure: step.baseNode } : {}) };
  const ran = await runJobOnce(live, step.jobId, follow, async () => {
    const chain = await chainOf(live, step.baseNode);
    if (!chain.layers.some((l) => l.node === step.topNode)) {
      if (!ctx.redo) throw new VolchainError('INTERNAL', `QEMU's chain no longer holds node ${step.topNode} of ${step.top}`);
      return undefined; // committed (and for an active commit: pivoted) already
    }
    return () =>
      blockCommit(live.client, {
        jobId: step.jobId,
        ...jobSpeed(live),
        device: step.rootNode,
        baseNode: step.baseNode,
        // Not for the active layer (QEMU refuses it there): the layer above `top` gets `top`'s name, which
        // is the name `base` takes once the commit is done.
        // Below a filter (PVE's throttle node as `device`), an active commit names its top too, as PVE
        // does: without it QEMU takes the filter itself as the top.
        ...(step.active ? (step.rootNode !== step.topNode ? { topNode: step.topNode } : {}) : { topNode: step.topNode, backingFile: step.top }),
      });
  });
  if (ran && !step.active) await backend.layerChanged(vmid, step.base);
}

/** Completes an active commit (job-complete), with the guest paused when it ran: QEMU switches onto the base. */
export async function runQmpPivot(backend: Backend, vmid: number, step: Extract<LiveStep, { kind: 'qmp-pivot' }>, live: LiveSession): Promise<void> {
  const c = live.client;
  const running = (await queryJobs(c)).some((j) => j.id === step.jobId);
  if (!running) {
    // No job: it completed (QEMU runs on the base) or it is gone without completing; only a device tells.
    const view = await readBlockView(c);
    if (view.chains.some((ch) => ch.layers[0]?.node === step.baseNode && ch.devices.length > 0)) return;
    throw new VolchainError(
      'INTERNAL',
      `QEMU at ${live.socket} has no job ${step.jobId} and no device on ${step.base} (node ${step.baseNode}): ` +
        'the commit was cancelled or QEMU was restarted; stop the VM and run repair again',
    );
  }
  if (step.resume && (await queryStatus(c)).running) await stop(c);
  await followJob(live, step.jobId, { start: () => jobComplete(c, step.jobId), onProgress: undefined, untilReady: false, readOnlyOnFailure: step.baseNode });
  const after = await readBlockView(c);
  const stillOnTop = after.chains.some((ch) => ch.layers[0]?.node === step.topNode && ch.devices.length > 0);
  if (stillOnTop) {
    throw new VolchainError('INTERNAL', `the commit of ${step.top} completed but QEMU's disk is still on it, not on ${step.base} (node ${step.baseNode})`);
  }
  await backend.layerChanged(vmid, step.base);
}

/**
 * Reopens a layer below the top read-only again (blockdev-reopen of its format node with the same children),
 * when a job left it writable. The protocol node keeps its descriptor: nothing is reopened by name.
 */
async function restoreReadOnly(live: LiveSession, node: string): Promise<void> {
  const view = await readBlockView(live.client);
  const chain =
    view.chains.find((ch) => ch.layers.some((l) => l.node === node) && ch.devices.length > 0) ??
    view.chains.find((ch) => ch.layers.some((l) => l.node === node));
  const at = chain?.layers.findIndex((l) => l.node === node) ?? -1;
  const l = chain?.layers[at];
  if (!chain || at <= 0 || !l || l.readOnly || l.protocolNode === undefined) return;
  const info = view.nodes.find((n) => n['node-name'] === node);
  await live.client.execute('blockdev-reopen', {
    options: [
      {
        driver: l.driver,
        'node-name': node,
        file: l.protocolNode,
        ...(l.driver === 'qcow2' ? { backing: chain.layers[at + 1]?.node ?? null } : {}),
        'read-only': true,
        discard: 'unmap',
        'detect-zeroes': info?.detect_zeroes ?? 'unmap',
        // A reopen resets every option not given: keep PVE's bug-6543 option where the QEMU has it.
        ...(l.driver === 'qcow2' && (await qmpHasDiscardNoUnref(live.client)) ? { 'discard-no-unref': true } : {}),
      },
    ],
  });
}

/** How a job is followed; `readOnlyOnFailure`: the node of a layer that a failed or cancelled job may leave writable, reopened read-only then. */
interface FollowOptions {
  onProgress: ((percent: number) => void) | undefined;
  untilReady: boolean;
  readOnlyOnFailure?: string;
}

/**
 * The one way a step runs its job, so that the step can run twice: when QEMU still runs the job (repair
 * redoing the step that was running), follows it; else `prepare` starts it, or returns undefined when QEMU's
 * chain shows the job's effect already. Returns whether a job ran.
 */
async function runJobOnce(live: LiveSession, jobId: string, o: FollowOptions, prepare: () => Promise<(() => Promise<unknown>) | undefined>): Promise<boolean> {
  const running = (await queryJobs(live.client)).some((j) => j.id === jobId);
  const start = running ? undefined : await prepare();
  if (!running && !start) return false;
  await followJob(live, jobId, { ...o, start });
  return true;
}

/**
 * Follows a block job until it concludes (or, `untilReady`, until it is READY: an active commit, which the
 * pivot step completes). Aborting the session's signal cancels the job.
 */
async function followJob(live: LiveSession, jobId: string, o: FollowOptions & { start: (() => Promise<unknown>) | undefined }): Promise<void> {
  const c = live.client;
  const cancel = (): void => void jobCancel(c, jobId).catch(() => undefined);
  const report = (p: JobProgress): void => {
    if (p.total > 0) o.onProgress?.(Math.min(100, (p.current / p.total) * 100));
  };
  try {
    if (live.signal?.aborted) throw new QmpJobError(jobId, 'cancelled', 'was not started: the operation was cancelled');
    live.signal?.addEventListener('abort', cancel, { once: true });
    await new Promise<void>((resolve, reject) => {
      const job = waitForJob(c, jobId, {
        ...(o.start ? { start: o.start } : {}),
        whenReady: 'wait',
        pollIntervalMs: live.pollIntervalMs ?? 250,
        onProgress: (p) => {
          report(p);
          if (o.untilReady && p.status === 'ready') resolve();
        },
      });
      job.then(() => (o.untilReady ? reject(new QmpJobError(jobId, 'failed', 'ended before it was ready to complete')) : resolve()), reject);
    });
  } catch (err) {
    if (o.readOnlyOnFailure !== undefined) await restoreReadOnly(live, o.readOnlyOnFailure).catch(() => undefined);
    throw err;
  } finally {
    live.signal?.removeEventListener('abort', cancel);
  }
}

/**
 * VOLCHAIN_JOB_SPEED (bytes per second, or with K/M/G): a rate limit for live block jobs, to spare the
 * storage while a VM runs (and to make jobs long enough to interrupt in tests). Unset: as fast as possible.
 */
function jobSpeed(live: LiveSession): { speed?: number } {
  const raw = live.jobSpeed; // the session's setting, carried by the connection
  if (raw === undefined || raw === '') return {};
  const speed = parseSize(raw);
  if (!(speed > 0)) throw new InvalidInputError(`VOLCHAIN_JOB_SPEED must be a positive number of bytes per second, got '${raw}'`);
  return { speed };
}
