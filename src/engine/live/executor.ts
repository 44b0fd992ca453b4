/**
 * Running live plans: the qmp-* steps through a QMP connection, and the plans of every disk of one live
 * operation together, so that the qmp-snapshot steps of all disks go to QEMU as one transaction.
 *
 * Each step is journaled before and after it runs, exactly as offline (executor.ts). On an error before any
 * point of no return, every step done is undone (the new tops are closed in QEMU, renamed back, removed):
 * nothing changed. After one (QEMU switched onto the new tops; a snapshot layer was removed; a commit wrote
 * into the snapshot's layer), the journals stay and `repair` finishes the operation: live when QEMU still
 * runs, with the offline equivalent of each step when it is gone (engine/plan/live-steps.ts).
 *
 * Every step can run twice (repair redoes the step that was running): before acting it looks at QEMU (is the
 * node there, is the job still running, is the chain already switched) and at the headers.
 */
import type { Backend } from '../../backends/backend.js';
import { InvalidInputError, VolchainError, asVolchainError } from '../../errors.js';
import { parseSize } from '../../naming/index.js';
import { readQcow2Header } from '../../qcow2/index.js';
import type { QmpClient } from '../../qmp/client.js';
import {
  blockCommit,
  blockdevAdd,
  blockdevDel,
  blockdevSnapshot,
  blockStream,
  cont,
  jobCancel,
  jobComplete,
  queryJobs,
  queryNamedBlockNodes,
  queryStatus,
  snapshotAction,
  stop,
  transaction,
} from '../../qmp/commands.js';
import { overlayBlockdevs } from '../../qmp/blockdev.js';
import { qmpHasDiscardNoUnref } from '../../qmp/qemu-features.js';
import { QmpJobError } from '../../qmp/errors.js';
import { waitForJob, type JobProgress } from '../../qmp/jobs.js';
import { readBlockView, type QemuChain } from '../../qmp/live-view.js';
import type { Journal } from '../run/journal.js';
import type { LiveStep, Plan, Step } from '../../model/plan.js';
import { isLiveStep, offlineEquivalent } from '../plan/live-steps.js';
import { runOfflineStep } from '../run/offline-step.js';
import { describeStep } from '../plan/describe-step.js';
import { damagesWhenInterrupted, injectFault, isLong, isVolumeName, stepLayers, undoOf, type EngineEvent } from '../run/step-rules.js';
import { delIfPresent, runQmpRename } from './rename.js';
import { currentSettings } from '../../settings.js';

export interface LiveSession {
  client: QmpClient;
  /** The QMP socket (for messages and for the journal). */
  socket: string;
  /** Aborting cancels the block job that is running (job-cancel): its step then fails as cancelled. */
  signal?: AbortSignal;
  /** How often query-jobs is read for progress (default 250 ms). */
  pollIntervalMs?: number;
}

export interface LiveStepContext {
  onProgress: ((percent: number) => void) | undefined;
  redo: boolean;
  live: LiveSession | undefined;
}

/**
 * Runs any step: live ones (qmp-*) here, every other one with engine/run/offline-step.ts. The one place that tells them
 * apart, for executor.ts's runStep (one plan, and repair) and executeGroup below (one live operation); it is
 * here rather than in executor.ts so that neither executor module imports the other (no cycle).
 */
export async function dispatchStep(backend: Backend, vmid: number, step: Step, ctx: LiveStepContext): Promise<void> {
  if (isLiveStep(step)) return runLiveStep(backend, vmid, step, ctx);
  return runOfflineStep(backend, vmid, step, ctx.onProgress, ctx.redo);
}

export async function runLiveStep(backend: Backend, vmid: number, step: LiveStep, ctx: LiveStepContext): Promise<void> {
  const live = ctx.live;
  if (!live) {
    if (!ctx.redo) {
      throw new VolchainError('INTERNAL', `step '${describeStep(step)}' needs a connection to the running QEMU`);
    }
    // Repair after QEMU is gone: reach the same state on disk without it.
    const equivalent = offlineEquivalent(step);
    if (equivalent) await runOfflineStep(backend, vmid, equivalent, ctx.onProgress, true);
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
    case 'qmp-stream': {
      const running = (await queryJobs(c)).some((j) => j.id === step.jobId);
      let start: (() => Promise<unknown>) | undefined;
      if (!running) {
        const chain = await chainOf(live, step.node);
        const below = chain.layers[chain.layers.findIndex((l) => l.node === step.node) + 1]?.node ?? null;
        if (below === step.baseNode && ctx.redo) {
          // Streamed already (the job ended before the journal could say so).
        } else {
          // Data copied into a frozen layer needs room (LVM); files grow by themselves.
          const header = await readQcow2Header(backend.layerPath(vmid, step.layer), step.layer);
          await backend.prepareGrow(vmid, step.layer, header.virtualSize);
          start = () =>
            blockStream(c, {
              jobId: step.jobId,
              ...jobSpeed(),
              device: step.node,
              ...(step.baseNode !== null ? { baseNode: step.baseNode } : {}),
              ...(step.onto !== null ? { backingFile: step.onto } : {}),
            });
        }
      }
      if (running || start) await followJob(live, step.jobId, { start, onProgress: ctx.onProgress, untilReady: false });
      // QEMU wrote the backing name into the child's header on completion: prove it.
      const header = await readQcow2Header(backend.layerPath(vmid, step.layer), step.layer);
      if (header.backingFile !== (step.onto ?? undefined)) {
        throw new VolchainError(
          'INTERNAL',
          `after streaming into ${step.layer} its header names ${JSON.stringify(header.backingFile ?? null)} as backing, expected ${JSON.stringify(step.onto)}`,
        );
      }
      await backend.layerChanged?.(vmid, step.layer);
      if (!isVolumeName(backend, step.layer)) await backend.settleFrozen(vmid, step.layer);
      return;
    }
    case 'qmp-commit': {
      const running = (await queryJobs(c)).some((j) => j.id === step.jobId);
      let start: (() => Promise<unknown>) | undefined;
      if (!running) {
        const chain = await chainOf(live, step.baseNode);
        if (!chain.layers.some((l) => l.node === step.topNode)) {
          if (!ctx.redo) throw new VolchainError('INTERNAL', `QEMU's chain no longer holds node ${step.topNode} of ${step.top}`);
          return; // committed (and for an active commit: pivoted) already
        }
        start = () =>
          blockCommit(c, {
            jobId: step.jobId,
            ...jobSpeed(),
            device: step.rootNode,
            baseNode: step.baseNode,
            // Not for the active layer (QEMU refuses it there): the layer above `top` gets `top`'s name, which
            // is the name `base` takes once the commit is done.
            // Below a filter (PVE's throttle node as `device`), an active commit names its top too, as PVE
            // does: without it QEMU takes the filter itself as the top.
            ...(step.active ? (step.rootNode !== step.topNode ? { topNode: step.topNode } : {}) : { topNode: step.topNode, backingFile: step.top }),
          });
      }
      try {
        await followJob(live, step.jobId, { start, onProgress: ctx.onProgress, untilReady: step.active });
      } catch (err) {
        // QEMU 7.2 leaves the base of a cancelled active commit writable; put it back as it was.
        if (step.active) await restoreReadOnly(live, step.baseNode).catch(() => undefined);
        throw err;
      }
      if (!step.active) await backend.layerChanged?.(vmid, step.base);
      return;
    }
    case 'qmp-pivot': {
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
      try {
        await followJob(live, step.jobId, { start: () => jobComplete(c, step.jobId), onProgress: undefined, untilReady: false });
      } catch (err) {
        await restoreReadOnly(live, step.baseNode).catch(() => undefined);
        throw err;
      }
      const after = await readBlockView(c);
      const stillOnTop = after.chains.some((ch) => ch.layers[0]?.node === step.topNode && ch.devices.length > 0);
      if (stillOnTop) {
        throw new VolchainError('INTERNAL', `the commit of ${step.top} completed but QEMU's disk is still on it, not on ${step.base} (node ${step.baseNode})`);
      }
      await backend.layerChanged?.(vmid, step.base);
      return;
    }
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

/** Switches every disk of one operation in one QMP transaction (all or none, at one instant). */
export async function snapshotTransaction(live: LiveSession, steps: readonly Extract<LiveStep, { kind: 'qmp-snapshot' }>[]): Promise<void> {
  const pending: (typeof steps)[number][] = [];
  for (const s of steps) if (!(await isSwitched(live, s))) pending.push(s);
  if (pending.length === 0) return;
  await transaction(
    live.client,
    pending.map((s) => snapshotAction(s.node, s.overlay)),
  );
}

async function isSwitched(live: LiveSession, step: Extract<LiveStep, { kind: 'qmp-snapshot' }>): Promise<boolean> {
  const chain = await chainOf(live, step.node);
  const at = chain.layers.findIndex((l) => l.node === step.node);
  return at > 0 && chain.layers[at - 1]?.node === step.overlay;
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

/** The chain holding `node`; of several (a leftover node above a layer), the one a device uses. */
async function chainOf(live: LiveSession, node: string): Promise<QemuChain> {
  const view = await readBlockView(live.client);
  const holding = view.chains.filter((ch) => ch.layers.some((l) => l.node === node));
  const chain = holding.find((ch) => ch.devices.length > 0) ?? holding[0];
  if (!chain) {
    throw new VolchainError('INTERNAL', `QEMU at ${live.socket} has no chain with node ${node}: was QEMU restarted since the operation began?`);
  }
  return chain;
}

/**
 * Follows a block job until it concludes (or, `untilReady`, until it is READY: an active commit, which the
 * pivot step completes). Aborting the session's signal cancels the job.
 */
async function followJob(
  live: LiveSession,
  jobId: string,
  o: { start: (() => Promise<unknown>) | undefined; onProgress: ((percent: number) => void) | undefined; untilReady: boolean },
): Promise<void> {
  const c = live.client;
  if (live.signal?.aborted) throw new QmpJobError(jobId, 'cancelled', 'was not started: the operation was cancelled');
  const cancel = (): void => void jobCancel(c, jobId).catch(() => undefined);
  live.signal?.addEventListener('abort', cancel, { once: true });
  const report = (p: JobProgress): void => {
    if (p.total > 0) o.onProgress?.(Math.min(100, (p.current / p.total) * 100));
  };
  try {
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
  } finally {
    live.signal?.removeEventListener('abort', cancel);
  }
}

/**
 * VOLCHAIN_JOB_SPEED (bytes per second, or with K/M/G): a rate limit for live block jobs, to spare the
 * storage while a VM runs (and to make jobs long enough to interrupt in tests). Unset: as fast as possible.
 */
function jobSpeed(): { speed?: number } {
  const raw = currentSettings().jobSpeed;
  if (raw === undefined || raw === '') return {};
  const speed = parseSize(raw);
  if (!(speed > 0)) throw new InvalidInputError(`VOLCHAIN_JOB_SPEED must be a positive number of bytes per second, got '${raw}'`);
  return { speed };
}

// ---- several plans as one operation -----------------------------------------------------------------------

export interface GroupEntry {
  backend: Backend;
  plan: Plan;
  /** Written before anything runs (VM-wide operations journal every disk first). */
  journal: Journal;
}

const isBarrier = (step: Step | undefined): step is Extract<LiveStep, { kind: 'qmp-snapshot' }> => step?.kind === 'qmp-snapshot';

/**
 * Runs the plans of one operation: each plan up to its qmp-snapshot step, then those steps of every plan in
 * one transaction, then the rest. Offline plans (disks QEMU does not have open) run alongside.
 */
export async function executeGroup(
  entries: readonly GroupEntry[],
  live: LiveSession | undefined,
  opts: { onEvent?: (e: EngineEvent) => void } = {},
): Promise<void> {
  const cursor = entries.map(() => 0);
  const done: { entry: number; step: Step }[] = [];
  let running: { entry: number; step: Step }[] = [];

  const begin = async (i: number): Promise<void> => {
    const e = entries[i] as GroupEntry;
    const index = cursor[i] as number;
    const step = e.plan.steps[index] as Step;
    injectFault(e.plan, index, 'before');
    await e.journal.stepStarted(index);
    injectFault(e.plan, index, 'started');
    opts.onEvent?.({ type: 'step', volid: e.plan.volid, index, total: e.plan.steps.length, description: describeStep(step), long: isLong(step) });
  };
  const end = async (i: number): Promise<void> => {
    const e = entries[i] as GroupEntry;
    const index = cursor[i] as number;
    injectFault(e.plan, index, 'after');
    await e.journal.stepDone(index);
    opts.onEvent?.({ type: 'step-done', volid: e.plan.volid, index });
    done.push({ entry: i, step: e.plan.steps[index] as Step });
    cursor[i] = index + 1;
  };

  try {
    for (const e of entries) await e.backend.activate?.(e.plan.vmid, stepLayers(e.plan.steps));
    for (;;) {
      for (const [i, e] of entries.entries()) {
        for (let step = e.plan.steps[cursor[i] as number]; step && !isBarrier(step); step = e.plan.steps[cursor[i] as number]) {
          const index = cursor[i] as number;
          running = [{ entry: i, step }];
          await begin(i);
          await dispatchStep(e.backend, e.plan.vmid, step, {
            onProgress: (percent) => opts.onEvent?.({ type: 'progress', volid: e.plan.volid, index, percent }),
            redo: false,
            live,
          });
          await end(i);
          running = [];
        }
      }
      const waiting = entries.map((_, i) => i).filter((i) => isBarrier(entries[i]?.plan.steps[cursor[i] as number]));
      if (waiting.length === 0) break;
      if (!live) throw new VolchainError('INTERNAL', 'a live snapshot needs a connection to the running QEMU');
      running = waiting.map((i) => ({ entry: i, step: entries[i]?.plan.steps[cursor[i] as number] as Step }));
      for (const i of waiting) await begin(i);
      await snapshotTransaction(live, running.map((r) => r.step).filter(isBarrier));
      for (const i of waiting) await end(i);
      running = [];
    }
  } catch (err) {
    const error = asVolchainError(err);
    const undos = done.map((d) => ({ entry: d.entry, undo: undoOf(d.step) }));
    const undoable = !undos.some((u) => u.undo === 'impossible') && !running.some((r) => damagesWhenInterrupted(r.step));
    if (undoable) {
      try {
        for (const { entry, undo } of undos.reverse()) {
          if (undo === 'nothing' || undo === 'impossible') continue;
          const e = entries[entry] as GroupEntry;
          await dispatchStep(e.backend, e.plan.vmid, undo, { onProgress: undefined, redo: true, live });
        }
      } catch (undoErr) {
        for (const e of entries) await e.journal.fail(error.message);
        throw new VolchainError(
          error.code,
          `${error.message}; undoing what was done also failed (${asVolchainError(undoErr).message}): run 'volchain repair ${entries[0]?.plan.volid ?? ''}'`,
          { cause: err },
        );
      }
      for (const e of entries) await e.journal.finish();
      throw new VolchainError(error.code, `${error.message} (nothing was changed)`, { cause: err });
    }
    const at = running[0];
    const where = at ? ` at '${describeStep(at.step)}' of ${entries[at.entry]?.plan.volid ?? '?'}` : '';
    for (const r of running) await entries[r.entry]?.journal.fail(error.message);
    // Disks whose plan ran to its end are done; the others stay journaled for repair.
    for (const [i, e] of entries.entries()) if ((cursor[i] as number) >= e.plan.steps.length) await e.journal.finish();
    const volids = entries.filter((_, i) => (cursor[i] as number) < (entries[i]?.plan.steps.length ?? 0)).map((e) => e.plan.volid);
    const repair = volids.length === 1 ? `volchain repair ${volids[0] ?? ''}` : 'volchain repair --all';
    throw new VolchainError(
      error.code,
      `${error.message}; the ${entries[0]?.plan.operation ?? 'operation'} stopped${where}: run '${repair}' to finish it ` +
        '(it talks to QEMU if it still runs, else finishes offline)',
      { cause: err },
    );
  }
  for (const e of entries) await e.journal.finish();
}
