/**
 * Native qcow2 header reader (QEMU docs/interop/qcow2.txt), versions 2 and 3.
 *
 * Why native: DESIGN.md section 6 requires reading every header before any qemu-img/QEMU process sees the
 * image, because a hostile header can make QEMU open arbitrary files or network endpoints. So this parser
 * trusts nothing: every offset, length and count is checked against the first cluster or QEMU's own limits,
 * every loop is bounded, and the only errors it throws are CorruptImageError (malformed) — the security
 * judgement itself lives in validate.ts.
 */
import { basename } from 'node:path';
import { CorruptImageError } from '../errors.js';
import { openLocalImage, readExactSteps, runSteps, type ImageReader, type ReadSteps } from './io.js';
import { MAX_SNAPSHOTS, MAX_SNAPSHOT_TABLE_BYTES, parseSnapshotTable, type Qcow2Snapshot } from './snapshots.js';

export const QCOW2_MAGIC = 0x514649fb; // "QFI\xfb"

/** Header extension types. */
export const EXT_END = 0x00000000;
export const EXT_BACKING_FORMAT = 0xe2792aca;
export const EXT_FEATURE_TABLE = 0x6803f857;
export const EXT_BITMAPS = 0x23852875;
export const EXT_CRYPTO_HEADER = 0x0537be77;
export const EXT_DATA_FILE = 0x44415441;

/** Incompatible feature bits. */
export const INCOMPAT_DIRTY = 1n << 0n;
export const INCOMPAT_CORRUPT = 1n << 1n;
export const INCOMPAT_DATA_FILE = 1n << 2n;
export const INCOMPAT_COMPRESSION = 1n << 3n;
export const INCOMPAT_EXTL2 = 1n << 4n;
export const KNOWN_INCOMPAT = INCOMPAT_DIRTY | INCOMPAT_CORRUPT | INCOMPAT_DATA_FILE | INCOMPAT_COMPRESSION | INCOMPAT_EXTL2;
/** Compatible / autoclear feature bits. */
export const COMPAT_LAZY_REFCOUNTS = 1n << 0n;
export const AUTOCLEAR_BITMAPS = 1n << 0n;
export const AUTOCLEAR_DATA_FILE_RAW = 1n << 1n;

export const V2_HEADER_LENGTH = 72;
export const V3_MIN_HEADER_LENGTH = 104;
export const MIN_CLUSTER_BITS = 9;
export const MAX_CLUSTER_BITS = 21; // QEMU's implementation limit (2 MiB clusters)
/** QEMU refuses longer backing file names (block/qcow2.c). */
export const MAX_BACKING_NAME_BYTES = 1023;
/** QEMU's limit on the active L1 table: 32 MiB of 8-byte entries. */
export const MAX_L1_ENTRIES = (32 * 1024 * 1024) / 8;
/** Backing format strings longer than this do not fit QEMU's buffer (char backing_format[16]). */
const MAX_BACKING_FORMAT_BYTES = 15;

export type Qcow2CompressionType = 'zlib' | 'zstd';

export interface Qcow2FeatureName {
  type: 'incompatible' | 'compatible' | 'autoclear' | number;
  bit: number;
  name: string;
}

export interface Qcow2Header {
  version: 2 | 3;
  /** Bytes of the fixed header (72 for version 2). */
  headerLength: number;
  clusterBits: number;
  clusterSize: number;
  /** Guest-visible size in bytes. */
  virtualSize: number;
  /** Backing reference exactly as stored (not resolved), undefined when there is none. */
  backingFile: string | undefined;
  backingFileOffset: bigint;
  /** Declared byte length of the backing name (0 without backing file). */
  backingFileSize: number;
  /** From the backing format extension; undefined when absent (QEMU would then probe the format). */
  backingFormat: string | undefined;
  /** From the external data file extension. */
  dataFile: string | undefined;
  /** 0 none, 1 AES, 2 LUKS. */
  cryptMethod: number;
  encrypted: boolean;
  l1Size: number;
  l1TableOffset: bigint;
  refcountTableOffset: bigint;
  refcountTableClusters: number;
  snapshotCount: number;
  snapshotsOffset: bigint;
  incompatibleFeatures: bigint;
  compatibleFeatures: bigint;
  autoclearFeatures: bigint;
  /** Incompatible bits this reader does not know; validate.ts refuses images that have any. */
  unknownIncompatibleFeatures: bigint;
  dirty: boolean;
  corrupt: boolean;
  externalData: boolean;
  extendedL2: boolean;
  lazyRefcounts: boolean;
  dataFileRaw: boolean;
  compressionType: Qcow2CompressionType;
  refcountOrder: number;
  refcountBits: number;
  featureNames: Qcow2FeatureName[];
  bitmaps: { count: number; directorySize: bigint; directoryOffset: bigint } | undefined;
  encryptionHeader: { offset: bigint; length: bigint } | undefined;
  /** Types of extensions this reader skipped. */
  unknownExtensions: number[];
  /**
   * Internal snapshots (snapshotCount entries). readQcow2Header always reads the whole table; the pure
   * parseQcow2Header can only fill it when the table lies in the bytes it was given and leaves it empty
   * otherwise, so compare its length with snapshotCount there.
   */
  internalSnapshots: Qcow2Snapshot[];
}

/** Thrown inside the parser when the given bytes end before the first cluster does and more may exist. */
class NeedMoreBytes extends Error {
  // An Error so that only-throw-error holds everywhere; it never leaves this module (parseHeader catches it).
  constructor(readonly bytes: number) {
    super(`need ${bytes} bytes`);
  }
}

/**
 * Parses a qcow2 header from the first bytes of an image: `buf` must hold the first cluster, or the whole
 * file when that is shorter. Pure; throws only CorruptImageError.
 */
export function parseQcow2Header(buf: Buffer, layer: string): Qcow2Header {
  const header = parse(buf, layer, true);
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
    header = parse(buf, file.layer, buf.length < FIRST_READ_BYTES);
  } catch (err) {
    if (!(err instanceof NeedMoreBytes)) throw err;
    // Only possible with clusters over 4 KiB: everything the header may use lies in the first cluster.
    const clusterSize = 2 ** buf.readUInt32BE(20);
    buf = yield { position: 0, length: clusterSize };
    header = parse(buf, file.layer, true);
  }
  header.internalSnapshots = header.snapshotCount === 0 ? [] : yield* snapshotSteps(file, header);
  return header;
}

function parse(buf: Buffer, layer: string, atEnd: boolean): Qcow2Header {
  const corrupt = (message: string) => new CorruptImageError(layer, message);
  if (buf.length < 8) {
    if (buf.length >= 4 && buf.readUInt32BE(0) !== QCOW2_MAGIC) throw notQcow2(layer);
    throw corrupt(`file too short for a qcow2 header (${buf.length} bytes)`);
  }
  if (buf.readUInt32BE(0) !== QCOW2_MAGIC) throw notQcow2(layer);
  const version = buf.readUInt32BE(4);
  if (version !== 2 && version !== 3) throw corrupt(`unsupported qcow2 version ${version} (only 2 and 3 exist)`);
  const fixedLength = version === 2 ? V2_HEADER_LENGTH : V3_MIN_HEADER_LENGTH;
  if (buf.length < fixedLength) {
    throw corrupt(`file too short for a qcow2 version ${version} header (${buf.length} bytes, need ${fixedLength})`);
  }

  const clusterBits = buf.readUInt32BE(20);
  if (clusterBits < MIN_CLUSTER_BITS || clusterBits > MAX_CLUSTER_BITS) {
    throw corrupt(`cluster_bits ${clusterBits} out of range ${MIN_CLUSTER_BITS}..${MAX_CLUSTER_BITS}`);
  }
  const clusterSize = 2 ** clusterBits;
  // Anything the header area uses must lie in the first cluster; ask for more only below that bound.
  const need = (end: number, what: string): void => {
    if (end <= buf.length) return;
    if (!atEnd && buf.length < clusterSize) throw new NeedMoreBytes(end);
    throw corrupt(`file too short: ${what} needs ${end} bytes, the image has ${buf.length}`);
  };

  const backingFileOffset = buf.readBigUInt64BE(8);
  const backingFileSize = buf.readUInt32BE(16);
  const virtualSizeRaw = buf.readBigUInt64BE(24);
  const cryptMethod = buf.readUInt32BE(32);
  const l1Size = buf.readUInt32BE(36);
  const l1TableOffset = buf.readBigUInt64BE(40);
  const refcountTableOffset = buf.readBigUInt64BE(48);
  const refcountTableClusters = buf.readUInt32BE(56);
  const snapshotCount = buf.readUInt32BE(60);
  const snapshotsOffset = buf.readBigUInt64BE(64);

  let incompatibleFeatures = 0n;
  let compatibleFeatures = 0n;
  let autoclearFeatures = 0n;
  let refcountOrder = 4; // fixed for version 2
  let headerLength = V2_HEADER_LENGTH;
  let compressionByte = 0;
  if (version === 3) {
    incompatibleFeatures = buf.readBigUInt64BE(72);
    compatibleFeatures = buf.readBigUInt64BE(80);
    autoclearFeatures = buf.readBigUInt64BE(88);
    refcountOrder = buf.readUInt32BE(96);
    headerLength = buf.readUInt32BE(100);
    if (headerLength < V3_MIN_HEADER_LENGTH || headerLength % 8 !== 0 || headerLength > clusterSize) {
      throw corrupt(
        `header_length ${headerLength} is inconsistent (version 3 needs a multiple of 8 from ` + `${V3_MIN_HEADER_LENGTH} to the cluster size ${clusterSize})`,
      );
    }
    need(headerLength, `the header (header_length ${headerLength})`);
    // compression_type is byte 104, present when the header reaches past it.
    if (headerLength > 104) compressionByte = buf.readUInt8(104);
  }

  if (virtualSizeRaw > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw corrupt(`virtual size ${virtualSizeRaw} is beyond ${Number.MAX_SAFE_INTEGER} bytes`);
  }
  const virtualSize = Number(virtualSizeRaw);
  if (cryptMethod > 2) throw corrupt(`unknown encryption method ${cryptMethod}`);
  if (refcountOrder > 6) throw corrupt(`refcount_order ${refcountOrder} is above 6`);

  const extendedL2 = (incompatibleFeatures & INCOMPAT_EXTL2) !== 0n;
  if (extendedL2 && clusterBits < 14) {
    throw corrupt(`extended L2 entries need clusters of at least 16 KiB, cluster_bits is ${clusterBits}`);
  }
  const compressionType = decodeCompression(compressionByte, incompatibleFeatures, corrupt);

  checkTables(
    { clusterSize, virtualSize: virtualSizeRaw, extendedL2, l1Size, l1TableOffset, refcountTableOffset },
    { snapshotCount, snapshotsOffset },
    corrupt,
  );

  // Backing file name: must lie after the header in the first cluster, and fit QEMU's 1023-byte limit.
  let backingFile: string | undefined;
  if (backingFileOffset !== 0n) {
    if (backingFileSize > MAX_BACKING_NAME_BYTES) {
      throw corrupt(`backing file name is ${backingFileSize} bytes, more than QEMU's limit of ${MAX_BACKING_NAME_BYTES}`);
    }
    if (backingFileOffset < BigInt(headerLength) || backingFileOffset + BigInt(backingFileSize) > BigInt(clusterSize)) {
      throw corrupt(
        `backing file name at offset ${backingFileOffset} (${backingFileSize} bytes) lies outside the header ` +
          `area ${headerLength}..${clusterSize} of the first cluster`,
      );
    }
    const start = Number(backingFileOffset);
    need(start + backingFileSize, 'the backing file name');
    // QEMU treats an empty name as "no backing file".
    if (backingFileSize > 0) backingFile = decodeName(buf.subarray(start, start + backingFileSize), 'backing file name', corrupt);
  }

  // Extensions lie between the header and the backing file name (or the end of the first cluster).
  const extensionsEnd = backingFileOffset !== 0n ? Number(backingFileOffset) : clusterSize;
  const ext = parseExtensions(buf, headerLength, extensionsEnd, atEnd, need, corrupt);

  return {
    version,
    headerLength,
    clusterBits,
    clusterSize,
    virtualSize,
    backingFile,
    backingFileOffset,
    backingFileSize: backingFileOffset !== 0n ? backingFileSize : 0,
    backingFormat: ext.backingFormat,
    dataFile: ext.dataFile,
    cryptMethod,
    encrypted: cryptMethod !== 0,
    l1Size,
    l1TableOffset,
    refcountTableOffset,
    refcountTableClusters,
    snapshotCount,
    snapshotsOffset,
    incompatibleFeatures,
    compatibleFeatures,
    autoclearFeatures,
    unknownIncompatibleFeatures: incompatibleFeatures & ~KNOWN_INCOMPAT,
    dirty: (incompatibleFeatures & INCOMPAT_DIRTY) !== 0n,
    corrupt: (incompatibleFeatures & INCOMPAT_CORRUPT) !== 0n,
    externalData: (incompatibleFeatures & INCOMPAT_DATA_FILE) !== 0n,
    extendedL2,
    lazyRefcounts: (compatibleFeatures & COMPAT_LAZY_REFCOUNTS) !== 0n,
    dataFileRaw: (autoclearFeatures & AUTOCLEAR_DATA_FILE_RAW) !== 0n,
    compressionType,
    refcountOrder,
    refcountBits: 2 ** refcountOrder,
    featureNames: ext.featureNames,
    bitmaps: ext.bitmaps,
    encryptionHeader: ext.encryptionHeader,
    unknownExtensions: ext.unknown,
    internalSnapshots: [],
  };
}

type MakeError = (message: string) => CorruptImageError;

/**
 * Says nothing of what the file holds: the layer may be any file (a device, or a link to /etc/shadow), and its
 * first bytes are then someone's data, which must not appear in a message or a log.
 */
function notQcow2(layer: string): CorruptImageError {
  return new CorruptImageError(layer, 'not a qcow2 image: it does not start with the qcow2 magic 0x514649fb ("QFI\\xfb")');
}

function decodeCompression(value: number, incompatible: bigint, corrupt: MakeError): Qcow2CompressionType {
  const bitSet = (incompatible & INCOMPAT_COMPRESSION) !== 0n;
  if (value > 1) throw corrupt(`unknown compression type ${value}`);
  // The spec ties the field to incompatible bit 3 both ways; QEMU refuses either mismatch.
  if (value === 0 && bitSet) throw corrupt('compression type bit is set but compression_type is zlib (0)');
  if (value !== 0 && !bitSet) throw corrupt(`compression_type ${value} needs the compression type bit, which is clear`);
  return value === 0 ? 'zlib' : 'zstd';
}

/** The table checks QEMU makes at open (qcow2_validate_table, size_to_l1), so later walkers can rely on them. */
function checkTables(
  t: { clusterSize: number; virtualSize: bigint; extendedL2: boolean; l1Size: number; l1TableOffset: bigint; refcountTableOffset: bigint },
  s: { snapshotCount: number; snapshotsOffset: bigint },
  corrupt: MakeError,
): void {
  const cluster = BigInt(t.clusterSize);
  if (t.l1Size > MAX_L1_ENTRIES) throw corrupt(`active L1 table has ${t.l1Size} entries, more than QEMU's limit of ${MAX_L1_ENTRIES}`);
  const l2Entries = cluster / (t.extendedL2 ? 16n : 8n);
  const l1Needed = (t.virtualSize + cluster * l2Entries - 1n) / (cluster * l2Entries);
  if (BigInt(t.l1Size) < l1Needed) {
    throw corrupt(`L1 table of ${t.l1Size} entries is too small for the virtual size ${t.virtualSize} (needs ${l1Needed})`);
  }
  if (t.l1TableOffset % cluster !== 0n || (t.l1Size > 0 && t.l1TableOffset === 0n)) {
    throw corrupt(`L1 table offset ${t.l1TableOffset} is not a cluster-aligned offset after the header`);
  }
  if (t.refcountTableOffset % cluster !== 0n) {
    throw corrupt(`refcount table offset ${t.refcountTableOffset} is not cluster-aligned`);
  }
  if (s.snapshotCount > MAX_SNAPSHOTS) {
    throw corrupt(`${s.snapshotCount} internal snapshots, more than QEMU's limit of ${MAX_SNAPSHOTS}`);
  }
  if (s.snapshotsOffset % cluster !== 0n || (s.snapshotCount > 0 && s.snapshotsOffset === 0n)) {
    throw corrupt(`snapshot table offset ${s.snapshotsOffset} is not a cluster-aligned offset after the header`);
  }
  if (s.snapshotsOffset > BigInt(Number.MAX_SAFE_INTEGER - MAX_SNAPSHOT_TABLE_BYTES)) {
    throw corrupt(`snapshot table offset ${s.snapshotsOffset} is beyond any image size`);
  }
}

const fatalUtf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Names that reach QEMU's command line or open() are decoded strictly: a name that is not valid UTF-8 cannot
 * be a volchain layer name, and lenient decoding could make two different byte strings compare equal.
 */
function decodeName(bytes: Buffer, what: string, corrupt: MakeError): string {
  try {
    return fatalUtf8.decode(bytes);
  } catch {
    // Its length only: the bytes themselves are the image's content, not something to echo.
    throw corrupt(`${what} is not valid UTF-8 (${bytes.length} bytes)`);
  }
}

interface Extensions {
  backingFormat: string | undefined;
  dataFile: string | undefined;
  featureNames: Qcow2FeatureName[];
  bitmaps: Qcow2Header['bitmaps'];
  encryptionHeader: Qcow2Header['encryptionHeader'];
  unknown: number[];
}

const FEATURE_TYPES = ['incompatible', 'compatible', 'autoclear'] as const;
const FEATURE_ENTRY_BYTES = 48;

/**
 * Walks the extension area [start, end). Each pass advances at least 8 bytes and end is at most 2 MiB, so the
 * loop is bounded. Known extensions that appear twice are refused: which copy QEMU would use is an accident
 * of its implementation, and a backing format or data file must not be ambiguous.
 */
function parseExtensions(buf: Buffer, start: number, end: number, atEnd: boolean, need: (end: number, what: string) => void, corrupt: MakeError): Extensions {
  const out: Extensions = {
    backingFormat: undefined,
    dataFile: undefined,
    featureNames: [],
    bitmaps: undefined,
    encryptionHeader: undefined,
    unknown: [],
  };
  const seen = new Set<number>();
  let pos = start;
  while (pos < end) {
    // A short file (header-only) may end exactly at an extension boundary: QEMU reads zeros there, i.e. the end.
    if (atEnd && pos >= buf.length) break;
    if (pos + 8 > end) {
      throw corrupt(`header extension at offset ${pos} overruns the extension area, which ends at ${end}`);
    }
    need(pos + 8, `the header extension at offset ${pos}`);
    const type = buf.readUInt32BE(pos);
    const length = buf.readUInt32BE(pos + 4);
    const dataStart = pos + 8;
    if (type === EXT_END) break;
    const label = `header extension 0x${type.toString(16).padStart(8, '0')} at offset ${pos}`;
    if (length > end - dataStart) {
      throw corrupt(`${label} has length ${length}, overrunning the extension area, which ends at ${end}`);
    }
    need(dataStart + length, label);
    const data = buf.subarray(dataStart, dataStart + length);
    if (type !== EXT_FEATURE_TABLE && seen.has(type) && isKnownExtension(type)) {
      throw corrupt(`${label} appears more than once`);
    }
    seen.add(type);
    switch (type) {
      case EXT_BACKING_FORMAT:
        if (length > MAX_BACKING_FORMAT_BYTES) throw corrupt(`${label}: backing format name of ${length} bytes is too long`);
        out.backingFormat = decodeName(data, 'backing format name', corrupt);
        break;
      case EXT_DATA_FILE:
        out.dataFile = decodeName(data, 'external data file name', corrupt);
        break;
      case EXT_FEATURE_TABLE:
        for (let i = 0; i + FEATURE_ENTRY_BYTES <= length; i += FEATURE_ENTRY_BYTES) {
          const typeByte = data.readUInt8(i);
          const nameBytes = data.subarray(i + 2, i + FEATURE_ENTRY_BYTES);
          const nul = nameBytes.indexOf(0);
          out.featureNames.push({
            type: FEATURE_TYPES[typeByte] ?? typeByte,
            bit: data.readUInt8(i + 1),
            name: nameBytes.subarray(0, nul === -1 ? nameBytes.length : nul).toString('utf8'),
          });
        }
        break;
      case EXT_BITMAPS:
        if (length !== 24) throw corrupt(`${label}: bitmaps extension has length ${length}, expected 24`);
        out.bitmaps = {
          count: data.readUInt32BE(0),
          directorySize: data.readBigUInt64BE(8),
          directoryOffset: data.readBigUInt64BE(16),
        };
        break;
      case EXT_CRYPTO_HEADER:
        if (length !== 16) throw corrupt(`${label}: encryption header pointer has length ${length}, expected 16`);
        out.encryptionHeader = { offset: data.readBigUInt64BE(0), length: data.readBigUInt64BE(8) };
        break;
      default:
        // Unknown extensions may be safely ignored (spec); remember them for diagnostics.
        if (out.unknown.length < 64) out.unknown.push(type);
    }
    pos = dataStart + Math.ceil(length / 8) * 8;
  }
  return out;
}

function isKnownExtension(type: number): boolean {
  return type === EXT_BACKING_FORMAT || type === EXT_DATA_FILE || type === EXT_BITMAPS || type === EXT_CRYPTO_HEADER;
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
