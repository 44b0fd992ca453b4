/**
 * `export`: a volume's whole chain (every snapshot, branches included) as one chain stream
 * (engine/run/chain-stream.ts, docs/chain-stream.md) on a Writable: each layer as what it allocates itself
 * (data and explicit zeroes, found with `qemu-img map`, data read straight from the layer's file), never a
 * flattened view; a linked clone's bottom layer also carries its base's data, so the import stands alone. Reads only: under the source VM's lock so no operation changes the chain meanwhile, and
 * refused while QEMU runs the VM (its guest writes the current layer). Nothing is written to the storage;
 * an interrupted export leaves nothing there (the CLI removes a partial output file).
 */
import { open } from 'node:fs/promises';
import type { Writable } from 'node:stream';
import { CorruptImageError, NotSupportedError, VolchainError } from '../../errors.js';
import { ownExtents, type OwnExtent } from '../../tools/qemu-layer-io.js';
import type { ChainManifest, ManifestLayer } from '../planners/import.js';
import { CHAIN_STREAM_FORMAT, CHAIN_STREAM_MAGIC, CHAIN_STREAM_VERSION, ChainStreamWriter, MAX_DATA_RECORD } from '../run/chain-stream.js';
import type { EngineEvent } from '../run/step-rules.js';
import { readTree } from '../session/read-tree.js';
import { refuseMissingVolume } from '../session/refusals.js';
import { refuseRunningVm } from '../session/running-vm.js';
import type { Session } from '../session/session.js';
import { withVmLocked } from '../session/vm-lock.js';
import type { CallOptions } from './types.js';
import type { LayerNode, VolumeTree } from '../read/volume-tree.js';

export interface ExportResult {
  volid: string;
  manifest: ChainManifest;
  /** Bytes of the stream (written, or with dryRun: what would be written). */
  streamBytes: number;
  /** Guest data the stream carries (data records), and the zeroes it defines. */
  dataBytes: number;
  zeroBytes: number;
}

/** Exports `volid` to `out` (with opts.dryRun: computes the manifest and the stream's size, writes nothing). */
export async function exportChain(session: Session, volid: string, out: Writable | undefined, opts: CallOptions = {}): Promise<ExportResult> {
  const { backend, volume } = session.resolve(volid);
  await refuseMissingVolume(backend, volume.vmid, volume.name, volid);
  await refuseRunningVm(session.settings, opts.qmp, {
    vmid: volume.vmid,
    operation: 'export',
    volid,
    why: 'its guest writes the current layer while it would be read, so the stream would hold no one instant',
    hint: 'stop the VM, then export the volume',
  });
  return withVmLocked(session.locks, [backend], volume.vmid, 'export', async () => {
    await backend.activate(volume.vmid, [volume.name]);
    const tree = await readTree(backend, volume);
    const order = layerOrder(tree);
    const extents = new Map<string, OwnExtent[]>();
    // A linked clone's bottom layer carries its base's data too: the stream holds the clone's whole view
    // and imports as a volume of its own (as `move` copies it), never as a clone of a base elsewhere.
    for (const node of order) extents.set(node.name, await ownExtents(node.path, node.base !== undefined));
    const manifest = manifestOf(tree, order, extents);
    const json = JSON.stringify(manifest);
    const dataBytes = manifest.layers.reduce((s, l) => s + l.dataBytes, 0);
    const zeroBytes = manifest.layers.reduce((s, l) => s + l.zeroBytes, 0);
    const result = { volid, manifest, dataBytes, zeroBytes, streamBytes: streamSize(json, order, extents) };
    if (opts.dryRun || !out) return result;
    const writer = new ChainStreamWriter(out);
    await writer.begin(json);
    for (const [index, node] of order.entries()) {
      const own = extents.get(node.name) ?? [];
      const event = (e: EngineEvent): void => opts.onEvent?.(e);
      event({ type: 'step', volid, index, total: order.length, description: `export ${node.snapshot ?? 'current'} (${node.name})`, long: true });
      await writer.layerStart(index);
      await writeLayer(writer, node, tree.base?.path, own, (percent) => event({ type: 'progress', volid, index, percent }));
      await writer.layerEnd();
      event({ type: 'step-done', volid, index });
    }
    await writer.end();
    if (writer.bytes !== result.streamBytes) throw new VolchainError('INTERNAL', `export wrote ${writer.bytes} bytes, ${result.streamBytes} expected`);
    return result;
  });
}

/** Parents before children: a walk from the bottom layer, children by name for a stable stream. */
function layerOrder(tree: VolumeTree): LayerNode[] {
  const top = tree.layers.get(tree.current);
  if (!top) throw new VolchainError('INTERNAL', `no current layer in the tree of ${tree.volid}`);
  if (tree.volume.format !== 'qcow2')
    throw new NotSupportedError(`${tree.volid} is a raw volume: export carries qcow2 chains (convert it first: volchain convert ${tree.volid} --format qcow2)`);
  const roots = [...tree.layers.values()].filter((n) => n.parent === undefined);
  if (roots.length !== 1) throw new VolchainError('INTERNAL', `${tree.volid} has ${roots.length} bottom layers`);
  const out: LayerNode[] = [];
  const visit = (node: LayerNode): void => {
    if (node.header?.corrupt === true) {
      throw new CorruptImageError(
        node.name,
        `is marked corrupt by QEMU, and volchain never exports such a layer; repair it first with 'qemu-img check -r all -f qcow2 ${node.path}'`,
      );
    }
    out.push(node);
    for (const child of [...node.children].sort()) {
      const c = tree.layers.get(child);
      if (c) visit(c);
    }
  };
  visit(roots[0] as LayerNode);
  return out;
}

function manifestOf(tree: VolumeTree, order: readonly LayerNode[], extents: ReadonlyMap<string, OwnExtent[]>): ChainManifest {
  const indexOf = new Map(order.map((n, i) => [n.name, i]));
  const layers: ManifestLayer[] = order.map((node) => {
    const own = extents.get(node.name) ?? [];
    return {
      snapshot: node.name === tree.current ? null : (node.snapshot ?? null),
      parent: node.parent === undefined ? null : (indexOf.get(node.parent) ?? null),
      virtualSize: node.virtualSize,
      dataBytes: sum(own, 'data'),
      zeroBytes: sum(own, 'zero'),
      extents: records(own),
    };
  });
  return {
    format: CHAIN_STREAM_FORMAT,
    version: CHAIN_STREAM_VERSION,
    volume: tree.volume.name,
    virtualSize: order[indexOf.get(tree.current) ?? 0]?.virtualSize ?? 0,
    current: indexOf.get(tree.current) ?? 0,
    layers,
  };
}

function sum(own: readonly OwnExtent[], kind: OwnExtent['kind']): number {
  return own.filter((e) => e.kind === kind).reduce((s, e) => s + e.length, 0);
}

/** Records an extent list becomes: data split at MAX_DATA_RECORD, zeroes whole. */
function records(own: readonly OwnExtent[]): number {
  return own.reduce((n, e) => n + (e.kind === 'data' ? Math.ceil(e.length / MAX_DATA_RECORD) : 1), 0);
}

/** The exact size of the stream: magic, manifest, per layer its start, records and end, the trailer. */
function streamSize(json: string, order: readonly LayerNode[], extents: ReadonlyMap<string, OwnExtent[]>): number {
  let bytes = CHAIN_STREAM_MAGIC.length + 5 + Buffer.byteLength(json, 'utf8') + 33;
  for (const node of order) {
    const own = extents.get(node.name) ?? [];
    bytes += 5 + 33;
    for (const e of own) bytes += e.kind === 'data' ? 13 * Math.ceil(e.length / MAX_DATA_RECORD) + e.length : 17;
  }
  return bytes;
}

/**
 * The layer's records; data read from the layer's own file where `qemu-img map` located it (a linked clone's
 * bottom layer: also from its base's file, `basePath`, checked by the tree read as this storage's base volume).
 */
async function writeLayer(
  writer: ChainStreamWriter,
  node: LayerNode,
  basePath: string | undefined,
  own: readonly OwnExtent[],
  onProgress: (percent: number) => void,
): Promise<void> {
  const total = sum(own, 'data');
  let done = 0;
  const file = await open(node.path, 'r');
  const base = node.base !== undefined && basePath !== undefined ? await open(basePath, 'r') : undefined;
  try {
    for (const e of own) {
      if (e.kind === 'zero') {
        await writer.zero(e.start, e.length);
        continue;
      }
      const from = e.inBase ? base : file;
      if (!from) throw new VolchainError('INTERNAL', `${node.name}: data in a base volume, but no base was read with the chain`);
      for (let at = 0; at < e.length; at += MAX_DATA_RECORD) {
        const length = Math.min(MAX_DATA_RECORD, e.length - at);
        const buf = Buffer.allocUnsafe(length);
        const { bytesRead } = await from.read(buf, 0, length, (e.hostOffset ?? 0) + at);
        if (bytesRead !== length)
          throw new CorruptImageError(
            e.inBase ? (basePath ?? node.name) : node.name,
            `ends inside its data (offset ${(e.hostOffset ?? 0) + at}): is it being changed?`,
          );
        await writer.data(e.start + at, buf);
        done += length;
        if (total > 0) onProgress((100 * done) / total);
      }
    }
  } finally {
    await file.close();
    await base?.close();
  }
}
