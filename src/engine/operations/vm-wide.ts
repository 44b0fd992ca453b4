/**
 * One operation on every disk of a VM, offline (the live variants are engine/live/snapshot.ts): the VM's
 * locks on every storage involved, every disk planned first (bad input fails before anything changes), every
 * disk's plan journaled before any runs (a crash leaves each for `repair --all`), then each executed. When
 * one disk fails, either the disks finished before it are walked back through the journaled undo
 * (run/vm-undo.ts), or every disk not finished stays journaled for `repair --all`.
 */
import { randomUUID } from 'node:crypto';
import type { Backend } from '../../backends/backend.js';
import { VolchainError, asVolchainError } from '../../errors.js';
import type { Plan } from '../../model/plan.js';
import { parseVmid } from '../../naming/index.js';
import type { VmTargetOptions } from '../read/vm-disks.js';
import { readVolumeTree, type VolumeTree } from '../read/volume-tree.js';
import { withSpace } from '../read/space-figures.js';
import { needsRepair } from '../run/error-fields.js';
import { executePlan } from '../run/executor.js';
import { undoStepsOf } from '../run/undo.js';
import { Journal } from '../run/journal.js';
import { vmOperationStopped } from '../run/vm-failure.js';
import { walkBackFinished } from '../run/vm-undo.js';
import type { HeldLock } from '../session/lock.js';
import type { VolumePlanner } from '../session/mutate.js';
import { refusePending } from '../session/refusals.js';
import type { Session } from '../session/session.js';
import { holdVmLocks, uniqueBackends } from '../session/vm-lock.js';
import type { CallOptions } from './types.js';

export type VmWideOptions = CallOptions & VmTargetOptions;

/** What a VM-wide operation does on each disk, and what it does when one disk fails. */
export interface VmWideOperation {
  /** Its name in messages and lock files ('vm snapshot'). */
  operation: string;
  /** The pure planner of one disk's plan. */
  plan: VolumePlanner;
  /**
   * On a failure, walk back the disks already finished (run/vm-undo.ts), so that the VM is as before (vm
   * snapshot: every step of its plans has an undo). Otherwise the failed disk and the ones after it stay
   * journaled for `repair --all` to finish the operation (vm rollback and delsnapshot have no way back).
   */
  walkBackOnFailure: boolean;
}

export async function vmOperation(session: Session, vmidText: string | number, opts: VmWideOptions, what: VmWideOperation): Promise<Plan[]> {
  const { operation } = what;
  const vmid = typeof vmidText === 'number' ? vmidText : parseVmid(vmidText);
  const disks = await session.vmVolumes(vmid, opts.storage, opts.vmConfig, opts.onWarning);
  const locks: HeldLock[] = [];
  try {
    const backends = uniqueBackends(disks.map((d) => d.backend));
    if (!opts.dryRun) locks.push(...(await holdVmLocks(session.locks, backends, vmid, operation)));
    // Dry runs too: a disk whose top an unfinished operation renamed away is not even listed.
    for (const backend of backends) await refusePending(backend, vmid);
    const planned: { backend: Backend; tree: VolumeTree; plan: Plan }[] = [];
    for (const { backend, volume } of disks) {
      const tree = await readVolumeTree(backend, volume);
      const plan = what.plan(tree, session.planContext(backend));
      // A plan that could not be walked back whole is a programming error: found before anything changes.
      if (what.walkBackOnFailure) undoStepsOf(plan, plan.steps.length);
      planned.push({ backend, tree, plan });
    }
    if (opts.dryRun) {
      const out: Plan[] = [];
      for (const p of planned) out.push(await withSpace(p.backend, p.tree, p.plan));
      return out;
    }
    // Every disk's plan is journaled before any of them runs: after a crash, repair finishes all of them,
    // so a VM-wide operation never stays done on some disks only.
    const group = randomUUID();
    const journals: Journal[] = [];
    for (const p of planned) journals.push(await Journal.begin(p.backend.journal(), p.backend.id, p.plan, group));
    for (const [i, p] of planned.entries()) {
      try {
        const keep = { keepJournalWhenUndone: !what.walkBackOnFailure };
        const journal = journals[i] as Journal;
        await executePlan(p.backend, p.plan, { hooks: session.settings.hooks, ...(opts.onEvent ? { onEvent: opts.onEvent } : {}), journal, ...keep });
      } catch (err) {
        const done = planned.slice(0, i);
        if (!what.walkBackOnFailure)
          throw vmOperationStopped(
            operation,
            vmid,
            p.plan.volid,
            done.map((d) => d.tree.volid),
            planned.slice(i).map((q) => q.plan.volid),
            err,
          );
        // This disk's own steps were walked back by the executor (journaled); the disks after it never started.
        const error = asVolchainError(err);
        for (const j of journals.slice(i + 1)) await j.finish();
        try {
          const finished = done.map((d, k) => ({ backend: d.backend, journal: journals[k] as Journal }));
          await walkBackFinished(finished, `${operation} of VM ${vmid} failed on ${p.plan.volid}: ${error.message}`, session.settings.hooks);
        } catch (undoErr) {
          throw new VolchainError(
            error.code,
            `${error.message}; undoing the other disks also failed: ${asVolchainError(undoErr).message}: run 'volchain repair --all' to finish the undo`,
            needsRepair({ vmid, operation, volid: p.plan.volid }, undoErr),
          );
        }
        const others = done.length > 0 ? `; the ${done.length} disk(s) already done were restored` : '';
        throw new VolchainError(error.code, `${operation} of VM ${vmid} failed on ${p.plan.volid}: ${error.message}${others}`, { cause: err });
      }
    }
    return planned.map((p) => p.plan);
  } finally {
    for (const lock of locks.reverse()) await lock.release();
  }
}
