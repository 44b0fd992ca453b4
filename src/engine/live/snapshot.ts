/**
 * Live snapshot operations: snapshots of the disks of a running VM, through QEMU's QMP socket, under the same
 * per-VM lock and journal as offline operations.
 *
 * Order of every live operation (the Incus failure in DESIGN.md section 8 is the reason for the order):
 * 1. take the VM's lock (every storage holding one of its disks), refuse over an unfinished operation;
 * 2. read and validate every header of every disk (readVolumeTree), read QEMU's block graph, and check that
 *    both agree for every disk QEMU has open (engine/live/match.ts, engine/live/live-state.ts); refuse on any
 *    disagreement, on a block job QEMU is running, or on nodes whose volume cannot be told;
 * 3. plan every disk (live planners for disks QEMU has open, offline planners for the others), journal every
 *    plan, and only then change anything (engine/live/group.ts);
 * 4. read both again and check that they still agree.
 *
 * Which QEMU: engine/live/socket.ts.
 */
import { randomUUID } from 'node:crypto';
import type { Backend } from '../../backends/backend.js';
import type { VolumeRef } from '../../naming/index.js';
import { readBlockView } from '../../qmp/live-view.js';
import type { EngineEvent } from '../run/step-rules.js';
import { Journal } from '../run/journal.js';
import { executeGroup } from './group.js';
import type { LiveSession } from './qemu-session.js';
import { matchVm, type DiskMatch } from './match.js';
import { planLiveSnapshotCreate, planLiveSnapshotDelete, type LiveDisk } from '../planners/live.js';
import type { Plan } from '../../model/plan.js';
import { planSnapshotCreate } from '../planners/snapshot-create.js';
import { planSnapshotDelete } from '../planners/snapshot-delete.js';
import { type PlanContext } from '../planners/rules.js';
// The façade's part live operations use (not volchain.ts itself, which imports this module).
import type { LiveHost as Volchain } from './host.js';
import { readVolumeTree, type VolumeTree } from '../read/volume-tree.js';
import { connectVm, qemuVersion } from './socket.js';
import { runningVmError } from '../session/running-vm.js';
import { checkAgreement, liveDiskOf, readLiveState, refuseWrongQemu, targetDisks, type LiveTarget } from './live-state.js';

export interface LiveOptions {
  /** QEMU's QMP socket: the VM runs and has (some of) the disks open. */
  qmp?: string;
  /** Aborting cancels the block job that is running; the operation then fails (see engine/live/step-jobs.ts). */
  signal?: AbortSignal;
}

export interface LiveCallOptions extends LiveOptions {
  dryRun?: boolean;
  onEvent?: (event: EngineEvent) => void;
  /** A storage skipped while looking for a VM's disks without its config (see vm-disks.ts). */
  onWarning?: (message: string) => void;
}

function ctxOf(backend: Backend): PlanContext {
  return { kind: backend.kind, volumeChain: backend.capabilities.volumeChain, fixedSizeLayers: backend.capabilities.fixedSizeLayers };
}

type LivePlanner = (d: DiskMatch, live: LiveDisk | undefined) => Plan;

/**
 * Runs one live operation: connect (or return undefined when the VM does not run), lock, validate, plan every
 * disk, journal, execute, validate again.
 */
async function runLive(vc: Volchain, target: LiveTarget, operation: string, opts: LiveCallOptions, planner: LivePlanner): Promise<Plan[] | undefined> {
  const { vmid, disks } = await targetDisks(vc, target, opts.onWarning);
  const conn = await connectVm(vmid, opts.qmp, vc.settings);
  if (!conn) return undefined;
  const session: LiveSession = { client: conn.client, socket: conn.socket, jobSpeed: vc.settings.jobSpeed, ...(opts.signal ? { signal: opts.signal } : {}) };
  try {
    const work = async (): Promise<Plan[]> => {
      const state = await readLiveState(conn.client, conn.socket, disks);
      if (opts.qmp !== undefined) refuseWrongQemu(vmid, conn.socket, state.disks);
      const planned = state.disks.map((d) => ({
        backend: d.backend,
        plan: planner(d, d.chain ? liveDiskOf(d, conn.socket, state.running, qemuVersion(conn.client), vc.settings.hooks) : undefined),
      }));
      if (opts.dryRun) return planned.map((p) => p.plan);
      const group = planned.length > 1 ? randomUUID() : undefined;
      const entries = [];
      for (const p of planned) entries.push({ ...p, journal: await Journal.begin(p.backend.journal(), p.backend.id, p.plan, group) });
      await executeGroup(entries, session, { hooks: vc.settings.hooks, ...(opts.onEvent ? { onEvent: opts.onEvent } : {}) });
      await checkAgreement(conn.client, conn.socket, disks, operation);
      return planned.map((p) => p.plan);
    };
    if (opts.dryRun) return await work();
    return await vc.withVmLocks(
      disks.map((d) => d.backend),
      vmid,
      operation,
      work,
    );
  } finally {
    await conn.client.close();
  }
}

/** Snapshot `snapshot` of the target's disks while the VM runs; undefined when it does not run. */
export function liveSnapshotCreate(vc: Volchain, target: LiveTarget, snapshot: string, opts: LiveCallOptions = {}): Promise<Plan[] | undefined> {
  const nonce = `${Date.now().toString(36)}-${randomUUID().slice(0, 8)}`;
  return runLive(vc, target, 'live snapshot', opts, (d, live) =>
    live ? planLiveSnapshotCreate(d.tree, ctxOf(d.backend), snapshot, live, nonce) : planSnapshotCreate(d.tree, ctxOf(d.backend), snapshot),
  );
}

/** Deletes `snapshot` of the target's disks while the VM runs; undefined when it does not run. */
export function liveSnapshotDelete(vc: Volchain, target: LiveTarget, snapshot: string, opts: LiveCallOptions = {}): Promise<Plan[] | undefined> {
  return runLive(vc, target, 'live snapshot delete', opts, (d, live) =>
    live ? planLiveSnapshotDelete(d.tree, ctxOf(d.backend), snapshot, live) : planSnapshotDelete(d.tree, ctxOf(d.backend), snapshot),
  );
}

/**
 * Rollback replaces the layer the guest writes into: refused (exit 6) while QEMU has any of the target's disks open.
 * Returns when the VM does not run (or has none of them open).
 */
export async function refuseLiveRollback(vc: Volchain, target: LiveTarget, opts: LiveOptions = {}): Promise<void> {
  const { vmid, disks } = await targetDisks(vc, target);
  const conn = await connectVm(vmid, opts.qmp, vc.settings);
  if (!conn) return;
  try {
    const inputs: { backend: Backend; volume: VolumeRef; tree: VolumeTree }[] = [];
    for (const d of disks) inputs.push({ ...d, tree: await readVolumeTree(d.backend, d.volume) });
    const match = matchVm(await readBlockView(conn.client), inputs);
    if (opts.qmp !== undefined) refuseWrongQemu(vmid, conn.socket, match.disks);
    const open = match.disks.filter((d) => d.chain !== undefined || d.detached.length > 0).map((d) => d.volid);
    if (open.length > 0) {
      // Exit 6, as every "the VM is running" refusal (session/running-vm.ts).
      throw runningVmError(
        {
          vmid,
          operation: 'snapshot-rollback',
          ...('volid' in target ? { volid: target.volid } : {}),
          why: `a rollback replaces the layer the guest writes into (QEMU has ${open.join(', ')} open)`,
          hint: 'shut the VM down, roll back, and start it again (volchain qemu-args prints how to open the disks)',
        },
        conn.socket,
      );
    }
  } finally {
    await conn.client.close();
  }
}
