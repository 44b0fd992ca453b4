/**
 * How QEMU opens a volume's chain: `-blockdev` definitions (or blockdev-add arguments) with stable node
 * names, built from the chain volchain validated (readVolumeTree + ancestry), never from what QEMU would find
 * in the headers.
 *
 * Every layer becomes two nodes, defined separately and bottom-up (a -blockdev may only name nodes defined
 * before it):
 * - a protocol node `file-<h>`: driver `file`, or `host_device` for a /dev path (an LV);
 * - a format node `fmt-<h>`: driver `qcow2` (or `raw` for a raw base), `file` = its protocol node, and
 *   `backing` = the next layer's format node, or null for the base. Explicit backing means QEMU neither
 *   probes a format nor follows a backing name from a header: a hostile header cannot make QEMU open
 *   another file (DESIGN.md section 6).
 *
 * Node names: `<h>` = the first 20 hex digits of SHA-256("volchain\0<storage>\0<layer name>"), so
 * `fmt-` + 20 = 24 and `file-` + 20 = 25 characters, under QEMU's 31; 80 bits make collisions between the
 * few dozen layers of one VM impossible in practice; a name is the same in every process that computes it,
 * so a later volchain run (attach-info) finds a running VM's nodes again without any state of its own:
 * hash the layers of the VM's volumes (`layerNodeNames`) and look the nodes up (`nodeOwner`).
 * The hash covers the name a layer had *when QEMU opened it*: a node cannot be renamed, so when a live
 * operation renames a layer (a snapshot turns the current layer into `snap-S-...`), the open node keeps
 * the old name for as long as it stays open. Which layer a node is today is decided by its position in the
 * chain QEMU reports (src/engine/live/match.ts), never by its name or the path it was opened with.
 *
 * Defaults, and why:
 * - layers below the top are `read-only: true` (frozen snapshots; a commit job reopens its base read-write
 *   itself, and back afterwards); the top is read-write;
 * - protocol nodes are opened read-write (`read-only: false`, and *not* `auto-read-only`), whatever the
 *   format node above them: the access mode of a protocol node then never changes, so QEMU never reopens the
 *   file. That matters because QEMU reopens a file *by the name it was opened with* when the access mode
 *   changes (file-posix raw_reconfigure_getfd), and live operations rename layers under QEMU: with
 *   auto-read-only, the old top of a live snapshot (opened as `vm-100-disk-0.qcow2`, renamed to the snapshot
 *   layer) is reopened read-only by name at the switch and silently ends up on the *new* top's file. Which
 *   layers may be written stays with the format nodes (read-only below the top) and QEMU's permission locks:
 *   a read-only layer's protocol node takes no write permission, so other processes may still read it;
 * - `discard: unmap` on both nodes so guest TRIM frees space in the files (qcow2 turns a discard in an
 *   overlay into zero clusters, never into holes that would show the backing data);
 * - `detect-zeroes: unmap` on format nodes (as Proxmox VE does for disks with discard on): a guest writing
 *   zeroes allocates nothing;
 * - cache: QEMU's default (writeback through the host page cache); `cacheDirect` asks for O_DIRECT, which
 *   tmpfs refuses.
 */
import { createHash } from 'node:crypto';
import { InvalidInputError } from '../errors.js';
import type { BlockdevOptions, BlockdevOptionsFile, BlockdevOptionsQcow2, BlockdevOptionsRaw } from './commands.js';

/** QEMU's limit: node names live in a 32-byte buffer (31 characters + NUL). */
export const NODE_NAME_MAX = 31;
const NODE_NAME_RE = /^[A-Za-z][A-Za-z0-9._-]*$/;
const HASH_HEX_DIGITS = 20;
export const FORMAT_NODE_PREFIX = 'fmt-';
export const PROTOCOL_NODE_PREFIX = 'file-';

export interface LayerNodeNames {
  /** The qcow2 (or raw) node: what devices, jobs and snapshots name. */
  format: string;
  /** The file/host_device node below it. */
  protocol: string;
}

/** The node names of one layer of one storage (see the header for the scheme). */
export function layerNodeNames(storage: string, layerName: string): LayerNodeNames {
  if (storage === '' || layerName === '') throw new InvalidInputError('node names need a storage id and a layer name');
  const h = createHash('sha256').update(`volchain\0${storage}\0${layerName}`).digest('hex').slice(0, HASH_HEX_DIGITS);
  return { format: `${FORMAT_NODE_PREFIX}${h}`, protocol: `${PROTOCOL_NODE_PREFIX}${h}` };
}

export function isValidNodeName(name: string): boolean {
  return name.length <= NODE_NAME_MAX && NODE_NAME_RE.test(name);
}

export interface ChainLayerSpec {
  /** Layer name (file name in the VM's image directory, or LV name). */
  name: string;
  /** Absolute path QEMU opens: a file, or /dev/<vg>/<lv>. */
  path: string;
  format: 'qcow2' | 'raw';
  /** Open read-only. Default: every layer but the top. */
  readOnly?: boolean;
  /**
   * Open the protocol node read-only too (a linked clone's base volume: PVE makes it 0444 and immutable, so a
   * read-write open fails, and it is never renamed or written, so the reason for read-write protocol nodes
   * above does not apply). Default false.
   */
  protocolReadOnly?: boolean;
}

export interface BlockdevDefaults {
  discard?: 'ignore' | 'unmap';
  detectZeroes?: 'off' | 'on' | 'unmap';
  /** O_DIRECT (cache.direct). Default false. */
  cacheDirect?: boolean;
  /** `discard-no-unref` on qcow2 nodes: only when the QEMU has it (qemu-features.ts). Default false. */
  discardNoUnref?: boolean;
}

export interface ChainBlockdevs {
  /** Definitions in command-line order: base layer first, protocol node before its format node. */
  nodes: BlockdevOptions[];
  /** Format node of the top layer: what a device's `drive=` names. */
  top: string;
  /** Node names by layer name. */
  byLayer: Map<string, LayerNodeNames>;
}

/**
 * Nodes for a whole chain, `layers` given top first (as ancestry() returns them). Only the base may be raw;
 * layer names must be unique.
 */
export function chainBlockdevs(
  storage: string,
  layers: readonly ChainLayerSpec[],
  defaults: BlockdevDefaults = {},
  /** Node names of a layer other than volchain's own (PVE's, for `qemu-args --drive-id`). */
  namesOf: (layer: ChainLayerSpec) => LayerNodeNames = (l) => layerNodeNames(storage, l.name),
): ChainBlockdevs {
  const top = layers[0];
  if (!top) throw new InvalidInputError('a chain needs at least one layer');
  const byLayer = new Map<string, LayerNodeNames>();
  layers.forEach((layer, i) => {
    if (byLayer.has(layer.name)) throw new InvalidInputError(`layer ${layer.name} appears twice in the chain`);
    if (layer.format === 'raw' && i !== layers.length - 1) {
      throw new InvalidInputError(`layer ${layer.name} is raw but has a layer below it: only a chain's base can be raw`);
    }
    byLayer.set(layer.name, namesOf(layer));
  });
  const nodes: BlockdevOptions[] = [];
  for (let i = layers.length - 1; i >= 0; i--) {
    const layer = layers[i] as ChainLayerSpec;
    const below = layers[i + 1];
    const names = byLayer.get(layer.name) as LayerNodeNames;
    const readOnly = layer.readOnly ?? i > 0;
    nodes.push(protocolNode(names.protocol, layer.path, defaults, layer.protocolReadOnly === true));
    nodes.push(formatNode(names, layer.format, below ? (byLayer.get(below.name) as LayerNodeNames).format : null, readOnly, defaults));
  }
  return { nodes, top: (byLayer.get(top.name) as LayerNodeNames).format, byLayer };
}

/**
 * The two nodes of a new, empty top for a live snapshot: qcow2 with `backing: null` (blockdev-snapshot
 * installs the old top as its backing), read-write. blockdev-add the protocol node first, then the format node.
 */
export function overlayBlockdevs(
  storage: string,
  layer: { name: string; path: string; names?: LayerNodeNames },
  defaults: BlockdevDefaults = {},
): { names: LayerNodeNames; nodes: [BlockdevOptionsFile, BlockdevOptionsQcow2] } {
  // `names`: node names chosen by the caller (a live snapshot's new top: the layer's own names are taken by
  // the old top, which stays open as the snapshot layer).
  const names = layer.names ?? layerNodeNames(storage, layer.name);
  return {
    names,
    nodes: [protocolNode(names.protocol, layer.path, defaults), formatNode(names, 'qcow2', null, false, defaults) as BlockdevOptionsQcow2],
  };
}

/** `-blockdev <json>` pairs for an argv (no shell: the JSON needs no quoting, and commas in paths are safe). */
export function blockdevArgv(nodes: readonly BlockdevOptions[]): string[] {
  return nodes.flatMap((n) => ['-blockdev', JSON.stringify(n)]);
}

/** Which of `candidates` (storage, layer) a node name belongs to, by recomputing names; undefined if none. */
export function nodeOwner<T extends { storage: string; layer: string }>(
  nodeName: string,
  candidates: Iterable<T>,
): (T & { role: 'format' | 'protocol' }) | undefined {
  for (const c of candidates) {
    const names = layerNodeNames(c.storage, c.layer);
    if (names.format === nodeName) return { ...c, role: 'format' };
    if (names.protocol === nodeName) return { ...c, role: 'protocol' };
  }
  return undefined;
}

/**
 * The path of the file behind a filename QEMU reports (BlockDeviceInfo.file, backing_file, ImageInfo.filename).
 * QEMU 7.2 reports a plain path only for nodes it could have opened from a path alone; a format node whose
 * backing was given explicitly (every node blockdev.ts defines above a base) is reported as a
 * `json:{"driver": "qcow2", "file": {"driver": "file", "filename": ...}, "backing": {...}}` pseudo-filename.
 * Returns that inner filename, the plain path as is, or undefined when there is no file path to find.
 */
export function reportedPath(filename: string): string | undefined {
  if (!filename.startsWith('json:')) return filename === '' ? undefined : filename;
  let options: unknown;
  try {
    options = JSON.parse(filename.slice('json:'.length));
  } catch {
    return undefined;
  }
  // Follow `file` children down to the protocol node (format → file, possibly through filters).
  for (let node = options, depth = 0; depth < 8 && typeof node === 'object' && node !== null; depth++) {
    const o = node as Record<string, unknown>;
    if (typeof o['filename'] === 'string') return o['filename'];
    if (typeof o['file'] === 'string') return o['file'].startsWith('json:') ? reportedPath(o['file']) : o['file'];
    node = o['file'];
  }
  return undefined;
}

export function protocolDriver(path: string): 'file' | 'host_device' {
  return path.startsWith('/dev/') ? 'host_device' : 'file';
}

function protocolNode(nodeName: string, path: string, d: BlockdevDefaults, readOnly = false): BlockdevOptionsFile {
  if (!path.startsWith('/')) throw new InvalidInputError(`layer path ${JSON.stringify(path)} is not absolute`);
  const node: BlockdevOptionsFile = {
    driver: protocolDriver(path),
    'node-name': nodeName,
    filename: path,
    'read-only': readOnly,
    discard: d.discard ?? 'unmap',
  };
  if (d.cacheDirect) node.cache = { direct: true, 'no-flush': false };
  return node;
}

function formatNode(
  names: LayerNodeNames,
  format: 'qcow2' | 'raw',
  backing: string | null,
  readOnly: boolean,
  d: BlockdevDefaults,
): BlockdevOptionsQcow2 | BlockdevOptionsRaw {
  const discard = d.discard ?? 'unmap';
  // detect-zeroes=unmap is only valid with discard=unmap; fall back to 'on' otherwise.
  let detectZeroes = d.detectZeroes ?? 'unmap';
  if (detectZeroes === 'unmap' && discard !== 'unmap') detectZeroes = 'on';
  const common = {
    'node-name': names.format,
    'read-only': readOnly,
    discard,
    'detect-zeroes': detectZeroes,
    ...(d.cacheDirect ? { cache: { direct: true, 'no-flush': false } } : {}),
  };
  if (format === 'raw') return { driver: 'raw', ...common, file: names.protocol };
  return { driver: 'qcow2', ...common, file: names.protocol, backing, ...(d.discardNoUnref ? { 'discard-no-unref': true } : {}) };
}
