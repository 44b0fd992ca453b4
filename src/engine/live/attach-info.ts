/** `volchain attach-info`: which QEMU block node uses which volume and layer of a VM (read-only). */
import type { Backend } from '../../backends/backend.js';
import { InvalidInputError } from '../../errors.js';
import { parseVmid, type VolumeRef } from '../../naming/index.js';
import { queryStatus, type JobInfo } from '../../qmp/commands.js';
import { readBlockView } from '../../qmp/live-view.js';
import { matchVm } from './match.js';
// The façade's part live operations use (not volchain.ts itself, which imports this module).
import type { LiveHost as Volchain } from './host.js';
import { readVolumeTree, type VolumeTree } from '../read/volume-tree.js';
import { connectVm } from './socket.js';

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
  const conn = await connectVm(vmid, explicit, vc.settings);
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
