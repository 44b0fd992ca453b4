/**
 * Planning `import` (pure): the manifest of a chain stream (engine/run/chain-stream.ts) judged field by
 * field, and the steps that make its chain a new volume of VM `vmid` on the target storage (issue 17):
 *   1..n   import-layer   layer i of the stream into a new temporary `<tmp i>` (parents first), its header
 *                         naming the FINAL name of its parent                       undo: remove <tmp i>
 *   n+1    verify-import  the stream's trailer checksum and end; every temporary's header by the header
 *                         rules, `qemu-img check`                                   undo: nothing (reads only)
 *   then   rename         <tmp i> -> final name, snapshot layers first, the volume's own name last
 *          freeze         each snapshot layer (LVM: shrunk to its image end)
 * Nothing carries a volume's name until every byte was checked. A crash before the first rename is walked
 * back by repair (the stream cannot be read again): no volume. From the renames on, the layers are whole and
 * verified: repair finishes the renames. Until the last rename, listings show no new volume (temporaries and
 * snapshot layers without their volume are not volumes).
 */
import { AlreadyExistsError, InvalidInputError, NoSpaceError } from '../../errors.js';
import type { Plan, Step } from '../../model/plan.js';
import {
  formatSize,
  formatVolid,
  isValidSnapshotName,
  nextFreeDiskName,
  parseVolumeName,
  snapshotLayerName,
  temporaryLayerName,
  validateVolumeName,
} from '../../naming/index.js';
import { quoteForeign } from '../../quote.js';
import type { CopyTarget } from './copy-target.js';

/** A manifest as the stream carries it, once judged (docs/chain-stream.md). */
export interface ChainManifest {
  format: 'volchain-chain';
  version: 1;
  /** The exported volume's name (its source VM's); informative. */
  volume: string;
  /** The virtual size of the current layer. */
  virtualSize: number;
  /** Index of the current (writable) layer in `layers`. */
  current: number;
  /** Parents before children. */
  layers: ManifestLayer[];
}

export interface ManifestLayer {
  /** The snapshot this layer holds; null for the current layer. */
  snapshot: string | null;
  /** Index of the parent layer; null for the bottom layer. */
  parent: number | null;
  virtualSize: number;
  /** Bytes of the layer's data and zero records, and how many records. */
  dataBytes: number;
  zeroBytes: number;
  extents: number;
}

/** Larger than any disk QEMU makes (qcow2's limit is 2^61 with 2 MiB clusters); keeps sums exact in a number. */
const MAX_VIRTUAL_SIZE = 2 ** 50;
const MAX_LAYERS = 1000;
const MANIFEST_KEYS = ['format', 'version', 'volume', 'virtualSize', 'current', 'layers'];
const LAYER_KEYS = ['snapshot', 'parent', 'virtualSize', 'dataBytes', 'zeroBytes', 'extents'];

/**
 * Judges a manifest's JSON text: every key known and present, names valid by the naming rules (so no path
 * separator or traversal can reach a layer name), a single tree whose parents come first, one current leaf,
 * sizes sane. Anything else is refused (exit 2) before anything is written.
 */
export function parseManifest(text: string): ChainManifest {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw bad('is not JSON');
  }
  const m = object(raw, 'the manifest', MANIFEST_KEYS);
  if (m.format !== 'volchain-chain') throw bad(`has format ${quoteForeign(String(m.format))}, expected "volchain-chain"`);
  if (m.version !== 1) throw bad(`has version ${quoteForeign(String(m.version))}; this volchain reads version 1`);
  if (typeof m.volume !== 'string') throw bad('has no volume name');
  let format;
  try {
    format = parseVolumeName('dir', m.volume).format;
  } catch {
    throw bad(`names the volume ${quoteForeign(m.volume)}, which is not a volume name (vm-<vmid>-<name>.qcow2)`);
  }
  if (format !== 'qcow2') throw bad(`names the volume ${quoteForeign(m.volume)}, not a qcow2 volume`);
  const virtualSize = size(m.virtualSize, 'virtualSize');
  if (!Array.isArray(m.layers) || m.layers.length === 0 || m.layers.length > MAX_LAYERS) throw bad(`needs 1 to ${MAX_LAYERS} layers`);
  const layers = m.layers.map((l: unknown, i: number) => layerOf(l, i));
  const current = index(m.current, layers.length, 'current');
  const seen = new Set<string>();
  layers.forEach((l, i) => {
    if (i === 0 ? l.parent !== null : l.parent === null) throw bad(`layer ${i}: only the first layer has no parent (one tree, parents first)`);
    if (l.parent !== null && l.parent >= i) throw bad(`layer ${i}: its parent ${l.parent} must come before it`);
    if (l.parent !== null && layers[l.parent]?.snapshot === null) throw bad(`layer ${i}: the current layer cannot be a parent`);
    if ((l.snapshot === null) !== (i === current)) throw bad(`layer ${i}: exactly the current layer (${current}) has no snapshot name`);
    if (l.snapshot !== null) {
      // Case-only twins would be one file on a case-insensitive mount (DESIGN.md section 1).
      const key = l.snapshot.toLowerCase();
      if (seen.has(key)) throw bad(`names snapshot ${quoteForeign(l.snapshot)} twice`);
      seen.add(key);
    }
  });
  if (layers[current]?.virtualSize !== virtualSize) throw bad('virtualSize differs from the current layer');
  return { format: 'volchain-chain', version: 1, volume: m.volume, virtualSize, current, layers };
}

function layerOf(raw: unknown, i: number): ManifestLayer {
  const l = object(raw, `layer ${i}`, LAYER_KEYS);
  if (l.snapshot !== null && (typeof l.snapshot !== 'string' || !isValidSnapshotName(l.snapshot))) {
    throw bad(
      `layer ${i}: snapshot name ${quoteForeign(typeof l.snapshot === 'string' ? l.snapshot : JSON.stringify(l.snapshot))} is not valid (letters, digits, '-', '_'; 2 to 40, starting with a letter)`,
    );
  }
  const virtualSize = size(l.virtualSize, `layer ${i} virtualSize`);
  const dataBytes = count(l.dataBytes, `layer ${i} dataBytes`);
  const zeroBytes = count(l.zeroBytes, `layer ${i} zeroBytes`);
  if (dataBytes + zeroBytes > virtualSize) throw bad(`layer ${i}: ${dataBytes + zeroBytes} bytes of extents exceed its ${virtualSize} bytes`);
  return {
    snapshot: l.snapshot,
    parent: l.parent === null ? null : index(l.parent, MAX_LAYERS, `layer ${i} parent`),
    virtualSize,
    dataBytes,
    zeroBytes,
    extents: count(l.extents, `layer ${i} extents`),
  };
}

function object(raw: unknown, what: string, keys: readonly string[]): Record<string, unknown> {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw bad(`${what} is not an object`);
  const o = raw as Record<string, unknown>;
  // An unknown key (a backing file, a data file, a path) is refused rather than ignored: the format says
  // everything a layer is, and nothing else may ride along.
  const extra = Object.keys(o).filter((k) => !keys.includes(k));
  if (extra.length > 0) throw bad(`${what} has unknown key(s) ${extra.map((k) => quoteForeign(k)).join(', ')}`);
  const missing = keys.filter((k) => !(k in o));
  if (missing.length > 0) throw bad(`${what} lacks ${missing.join(', ')}`);
  return o;
}

function size(v: unknown, what: string): number {
  if (!Number.isSafeInteger(v) || (v as number) <= 0 || (v as number) % 512 !== 0 || (v as number) > MAX_VIRTUAL_SIZE) {
    throw bad(`${what} ${quoteForeign(String(v))} is not a size (a positive multiple of 512 up to ${MAX_VIRTUAL_SIZE})`);
  }
  return v as number;
}

function count(v: unknown, what: string): number {
  if (!Number.isSafeInteger(v) || (v as number) < 0 || (v as number) > MAX_VIRTUAL_SIZE) throw bad(`${what} ${quoteForeign(String(v))} is not a byte count`);
  return v as number;
}

function index(v: unknown, n: number, what: string): number {
  if (!Number.isSafeInteger(v) || (v as number) < 0 || (v as number) >= n) throw bad(`${what} ${quoteForeign(String(v))} is not a layer index`);
  return v as number;
}

function bad(message: string): InvalidInputError {
  return new InvalidInputError(`import stream: the manifest ${message}`);
}

export interface ImportRequest {
  manifest: ChainManifest;
  /** Id the running import registered its stream under (engine/run/import-step.ts). */
  feed: string;
  target: CopyTarget;
}

export function planImport(req: ImportRequest): Plan {
  const { manifest: m, target } = req;
  const name = volumeName(target);
  const volid = formatVolid({ storage: target.storage, kind: target.kind, vmid: target.vmid, name });
  const finals = m.layers.map((l) => (l.snapshot === null ? name : snapshotLayerName(target.kind, name, l.snapshot)));
  const temps = m.layers.map((_, i) => temporaryLayerName(target.kind, name, `imp${letters(i)}`));
  for (const layer of [...finals, ...temps]) {
    if (target.existingNames.includes(layer)) {
      throw new AlreadyExistsError(
        temps.includes(layer)
          ? `${layer} is left from an interrupted import into ${target.storage}: run 'volchain repair' first`
          : `layer ${layer} already exists on ${target.storage} (VM ${target.vmid}): choose another --name`,
      );
    }
  }
  const dataBytes = m.layers.reduce((s, l) => s + l.dataBytes, 0);
  const zeroBytes = m.layers.reduce((s, l) => s + l.zeroBytes, 0);
  const spaceNeededBytes = m.layers.reduce((s, l) => s + target.spaceNeeded(l.virtualSize, l.dataBytes), 0);
  if (spaceNeededBytes > target.freeBytes) {
    throw new NoSpaceError(
      `storage '${target.storage}' has ${formatSize(target.freeBytes)} free, but the import of ${m.layers.length} layer(s) needs ` +
        `${formatSize(spaceNeededBytes)} (${spaceNeededBytes} bytes): ${spaceNeededBytes - target.freeBytes} bytes missing`,
    );
  }
  const parentName = (i: number): string | null => {
    const p = m.layers[i]?.parent;
    return p === null || p === undefined ? null : (finals[p] as string);
  };
  const steps: Step[] = m.layers.map((l, i) => ({
    kind: 'import-layer',
    layer: temps[i] as string,
    backingName: parentName(i),
    index: i,
    sizeBytes: l.virtualSize,
    bytes: l.dataBytes,
    feed: req.feed,
  }));
  steps.push({ kind: 'verify-import', layers: temps.map((t, i) => ({ layer: t, backingName: parentName(i) })), feed: req.feed });
  // Snapshot layers first: the volume's own name, the one listings show, comes last.
  const order = [...m.layers.keys()].sort((a, b) => Number(a === m.current) - Number(b === m.current));
  for (const i of order) steps.push({ kind: 'rename', from: temps[i] as string, to: finals[i] as string });
  for (const i of order) if (i !== m.current) steps.push({ kind: 'freeze', layer: finals[i] as string });
  const snapshots = m.layers.flatMap((l) => (l.snapshot === null ? [] : [l.snapshot]));
  return {
    operation: 'import',
    volid,
    vmid: target.vmid,
    summary:
      `import ${m.volume} (${m.virtualSize} bytes virtual, ${snapshots.length} snapshot(s)${snapshots.length > 0 ? `: ${snapshots.join(', ')}` : ''}) ` +
      `as the new volume ${volid}`,
    bytesMoved: dataBytes,
    import: { sourceName: m.volume, virtualSize: m.virtualSize, snapshots, dataBytes, zeroBytes, spaceNeededBytes, freeBytes: target.freeBytes },
    steps,
  };
}

function volumeName(target: ImportRequest['target']): string {
  if (target.name === undefined) return nextFreeDiskName(target.kind, target.vmid, 'qcow2', target.existingNames);
  if (validateVolumeName(target.kind, target.vmid, target.name) !== 'qcow2') {
    throw new InvalidInputError(`volume name '${target.name}' is not a qcow2 volume name: an imported chain is qcow2 (end the name in .qcow2)`);
  }
  if (target.existingNames.includes(target.name)) {
    throw new AlreadyExistsError(`volume ${formatVolid({ storage: target.storage, kind: target.kind, vmid: target.vmid, name: target.name })} already exists`);
  }
  return target.name;
}

/** 0 -> 'a', 25 -> 'z', 26 -> 'ba': a temporary's purpose must be lower-case letters. */
function letters(i: number): string {
  let s = '';
  let n = i;
  do {
    s = String.fromCharCode(97 + (n % 26)) + s;
    n = Math.floor(n / 26);
  } while (n > 0);
  return s;
}
