/**
 * Linked clones of templates (PVE on dir storage; DESIGN.md sections 1 and 6). A clone's own layers live in
 * `images/<vmid>/` like any volume's; its bottom layer (after snapshot deletes, possibly several bottom
 * layers) is backed by `../<basevmid>/base-<basevmid>-….<fmt>`, the template's base volume. The base is not
 * a member of the clone's tree: volchain reads through it but never writes it, and no plan names it except as
 * the new backing of a rebase (delete of the clone's oldest snapshot), which only reads it.
 *
 * Also: which volumes of a storage are clones of a given base (list, info, free of a base).
 */
import type { Backend, BaseInfo } from '../../backends/backend.js';
import { InvalidInputError, UnsafeImageError } from '../../errors.js';
import { baseBackingRef, formatVolid, parseBaseBackingRef, type BaseVolume, type StorageKind, type VolumeRef } from '../../naming/index.js';
import { backingNameProblem } from '../../qcow2/index.js';

export interface CloneBase extends BaseInfo {
  /** The backing reference the clone's bottom layer holds: `../<basevmid>/<basename>`. */
  ref: string;
  volume: BaseVolume;
  /** The base volume's own volid, `<storage>:<basevmid>/<basename>`. */
  volid: string;
}

/**
 * The base volume the layers of `volume` end in, checked (backend.inspectBase: a regular file of this
 * storage, format read natively, no backing file of its own), or undefined when the volume is no clone.
 * Throws when the layers name two different bases, when the base is the volume's own VM's, or when the volid
 * named a base that is not the one the headers name.
 */
export async function settleCloneBase(
  backend: Backend,
  volume: VolumeRef,
  volid: string,
  /** The volume's layers (engine/read/volume-tree.ts LayerNode; only what is needed here, so no import cycle). */
  nodes: Iterable<{ name: string; base?: string }>,
): Promise<CloneBase | undefined> {
  let ref: string | undefined;
  let holder = '';
  for (const node of nodes) {
    if (node.base === undefined) continue;
    if (ref !== undefined && node.base !== ref) {
      throw new UnsafeImageError(node.name, `names base volume ${node.base} while ${holder} of the same volume names ${ref}`, node.base);
    }
    ref = node.base;
    holder = node.name;
  }
  const given = volume.base;
  if (ref === undefined) {
    if (given !== undefined) {
      throw new InvalidInputError(
        `volume ${volid} is not a linked clone: its chain does not end in base volume ${given.name}; address it as '${volume.storage}:${volume.vmid}/${volume.name}'`,
      );
    }
    return undefined;
  }
  // parseBaseBackingRef accepted it while the header was validated (engine/read/volume-tree.ts).
  const base = parseBaseBackingRef(ref, volume.kind) as BaseVolume;
  if (base.vmid === volume.vmid) {
    // PVE clones a template into another VM only; a VM's disk backed by its own base is not PVE's doing.
    throw new UnsafeImageError(holder, `is backed by a base volume of its own VM ${volume.vmid}, which PVE never makes`, ref);
  }
  const baseVolid = formatVolid({ storage: volume.storage, kind: volume.kind, vmid: base.vmid, name: base.name });
  if (given !== undefined && (given.vmid !== base.vmid || given.name !== base.name)) {
    throw new InvalidInputError(`volume ${volid} is a linked clone of ${baseVolid}, not of ${given.vmid}/${given.name}`);
  }
  if (!backend.capabilities.baseVolumes) {
    // Unreachable: the header policy accepts the reference only when the backend can check it.
    throw new UnsafeImageError(holder, "backing reference leaves the volume's directory", ref);
  }
  const info = await backend.inspectBase(base);
  return { ...info, ref, volume: base, volid: baseVolid };
}

/**
 * Checks a rebase step's new backing before qemu-img is given it (a step may come from a journal file, which
 * is data): none, a bare layer name of the same directory (format qcow2), or a linked clone's base reference
 * with the base's format. Throws UnsafeImageError otherwise.
 */
export function checkRebaseTarget(layer: string, onto: string | null, ontoFormat: unknown, kind: StorageKind = 'dir'): void {
  if (onto === null) {
    if (ontoFormat === undefined) return;
  } else if (typeof onto === 'string') {
    const base = parseBaseBackingRef(onto, kind);
    if (base !== undefined ? ontoFormat === base.format : ontoFormat === undefined && backingNameProblem(onto) === undefined) return;
  }
  throw new UnsafeImageError(
    layer,
    `rebase target ${JSON.stringify(onto)} (format ${JSON.stringify(ontoFormat ?? 'qcow2')}) is neither a layer of this volume nor a linked clone's base volume`,
  );
}

/** The volids of the linked clones among `entries` whose base is `baseVolid` (entries read from one storage). */
export function clonesOf(baseVolid: string, entries: readonly { volid: string; base?: string | null }[]): string[] {
  return entries
    .filter((e) => e.base === baseVolid)
    .map((e) => e.volid)
    .sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
}

/**
 * Every linked clone of the base volume `base` on `backend`, by volid, found from the headers: each volume of
 * the storage whose chain ends in it. `readBase` reads one volume and returns its volid, the volid of its base
 * (or null) and its layer names;
 * a volume that cannot be read is looked at layer by layer: any of its files that names the base counts, so
 * an unreadable clone still keeps its base from being removed.
 */
export async function findClones(
  backend: Backend,
  base: Pick<VolumeRef, 'vmid' | 'name' | 'storage' | 'kind'>,
  readBase: (volume: VolumeRef) => Promise<{ volid: string; base: string | null; layers: readonly string[] }>,
  headerBacking: (vmid: number, layerName: string) => Promise<string | undefined>,
): Promise<string[]> {
  const baseVolid = formatVolid(base);
  const ref = baseBackingRef(base, base.kind);
  const found = new Set<string>();
  for (const vmid of await backend.listVmids()) {
    if (vmid === base.vmid) continue;
    const covered = new Set<string>();
    for (const volume of await backend.listVolumes(vmid)) {
      try {
        const read = await readBase(volume);
        if (read.base === baseVolid) found.add(read.volid);
        for (const name of read.layers) covered.add(name);
      } catch {
        // unreadable: its layers are looked at one by one below
      }
    }
    for (const name of await backend.listLayerNames(vmid)) {
      if (covered.has(name)) continue;
      let backing: string | undefined;
      try {
        backing = await headerBacking(vmid, name);
      } catch {
        continue; // not a qcow2 image, or not a regular file: it names no base
      }
      if (backing === ref) found.add(`${backend.id}:${vmid}/${name}`);
    }
  }
  return [...found].sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
}
