/**
 * Linked clones in QEMU's graph (PVE on dir storage; DESIGN.md section 6, engine/read/clone-base.ts). A clone's chain in
 * QEMU ends in the template's base volume `../<basevmid>/base-<basevmid>-disk-<m>.<fmt>`, which is not a
 * member of the clone's tree: it is shown as the chain's bottom, never as a layer, never written.
 *
 * How PVE 9 opens a linked clone (qemu-server Blockdev.pm generate_drive_blockdev /
 * generate_backing_chain_blockdev, pve-storage Plugin.pm volume_snapshot_info): the clone's layers, named
 * f/e<hash("drive=<id>,[snap=<S>,]volid=<clone volid>")>, each with the next one as explicit `backing`; the
 * bottom layer gets *no* `backing` key, because volume_snapshot_info knows the base as no snapshot (its file
 * name is neither the volume's nor a snap- name, so the bottom layer has no parent). QEMU then opens the
 * base from the bottom layer's header itself: a read-only qcow2 (or raw, from the header's backing format)
 * with generated node names (`#block<n>`), on the path `<images>/<vmid>/../<basevmid>/base-…`. PVE's live
 * operations never name the base node: a delete of the oldest snapshot commits its child into it (the base
 * is untouched), a middle one streams with base-node = the parent snapshot.
 *
 * volchain's `qemu-args` instead opens the base explicitly (a header never decides which file QEMU opens),
 * read-only down to its protocol node, with the format read and checked natively (backend.inspectBase):
 * volchain's node names for the reference, or with `--drive-id`, f/e<hash("drive=<id>,volid=<base volid>")>
 * (no node of PVE's has that input: PVE hashes the clone's volid for every layer of the clone).
 */
import { resolve } from 'node:path';
import type { ChainLayerSpec } from '../../qmp/blockdev.js';
import type { QemuChain, QemuLayer } from '../../qmp/live-view.js';
import type { VolumeTree } from '../read/volume-tree.js';

/** The base volume as the bottom of a clone's chain in QEMU (attach-info's `base`). */
export interface MatchedBase {
  /** The backing reference the clone's bottom layer holds: `../<basevmid>/<basename>`. */
  ref: string;
  volid: string;
  qemu: QemuLayer;
}

/** The chain spec of a clone's base for qmp/blockdev.ts (read-only down to the file), or undefined for no clone. */
export function cloneBaseSpec(tree: Pick<VolumeTree, 'base'>): ChainLayerSpec | undefined {
  const base = tree.base;
  if (base === undefined) return undefined;
  return { name: base.ref, path: base.path, format: base.volume.format === 'raw' ? 'raw' : 'qcow2', readOnly: true, protocolReadOnly: true };
}

/** Whether QEMU's layer `l` was opened on the base volume's file (PVE's path goes through `<vmid>/../`). */
export function isBaseLayer(l: Pick<QemuLayer, 'path'>, basePath: string): boolean {
  return l.path !== undefined && resolve(l.path) === resolve(basePath);
}

/**
 * Splits QEMU's chain of a clone into the clone's own layers and the base at its bottom, and checks the base
 * node: the base's format, read-only (nothing may write a base), its virtual size. A chain that does not end
 * in the base (QEMU opened the clone without it: the guest would read zeroes) is a problem.
 */
export function splitCloneBase(tree: Pick<VolumeTree, 'base' | 'volid'>, chain: QemuChain): { chain: QemuChain; base?: MatchedBase; problems: string[] } {
  const base = tree.base;
  if (base === undefined) return { chain, problems: [] };
  const last = chain.layers[chain.layers.length - 1];
  if (last === undefined || !isBaseLayer(last, base.path)) {
    return {
      chain,
      problems: [`QEMU's chain of ${tree.volid} does not end in its base volume ${base.volid} (${base.path}): the guest would not see the template's data`],
    };
  }
  const problems: string[] = [];
  const format = base.volume.format === 'raw' ? 'raw' : 'qcow2';
  if (last.driver !== format) problems.push(`QEMU opened base volume ${base.volid} as ${last.driver}, it is ${format}`);
  if (!last.readOnly) problems.push(`QEMU has base volume ${base.volid} writable (node ${last.node}): a base volume is never written`);
  if (last.virtualSize !== base.virtualSize)
    problems.push(`QEMU sees ${last.virtualSize} bytes for base volume ${base.volid} (node ${last.node}), its header says ${base.virtualSize}`);
  return { chain: { ...chain, layers: chain.layers.slice(0, -1) }, base: { ref: base.ref, volid: base.volid, qemu: last }, problems };
}
