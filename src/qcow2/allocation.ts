/**
 * How many guest bytes a layer itself defines, from its L1/L2 tables. The planner uses this to choose the way
 * of deleting a snapshot that moves the fewest bytes (DESIGN.md section 3) without running qemu-img on every
 * layer.
 *
 * The figures match `qemu-img map --output=json -f qcow2 <file>` restricted to depth 0 and present:
 *   dataBytes = entries with data:true (normal clusters/subclusters, compressed clusters, preallocated
 *               clusters even when the host file has a hole there, so map may also say zero:true),
 *   zeroBytes = entries with data:false, zero:true (zero flag in the L2 entry or subcluster bitmap).
 * Unallocated entries (present:false; for a layer without backing QEMU reports them as zero at depth 0) and
 * extended-L2 subclusters that merely have a host cluster reserved are not counted. Ranges are clipped at the
 * virtual size, since the last cluster may extend past it.
 */
import { basename } from 'node:path';
import { CorruptImageError, UnsafeImageError } from '../errors.js';
import { headerSteps } from './header.js';
import type { Qcow2Header } from './header-format.js';
import { openLocalImage, readExactSteps, runSteps, type ImageReader, type ReadSteps } from './io.js';

export interface AllocationSummary {
  /** Guest bytes whose data this layer holds. */
  dataBytes: number;
  /** Guest bytes this layer marks as reading zero (hiding any backing data). */
  zeroBytes: number;
}

/** Opens the image at `path` and counts its allocation; reads the header first unless given. */
export async function allocatedBytes(path: string, header?: Qcow2Header, layer: string = basename(path)): Promise<AllocationSummary> {
  const file = openLocalImage(path, layer);
  try {
    // Regular files are read synchronously (no promise round trips); block devices asynchronously.
    return await runSteps(headerAndAllocationSteps(file, header), file);
  } finally {
    await file.release();
  }
}

function* headerAndAllocationSteps(file: ImageReader, header: Qcow2Header | undefined): ReadSteps<AllocationSummary> {
  return yield* allocationSteps(file, header ?? (yield* headerSteps(file)));
}

// L1 entry bits 9-55 hold the L2 table offset; L2 entry bits 9-55 the host cluster offset. Split into the high
// and low 32-bit words so the hot loop stays in plain numbers.
const OFFSET_HI_MASK = 0x00ffffff;
const OFFSET_LO_MASK = 0xfffffe00;
const HI_COMPRESSED = 0x40000000; // bit 62
const HI_COPIED = 0x80000000; // bit 63
const LO_ZERO = 0x1; // bit 0 (standard L2 entries only)
const SUBCLUSTERS = 32;

/**
 * Counts allocation through any ImageReader (a file or, in tests, a buffer). Every table offset is checked
 * (alignment, end of image); L2 tables shared by several L1 entries are read once, so the work is bounded by
 * the image size and QEMU's L1 limit, whatever the header claims.
 */
export async function countAllocation(reader: ImageReader, header: Qcow2Header): Promise<AllocationSummary> {
  return runSteps(allocationSteps(reader, header), reader);
}

/** The walker behind countAllocation: yields the L1 read, then one read per distinct L2 table. */
export function* allocationSteps(reader: Pick<ImageReader, 'layer' | 'sizeBytes'>, header: Qcow2Header): ReadSteps<AllocationSummary> {
  const layer = reader.layer;
  if (header.unknownIncompatibleFeatures !== 0n) {
    throw new UnsafeImageError(layer, 'cannot interpret the tables of an image with unknown incompatible features');
  }
  const clusterSize = header.clusterSize;
  const entryBytes = header.extendedL2 ? 16 : 8;
  const l2Entries = clusterSize / entryBytes;
  const virtualSize = header.virtualSize;
  const guestClusters = Math.ceil(virtualSize / clusterSize);
  const l1Needed = Math.ceil(guestClusters / l2Entries);
  if (l1Needed > header.l1Size) {
    throw new CorruptImageError(layer, `L1 table of ${header.l1Size} entries cannot map the virtual size ${virtualSize}`);
  }
  const total: AllocationSummary = { dataBytes: 0, zeroBytes: 0 };
  if (l1Needed === 0) return total;

  const l1 = yield* readExactSteps(reader, safeOffset(header.l1TableOffset, layer, 'L1 table'), l1Needed * 8, 'L1 table');
  const ctx: L2Context = {
    layer,
    clusterSize,
    entryBytes,
    virtualSize,
    extendedL2: header.extendedL2,
    externalData: header.externalData,
  };
  // Sums for whole (unclipped) L2 tables by offset: a hostile L1 pointing every entry at one table costs one read.
  const seen = new Map<number, AllocationSummary>();
  for (let i = 0; i < l1Needed; i++) {
    const hi = l1.readUInt32BE(i * 8) & OFFSET_HI_MASK;
    const lo = (l1.readUInt32BE(i * 8 + 4) & OFFSET_LO_MASK) >>> 0;
    if (hi === 0 && lo === 0) continue;
    if ((lo & (clusterSize - 1)) !== 0) {
      throw new CorruptImageError(layer, `L1 entry ${i} points to an L2 table at unaligned offset ${hi * 2 ** 32 + lo}`);
    }
    const l2Offset = hi * 2 ** 32 + lo;
    const firstCluster = i * l2Entries;
    const whole = (firstCluster + l2Entries) * clusterSize <= virtualSize;
    let sums = whole ? seen.get(l2Offset) : undefined;
    if (sums === undefined) {
      const table = yield* readExactSteps(reader, l2Offset, clusterSize, `L2 table for L1 entry ${i}`);
      sums = countL2(table, firstCluster * clusterSize, Math.min(l2Entries, guestClusters - firstCluster), ctx);
      if (whole) seen.set(l2Offset, sums);
    }
    total.dataBytes += sums.dataBytes;
    total.zeroBytes += sums.zeroBytes;
  }
  return total;
}

interface L2Context {
  layer: string;
  clusterSize: number;
  entryBytes: number;
  virtualSize: number;
  extendedL2: boolean;
  externalData: boolean;
}

/** True when this machine stores a Uint32Array's words little-endian (then big-endian table words are swapped). */
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** A big-endian 32-bit word read through a native-endian view, as an unsigned number. */
function bigEndian(word: number): number {
  return LITTLE_ENDIAN ? ((word << 24) | ((word & 0xff00) << 8) | ((word >>> 8) & 0xff00) | (word >>> 24)) >>> 0 : word;
}

/**
 * Counts `entries` entries of one L2 table whose first entry maps guest offset `guestStart`.
 *
 * This loop is most of `info`'s own time on a deep chain (every layer of a volume made with
 * preallocation=metadata has every entry set: 8,192 per GiB), and it runs once per process, mostly before V8
 * has optimised it. So it reads the table through one native-endian word view, and decides the common
 * entries on the raw words, bits tested with byte-swapped masks: an unallocated entry (all zero), or an
 * extended-L2 entry with a host cluster (aligned, not compressed) but no subcluster allocated or zeroed (a
 * cluster reserved by preallocation) defines nothing. Every other entry goes through countEntry, the full
 * decoding with every check; the figures and errors are the same as decoding every entry in full.
 */
function countL2(table: Buffer, guestStart: number, entries: number, ctx: L2Context): AllocationSummary {
  const { clusterSize, entryBytes, extendedL2 } = ctx;
  const sums: AllocationSummary = { dataBytes: 0, zeroBytes: 0 };
  // A table read into a buffer of its own starts at a multiple of 4; a copy serves otherwise (tests' readers).
  const aligned: Uint8Array = table.byteOffset % 4 === 0 ? table : new Uint8Array(table);
  const words = new Uint32Array(aligned.buffer, aligned.byteOffset, aligned.length >>> 2);
  const wordsPerEntry = entryBytes >>> 2;
  if (words.length < entries * wordsPerEntry) throw new CorruptImageError(ctx.layer, `L2 table of ${table.length} bytes cannot hold ${entries} entries`);
  // The compressed bit and the host offset bits below the cluster size (misaligned), as they sit in a word
  // read natively: the same bits, byte-swapped.
  const compressedRaw = bigEndian(HI_COMPRESSED);
  const misalignedRaw = bigEndian(OFFSET_LO_MASK & (clusterSize - 1));
  for (let j = 0; j < entries; j++) {
    const at = j * wordsPerEntry;
    if (extendedL2) {
      if (
        ((words[at + 2] as number) | (words[at + 3] as number)) === 0 &&
        ((words[at] as number) & compressedRaw) === 0 &&
        ((words[at + 1] as number) & misalignedRaw) === 0
      ) {
        continue;
      }
    } else if (((words[at] as number) | (words[at + 1] as number)) === 0) {
      continue;
    }
    countEntry(sums, words, at, guestStart + j * clusterSize, ctx);
  }
  return sums;
}

/** Adds what the L2 entry at word `at` (mapping guest offset `guest`) defines to `sums`, checking it first. */
function countEntry(sums: AllocationSummary, words: Uint32Array, at: number, guest: number, ctx: L2Context): void {
  const { clusterSize } = ctx;
  const hi = bigEndian(words[at] as number);
  const lo = bigEndian(words[at + 1] as number);
  const inCluster = Math.min(clusterSize, ctx.virtualSize - guest);
  if ((hi & HI_COMPRESSED) !== 0) {
    // Compressed clusters have no subclusters and always hold a whole cluster of data.
    sums.dataBytes += inCluster;
    return;
  }
  const hostHi = hi & OFFSET_HI_MASK;
  const hostLo = (lo & OFFSET_LO_MASK) >>> 0;
  // With an external data file, offset 0 is valid when bit 63 (refcount one) says the cluster is allocated.
  const hasHost = hostHi !== 0 || hostLo !== 0 || (ctx.externalData && (hi & HI_COPIED) !== 0);
  if (hasHost && (hostLo & (clusterSize - 1)) !== 0) {
    throw new CorruptImageError(ctx.layer, `L2 entry for guest offset ${guest} points to unaligned host offset ${hostHi * 2 ** 32 + hostLo}`);
  }
  if (!ctx.extendedL2) {
    if ((lo & LO_ZERO) !== 0) sums.zeroBytes += inCluster;
    else if (hasHost) sums.dataBytes += inCluster;
    return;
  }
  const zeroBits = bigEndian(words[at + 2] as number);
  const allocBits = bigEndian(words[at + 3] as number);
  if ((zeroBits & allocBits) !== 0) {
    throw new CorruptImageError(ctx.layer, `L2 entry for guest offset ${guest} marks subclusters both allocated and zero`);
  }
  if (!hasHost && allocBits !== 0) {
    throw new CorruptImageError(ctx.layer, `L2 entry for guest offset ${guest} allocates subclusters without a host cluster`);
  }
  const subclusterSize = clusterSize / SUBCLUSTERS;
  if (inCluster === clusterSize) {
    sums.dataBytes += popcount(allocBits) * subclusterSize;
    sums.zeroBytes += popcount(zeroBits) * subclusterSize;
    return;
  }
  // Last cluster, cut by the virtual size: count subcluster by subcluster.
  for (let k = 0; k < SUBCLUSTERS && k * subclusterSize < inCluster; k++) {
    const bytes = Math.min(subclusterSize, inCluster - k * subclusterSize);
    if ((allocBits >>> k) & 1) sums.dataBytes += bytes;
    else if ((zeroBits >>> k) & 1) sums.zeroBytes += bytes;
  }
}

function popcount(x: number): number {
  let v = x >>> 0;
  v = v - ((v >>> 1) & 0x55555555);
  v = (v & 0x33333333) + ((v >>> 2) & 0x33333333);
  return Math.imul((v + (v >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24;
}

function safeOffset(offset: bigint, layer: string, what: string): number {
  if (offset > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new CorruptImageError(layer, `${what} offset ${offset} is beyond any image size`);
  }
  return Number(offset);
}
