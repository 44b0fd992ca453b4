/**
 * Which chain QEMU has open belongs to which volume, which node is which layer today, and whether QEMU's
 * view and the headers on disk agree. Pure: takes QEMU's view (live-view.ts) and the volume trees read from
 * the headers (readVolumeTree, which validated every header).
 *
 * A chain belongs to a volume when every layer QEMU opened lies in the volume's directory (or VG) under a
 * name of that volume: the volume name, one of its snapshot layer names, or one of its temporary names
 * (ownership/layer-owners.ts candidateVolumes).
 * Renames never move a layer from one volume to another, so this holds even for a node opened under a name
 * the layer no longer has. Within the volume, the node at position i of QEMU's chain (top first) is the
 * layer at position i of the chain on disk (the current layer, then its backing, ...): QEMU cannot rename a
 * node, and the paths it reports are those it opened, so positions are the only identity that survives a
 * live snapshot (the old top, opened as `vm-100-disk-0.qcow2`, is `snap-S-vm-100-disk-0.qcow2` now).
 *
 * They agree when: the chains have the same length; the top is writable and every layer below it read-only;
 * each node's format and virtual size are the layer's; and, for read-only layers on regular files, QEMU's
 * file (its own fstat) takes exactly the space the file under the layer's name takes (a cheap proof that
 * QEMU's descriptor and the name point to the same file: no one replaced a snapshot layer under QEMU).
 */
import { basename, dirname } from 'node:path';
import type { Backend } from '../../backends/backend.js';
import { formatVolid, type VolumeRef } from '../../naming/index.js';
import { candidateVolumes } from '../../ownership/layer-owners.js';
import type { QemuBlockView, QemuChain, QemuLayer } from '../../qmp/live-view.js';
import { ancestry, type LayerNode, type VolumeTree } from '../read/volume-tree.js';
import { isBaseLayer, splitCloneBase, type MatchedBase } from './clone.js';

export interface DiskInput {
  backend: Backend;
  volume: VolumeRef;
  tree: VolumeTree;
}

export interface MatchedLayer {
  /** The layer's name on disk today. */
  layer: string;
  snapshot: string | undefined;
  qemu: QemuLayer;
}

export interface DiskMatch extends DiskInput {
  volid: string;
  /** QEMU's chain of this volume; undefined when QEMU does not have the volume open. */
  chain: QemuChain | undefined;
  /** Current chain on disk, top first, each with QEMU's node (empty when not open). */
  layers: MatchedLayer[];
  /** Further chains QEMU has open on layers of this volume (leftover nodes of an interrupted operation). */
  detached: QemuChain[];
  /** Every way QEMU's view and the disk disagree; empty when they agree. */
  problems: string[];
  /** A linked clone's base volume at the bottom of QEMU's chain (engine/live/clone.ts); not one of `layers`. */
  base?: MatchedBase;
}

export interface VmMatch {
  disks: DiskMatch[];
  /** Chains on the VM's storages that belong to no volume given, or mix volumes. */
  unmatched: { chain: QemuChain; reason: string }[];
}

/** The volumes a file name can belong to (several only for ambiguous snapshot names), by ownership's name rules. */
function ownersOfName(backend: Backend, volumes: readonly VolumeRef[], name: string): VolumeRef[] {
  const candidates = candidateVolumes(
    backend.kind,
    name,
    volumes.map((v) => v.name),
  );
  return volumes.filter((v) => candidates.includes(v.name));
}

/** The directory (or VG device directory) where the layers of `vmid` on `backend` live. */
function layerDir(backend: Backend, vmid: number): string {
  return dirname(backend.layerPath(vmid, 'probe'));
}

export function matchVm(view: QemuBlockView, disks: readonly DiskInput[]): VmMatch {
  const byKey = new Map<string, DiskMatch>();
  const key = (d: DiskInput): string => `${d.backend.id}\0${d.volume.vmid}\0${d.volume.name}`;
  for (const d of disks) {
    // The tree's volid: a linked clone's carries its base part, as PVE names it (engine/read/volume-tree.ts).
    byKey.set(key(d), { ...d, volid: d.tree.volid || formatVolid(d.volume), chain: undefined, layers: [], detached: [], problems: [] });
  }
  const dirs = new Map<string, DiskInput[]>();
  for (const d of disks) {
    const dir = layerDir(d.backend, d.volume.vmid);
    dirs.set(dir, [...(dirs.get(dir) ?? []), d]);
  }

  const unmatched: VmMatch['unmatched'] = [];
  const candidates = new Map<string, QemuChain[]>();
  // A linked clone's chain ends in its template's base volume, in another VM's directory (engine/live/clone.ts).
  const basePaths = disks.flatMap((d) => (d.tree.base ? [d.tree.base.path] : []));
  for (const chain of view.chains) {
    let owners: DiskInput[] | undefined;
    let outside = 0;
    let ours = 0;
    for (const [i, l] of chain.layers.entries()) {
      if (i > 0 && i === chain.layers.length - 1 && basePaths.some((p) => isBaseLayer(l, p))) continue; // checked per disk below
      const inDir = l.path !== undefined ? dirs.get(dirname(l.path)) : undefined;
      const first = inDir?.[0];
      const here =
        first && l.path !== undefined
          ? (() => {
              const names = ownersOfName(
                first.backend,
                inDir.map((d) => d.volume),
                basename(l.path),
              );
              return inDir.filter((d) => names.includes(d.volume));
            })()
          : [];
      if (here.length === 0) {
        outside++;
        continue;
      }
      ours++;
      owners = owners === undefined ? here : owners.filter((o) => here.includes(o));
    }
    if (owners === undefined || ours === 0) continue; // nothing of these volumes
    if (outside > 0) {
      unmatched.push({ chain, reason: `the chain mixes layers of these volumes with ${outside} other file(s)` });
    } else if (owners.length === 1) {
      const k = key(owners[0] as DiskInput);
      candidates.set(k, [...(candidates.get(k) ?? []), chain]);
    } else {
      unmatched.push({ chain, reason: owners.length === 0 ? 'its layers belong to different volumes' : 'its layer names fit several volumes' });
    }
  }

  for (const [k, chains] of candidates) {
    const disk = byKey.get(k) as DiskMatch;
    const wanted = ancestry(disk.tree, disk.tree.current);
    // The chain a device uses is the volume's chain; without devices (a VM with no guest devices, -M none), the
    // one as long as the chain on disk, if exactly one is.
    const withDevice = chains.filter((c) => c.devices.length > 0);
    let main: QemuChain | undefined;
    if (withDevice.length === 1) main = withDevice[0];
    else if (withDevice.length > 1)
      disk.problems.push(`${withDevice.length} chains of ${disk.volid} are attached to devices (${withDevice.flatMap((c) => c.devices).join(', ')})`);
    else {
      const sameLength = chains.filter((c) => c.layers.length === wanted.length + (disk.tree.base ? 1 : 0));
      if (chains.length === 1) main = chains[0];
      else if (sameLength.length === 1) main = sameLength[0];
      else disk.problems.push(`QEMU has ${chains.length} chains on layers of ${disk.volid} and no device tells which one is the disk`);
    }
    disk.chain = main;
    // Only what is not the disk's chain itself: a leftover node above a layer of the chain shares its lower part.
    const inMain = new Set(main?.layers.map((l) => l.node) ?? []);
    disk.detached = chains
      .filter((c) => c !== main)
      .map((c) => ({ ...c, layers: c.layers.filter((l) => !inMain.has(l.node)) }))
      .filter((c) => c.layers.length > 0);
    if (main) {
      const split = splitCloneBase(disk.tree, main);
      if (split.base) disk.base = split.base;
      disk.problems.push(...split.problems);
      const { layers, problems } = compareChain(disk, split.chain, wanted);
      disk.layers = layers;
      disk.problems.push(...problems);
    }
  }
  return { disks: [...byKey.values()], unmatched };
}

function compareChain(disk: DiskInput & { volid: string }, chain: QemuChain, wanted: LayerNode[]): { layers: MatchedLayer[]; problems: string[] } {
  const problems: string[] = [];
  const v = disk.volid;
  if (chain.broken !== undefined) problems.push(`QEMU's chain of ${v} cannot be followed: ${chain.broken}`);
  if (chain.layers.length !== wanted.length) {
    problems.push(
      `QEMU's chain of ${v} has ${chain.layers.length} layer(s) but the headers on disk chain ${wanted.length} ` +
        `(${wanted.map((l) => l.name).join(' -> ')}): the chain was changed without QEMU (or QEMU without the files)`,
    );
  }
  const layers: MatchedLayer[] = [];
  const n = Math.min(chain.layers.length, wanted.length);
  for (let i = 0; i < n; i++) {
    const q = chain.layers[i] as QemuLayer;
    const l = wanted[i] as LayerNode;
    layers.push({ layer: l.name, snapshot: l.snapshot, qemu: q });
    const expectedDriver = disk.volume.format === 'raw' ? 'raw' : 'qcow2';
    if (q.driver !== expectedDriver) problems.push(`QEMU opened ${l.name} of ${v} as ${q.driver}, the volume is ${expectedDriver}`);
    if (i === 0 && q.readOnly) problems.push(`QEMU has the current layer ${l.name} of ${v} read-only (node ${q.node})`);
    // PVE 9 opens every layer of a drive read-write (its throttle filter on top keeps the guest's view), so a
    // writable layer below a filter is how PVE left it, not a sign of a job (jobs are checked on their own).
    if (i > 0 && !q.readOnly && chain.filters.length === 0)
      problems.push(`QEMU has snapshot layer ${l.name} of ${v} writable (node ${q.node}): a job may be running on it`);
    if (q.virtualSize !== l.virtualSize) {
      problems.push(`QEMU sees ${q.virtualSize} bytes for ${l.name} of ${v} (node ${q.node}), its header says ${l.virtualSize}`);
    }
    if (i > 0 && q.protocolDriver === 'file' && q.actualSize !== undefined && q.actualSize !== l.usedBytes) {
      problems.push(
        `QEMU's file for ${l.name} of ${v} (node ${q.node}) takes ${q.actualSize} bytes, the file called ${l.name} ${l.usedBytes}: ` +
          'they are not the same file',
      );
    }
  }
  return { layers, problems };
}
