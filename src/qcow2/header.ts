/**
 * Reading qcow2 headers (QEMU docs/interop/qcow2.txt), versions 2 and 3: from a buffer (parseQcow2Header),
 * a path (readQcow2Header) or an open image (readHeaderFrom, headerSteps), with the internal snapshot table.
 * The format is in header-format.ts, the parser in header-parse.ts; every error is CorruptImageError or
 * NotFoundError — whether a well-formed header is acceptable is validate.ts's judgement.
 */
import { basename } from 'node:path';
import { CorruptImageError } from '../errors.js';
import type { Qcow2Header } from './header-format.js';
import { NeedMoreBytes, parseHeaderFields } from './header-parse.js';
import { openLocalImage, readExactSteps, runSteps, type ImageReader, type ReadSteps } from './io.js';
import { MAX_SNAPSHOT_TABLE_BYTES, parseSnapshotTable, type Qcow2Snapshot } from './snapshots.js';

/**
 * Parses a qcow2 header from the first bytes of an image: `buf` must hold the first cluster, or the whole
 * file when that is shorter. Pure; throws only CorruptImageError.
 */
export function parseQcow2Header(buf: Buffer, layer: string): Qcow2Header {
  const header = parseHeaderFields(buf, layer, true);
  if (header.snapshotCount > 0) header.internalSnapshots = snapshotsInBuffer(buf, header, layer) ?? [];
  return header;
}

/**
 * Reads and parses the header of the image at `path` (regular file or block device). Reads 4 KiB, the whole
 * first cluster only when the header area reaches further, and the snapshot table only when there is one.
 * Throws CorruptImageError for malformed images, NotFoundError when `path` does not exist.
 */
export async function readQcow2Header(path: string, layer: string = basename(path)): Promise<Qcow2Header> {
  const file = openLocalImage(path, layer);
  try {
    // Regular files are read synchronously (no promise round trips); block devices asynchronously.
    return await runSteps(headerSteps(file), file);
  } finally {
    await file.release();
  }
}

// QEMU-written headers (fields, feature name table, backing name) fit in well under 4 KiB; anything larger is
// read in a second pass bounded by the cluster size.
const FIRST_READ_BYTES = 4096;

/** Reads the header from an open image: at most two reads for the first cluster, then the snapshot table. */
export async function readHeaderFrom(file: ImageReader): Promise<Qcow2Header> {
  return runSteps(headerSteps(file), file);
}

/**
 * The header walker behind readHeaderFrom, for callers that drive it themselves (synchronously for regular
 * files): yields at most two reads for the first cluster, then those of the snapshot table.
 */
export function* headerSteps(file: Pick<ImageReader, 'layer' | 'sizeBytes'>): ReadSteps<Qcow2Header> {
  let buf = yield { position: 0, length: FIRST_READ_BYTES };
  let header: Qcow2Header;
  try {
    header = parseHeaderFields(buf, file.layer, buf.length < FIRST_READ_BYTES);
  } catch (err) {
    if (!(err instanceof NeedMoreBytes)) throw err;
    // Only possible with clusters over 4 KiB: everything the header may use lies in the first cluster.
    const clusterSize = 2 ** buf.readUInt32BE(20);
    buf = yield { position: 0, length: clusterSize };
    header = parseHeaderFields(buf, file.layer, true);
  }
  header.internalSnapshots = header.snapshotCount === 0 ? [] : yield* snapshotSteps(file, header);
  return header;
}

/** The snapshot table for the pure parser: only when it lies wholly inside `buf`. */
function snapshotsInBuffer(buf: Buffer, header: Qcow2Header, layer: string): Qcow2Snapshot[] | undefined {
  const offset = Number(header.snapshotsOffset);
  if (offset >= buf.length) return undefined;
  const result = parseSnapshotTable(buf.subarray(offset), header.snapshotCount, layer);
  return 'snapshots' in result ? result.snapshots : undefined;
}

/**
 * Reads the snapshot table with a growing window: start at 64 KiB, double until the parser is satisfied. The
 * parser caps the table at QEMU's 64 MiB, so this makes at most a dozen reads.
 */
function* snapshotSteps(file: Pick<ImageReader, 'layer' | 'sizeBytes'>, header: Qcow2Header): ReadSteps<Qcow2Snapshot[]> {
  const offset = Number(header.snapshotsOffset);
  let window = Math.min(64 * 1024, MAX_SNAPSHOT_TABLE_BYTES);
  for (;;) {
    const table = yield { position: offset, length: window };
    const result = parseSnapshotTable(table, header.snapshotCount, file.layer);
    if ('snapshots' in result) return result.snapshots;
    if (table.length < window) {
      // End of file before the table ends: let readExact word the error.
      yield* readExactSteps(file, offset, result.needBytes, `snapshot table (${header.snapshotCount} entries)`);
      throw new CorruptImageError(file.layer, `snapshot table at offset ${offset} is cut off by the end of the image`);
    }
    window = Math.min(Math.max(result.needBytes, window * 2), MAX_SNAPSHOT_TABLE_BYTES);
  }
}
