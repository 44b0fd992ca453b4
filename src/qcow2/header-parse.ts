/**
 * The qcow2 header parser proper: the fixed fields of the first cluster, their consistency with QEMU's own
 * checks at open, and the extension area (header-extensions.ts).
 *
 * Why native: DESIGN.md section 6 requires reading every header before any qemu-img/QEMU process sees the
 * image, because a hostile header can make QEMU open arbitrary files or network endpoints. So this parser
 * trusts nothing: every offset, length and count is checked against the first cluster or QEMU's own limits,
 * every loop is bounded, and the only errors it throws are CorruptImageError (malformed) — the security
 * judgement itself lives in validate.ts.
 */
import { CorruptImageError } from '../errors.js';
import { decodeName, parseExtensions, type MakeError } from './header-extensions.js';
import {
  COMPAT_LAZY_REFCOUNTS,
  AUTOCLEAR_DATA_FILE_RAW,
  INCOMPAT_COMPRESSION,
  INCOMPAT_CORRUPT,
  INCOMPAT_DATA_FILE,
  INCOMPAT_DIRTY,
  INCOMPAT_EXTL2,
  KNOWN_INCOMPAT,
  MAX_BACKING_NAME_BYTES,
  MAX_CLUSTER_BITS,
  MAX_L1_ENTRIES,
  MIN_CLUSTER_BITS,
  QCOW2_MAGIC,
  V2_HEADER_LENGTH,
  V3_MIN_HEADER_LENGTH,
  type Qcow2CompressionType,
  type Qcow2Header,
} from './header-format.js';
import { MAX_SNAPSHOTS, MAX_SNAPSHOT_TABLE_BYTES } from './snapshots.js';

/** Thrown inside the parser when the given bytes end before the first cluster does and more may exist. */
export class NeedMoreBytes extends Error {
  // An Error so that only-throw-error holds everywhere; it never leaves the qcow2 folder (headerSteps in header.ts catches it).
  constructor(readonly bytes: number) {
    super(`need ${bytes} bytes`);
  }
}

/**
 * Parses the fixed fields and extensions from the first bytes of an image. `atEnd` says `buf` holds all there
 * is (the whole first cluster, or the whole file); otherwise NeedMoreBytes asks for the first cluster.
 */
export function parseHeaderFields(buf: Buffer, layer: string, atEnd: boolean): Qcow2Header {
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
