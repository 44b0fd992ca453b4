/**
 * Bounded, exact reads from an image that may be a regular file or a block device (an LV). Every read says
 * what it is reading, so a short read becomes a CorruptImageError naming the structure that is cut off.
 *
 * The table walkers read through the small `ImageReader` interface rather than a file handle so the same code
 * can run over an in-memory buffer (fuzz tests) without touching the disk.
 */
import { constants } from 'node:fs';
import { open, readFile } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { CorruptImageError, NotFoundError, VolchainError } from '../errors.js';

export interface ImageReader {
  /** Layer name used in error messages. */
  readonly layer: string;
  /** Size in bytes when it can be known (regular files; block devices through sysfs), else undefined. */
  readonly sizeBytes: number | undefined;
  /** Reads up to `length` bytes at `position`; returns fewer only at the end of the file. */
  readUpTo(position: number, length: number): Promise<Buffer>;
}

/** An open image plus its identity: device and inode let the chain walker detect loops through links. */
export interface ImageFile extends ImageReader {
  readonly path: string;
  readonly dev: bigint;
  readonly ino: bigint;
  close(): Promise<void>;
}

/**
 * Reads exactly `length` bytes at `position` or throws a CorruptImageError naming `what`. The size check
 * comes first when the size is known, so the message can say how far past the end the structure lies.
 */
export async function readExact(reader: ImageReader, position: number, length: number, what: string): Promise<Buffer> {
  const end = position + length;
  if (!Number.isSafeInteger(position) || position < 0 || !Number.isSafeInteger(end)) {
    throw new CorruptImageError(reader.layer, `${what} at offset ${position} is not addressable`);
  }
  if (reader.sizeBytes !== undefined && end > reader.sizeBytes) {
    throw new CorruptImageError(
      reader.layer,
      `${what} (offset ${position}, ${length} bytes) lies beyond the end of the image (${reader.sizeBytes} bytes)`,
    );
  }
  const buf = await reader.readUpTo(position, length);
  if (buf.length < length) {
    throw new CorruptImageError(
      reader.layer,
      `${what} (offset ${position}, ${length} bytes) is cut off: the image ends after ${position + buf.length} bytes`,
    );
  }
  return buf;
}

/** An ImageReader over bytes already in memory (tests, fuzzing). */
export function bufferReader(bytes: Buffer, layer: string): ImageReader {
  return {
    layer,
    sizeBytes: bytes.length,
    readUpTo(position: number, length: number): Promise<Buffer> {
      const start = Math.min(position, bytes.length);
      return Promise.resolve(bytes.subarray(start, Math.min(bytes.length, position + length)));
    },
  };
}

/**
 * Opens an image read-only. O_NONBLOCK keeps a hostile backing name that points at a FIFO from blocking the
 * open forever; the type check then refuses anything that is neither a regular file nor a block device.
 * ENOENT becomes a NotFoundError; other errors a VolchainError that names the path.
 */
export async function openImage(path: string, layer: string): Promise<ImageFile> {
  let handle: FileHandle;
  try {
    handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    throw openError(err, path, layer);
  }
  try {
    const st = await handle.stat({ bigint: true });
    let sizeBytes: number | undefined;
    if (st.isFile()) {
      sizeBytes = Number(st.size);
    } else if (st.isBlockDevice()) {
      sizeBytes = await blockDeviceSize(st.rdev);
    } else {
      throw new CorruptImageError(layer, `${path} is neither a regular file nor a block device`);
    }
    return {
      path,
      layer,
      sizeBytes,
      dev: st.dev,
      ino: st.ino,
      readUpTo: (position, length) => readUpTo(handle, position, length),
      close: () => handle.close(),
    };
  } catch (err) {
    await handle.close().catch(() => undefined);
    throw err;
  }
}

function openError(err: unknown, path: string, layer: string): VolchainError {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOENT' || code === 'ENOTDIR') {
    return new NotFoundError(`${layer}: ${path} does not exist`, { cause: err });
  }
  const detail = err instanceof Error ? err.message : String(err);
  return new VolchainError('INTERNAL', `${layer}: cannot open ${path}: ${detail}`, { cause: err });
}

async function readUpTo(handle: FileHandle, position: number, length: number): Promise<Buffer> {
  const buf = Buffer.alloc(length);
  let done = 0;
  // Each pass either makes progress or stops at end of file, so this ends after at most `length` passes.
  while (done < length) {
    const { bytesRead } = await handle.read(buf, done, length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done === length ? buf : buf.subarray(0, done);
}

/**
 * fstat reports size 0 for block devices and Node has no BLKGETSIZE64 ioctl, so read the size (in 512-byte
 * sectors) from sysfs. When that is unavailable the size stays unknown and short reads still catch truncation.
 */
async function blockDeviceSize(rdev: bigint): Promise<number | undefined> {
  // Linux dev_t encoding (glibc's gnu_dev_major/minor).
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn);
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & ~0xffn);
  try {
    const text = await readFile(`/sys/dev/block/${major}:${minor}/size`, 'utf8');
    const sectors = Number(text.trim());
    return Number.isSafeInteger(sectors * 512) ? sectors * 512 : undefined;
  } catch {
    return undefined;
  }
}
