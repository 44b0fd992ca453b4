/**
 * What volchain records about each layer in its LV's tags, so that a chain can be read from `lvs` alone
 * (no activation: on a shared VG another host may hold the LVs, PVE bug 6819), and the pure rules that
 * map LVs to volumes. No I/O here.
 *
 * Tags on every layer volchain writes:
 *   pve-vm-<vmid>                 as PVE writes it (PVE selects a VM's LVs by this tag)
 *   pve-<volume>                  on qcow2 layers, as PVE 9 writes it (`--addtag @pve-<name>` when it creates
 *                                 a layer under the volume's name; LVM drops the `@`); PVE's rename_volume
 *                                 moves it to the new name, which is how a stale volchain record is noticed
 *   volchain.vol.<volume>         the volume (current layer's LV name) the layer belongs to; set when the LV
 *                                 is created and never changed (layers never move between volumes)
 *   volchain.parent.<layer>       the LV name of the layer's backing image (its qcow2 backing reference)
 *   volchain.noparent             ... or: the layer has no backing image
 *   volchain.size.<bytes>         the image's virtual size
 * Values are encoded with `encodeTagValue` (LVM allows only [A-Za-z0-9_+.-] and a few more in tags).
 *
 * The snapshot a layer holds is recorded by its LV name, which is derived from (volume, snapshot)
 * (`snap_<volume>_<S>.qcow2`), read back with the volume tag, which settles the names that are ambiguous on
 * their own (`snap_vm-1-a_b_c.qcow2`: vm-1-a's `b_c` or vm-1-a_b's `c`). A second copy in a tag could
 * disagree with the name after a crash between `lvrename` and `lvchange`, which are two metadata commits.
 *
 * The qcow2 headers stay the truth: the tags are a copy, rewritten by the backend whenever it changes a
 * header (create, rebase, commit, resize) and checked against the headers whenever the LVs are active on
 * this host (LvmBackend.activate corrects any drift, and refuses to run a plan made from drifted tags).
 */
import { parseVolumeName } from '../../naming/index.js';
import { candidateVolumes } from '../../ownership/layer-owners.js';
import { LV_NAME_MAX } from '../../naming/index.js';
import { createHash } from 'node:crypto';

export const TAG_PREFIX = 'volchain.';
const VOL = 'volchain.vol.';
const PARENT = 'volchain.parent.';
const NO_PARENT = 'volchain.noparent';
const SIZE = 'volchain.size.';

/** Characters kept as they are in an encoded tag value; everything else becomes `+XX` (UTF-8 bytes). */
const PLAIN = /^[A-Za-z0-9_.-]$/;

/** Encodes any string into LVM's tag charset: `+` escapes, followed by two lower-case hex digits per byte. */
export function encodeTagValue(value: string): string {
  let out = '';
  for (const ch of value) {
    if (PLAIN.test(ch)) out += ch;
    else for (const byte of Buffer.from(ch, 'utf8')) out += `+${byte.toString(16).padStart(2, '0')}`;
  }
  return out;
}

/** Inverse of encodeTagValue; undefined for text it cannot have produced. */
export function decodeTagValue(text: string): string | undefined {
  const bytes: number[] = [];
  for (let i = 0; i < text.length; i++) {
    const ch = text.charAt(i);
    if (ch === '+') {
      const hex = text.slice(i + 1, i + 3);
      if (!/^[0-9a-f]{2}$/.test(hex)) return undefined;
      bytes.push(parseInt(hex, 16));
      i += 2;
    } else if (PLAIN.test(ch)) {
      bytes.push(ch.charCodeAt(0));
    } else {
      return undefined;
    }
  }
  const decoded = Buffer.from(bytes).toString('utf8');
  // A round trip proves the bytes were valid UTF-8 and canonically encoded.
  return encodeTagValue(decoded) === text ? decoded : undefined;
}

export function vmTag(vmid: number): string {
  return `pve-vm-${vmid}`;
}

/** What the tags say about a layer (fields absent when the tags do not say). */
export interface TaggedLayer {
  volume?: string;
  /** Backing layer name, or null for "no backing image". */
  parent?: string | null;
  virtualSize?: number;
}

/** PVE's per-volume tag, which PVE 9 puts on every layer of a qcow2 volume (raw volumes have none). */
export function pveVolumeTag(volume: string): string | undefined {
  return volume.endsWith('.qcow2') ? `pve-${volume}` : undefined;
}

export function layerTags(vmid: number, layer: TaggedLayer): string[] {
  const tags = [vmTag(vmid)];
  const pveVolume = layer.volume === undefined ? undefined : pveVolumeTag(layer.volume);
  if (pveVolume !== undefined) tags.push(pveVolume);
  if (layer.volume !== undefined) tags.push(VOL + encodeTagValue(layer.volume));
  if (layer.parent !== undefined) tags.push(layer.parent === null ? NO_PARENT : PARENT + encodeTagValue(layer.parent));
  if (layer.virtualSize !== undefined) tags.push(SIZE + String(layer.virtualSize));
  return tags;
}

/** Reads volchain's tags; malformed ones are ignored (as if absent), two conflicting ones cancel out. */
export function parseLayerTags(tags: readonly string[]): TaggedLayer {
  const volumes = new Set<string>();
  const parents = new Set<string | null>();
  const sizes = new Set<number>();
  for (const tag of tags) {
    if (tag.startsWith(VOL)) {
      const v = decodeTagValue(tag.slice(VOL.length));
      if (v !== undefined && v !== '') volumes.add(v);
    } else if (tag === NO_PARENT) {
      parents.add(null);
    } else if (tag.startsWith(PARENT)) {
      const p = decodeTagValue(tag.slice(PARENT.length));
      if (p !== undefined && p !== '') parents.add(p);
    } else if (tag.startsWith(SIZE)) {
      const text = tag.slice(SIZE.length);
      if (/^[1-9][0-9]*$/.test(text) && Number.isSafeInteger(Number(text))) sizes.add(Number(text));
    }
  }
  const out: TaggedLayer = {};
  if (volumes.size === 1) out.volume = [...volumes][0];
  if (parents.size === 1) out.parent = [...parents][0];
  if (sizes.size === 1) out.virtualSize = [...sizes][0];
  return out;
}

/**
 * What volchain's tags say about an LV, believed only when they agree with what PVE keeps current and with
 * the LV's own name. PVE renames volumes (disk reassign, rename_volume) with lvrename plus a change of its own
 * tags (`pve-vm-<vmid>`, `pve-<name>`), never of volchain's; a manual lvrename changes only the name. A record
 * naming another volume than those is stale, and all of it is ignored (as for an LV volchain never tagged),
 * so the layer is judged by its name and its header until the next activation rewrites the tags.
 */
export function trustedLayerTags(lv: LvLike): TaggedLayer {
  const tagged = parseLayerTags(lv.tags);
  const volume = tagged.volume;
  if (volume === undefined) return tagged;
  // The current layer carries the volume's own name.
  if (isVolumeLv(lv.name) && lv.name !== volume) return {};
  const pveVolumes = lv.tags.filter((t) => t.startsWith('pve-') && isVolumeLv(t.slice(4))).map((t) => t.slice(4));
  if (pveVolumes.length > 0 && !pveVolumes.includes(volume)) return {};
  const vmids = lv.tags
    .map((t) => /^pve-vm-([1-9][0-9]*)$/.exec(t)?.[1])
    .filter((v) => v !== undefined)
    .map(Number);
  if (vmids.length > 0 && !vmids.includes(vmidOfVolume(volume))) return {};
  return tagged;
}

function vmidOfVolume(volume: string): number {
  try {
    return parseVolumeName('lvm', volume).vmid;
  } catch {
    return -1;
  }
}

/**
 * The tag changes that make `current` say what `wanted` says: volchain's own tags not wanted are removed,
 * and the VM tag is added when missing. Foreign tags are left alone.
 */
export function tagChanges(current: readonly string[], wanted: readonly string[]): { add: string[]; remove: string[] } {
  const have = new Set(current);
  const want = new Set(wanted);
  return {
    add: [...want].filter((t) => !have.has(t)),
    remove: [...have].filter((t) => t.startsWith(TAG_PREFIX) && !want.has(t)),
  };
}

// ---- volumes and their layers ---------------------------------------------------------------------------

/** True when `name` is a volume (current layer) name of `vmid` on LVM. */
export function isVolumeLv(name: string, vmid?: number): boolean {
  try {
    return parseVolumeName('lvm', name, vmid).vmid >= 0;
  } catch {
    return false;
  }
}

/** Prefix of LVs being removed (PVE's saferemove convention). */
export const DEL_PREFIX = 'del-';

/**
 * The name an LV gets while it is being removed: `del-<name>` as PVE does; when an earlier removal of the
 * same name is still being wiped, `del-<n>-<name>` (n = `attempt`, 1, 2, ...). Shortened with a hash when that
 * would pass LVM's 127-character limit (snapshot layer names can be close to it).
 */
export function deletionName(name: string, attempt = 0): string {
  const prefix = attempt === 0 ? DEL_PREFIX : `${DEL_PREFIX}${attempt}-`;
  const plain = prefix + name;
  if (plain.length <= LV_NAME_MAX) return plain;
  const hash = createHash('sha256').update(name).digest('hex').slice(0, 8);
  return `${prefix}${name.slice(0, LV_NAME_MAX - prefix.length - 9)}-${hash}`;
}

/**
 * A `del-` LV that volchain renamed for removal (saferemove), recognised by volchain's tags, which the
 * rename keeps; `del-` LVs without them were made by PVE and are left to PVE.
 */
export function isVolchainDeletion(lv: LvLike): boolean {
  return lv.name.startsWith(DEL_PREFIX) && lv.tags.some((t) => t.startsWith(TAG_PREFIX));
}

/** Tag put on an LV without volchain tags (made by PVE) before volchain renames it for removal. */
export const REMOVING_TAG = `${TAG_PREFIX}removing`;

export interface LvLike {
  name: string;
  tags: readonly string[];
}

/**
 * The volume an LV belongs to, or the volumes it may belong to when only its name says (ambiguous): its
 * trusted tag, else its name (ownership/layer-owners.ts candidateVolumes). `del-` LVs are no one's layers.
 */
export function volumesOfLv(lv: LvLike, volumeNames: readonly string[]): string[] {
  if (lv.name.startsWith(DEL_PREFIX)) return [];
  return candidateVolumes(
    'lvm',
    lv.name,
    volumeNames.filter((v) => isVolumeLv(v)),
    trustedLayerTags(lv).volume,
  );
}

/**
 * Every LV that is a layer of one of `volumes` (the volume itself, its snapshot layers, its temporaries),
 * chosen by exact name or exact volume tag, never by prefix: `vm-100-disk-1` never picks up
 * `vm-100-disk-11`'s layers. `del-` LVs are not layers.
 */
export function layersOfVolumes<T extends LvLike>(lvs: readonly T[], volumes: ReadonlySet<string>): T[] {
  const volumeNames = lvs.map((l) => l.name).filter((n) => isVolumeLv(n));
  for (const v of volumes) if (!volumeNames.includes(v)) volumeNames.push(v);
  return lvs.filter((lv) => volumesOfLv(lv, volumeNames).some((v) => volumes.has(v)));
}
