/**
 * Bounded, exact reads from an image that may be a regular file or a block device (an LV). Every read says
 * what it is reading, so a short read becomes a CorruptImageError naming the structure that is cut off.
 *
 * The table walkers (header, snapshot table, L1/L2) are written once, as generators that yield read requests
 * (`ReadSteps`), and run by one of two drivers:
 * - synchronously, for regular files: a header is a few KiB from the page cache, and a chain of 50 layers
 *   read through promises spends most of its time in thread-pool round trips (open, fstat, read, close:
 *   four per layer), not in the kernel;
 * - asynchronously, for block devices and for any reader without a synchronous read (in-memory buffers in
 *   tests), so a device that stalls (e.g. multipath queueing without paths) never blocks the event loop.
 * Both drivers feed the same generator, so limits, checks and error messages are identical on either path.
 *
 * The trade-off of the synchronous path: on an NFS/CIFS storage whose server hangs (hard mount), open(2) or
 * read(2) blocks either way and the read never finishes; synchronously the event loop waits with it (timers
 * such as the lock timeout cannot fire), asynchronously only a thread-pool thread does. volchain reads
 * chains sequentially and holds no other work meanwhile, so nothing is lost that would otherwise finish.
 */
import { close, closeSync, constants, fstatSync, openSync, read, readFileSync, readSync } from 'node:fs';
import { CorruptImageError, NotFoundError, VolchainError } from '../errors.js';

export interface ImageReader {
  /** Layer name used in error messages. */
  readonly layer: string;
  /** Size in bytes when it can be known (regular files; block devices through sysfs), else undefined. */
  readonly sizeBytes: number | undefined;
  /** Reads up to `length` bytes at `position`; returns fewer only at the end of the file. */
  readUpTo(position: number, length: number): Promise<Buffer>;
  /**
   * The same read, synchronously; present only where that cannot stall the event loop for long (regular
   * files). When present, the walkers use it instead of readUpTo.
   */
  readonly readUpToSync?: ((position: number, length: number) => Buffer) | undefined;
}

/** An open image plus its identity: device and inode let the chain walker detect loops through links. */
export interface ImageFile extends ImageReader {
  readonly path: string;
  readonly dev: bigint;
  readonly ino: bigint;
  close(): Promise<void>;
}

/** An image opened by openImage/openLocalImage: an ImageFile plus what fstat said about it. */
export interface LocalImageFile extends ImageFile {
  readonly type: 'file' | 'block';
  /** st_blocks * 512 for regular files (space taken on the storage); the device size for block devices. */
  readonly usedBytes: number | undefined;
  /** Closes synchronously for regular files; block devices are closed off the event loop. */
  release(): void | Promise<void>;
}

/** A read the walker needs: up to `length` bytes at `position` (fewer only at the end of the image). */
export interface ReadRequest {
  readonly position: number;
  readonly length: number;
}

/** A table walker: yields read requests, receives the bytes read, returns its result. */
export type ReadSteps<T> = Generator<ReadRequest, T, Buffer>;

/** Runs `steps` with synchronous reads. */
export function runStepsSync<T>(steps: ReadSteps<T>, readSync: (position: number, length: number) => Buffer): T {
  // Each pass answers one request; the walkers bound how many they make.
  let next = steps.next();
  while (!next.done) next = steps.next(readSync(next.value.position, next.value.length));
  return next.value;
}

/** Runs `steps` with the reader's asynchronous reads. */
export async function runStepsAsync<T>(steps: ReadSteps<T>, reader: ImageReader): Promise<T> {
  let next = steps.next();
  while (!next.done) next = steps.next(await reader.readUpTo(next.value.position, next.value.length));
  return next.value;
}

/** Runs `steps` synchronously when the reader can, else asynchronously (then the result is a promise). */
export function runSteps<T>(steps: ReadSteps<T>, reader: ImageReader): T | Promise<T> {
  const sync = reader.readUpToSync;
  return sync !== undefined ? runStepsSync(steps, sync) : runStepsAsync(steps, reader);
}

/**
 * Yields a read of exactly `length` bytes at `position` and returns them, or throws a CorruptImageError naming
 * `what`. The size check comes first when the size is known, so the message can say how far past the end the
 * structure lies.
 */
export function* readExactSteps(reader: Pick<ImageReader, 'layer' | 'sizeBytes'>, position: number, length: number, what: string): ReadSteps<Buffer> {
  const end = position + length;
  if (!Number.isSafeInteger(position) || position < 0 || !Number.isSafeInteger(end)) {
    throw new CorruptImageError(reader.layer, `${what} at offset ${position} is not addressable`);
  }
  if (reader.sizeBytes !== undefined && end > reader.sizeBytes) {
    throw new CorruptImageError(reader.layer, `${what} (offset ${position}, ${length} bytes) lies beyond the end of the image (${reader.sizeBytes} bytes)`);
  }
  const buf = yield { position, length };
  if (buf.length < length) {
    throw new CorruptImageError(reader.layer, `${what} (offset ${position}, ${length} bytes) is cut off: the image ends after ${position + buf.length} bytes`);
  }
  return buf;
}

/** Reads exactly `length` bytes at `position` or throws a CorruptImageError naming `what`. */
export async function readExact(reader: ImageReader, position: number, length: number, what: string): Promise<Buffer> {
  return runSteps(readExactSteps(reader, position, length, what), reader);
}

/**
 * An ImageReader over bytes already in memory (tests, fuzzing). Asynchronous only unless `sync` is set, so
 * tests can drive either path over the same bytes.
 */
export function bufferReader(bytes: Buffer, layer: string, opts: { sync?: boolean } = {}): ImageReader {
  const slice = (position: number, length: number): Buffer => {
    const start = Math.min(position, bytes.length);
    return bytes.subarray(start, Math.min(bytes.length, position + length));
  };
  return {
    layer,
    sizeBytes: bytes.length,
    readUpTo: (position, length) => Promise.resolve(slice(position, length)),
    readUpToSync: opts.sync ? slice : undefined,
  };
}

/**
 * Opens an image read-only. O_NONBLOCK keeps a hostile backing name that points at a FIFO from blocking the
 * open forever; the type check then refuses anything that is neither a regular file nor a block device.
 * ENOENT becomes a NotFoundError; other errors a VolchainError that names the path.
 */
export async function openImage(path: string, layer: string): Promise<LocalImageFile> {
  return openLocalImage(path, layer);
}

/**
 * openImage without the promise: open(2) with O_NONBLOCK and fstat(2) return at once for every file type
 * (that is what O_NONBLOCK is for with FIFOs and devices), so they run synchronously; so do later reads and
 * the close of regular files. Throws what openImage rejects with.
 */
export function openLocalImage(path: string, layer: string): LocalImageFile {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    throw openError(err, path, layer);
  }
  try {
    // bigint: inode numbers may exceed 2^53 (btrfs, NFS), and loop detection must compare them exactly.
    const st = fstatSync(fd, { bigint: true });
    if (st.isFile()) {
      const sizeBytes = Number(st.size);
      let open = true;
      const closeNow = (): void => {
        if (!open) return;
        open = false;
        closeSync(fd);
      };
      return {
        path,
        layer,
        type: 'file',
        sizeBytes,
        usedBytes: Number(st.blocks * 512n),
        dev: st.dev,
        ino: st.ino,
        readUpToSync: (position, length) => readFileUpTo(fd, position, length),
        readUpTo: (position, length) => {
          try {
            return Promise.resolve(readFileUpTo(fd, position, length));
          } catch (err) {
            return Promise.reject(err);
          }
        },
        release: closeNow,
        close: () => {
          try {
            closeNow();
            return Promise.resolve();
          } catch (err) {
            return Promise.reject(err);
          }
        },
      };
    }
    if (st.isBlockDevice()) {
      const sizeBytes = blockDeviceSize(st.rdev);
      let closing: Promise<void> | undefined;
      const closeAsync = (): Promise<void> => (closing ??= new Promise<void>((resolve, reject) => close(fd, (err) => (err ? reject(err) : resolve()))));
      return {
        path,
        layer,
        type: 'block',
        sizeBytes,
        usedBytes: sizeBytes,
        dev: st.dev,
        ino: st.ino,
        readUpToSync: undefined,
        readUpTo: (position, length) => readDeviceUpTo(fd, position, length),
        release: closeAsync,
        close: closeAsync,
      };
    }
    throw new CorruptImageError(layer, `${path} is neither a regular file nor a block device`);
  } catch (err) {
    // Nothing was returned, so nobody else will close it. Closing a FIFO or character device opened with
    // O_NONBLOCK does not block.
    try {
      closeSync(fd);
    } catch {
      // the error that matters is the one being thrown
    }
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

/** Synchronous pread loop for regular files. The buffer is not zeroed: only bytes read are ever returned. */
function readFileUpTo(fd: number, position: number, length: number): Buffer {
  const buf = Buffer.allocUnsafe(length);
  let done = 0;
  // Each pass either makes progress or stops at end of file, so this ends after at most `length` passes.
  while (done < length) {
    const bytesRead = readSync(fd, buf, done, length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done === length ? buf : buf.subarray(0, done);
}

function preadAsync(fd: number, buf: Buffer, offset: number, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => {
    read(fd, buf, offset, length, position, (err, bytesRead) => (err ? reject(err) : resolve(bytesRead)));
  });
}

async function readDeviceUpTo(fd: number, position: number, length: number): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(length);
  let done = 0;
  // Each pass either makes progress or stops at end of device, so this ends after at most `length` passes.
  while (done < length) {
    const bytesRead = await preadAsync(fd, buf, done, length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done === length ? buf : buf.subarray(0, done);
}

/**
 * fstat reports size 0 for block devices and Node has no BLKGETSIZE64 ioctl, so read the size (in 512-byte
 * sectors) from sysfs (an in-memory file system: the read never waits for the device). When that is
 * unavailable the size stays unknown and short reads still catch truncation.
 */
function blockDeviceSize(rdev: bigint): number | undefined {
  // Linux dev_t encoding (glibc's gnu_dev_major/minor).
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn);
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & ~0xffn);
  try {
    const text = readFileSync(`/sys/dev/block/${major}:${minor}/size`, 'utf8');
    const sectors = Number(text.trim());
    return Number.isSafeInteger(sectors * 512) ? sectors * 512 : undefined;
  } catch {
    return undefined;
  }
}
