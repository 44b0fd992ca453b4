/**
 * Room for the journal on a full file system. Every journal write on a dir storage takes new blocks (a temp
 * file, renamed over the record), so on a 100%-full storage the very operations that give space back (`free`,
 * snapshot delete) could not even start. A reserve file of RESERVE_BYTES real (written, not sparse) blocks
 * beside the journal directory is kept while there is space; a journal write that meets ENOSPC deletes it
 * and tries once more, now with that much free. The journal format and its crash safety stay exactly as they
 * are: the reserve only decides whether there is room for them.
 *
 * The reserve is made again, best effort, after later journal writes and listings, so it is back once the
 * operation that used it has freed space; only while the file system has RESERVE_MARGIN_BYTES free. Limits: one reserve per storage, so on a full storage two
 * operations started at the same instant may find it already used by the other (that one then fails with
 * exit status 9 and nothing changed); a storage that filled up before any volchain command made its reserve
 * has none.
 */
import { open, rm, stat, statfs } from 'node:fs/promises';
import { dirname } from 'node:path';

/** Enough for a few versions of the largest records (a plan of many steps is a few KiB) and a new directory. */
export const RESERVE_BYTES = 1024 * 1024;

/** Free space a storage must have for the reserve to be made. */
export const RESERVE_MARGIN_BYTES = 16 * RESERVE_BYTES;

export function reservePath(journalDir: string): string {
  return `${journalDir}.reserve`;
}

/**
 * Makes the reserve if it is missing. Best effort, never throws: on a storage that has no room for it, or is
 * read-only, it is simply not there. Crash states: a partly written reserve stays and is smaller (still
 * freed when needed); O_EXCL makes two processes never write one file at once.
 */
export async function ensureReserve(path: string): Promise<void> {
  try {
    await stat(path);
    return;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') return;
  }
  try {
    // Only with room to spare: taking the last free megabyte of a nearly full storage, even for a moment,
    // could make a running guest's write to its disk there fail.
    const fs = await statfs(dirname(path));
    if (fs.bavail * fs.bsize < RESERVE_MARGIN_BYTES) return;
  } catch {
    return;
  }
  let fh;
  try {
    fh = await open(path, 'wx');
  } catch {
    return; // another process makes it, or no room even for the inode, or no directory yet
  }
  try {
    // Real zeroes, not truncate: a sparse file holds no blocks and would free nothing.
    const { bytesWritten } = await fh.write(Buffer.alloc(RESERVE_BYTES), 0, RESERVE_BYTES, 0);
    // A file system with less room than that answers with a short write, not ENOSPC.
    if (bytesWritten !== RESERVE_BYTES) throw new Error('short write');
    await fh.sync();
    await fh.close();
  } catch {
    // No room for all of it: a partial reserve would hold space the next writes of this very operation need.
    await fh.close().catch(() => undefined);
    await rm(path, { force: true }).catch(() => undefined);
  }
}

/** Deletes the reserve; true when there was one to delete (so a retry has its space). */
export async function releaseReserve(path: string): Promise<boolean> {
  try {
    await rm(path);
    return true;
  } catch {
    return false;
  }
}

export function isNoSpace(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}
