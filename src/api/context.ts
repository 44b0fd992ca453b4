/**
 * What the routes share: the library, the task list, the token store and the lock probe, and the one way
 * a mutating route runs (mutation(): dry run at once, else probe the lock and start a task).
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Backend } from '../backends/backend.js';
import type { CallOptions, Volchain } from '../engine/volchain.js';
import type { Plan } from '../model/plan.js';
import type { PlansJson } from '../results.js';
import type { HeldReservation, LockProbe } from './lock-probe.js';
import type { TaskManager, TaskReporter, TaskTarget } from './tasks.js';
import type { TokenInfo, TokenStore } from './tokens.js';

export interface ApiContext {
  vc: Volchain;
  tasks: TaskManager;
  tokens: TokenStore;
  probe: LockProbe;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** The token the request authenticated with (set by the auth hook; absent only on public routes). */
    volchainToken?: TokenInfo;
  }
}

/** Which VM lock a mutation takes: the storages (backends) of the VM's disks, and whether to refuse over a journal. */
export interface LockTarget {
  backends: readonly Backend[];
  vmid: number;
  /** false for repair, which is what finishes an unfinished operation. */
  refusePending: boolean;
}

export interface RunExtra {
  warnings: string[];
  /** The task's reporter (log lines, bytes); undefined for a dry run. */
  reporter: TaskReporter | undefined;
}

export interface Mutation {
  operation: string;
  target: TaskTarget;
  dryRun: boolean;
  /**
   * Plan-based operations: after the lock probe, the plan is made once as a dry run before the task is
   * accepted, so what the planner refuses (a missing or existing snapshot, a raw volume, too little space)
   * is this request's error (4xx), not a failed task.
   */
  planFirst: boolean;
  /**
   * The VM's lock to try before accepting the task (several: every VM the operation locks, as clone and move
   * lock source and target); undefined when the operation takes no single VM's lock.
   */
  lock: (() => Promise<LockTarget | LockTarget[]>) | undefined;
  /**
   * The library call; its value is the task's result (or, with dryRun, the response). `warnings` collects
   * what the call was told to warn about (onWarning), for the result's `warnings`.
   */
  run: (call: CallOptions, extra: RunExtra) => Promise<unknown>;
}

/**
 * Runs a mutating request: with dryRun the plan comes back now (200, nothing written, no task); else the
 * VM's lock is tried (409 naming the holder), a task is recorded and started, and 202 names it.
 */
export async function mutation(ctx: ApiContext, request: FastifyRequest, reply: FastifyReply, m: Mutation): Promise<void> {
  if (m.dryRun) {
    const warnings: string[] = [];
    const onWarning = (w: string): void => {
      if (!warnings.includes(w)) warnings.push(w);
    };
    // Sent here, not returned: the route's handler resolves with nothing once the reply is sent (awaiting
    // the reply itself would wait for the response to be written, which the handler's end is part of).
    void reply.code(200).send(await m.run({ dryRun: true, onWarning }, { warnings, reporter: undefined }));
    return;
  }
  const reservation = m.lock ? await reserveAll(ctx, await m.lock(), m.operation) : undefined;
  let task;
  try {
    const planned = m.planFirst ? await m.run({ dryRun: true, onWarning: () => undefined }, { warnings: [], reporter: undefined }) : null;
    task = await ctx.tasks.start(
      m.operation,
      m.target,
      request.volchainToken?.name ?? '',
      (reporter) => {
        const warnings: string[] = [];
        return m.run(
          {
            dryRun: false,
            onEvent: (e) => reporter.onEvent(e),
            onWarning: (w) => {
              if (!warnings.includes(w)) warnings.push(w);
              reporter.log(`warning: ${w}`);
            },
          },
          { warnings, reporter },
        );
      },
      () => reservation?.release(),
      planned,
    );
  } catch (err) {
    reservation?.release();
    throw err;
  }
  reservation?.setTask(task.id);
  request.log.info({ task: task.id, operation: m.operation, target: m.target, token: task.owner }, 'task started');
  void reply
    .code(202)
    .header('location', `/api/tasks/${task.id}`)
    .send({ task: task.id, state: task.state, href: `/api/tasks/${task.id}` });
}

/**
 * Tries and reserves the lock of every VM in `targets` (lock-probe.ts), VM by VM in id order; one VM named
 * twice (a clone within one VM) is tried once, with the storages of both. A refusal releases what was reserved.
 */
export async function reserveAll(ctx: ApiContext, targets: LockTarget | LockTarget[], operation: string): Promise<HeldReservation> {
  const byVm = new Map<number, LockTarget>();
  for (const t of Array.isArray(targets) ? targets : [targets]) {
    const seen = byVm.get(t.vmid);
    byVm.set(t.vmid, seen ? { vmid: t.vmid, backends: [...seen.backends, ...t.backends], refusePending: seen.refusePending || t.refusePending } : t);
  }
  const held: HeldReservation[] = [];
  try {
    for (const t of [...byVm.values()].sort((a, b) => a.vmid - b.vmid))
      held.push(await ctx.probe.tryAndReserve(t.backends, t.vmid, operation, t.refusePending));
  } catch (err) {
    for (const h of held) h.release();
    throw err;
  }
  return {
    release: () => {
      for (const h of held) h.release();
    },
    setTask: (id) => {
      for (const h of held) h.setTask(id);
    },
  };
}

/** The CLI's --json document of plans (PlansJson). */
export function plansJson(result: Plan | Plan[], dryRun: boolean, warnings: string[] = []): PlansJson {
  return { dryRun, plans: Array.isArray(result) ? result : [result], ...(warnings.length > 0 ? { warnings } : {}) };
}
