/**
 * `volchain qemu-args`: the -blockdev options (and PVE's -object throttle groups) that open the current chain
 * of each volume with volchain's node names, so that a VM started with them can be snapshotted live.
 */
import type { Backend } from '../../backends/backend.js';
import { InvalidInputError, PendingOperationError } from '../../errors.js';
import { chainBlockdevs, blockdevArgv, type ChainLayerSpec } from '../../qmp/blockdev.js';
import type { BlockdevOptions } from '../../qmp/commands.js';
import { checkDriveId, pveLayerNodeNames } from '../../qmp/pve-names.js';
import { installedQemuHasDiscardNoUnref } from '../../tools/qemu-system.js';
import { pveDriveTop } from './pve.js';
import { pendingOperations } from '../run/journal.js';
// The façade's part live operations use (not volchain.ts itself, which imports this module).
import type { LiveHost as Volchain } from './host.js';
import { ancestry, readVolumeTree } from '../read/volume-tree.js';
import { cloneBaseSpec } from './clone.js';

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
  const discardNoUnref = await installedQemuHasDiscardNoUnref(vc.settings.qemuSystem);
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

async function refuseUnfinished(backend: Backend, vmid: number): Promise<void> {
  const first = (await pendingOperations(backend, { vmid }))[0];
  if (first) {
    throw new PendingOperationError(
      `VM ${vmid} has an unfinished ${first.plan.operation} of ${first.plan.volid} (started ${first.startedAt}): run 'volchain repair ${first.plan.volid}' before starting the VM`,
    );
  }
}
