/**
 * QEMU's view of its block graph, as chains of layers: which format node sits on which file, which node is
 * whose backing, which guest device uses which chain. Built from query-named-block-nodes (and query-block for
 * devices), so it is what QEMU really has open, whatever the headers on disk say.
 *
 * The links come from the filenames QEMU reports: a format node's `backing_file` is exactly the `file` its
 * backing node reports (a plain path for a base, a `json:{...}` pseudo-filename for a node whose backing was
 * given explicitly, which spells out the whole chain below it). Two nodes report the same `file` only when
 * they were opened on the same paths all the way down; such an ambiguity is reported, never guessed.
 *
 * Paths are the paths *as opened*: QEMU keeps file descriptors, so a layer renamed later (the old top that
 * became a snapshot) still reports its old path. Which layer a node is today is therefore decided by its
 * position in the chain (engine/live/match.ts), never by its path alone.
 */
import { reportedPath } from './blockdev.js';
import type { QmpExecutor } from './client.js';
import { queryBlock, queryJobs, queryNamedBlockNodes, type BlockDeviceInfo, type BlockInfo, type JobInfo } from './commands.js';

/** Drivers of protocol nodes (the file under a format node). */
const PROTOCOL_DRIVERS: ReadonlySet<string> = new Set(['file', 'host_device', 'host_cdrom', 'nbd', 'iscsi', 'rbd', 'nfs', 'ssh', 'http', 'https']);
/** Drivers of format nodes whose chains volchain manages. */
const LAYER_DRIVERS: ReadonlySet<string> = new Set(['qcow2', 'raw']);
/**
 * Filter drivers a guest device may sit on above a chain's top: PVE 9 puts a `throttle` node `drive-<id>` there
 * (and `zeroinit` / `alloc-track` for some drives). Live operations work below them: a blockdev-snapshot or an
 * active commit replaces the top node in all its parents, the filter included, so the filter stays on top.
 */
const FILTER_DRIVERS: ReadonlySet<string> = new Set(['throttle', 'zeroinit', 'alloc-track', 'copy-on-read']);

export interface QemuLayer {
  /** Format node name. */
  node: string;
  /** Its protocol node, when it is a separate named node. */
  protocolNode: string | undefined;
  /** That protocol node's driver (`file` for a regular file, `host_device` for an LV). */
  protocolDriver: string | undefined;
  driver: string;
  /** The file the layer was opened as (not necessarily its name today). */
  path: string | undefined;
  readOnly: boolean;
  virtualSize: number;
  /** Bytes the file takes on its storage (QEMU's fstat of its own descriptor), when QEMU reports it. */
  actualSize: number | undefined;
}

export interface QemuChain {
  /** Layers from the top (the node devices and jobs name) down to the base. */
  layers: QemuLayer[];
  /** Guest devices using the chain's top (qdev ids, or legacy drive names), directly or through filters. */
  devices: string[];
  /** Filter nodes between the devices and the top, outermost first (PVE's `drive-<id>` throttle node). */
  filters: string[];
  /** Set when a backing link could not be followed (a filter node in between, or an ambiguous filename). */
  broken?: string;
}

export interface QemuBlockView {
  chains: QemuChain[];
  /** Every named node as QEMU reported it. */
  nodes: BlockDeviceInfo[];
  /** Block jobs QEMU runs (or keeps concluded). */
  jobs: JobInfo[];
  /** Guest devices whose medium is a node that is not the top of any chain (e.g. a job's filter). */
  strayDevices: { device: string; node: string | undefined }[];
}

/** The view, from query-named-block-nodes (flat), query-block and query-jobs results. Pure. */
export function buildBlockView(nodes: readonly BlockDeviceInfo[], blocks: readonly BlockInfo[], jobs: readonly JobInfo[] = []): QemuBlockView {
  const named = nodes.filter((n): n is BlockDeviceInfo & { 'node-name': string } => typeof n['node-name'] === 'string' && n['node-name'] !== '');
  const byName = new Map(named.map((n) => [n['node-name'], n]));
  const layerNodes = named.filter((n) => LAYER_DRIVERS.has(n.drv));
  // Which nodes report which filename: the key for following backing links.
  const byFile = new Map<string, string[]>();
  for (const n of named) {
    if (PROTOCOL_DRIVERS.has(n.drv)) continue;
    const list = byFile.get(n.file) ?? [];
    list.push(n['node-name']);
    byFile.set(n.file, list);
  }

  const backingOf = new Map<string, { node?: string; problem?: string }>();
  for (const n of layerNodes) {
    const backing = n.backing_file;
    if (backing === undefined || backing === '') continue;
    const candidates = (byFile.get(backing) ?? []).filter((c) => c !== n['node-name']);
    if (candidates.length === 1) {
      const target = byName.get(candidates[0] as string);
      if (target && LAYER_DRIVERS.has(target.drv)) backingOf.set(n['node-name'], { node: target['node-name'] });
      else
        backingOf.set(n['node-name'], { problem: `backing of ${n['node-name']} is node ${candidates[0] ?? '?'} (driver ${target?.drv ?? '?'}), not a layer` });
    } else if (candidates.length === 0) {
      backingOf.set(n['node-name'], { problem: `backing of ${n['node-name']} (${describeFile(backing)}) is no named node` });
    } else {
      backingOf.set(n['node-name'], { problem: `backing of ${n['node-name']} could be any of ${candidates.join(', ')} (they report the same filename)` });
    }
  }
  const isBacking = new Set([...backingOf.values()].flatMap((b) => (b.node ? [b.node] : [])));

  const devicesOf = new Map<string, string[]>();
  const filtersOf = new Map<string, string[]>();
  const strayDevices: { device: string; node: string | undefined }[] = [];
  for (const b of blocks) {
    const device = b.qdev ?? b.device;
    const node = b.inserted?.['node-name'];
    if (!b.inserted) continue;
    const found = node !== undefined ? belowFilters(node, byName, isBacking) : undefined;
    if (found) {
      devicesOf.set(found.layer, [...(devicesOf.get(found.layer) ?? []), device]);
      if (found.filters.length > 0) filtersOf.set(found.layer, found.filters);
    } else {
      strayDevices.push({ device, node });
    }
  }

  // A chain starts at every node a device uses, and at every layer node that is nobody's backing. Both can
  // hold for different nodes of one disk: after an active commit the device is on the base, while the old top
  // (until blockdev-del) still names the base as its backing.
  const chains: QemuChain[] = [];
  const roots = layerNodes.filter((n) => devicesOf.has(n['node-name']) || !isBacking.has(n['node-name']));
  for (const root of roots) {
    const layers: QemuLayer[] = [];
    let broken: string | undefined;
    const seen = new Set<string>();
    for (let at: BlockDeviceInfo | undefined = root; at;) {
      const name = at['node-name'] as string;
      if (seen.has(name)) {
        broken = `backing links of ${root['node-name']} loop at ${name}`;
        break;
      }
      seen.add(name);
      layers.push(layerOf(at, named));
      const link = backingOf.get(name);
      if (!link) break;
      if (link.problem !== undefined) {
        broken = link.problem;
        break;
      }
      at = link.node !== undefined ? byName.get(link.node) : undefined;
    }
    chains.push({
      layers,
      devices: devicesOf.get(root['node-name']) ?? [],
      filters: filtersOf.get(root['node-name']) ?? [],
      ...(broken !== undefined ? { broken } : {}),
    });
  }
  chains.sort((a, b) => (a.layers[0]?.node ?? '').localeCompare(b.layers[0]?.node ?? ''));
  return { chains, nodes: [...nodes], jobs: [...jobs], strayDevices };
}

/**
 * The layer node a device's node stands for: the node itself when it is a layer, else the layer below the
 * filters on top of it. QEMU 7.2 reports no `children`; a filter's child is told by the pseudo-filename the
 * filter reports (`json:{"driver": "throttle", "file": {<the child's options>}}`): the child is the one layer
 * node of that driver, opened on the same path, that is nobody's backing. Undefined when none or several fit.
 */
function belowFilters(
  node: string,
  byName: ReadonlyMap<string, BlockDeviceInfo>,
  isBacking: ReadonlySet<string | undefined>,
): { layer: string; filters: string[] } | undefined {
  const filters: string[] = [];
  for (let at = byName.get(node), depth = 0; at && depth < 8; depth++) {
    const name = at['node-name'] as string;
    if (LAYER_DRIVERS.has(at.drv)) return { layer: name, filters };
    if (!FILTER_DRIVERS.has(at.drv)) return undefined;
    filters.push(name);
    const child = filterChild(at.file);
    if (!child) return undefined;
    const path = reportedPath(`json:${JSON.stringify(child.options)}`) ?? (typeof child.options['file'] === 'string' ? child.options['file'] : undefined);
    if (typeof child.options['node-name'] === 'string') {
      at = byName.get(child.options['node-name']);
      continue;
    }
    const driver = child.options['driver'];
    const sameFile = [...byName.values()].filter(
      (n) => n.drv === driver && path !== undefined && reportedPath(n.file) === path && n['node-name'] !== name && !PROTOCOL_DRIVERS.has(n.drv),
    );
    // Exactly the child's options (its whole chain below, as QEMU spells it), else the one that is nobody's
    // backing: after an active commit's pivot the old top, opened on the same path, still sits above the base.
    const exact = sameFile.filter((n) => sameOptions(n, child.options));
    const fits = exact.length > 0 ? exact : sameFile.filter((n) => FILTER_DRIVERS.has(n.drv) || !isBacking.has(n['node-name']));
    if (fits.length !== 1) return undefined;
    at = fits[0];
  }
  return undefined;
}

/** Whether node `n` reports exactly `options` (a json: filename equal to them, or a plain path without backing). */
function sameOptions(n: BlockDeviceInfo, options: Record<string, unknown>): boolean {
  if (n.file.startsWith('json:')) {
    try {
      return canonical(JSON.parse(n.file.slice('json:'.length))) === canonical(options);
    } catch {
      return false;
    }
  }
  return options['backing'] === undefined && reportedPath(`json:${JSON.stringify(options)}`) === n.file;
}

function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (typeof v === 'object' && v !== null) {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical(o[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v);
}

/** The `file` child options of a filter's pseudo-filename; undefined when there is none. */
function filterChild(filename: string): { options: Record<string, unknown> } | undefined {
  if (!filename.startsWith('json:')) return undefined;
  try {
    const o = JSON.parse(filename.slice('json:'.length)) as Record<string, unknown>;
    const file = o['file'];
    if (typeof file === 'object' && file !== null) return { options: file as Record<string, unknown> };
    if (typeof file === 'string') return { options: { 'node-name': file } };
  } catch {
    return undefined;
  }
  return undefined;
}

function layerOf(n: BlockDeviceInfo, all: readonly BlockDeviceInfo[]): QemuLayer {
  const node = n['node-name'] as string;
  const path = reportedPath(n.file);
  // Our own format nodes `fmt-<h>` sit on `file-<h>`; otherwise the protocol node reporting the same path, if
  // exactly one does.
  const paired = node.startsWith('fmt-') ? `file-${node.slice('fmt-'.length)}` : undefined;
  let protocol = paired !== undefined ? all.find((o) => o['node-name'] === paired && PROTOCOL_DRIVERS.has(o.drv)) : undefined;
  if (!protocol && path !== undefined) {
    const same = all.filter((o) => PROTOCOL_DRIVERS.has(o.drv) && o.file === path);
    if (same.length === 1) protocol = same[0];
  }
  return {
    node,
    protocolNode: protocol?.['node-name'],
    protocolDriver: protocol?.drv,
    driver: n.drv,
    path,
    readOnly: n.ro,
    virtualSize: n.image['virtual-size'],
    actualSize: n.image['actual-size'],
  };
}

function describeFile(filename: string): string {
  const path = reportedPath(filename);
  return path ?? filename.slice(0, 80);
}

/** Reads QEMU's view through a connected client (three queries). */
export async function readBlockView(c: QmpExecutor): Promise<QemuBlockView> {
  const nodes = await queryNamedBlockNodes(c);
  const blocks = await queryBlock(c);
  const jobs = await queryJobs(c);
  return buildBlockView(nodes, blocks, jobs);
}
