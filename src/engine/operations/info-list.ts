/** The read-only volume calls: `list` (every volume of a storage), `path` and `info` (one volume). */
import type { Backend } from '../../backends/backend.js';
import { NotFoundError } from '../../errors.js';
import { validateSnapshotName, type VolumeRef } from '../../naming/index.js';
import { checkImage } from '../../tools/qemu-img.js';
import { snapshotSpace } from '../plan/space.js';
import { treeLayerFlags } from '../read/layer-guard.js';
import { listVolumeEntries, type VolumeListEntry } from '../read/listing.js';
import { withSharedLayerNames } from '../read/listing-names.js';
import { fullSizes } from '../read/space-figures.js';
import { templateClones } from '../read/templates.js';
import type { VolumeSummary } from '../read/volume-summary.js';
import { layer, snapshotLayers, type VolumeTree } from '../read/volume-tree.js';
import { pendingOperations } from '../run/journal.js';
import { finishDeferredRemovals } from '../run/wipe.js';
import { readTree } from '../session/read-tree.js';
import type { Session } from '../session/session.js';
import type { LayerCheck, VolumeInfo } from './types.js';

/** Every volume of the storage; one that cannot be read is listed with its problem (listing.ts). */
export async function list(session: Session, storage: string, opts: { vmid?: number } = {}): Promise<VolumeListEntry[]> {
  const backend = session.backend(storage);
  const shared = withSharedLayerNames(backend);
  const read = async (b: Backend, v: VolumeRef): Promise<VolumeSummary> => summarize(backend, await readTree(b, v, { allocation: false }));
  const out = await listVolumeEntries(
    backend,
    opts.vmid,
    // One readdir per VM (listing-names.ts); a volume that fails so is read again as it is today, so a
    // directory changed meanwhile reports exactly what a read of that volume alone would.
    (v) => read(shared, v).catch(() => read(backend, v)),
    (v) => templateClones(backend, v),
  );
  // Removals a crashed run left unfinished (LVM: `del-` LVs nobody wipes) are finished from here too.
  await finishDeferredRemovals(backend, opts.vmid, session.wipeMode, session.config.source, session.backgroundWipe);
  return out;
}

export async function path(session: Session, volid: string, opts: { snapshot?: string } = {}): Promise<string> {
  const { backend, volume } = session.resolve(volid);
  if (opts.snapshot === undefined) {
    if (!(await backend.statLayer(volume.vmid, volume.name))) await readTree(backend, volume, { allocation: false });
    return backend.layerPath(volume.vmid, volume.name);
  }
  validateSnapshotName(opts.snapshot);
  const tree = await readTree(backend, volume);
  if (!backend.capabilities.volumeChain) {
    const names = layer(tree, tree.current).header?.internalSnapshots.map((s) => s.name) ?? [];
    if (!names.includes(opts.snapshot)) throw new NotFoundError(`snapshot '${opts.snapshot}' of ${volid} does not exist`);
    return layer(tree, tree.current).path;
  }
  const node = snapshotLayers(tree).find((l) => l.snapshot === opts.snapshot);
  if (!node) throw new NotFoundError(`snapshot '${opts.snapshot}' of ${volid} does not exist`);
  return node.path;
}

export async function info(session: Session, volid: string, opts: { deep?: boolean } = {}): Promise<VolumeInfo> {
  const { backend, volume } = session.resolve(volid);
  const tree = await readTree(backend, volume);
  const pending = (await pendingOperations(backend, { vmid: volume.vmid }))[0];
  const current = layer(tree, tree.current);
  const mode = volume.format !== 'qcow2' ? 'none' : backend.capabilities.volumeChain ? 'volume-chain' : 'internal';
  const parent = current.parent ? (layer(tree, current.parent).snapshot ?? null) : null;
  return {
    ...(await summarize(backend, tree)),
    path: current.path,
    pendingOperation: pending ? { operation: pending.plan.operation, startedAt: pending.startedAt, pid: pending.pid, host: pending.host } : null,
    snapshotMode: mode,
    parentSnapshot: parent,
    layers: treeLayerFlags(tree),
    clones: await templateClones(backend, volume),
    ...(opts.deep && volume.format === 'qcow2' ? { checks: await checkLayers(tree) } : {}),
  };
}

async function checkLayers(tree: VolumeTree): Promise<LayerCheck[]> {
  const out: LayerCheck[] = [];
  for (const node of [...tree.layers.values()].sort((a, b) => a.name.localeCompare(b.name))) {
    const r = await checkImage(node.path);
    out.push({
      layer: node.name,
      snapshot: node.snapshot ?? null,
      clean: r.clean,
      corruptions: r.corruptions,
      leaks: r.leaks,
      imageEndOffset: r.imageEndOffset ?? null,
    });
  }
  return out;
}

async function summarize(backend: Backend, tree: VolumeTree): Promise<VolumeSummary> {
  const volumeChain = backend.capabilities.volumeChain;
  const current = layer(tree, tree.current);
  const snapshots = volumeChain
    ? snapshotLayers(tree)
        .map((l) => l.snapshot ?? '')
        .sort()
    : (current.header?.internalSnapshots.map((s) => s.name) ?? []);
  // Internal snapshots live inside the current layer: no layer of their own, counted in usedBytes.
  const frozen = volumeChain ? snapshotLayers(tree) : [];
  const space = snapshotSpace(
    frozen,
    await fullSizes(
      backend,
      frozen.map((l) => l.virtualSize),
    ),
  );
  return {
    volid: tree.volid,
    storage: tree.volume.storage,
    vmid: tree.volume.vmid,
    name: tree.volume.name,
    format: tree.volume.format,
    virtualSize: current.virtualSize,
    usedBytes: current.usedBytes,
    chainUsedBytes: [...tree.layers.values()].reduce((sum, l) => sum + l.usedBytes, 0),
    snapshotBytes: space.snapshotBytes,
    fullSizeSnapshotBytes: space.fullSizeSnapshotBytes,
    snapshots,
    template: tree.volume.template === true,
    base: tree.base?.volid ?? null,
  };
}
