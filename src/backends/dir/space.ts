/**
 * What a "no space" refusal of a dir storage can say about the space: how much the file system has free,
 * and, when the new image would take its whole size at once (preallocation full or falloc), how much is
 * missing. With metadata or no preallocation an image takes only its metadata at first, so the amount
 * missing is not known and not claimed.
 */
import { statfs } from 'node:fs/promises';
import { NoSpaceError } from '../../errors.js';
import { formatSize } from '../../naming/index.js';

export async function explainNoSpace(err: NoSpaceError, storageDir: string, sizeBytes: number, preallocation: string | undefined): Promise<NoSpaceError> {
  let free: number;
  try {
    const fs = await statfs(storageDir);
    free = fs.bavail * fs.bsize;
  } catch {
    return err;
  }
  const whole = preallocation === 'full' || preallocation === 'falloc';
  const missing =
    whole && sizeBytes > free ? `; it needs ${formatSize(sizeBytes)}, ${formatSize(sizeBytes - free)} (${sizeBytes - free} bytes) more than is free` : '';
  return new NoSpaceError(`${err.message} (${formatSize(free)} free on ${storageDir}${missing})`, { cause: err });
}
