/**
 * What a live operation checks before it changes anything and again afterwards: the headers of every disk
 * (readVolumeTree validates each), QEMU's block graph, their agreement for every disk QEMU has open
 * (engine/live/match.ts), no block job running, and no chain of the VM's files that cannot be told apart.
 * Also how a disk QEMU has open is described to the live planners (LiveDisk).
 */
import type { Backend } from '../../backends/backend.js';
import { InvalidInputError, VolchainError } from '../../errors.js';
import { parseVmid, type VolumeRef } from '../../naming/index.js';
import type { QmpClient } from '../../qmp/client.js';
import { queryStatus } from '../../qmp/commands.js';
import { readBlockView, type QemuBlockView } from '../../qmp/live-view.js';
import { pveDriveOf } from './pve-graph.js';
import { matchVm, type DiskMatch } from './match.js';
import type { LiveDisk } from '../planners/live.js';
// The façade's part live operations use (not volchain.ts itself, which imports this module).
import type { LiveHost as Volchain } from './host.js';
import { readVolumeTree, type VolumeTree } from '../read/volume-tree.js';
import type { TestHooks } from '../../settings.js';

/** Which disks an operation is about: one volume, or every disk of a VM (optionally on one storage). */
export type LiveTarget = { volid: string } | { vmid: number | string; storage?: string; vmConfig?: string };

export interface Disk {
  backend: Backend;
  volume: VolumeRef;
}

export async function targetDisks(vc: Volchain, target: LiveTarget, onWarning?: (message: string) => void): Promise<{ vmid: number; disks: Disk[] }> {
  if ('volid' in target) {
    const { backend, volume } = vc.resolve(target.volid);
    return { vmid: volume.vmid, disks: [{ backend, volume }] };
  }
  const vmid = typeof target.vmid === 'number' ? target.vmid : parseVmid(target.vmid);
  return { vmid, disks: await vc.vmVolumes(vmid, target.storage, target.vmConfig, onWarning) };
}

export interface LiveState {
  view: QemuBlockView;
  running: boolean;
  disks: DiskMatch[];
}

/**
 * Everything checked before a live operation changes anything: headers (readVolumeTree validates each),
 * QEMU's view, their agreement for every disk QEMU has open, no block job, no chain of the VM's files that
 * cannot be told apart.
 */
export async function readLiveState(client: QmpClient, socket: string, disks: readonly Disk[]): Promise<LiveState> {
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

/** `hooks`: the session's test hooks, of which liveStream ($VOLCHAIN_LIVE_STREAM) is read here. */
export function liveDiskOf(
  d: DiskMatch,
  socket: string,
  running: boolean,
  version: { major: number; minor: number },
  hooks: Pick<TestHooks, 'liveStream'>,
): LiveDisk {
  const extendedL2 = [...d.tree.layers.values()].some((l) => l.header?.extendedL2 === true);
  const liveStream = hooks.liveStream;
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

/** After an operation: the headers and QEMU's view must still agree (a failure here is a bug in volchain). */
export async function checkAgreement(client: QmpClient, socket: string, disks: readonly Disk[], operation: string): Promise<void> {
  try {
    await readLiveState(client, socket, disks);
  } catch (err) {
    throw new VolchainError('INTERNAL', `${operation} finished, but afterwards: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * `--qmp SOCK` says the VM runs there: a QEMU that has none of the disks open is the wrong one, and acting
 * offline could change files the real one uses.
 */
export function refuseWrongQemu(vmid: number, socket: string, disks: readonly { chain: unknown; detached: readonly unknown[] }[]): void {
  if (disks.every((d) => d.chain === undefined && d.detached.length === 0)) {
    throw new InvalidInputError(`QEMU at ${socket} has none of the disks of VM ${vmid} open: is that the VM's QMP socket?`);
  }
}
