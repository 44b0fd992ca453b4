/**
 * `list` on a dir storage sees everything in `images/<vmid>/`, not only what volchain can operate (issue 14,
 * DESIGN.md section 2: one volume never hides the others). A scan returns:
 * - the volumes (names volchain parses: `vm-<vmid>-….qcow2|raw`, `base-…`), read further by the engine;
 * - unlisted entries: a file volchain does not parse (a vmdk PVE made, an unknown name) or a whole
 *   `images/<vmid>` it refuses to enter (a symlink, a FIFO, unreadable). Each carries the error any operation
 *   on it gives, so `list` shows it as a problem row and exits 0.
 * Left out, as PVE's own list_images leaves them out: dot files (volchain's `.volchain-tmp-…` temporaries;
 * Perl's glob skips them), container subvolumes (`subvol-…`/`basevol-…`: rootdir content, not VM disks), and
 * snapshot layers (`snap-…`: shown with their volume; one whose volume's name is renamed away mid-operation is
 * covered by the journal's entry, listing.ts). An orphaned `snap-…` file is therefore not listed either.
 * Nothing is opened or followed: entries are looked at with lstat only. Reads only.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { DirStorage } from '../../config/index.js';
import { asVolchainError, type VolchainError } from '../../errors.js';
import { dirImagesDir, parseVolname, type VolumeRef } from '../../naming/index.js';
import { checkImagesDirs, lstatOrUndefined } from '../safe-fs.js';

/** Something in images/ that is listed with a problem instead of as a volume. */
export interface UnlistedEntry {
  vmid: number;
  /** The file name in images/<vmid>/, or '' when images/<vmid> itself is refused. */
  name: string;
  /** The format the extension says (raw, qcow2, vmdk), or null when it says none of these. */
  format: string | null;
  /** The file's size (lstat, not followed), or null for anything but a regular file. */
  fileBytes: number | null;
  /** What any operation on it fails with. */
  problem: VolchainError;
}

export interface DirScan {
  volumes: VolumeRef[];
  unlisted: UnlistedEntry[];
}

const KNOWN_EXTENSIONS = new Set(['raw', 'qcow2', 'vmdk']);

/** Scans `images/` (or one VM's directory). Throws only when the storage's images directory itself is refused. */
export function scanDirImages(def: DirStorage, vmids: number[]): DirScan {
  const volumes: VolumeRef[] = [];
  const unlisted: UnlistedEntry[] = [];
  for (const vmid of vmids) {
    let names: string[];
    try {
      // Throws UnsafeImageError (exit 8) naming the path for a symlink, FIFO or file in images/<vmid>'s place.
      if (!checkImagesDirs(def.path, def.imagesDir, vmid)) continue;
      names = readdirSync(dirImagesDir(def.path, vmid, def.imagesDir));
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (e.code === 'ENOENT') continue;
      unlisted.push({ vmid, name: '', format: null, fileBytes: null, problem: asVolchainError(err) });
      continue;
    }
    for (const name of names) {
      if (name.startsWith('.') || /^(subvol|basevol)-/.test(name) || name.startsWith('snap-')) continue;
      try {
        volumes.push(parseVolname('dir', def.id, `${vmid}/${name}`));
      } catch (err) {
        unlisted.push({
          vmid,
          name,
          format: formatOf(name),
          fileBytes: regularSize(join(dirImagesDir(def.path, vmid, def.imagesDir), name)),
          problem: asVolchainError(err),
        });
      }
    }
  }
  return { volumes, unlisted };
}

function formatOf(name: string): string | null {
  const ext = /\.([A-Za-z0-9]+)$/.exec(name)?.[1];
  return ext !== undefined && KNOWN_EXTENSIONS.has(ext) ? ext : null;
}

function regularSize(path: string): number | null {
  try {
    const st = lstatOrUndefined(path);
    return st?.isFile() ? Number(st.size) : null;
  } catch {
    return null;
  }
}
