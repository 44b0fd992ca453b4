/**
 * Live operations: snapshots of the disks of a running VM, through QEMU's QMP socket, under the same per-VM
 * lock and journal as offline operations.
 *
 * Order of every live operation (the Incus failure in DESIGN.md section 8 is the reason for the order):
 * 1. take the VM's lock (every storage holding one of its disks), refuse over an unfinished operation;
 * 2. read and validate every header of every disk (readVolumeTree), read QEMU's block graph, and check that
 *    both agree for every disk QEMU has open (engine/live/match.ts); refuse on any disagreement, on a block job
 *    QEMU is running, or on nodes whose volume cannot be told;
 * 3. plan every disk (live planners for disks QEMU has open, offline planners for the others), journal every
 *    plan, and only then change anything (engine/live/executor.ts);
 * 4. read both again and check that they still agree.
 *
 * Which QEMU: `--qmp SOCK` (the caller says the VM runs: a socket that does not answer is an error), else
 * `$VOLCHAIN_QMP_DIR/<vmid>.qmp` when VOLCHAIN_QMP_DIR is set and that socket exists and answers (on Proxmox
 * VE: VOLCHAIN_QMP_DIR=/var/run/qemu-server); a socket nobody listens on means the VM is stopped.
 */
import { randomUUID } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Backend } from '../../backends/backend.js';
import { InvalidInputError, NotSupportedError, PendingOperationError, VolchainError } from '../../errors.js';
import { parseVmid, type VolumeRef } from '../../naming/index.js';
import { chainBlockdevs, blockdevArgv, type ChainLayerSpec } from '../../qmp/blockdev.js';
import { QmpClient } from '../../qmp/client.js';
import { queryStatus, type BlockdevOptions, type JobInfo } from '../../qmp/commands.js';
import { QmpConnectError } from '../../qmp/errors.js';
import { checkDriveId, pveLayerNodeNames } from '../../qmp/pve-names.js';
import { installedQemuHasDiscardNoUnref } from '../../tools/qemu-system.js';
import { pveDriveTop } from './pve.js';
import { pveDriveOf } from './pve-graph.js';
import { readBlockView, type QemuBlockView } from '../../qmp/live-view.js';
import type { EngineEvent } from '../run/executor.js';
import { Journal, pendingOperations } from '../run/journal.js';
import { executeGroup, type LiveSession } from './executor.js';
import { matchVm, type DiskMatch } from './match.js';
import { planLiveSnapshotCreate, planLiveSnapshotDelete, type LiveDisk } from '../planners/live.js';
import type { Plan } from '../../model/plan.js';
import { planSnapshotCreate, planSnapshotDelete, type PlanContext } from '../planners/offline.js';
// The façade's part live operations use (not volchain.ts itself, which imports this module).
import type { LiveHost as Volchain } from './host.js';
import { ancestry, readVolumeTree, type VolumeTree } from '../read/volume-tree.js';
import { cloneBaseSpec } from './clone.js';
import { currentSettings, settingsEnv } from '../../settings.js';

export interface LiveOptions {
  /** QEMU's QMP socket: the VM runs and has (some of) the disks open. */
  qmp?: string;
  /** Aborting cancels the block job that is running; the operation then fails (see engine/live/executor.ts). */
  signal?: AbortSignal;
}

export interface LiveCallOptions extends LiveOptions {
  dryRun?: boolean;
  onEvent?: (event: EngineEvent) => void;
  /** A storage skipped while looking for a VM's disks without its config (see vm-disks.ts). */
  onWarning?: (message: string) => void;
}

/** Which disks an operation is about: one volume, or every disk of a VM (optionally on one storage). */
export type LiveTarget = { volid: string } | { vmid: number | string; storage?: string; vmConfig?: string };

// ---- finding and talking to QEMU --------------------------------------------------------------------------

/** The socket to use for `vmid`: the explicit one, else $VOLCHAIN_QMP_DIR/<vmid>.qmp if that is set. */
export function qmpSocketFor(
  vmid: number,
  explicit?: string,
  env: NodeJS.ProcessEnv = settingsEnv(currentSettings()),
): { socket: string; explicit: boolean } | undefined {
  if (explicit !== undefined) {
    if (explicit === '') throw new InvalidInputError("--qmp needs the path of QEMU's QMP socket");
    return { socket: explicit, explicit: true };
  }
  const dir = env['VOLCHAIN_QMP_DIR'];
  if (dir === undefined || dir === '') return undefined;
  return { socket: join(dir, `${vmid}.qmp`), explicit: false };
}

/**
 * Connects to the VM's QEMU, or returns undefined when it does not run (no socket configured, or, for a
 * configured directory, no socket or nobody listening). An explicit socket that does not answer is an error.
 */
export async function connectVm(vmid: number, explicit?: string): Promise<{ client: QmpClient; socket: string } | undefined> {
  const where = qmpSocketFor(vmid, explicit);
  if (!where) return undefined;
  if (!where.explicit) {
    try {
      if (!(await stat(where.socket)).isSocket()) return undefined;
    } catch {
      return undefined;
    }
  }
  try {
    return { client: await QmpClient.connectUnix(where.socket, { connectTimeoutMs: 10_000 }), socket: where.socket };
  } catch (err) {
    const code = err instanceof QmpConnectError ? ((err.cause as NodeJS.ErrnoException | undefined)?.code ?? '') : '';
    if (!where.explicit && (code === 'ECONNREFUSED' || code === 'ENOENT')) return undefined;
    if (err instanceof VolchainError) {
      throw new VolchainError(err.code, `VM ${vmid}: ${err.message} (is the VM running, and is no other client connected to that socket?)`, { cause: err });
    }
    throw err;
  }
}

// ---- qemu-args ----------------------------------------------------------------------------------------------

export interface QemuArgsVolume {
  volid: string;
  /** Format node of the current layer: what a guest device's `drive=` names. */
  top: string;
  layers: { layer: string; snapshot: string | null; node: string; protocolNode: string; path: string; readOnly: boolean }[];
  /** A linked clone's base volume: the bottom of the chain, opened read-only (not one of `layers`). */
  base?: { volid: string; ref: string; node: string; protocolNode: string; path: string; readOnly: true };
  nodes: BlockdevOptions[];
}

export interface QemuArgs {
  volumes: QemuArgsVolume[];
  /** `-object` definitions (PVE's throttle groups, with --drive-id), before the -blockdev options. */
  objects: Record<string, unknown>[];
  /** `-blockdev <json>` pairs for every volume, in order. */
  argv: string[];
}

/**
 * The -blockdev options that open each volume's current chain with volchain's node names, after reading and
 * validating every header of the chain. Refuses while an operation on the VM is unfinished.
 */
export async function qemuArgs(vc: Volchain, volids: readonly string[], opts: { driveIds?: readonly string[] } = {}): Promise<QemuArgs> {
  if (volids.length === 0) throw new InvalidInputError('qemu-args needs at least one volid');
  const driveIds = opts.driveIds ?? [];
  if (driveIds.length > 0 && driveIds.length !== volids.length) {
    throw new InvalidInputError(`--drive-id is given ${driveIds.length} time(s) for ${volids.length} volid(s): give one per volid, in the same order`);
  }
  driveIds.forEach(checkDriveId);
  if (new Set(driveIds).size !== driveIds.length) throw new InvalidInputError('a --drive-id is given twice');
  const discardNoUnref = await installedQemuHasDiscardNoUnref();
  const objects: Record<string, unknown>[] = [];
  const volumes: QemuArgsVolume[] = [];
  for (const volid of volids) {
    const { backend, volume } = vc.resolve(volid);
    await refuseUnfinished(backend, volume.vmid);
    const tree = await readVolumeTree(backend, volume);
    if (tree.leftovers.length > 0) {
      throw new PendingOperationError(
        `${tree.volid} has leftovers of an interrupted operation (${tree.leftovers.join(', ')}); run 'volchain repair ${tree.volid}'`,
      );
    }
    const chain = ancestry(tree, tree.current);
    const specs: ChainLayerSpec[] = chain.map((l, i) => ({
      name: l.name,
      path: l.path,
      format: i === chain.length - 1 && volume.format === 'raw' ? 'raw' : 'qcow2',
    }));
    // A linked clone's chain goes on down to its template's base volume, read-only (engine/live/clone.ts).
    const baseSpec = cloneBaseSpec(tree);
    if (baseSpec) specs.push(baseSpec);
    const driveId = driveIds[volumes.length];
    const snapOf = new Map(chain.map((l) => [l.name, l.snapshot]));
    const built = chainBlockdevs(
      backend.id,
      specs,
      { discardNoUnref },
      driveId !== undefined
        ? (l) => (l === baseSpec && tree.base ? pveLayerNodeNames(driveId, tree.base.volid) : pveLayerNodeNames(driveId, tree.volid, snapOf.get(l.name)))
        : undefined,
    );
    let top = built.top;
    if (driveId !== undefined) {
      // PVE's layout: a throttle filter `drive-<id>` on the current layer, in the throttle group PVE creates.
      const pve = pveDriveTop(driveId, built.top);
      objects.push(pve.group);
      built.nodes.push(pve.node);
      top = pve.node['node-name'];
    }
    volumes.push({
      volid: tree.volid,
      top,
      layers: chain.map((l, i) => {
        const names = built.byLayer.get(l.name);
        return { layer: l.name, snapshot: l.snapshot ?? null, node: names?.format ?? '', protocolNode: names?.protocol ?? '', path: l.path, readOnly: i > 0 };
      }),
      ...(baseSpec && tree.base
        ? {
            base: {
              volid: tree.base.volid,
              ref: baseSpec.name,
              node: built.byLayer.get(baseSpec.name)?.format ?? '',
              protocolNode: built.byLayer.get(baseSpec.name)?.protocol ?? '',
              path: baseSpec.path,
              readOnly: true,
            },
          }
        : {}),
      nodes: built.nodes,
    });
  }
  const seen = new Set<string>();
  for (const v of volumes) {
    if (seen.has(v.volid)) throw new InvalidInputError(`${v.volid} is given twice`);
    seen.add(v.volid);
  }
  // Two clones of one base share its read-only nodes (same names without --drive-id): each is defined once.
  const defined = new Map<string, string>();
  const nodes = volumes
    .flatMap((v) => v.nodes)
    .filter((n) => {
      const json = JSON.stringify(n);
      const before = defined.get(n['node-name']);
      if (before === undefined) {
        defined.set(n['node-name'], json);
        return true;
      }
      if (before !== json) throw new InvalidInputError(`node ${n['node-name']} would be defined twice with different options`);
      return false;
    });
  return { volumes, objects, argv: [...objects.flatMap((o) => ['-object', JSON.stringify(o)]), ...blockdevArgv(nodes)] };
}

// ---- attach-info ------------------------------------------------------------------------------------------------

export interface AttachInfo {
  vmid: number;
  socket: string;
  running: boolean;
  status: string;
  disks: {
    volid: string;
    open: boolean;
    devices: string[];
    layers: { layer: string; snapshot: string | null; node: string; protocolNode: string | null; openedAs: string | null; readOnly: boolean }[];
    /** Further nodes QEMU has open on this volume's layers, in no chain a device uses (leftovers). */
    detached: { node: string; openedAs: string | null }[];
    /** A linked clone's base volume at the bottom of QEMU's chain (null: no clone, or not open). */
    base: { volid: string; ref: string; node: string; openedAs: string | null; readOnly: boolean } | null;
    problems: string[];
  }[];
  /** Chains QEMU has open that belong to none of the VM's volumes. */
  others: { nodes: string[]; openedAs: (string | null)[]; reason: string }[];
  jobs: JobInfo[];
}

/** Which QEMU block node uses which volume and layer of VM `vmid` (read-only: takes no lock). */
export async function attachInfo(vc: Volchain, vmidText: number | string, explicit?: string): Promise<AttachInfo> {
  const vmid = typeof vmidText === 'number' ? vmidText : parseVmid(vmidText);
  const conn = await connectVm(vmid, explicit);
  if (!conn) {
    throw new InvalidInputError(`no QMP socket for VM ${vmid}: give --qmp SOCK (or set VOLCHAIN_QMP_DIR to the directory of <vmid>.qmp sockets)`);
  }
  try {
    const disks = await vc.vmVolumes(vmid);
    const trees: { backend: Backend; volume: VolumeRef; tree: VolumeTree }[] = [];
    for (const d of disks) trees.push({ ...d, tree: await readVolumeTree(d.backend, d.volume) });
    const view = await readBlockView(conn.client);
    const status = await queryStatus(conn.client);
    const match = matchVm(view, trees);
    const claimed = new Set([...match.disks.flatMap((d) => [d.chain, ...d.detached]), ...match.unmatched.map((u) => u.chain)]);
    return {
      vmid,
      socket: conn.socket,
      running: status.running,
      status: status.status,
      disks: match.disks.map((d) => ({
        volid: d.volid,
        open: d.chain !== undefined,
        devices: d.chain?.devices ?? [],
        layers: d.layers.map((l) => ({
          layer: l.layer,
          snapshot: l.snapshot ?? null,
          node: l.qemu.node,
          protocolNode: l.qemu.protocolNode ?? null,
          openedAs: l.qemu.path ?? null,
          readOnly: l.qemu.readOnly,
        })),
        detached: d.detached.flatMap((c) => c.layers.map((l) => ({ node: l.node, openedAs: l.path ?? null }))),
        base: d.base
          ? { volid: d.base.volid, ref: d.base.ref, node: d.base.qemu.node, openedAs: d.base.qemu.path ?? null, readOnly: d.base.qemu.readOnly }
          : null,
        problems: d.problems,
      })),
      others: [
        ...match.unmatched.map((u) => ({ nodes: u.chain.layers.map((l) => l.node), openedAs: u.chain.layers.map((l) => l.path ?? null), reason: u.reason })),
        ...view.chains
          .filter((c) => !claimed.has(c))
          .map((c) => ({ nodes: c.layers.map((l) => l.node), openedAs: c.layers.map((l) => l.path ?? null), reason: "not a layer of this VM's volumes" })),
      ],
      jobs: view.jobs,
    };
  } finally {
    await conn.client.close();
  }
}

// ---- snapshot operations --------------------------------------------------------------------------------------

interface Disk {
  backend: Backend;
  volume: VolumeRef;
}

function ctxOf(backend: Backend): PlanContext {
  return { kind: backend.kind, volumeChain: backend.capabilities.volumeChain, fixedSizeLayers: backend.capabilities.fixedSizeLayers };
}

async function targetDisks(vc: Volchain, target: LiveTarget, onWarning?: (message: string) => void): Promise<{ vmid: number; disks: Disk[] }> {
  if ('volid' in target) {
    const { backend, volume } = vc.resolve(target.volid);
    return { vmid: volume.vmid, disks: [{ backend, volume }] };
  }
  const vmid = typeof target.vmid === 'number' ? target.vmid : parseVmid(target.vmid);
  return { vmid, disks: await vc.vmVolumes(vmid, target.storage, target.vmConfig, onWarning) };
}

interface LiveState {
  view: QemuBlockView;
  running: boolean;
  disks: DiskMatch[];
}

/**
 * Everything checked before a live operation changes anything: headers (readVolumeTree validates each),
 * QEMU's view, their agreement for every disk QEMU has open, no block job, no chain of the VM's files that
 * cannot be told apart.
 */
async function readLiveState(client: QmpClient, socket: string, disks: readonly Disk[]): Promise<LiveState> {
  const inputs: { backend: Backend; volume: VolumeRef; tree: VolumeTree }[] = [];
  for (const d of disks) inputs.push({ ...d, tree: await readVolumeTree(d.backend, d.volume) });
  const view = await readBlockView(client);
  const status = await queryStatus(client);
  const match = matchVm(view, inputs);
  const problems = [
    ...match.disks.flatMap((d) => d.problems),
    ...match.unmatched.map((u) => `QEMU has nodes ${u.chain.layers.map((l) => l.node).join(', ')} on files of these volumes: ${u.reason}`),
  ];
  if (view.jobs.length > 0) {
    problems.push(`QEMU runs block job(s) ${view.jobs.map((j) => `${j.id} (${j.type}, ${j.status})`).join(', ')}: wait for them to end`);
  }
  if (problems.length > 0) {
    throw new VolchainError('CORRUPT_IMAGE', `QEMU (${socket}) and the chains on disk disagree, nothing was changed: ${problems.join('; ')}`);
  }
  return { view, running: status.running, disks: match.disks };
}

/**
 * QEMU before 8.2 aborts (bdrv_co_do_copy_on_readv: skip_bytes < pnum) when block-stream's copy-on-read meets
 * a qcow2 image with subclusters (extended_l2); upstream fixed it in 8.2 ("block: align CoR requests to
 * subclusters"). Seen here with 7.2 under guest writes.
 */
export function streamSafe(version: { major: number; minor: number }, extendedL2: boolean): boolean {
  return !extendedL2 || version.major > 8 || (version.major === 8 && version.minor >= 2);
}

function liveDiskOf(d: DiskMatch, socket: string, running: boolean, version: { major: number; minor: number }): LiveDisk {
  const extendedL2 = [...d.tree.layers.values()].some((l) => l.header?.extendedL2 === true);
  const liveStream = currentSettings().hooks.liveStream;
  return {
    storage: d.backend.id,
    socket,
    guestRunning: running,
    // Test hook (README): VOLCHAIN_LIVE_STREAM=always|never overrides the choice.
    streamSafe: liveStream === 'always' ? true : liveStream === 'never' ? false : streamSafe(version, extendedL2),
    nodes: new Map(d.layers.map((l) => [l.layer, { node: l.qemu.node, protocolNode: l.qemu.protocolNode }])),
    ...(d.base ? { baseNode: d.base.qemu.node } : {}),
    ...(d.chain?.filters[0] !== undefined ? { rootFilter: d.chain.filters[0] } : {}),
    ...(pveDriveOf(d.chain?.filters[0]) !== undefined ? { pveDrive: pveDriveOf(d.chain?.filters[0]) } : {}),
  };
}

type LivePlanner = (d: DiskMatch, live: LiveDisk | undefined) => Plan;

/**
 * Runs one live operation: connect (or return undefined when the VM does not run), lock, validate, plan every
 * disk, journal, execute, validate again.
 */
async function runLive(vc: Volchain, target: LiveTarget, operation: string, opts: LiveCallOptions, planner: LivePlanner): Promise<Plan[] | undefined> {
  const { vmid, disks } = await targetDisks(vc, target, opts.onWarning);
  const conn = await connectVm(vmid, opts.qmp);
  if (!conn) return undefined;
  const session: LiveSession = { client: conn.client, socket: conn.socket, ...(opts.signal ? { signal: opts.signal } : {}) };
  try {
    const work = async (): Promise<Plan[]> => {
      const state = await readLiveState(conn.client, conn.socket, disks);
      if (opts.qmp !== undefined) refuseWrongQemu(vmid, conn.socket, state.disks);
      const planned = state.disks.map((d) => ({
        backend: d.backend,
        plan: planner(d, d.chain ? liveDiskOf(d, conn.socket, state.running, qemuVersion(conn.client)) : undefined),
      }));
      if (opts.dryRun) return planned.map((p) => p.plan);
      const group = planned.length > 1 ? randomUUID() : undefined;
      const entries = [];
      for (const p of planned) entries.push({ ...p, journal: await Journal.begin(p.backend.journal(), p.backend.id, p.plan, group) });
      await executeGroup(entries, session, opts.onEvent ? { onEvent: opts.onEvent } : {});
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

function qemuVersion(client: QmpClient): { major: number; minor: number } {
  const v = client.greeting?.QMP.version.qemu;
  return { major: v?.major ?? 0, minor: v?.minor ?? 0 };
}

/** After an operation: the headers and QEMU's view must still agree (a failure here is a bug in volchain). */
async function checkAgreement(client: QmpClient, socket: string, disks: readonly Disk[], operation: string): Promise<void> {
  try {
    await readLiveState(client, socket, disks);
  } catch (err) {
    throw new VolchainError('INTERNAL', `${operation} finished, but afterwards: ${(err as Error).message}`, { cause: err });
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
 * Rollback replaces the layer the guest writes into: refused while QEMU has any of the target's disks open.
 * Returns when the VM does not run (or has none of them open).
 */
export async function refuseLiveRollback(vc: Volchain, target: LiveTarget, opts: LiveOptions = {}): Promise<void> {
  const { vmid, disks } = await targetDisks(vc, target);
  const conn = await connectVm(vmid, opts.qmp);
  if (!conn) return;
  try {
    const inputs: { backend: Backend; volume: VolumeRef; tree: VolumeTree }[] = [];
    for (const d of disks) inputs.push({ ...d, tree: await readVolumeTree(d.backend, d.volume) });
    const match = matchVm(await readBlockView(conn.client), inputs);
    if (opts.qmp !== undefined) refuseWrongQemu(vmid, conn.socket, match.disks);
    const open = match.disks.filter((d) => d.chain !== undefined || d.detached.length > 0).map((d) => d.volid);
    if (open.length > 0) {
      throw new NotSupportedError(
        `VM ${vmid} is running (QEMU at ${conn.socket} has ${open.join(', ')} open): a rollback replaces the layer the guest ` +
          'writes into, so it needs the VM stopped. Shut the VM down, roll back, and start it again (volchain qemu-args prints how to open the disks)',
      );
    }
  } finally {
    await conn.client.close();
  }
}

/**
 * The session repair uses for a live plan: the QEMU it ran against, if it still runs (then the remaining
 * steps run live), else undefined (the offline equivalents finish the operation).
 */
export async function openRepairSession(plan: Plan, explicit?: string): Promise<LiveSession | undefined> {
  const socket = explicit ?? plan.live?.socket;
  if (socket === undefined) return undefined;
  try {
    const client = await QmpClient.connectUnix(socket, { connectTimeoutMs: 10_000 });
    return { client, socket };
  } catch (err) {
    const code = err instanceof QmpConnectError ? ((err.cause as NodeJS.ErrnoException | undefined)?.code ?? '') : '';
    if (code === 'ECONNREFUSED' || code === 'ENOENT') return undefined; // QEMU is gone
    throw err;
  }
}

/**
 * `--qmp SOCK` says the VM runs there: a QEMU that has none of the disks open is the wrong one, and acting
 * offline could change files the real one uses.
 */
function refuseWrongQemu(vmid: number, socket: string, disks: readonly { chain: unknown; detached: readonly unknown[] }[]): void {
  if (disks.every((d) => d.chain === undefined && d.detached.length === 0)) {
    throw new InvalidInputError(`QEMU at ${socket} has none of the disks of VM ${vmid} open: is that the VM's QMP socket?`);
  }
}

async function refuseUnfinished(backend: Backend, vmid: number): Promise<void> {
  const first = (await pendingOperations(backend, { vmid }))[0];
  if (first) {
    throw new PendingOperationError(
      `VM ${vmid} has an unfinished ${first.plan.operation} of ${first.plan.volid} (started ${first.startedAt}): run 'volchain repair ${first.plan.volid}' before starting the VM`,
    );
  }
}
