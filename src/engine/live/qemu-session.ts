/**
 * The connection a live operation acts through (LiveSession), and what the qmp-* steps read from it: the
 * chain holding a node, whether a disk is switched onto its new top already, and the one transaction that
 * switches every disk of an operation.
 */
import type { QmpClient } from '../../qmp/client.js';
import { snapshotAction, transaction } from '../../qmp/commands.js';
import { readBlockView, type QemuChain } from '../../qmp/live-view.js';
import { VolchainError } from '../../errors.js';
import type { LiveStep } from '../../model/plan.js';

export interface LiveSession {
  client: QmpClient;
  /** The QMP socket (for messages and for the journal). */
  socket: string;
  /** Aborting cancels the block job that is running (job-cancel): its step then fails as cancelled. */
  signal?: AbortSignal;
  /** How often query-jobs is read for progress (default 250 ms). */
  pollIntervalMs?: number;
  /** The session's $VOLCHAIN_JOB_SPEED: the block jobs' rate limit (engine/live/step-jobs.ts checks it). */
  jobSpeed: string | undefined;
}

/** How a step runs: its progress reports, whether it is a redo (repair), and the QEMU it acts through. */
export interface LiveStepContext {
  onProgress: ((percent: number) => void) | undefined;
  redo: boolean;
  live: LiveSession | undefined;
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

export async function isSwitched(live: LiveSession, step: Extract<LiveStep, { kind: 'qmp-snapshot' }>): Promise<boolean> {
  const chain = await chainOf(live, step.node);
  const at = chain.layers.findIndex((l) => l.node === step.node);
  return at > 0 && chain.layers[at - 1]?.node === step.overlay;
}

/** The chain holding `node`; of several (a leftover node above a layer), the one a device uses. */
export async function chainOf(live: LiveSession, node: string): Promise<QemuChain> {
  const view = await readBlockView(live.client);
  const holding = view.chains.filter((ch) => ch.layers.some((l) => l.node === node));
  const chain = holding.find((ch) => ch.devices.length > 0) ?? holding[0];
  if (!chain) {
    throw new VolchainError('INTERNAL', `QEMU at ${live.socket} has no chain with node ${node}: was QEMU restarted since the operation began?`);
  }
  return chain;
}
