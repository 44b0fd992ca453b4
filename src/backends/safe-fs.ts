/**
 * Checks that keep a dir storage a tree volchain owns (DESIGN.md section 6, README "Security"). The storage's
 * configured path is trusted as it is (it may itself be a symlink or a mount point); below it, `images`,
 * `images/<vmid>` and every layer are looked at with lstat, never through a symlink:
 * - `images` and `images/<vmid>` must be real directories;
 * - a layer must be a regular file with one link. The one accepted exception is two names for one file in
 *   the same `images/<vmid>` directory: that is the state a crash between link() and unlink() in a rename
 *   leaves, and repair finishes it by comparing the identities of both names (executor.ts, 'rename' redo).
 * Anything else is refused with an UnsafeImageError (exit 8) naming the path, before anything is opened or
 * written. The threat is hostile content already on disk: a swap made while an operation runs is out of
 * scope (Node has no openat(2), and qemu-img reopens layers by path).
 */
import { lstatSync, readdirSync, type BigIntStats } from 'node:fs';
import { posix as path } from 'node:path';
import { UnsafeImageError } from '../errors.js';

/** lstat, or undefined when nothing is there. Other errors (EACCES, EIO) are thrown as they are. */
export function lstatOrUndefined(p: string): BigIntStats | undefined {
  try {
    return lstatSync(p, { bigint: true });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw err;
  }
}

function describe(st: BigIntStats): string {
  if (st.isSymbolicLink()) return 'a symbolic link';
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isSocket()) return 'a socket';
  return 'a regular file';
}

/**
 * Checks that `dir` (a directory volchain manages below the storage root) is absent or a real directory.
 * Returns whether it exists.
 */
export function checkOwnedDir(dir: string): boolean {
  const st = lstatOrUndefined(dir);
  if (st === undefined) return false;
  if (!st.isDirectory()) {
    throw new UnsafeImageError(dir, `is ${describe(st)}, not a directory: volchain does not follow links below a storage's path; remove or replace it by hand`);
  }
  return true;
}

/**
 * Each directory from `<root>/<imagesSubdir>` (`images`, or a relative path from `content-dirs`, every
 * component checked) down to `<root>/<imagesSubdir>/<vmid>` when a vmid is given: returns whether the
 * innermost one exists.
 */
export function checkImagesDirs(storageRoot: string, imagesSubdir: string, vmid?: number): boolean {
  let dir = storageRoot;
  const parts = imagesSubdir === '.' ? [] : imagesSubdir.split('/').filter((p) => p !== '');
  for (const part of [...parts, ...(vmid === undefined ? [] : [String(vmid)])]) {
    dir = path.join(dir, part);
    if (!checkOwnedDir(dir)) return false;
  }
  return true;
}

/**
 * A file of volchain's own state (a lock file): absent, or a regular file. The lock is taken by opening it
 * for append, which would follow a symlink and create a dangling one's target outside the storage.
 */
export function checkOwnedFile(file: string): void {
  const st = lstatOrUndefined(file);
  if (st !== undefined && !st.isFile()) {
    throw new UnsafeImageError(file, `is ${describe(st)}, not a regular file: volchain does not follow links below a storage's path; remove it by hand`);
  }
}

/**
 * lstat of a layer file inside an already checked `images/<vmid>` directory: undefined when absent, its
 * stats when it is a regular file with one link (or the rename crash state above), else UnsafeImageError.
 */
export function checkLayerFile(layerPath: string): BigIntStats | undefined {
  const st = lstatOrUndefined(layerPath);
  if (st === undefined) return undefined;
  if (!st.isFile()) {
    throw new UnsafeImageError(layerPath, `is ${describe(st)}, not a regular file: refusing to use it as a layer`);
  }
  if (st.nlink > 1n && !linksAllInDir(layerPath, st)) {
    throw new UnsafeImageError(
      layerPath,
      `has ${st.nlink} hard links, some outside its VM's directory: it may be another volume's data; refusing to use it as a layer`,
    );
  }
  return st;
}

/** Whether every one of the file's links is a name in its own directory (the interrupted-rename state). */
function linksAllInDir(layerPath: string, st: BigIntStats): boolean {
  const dir = path.dirname(layerPath);
  let found = 0n;
  for (const name of readdirSync(dir)) {
    const other = lstatOrUndefined(path.join(dir, name));
    if (other && other.dev === st.dev && other.ino === st.ino) found++;
  }
  return found === st.nlink;
}
