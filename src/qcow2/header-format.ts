/**
 * The qcow2 header format (QEMU docs/interop/qcow2.txt), versions 2 and 3: magic, extension types, feature
 * bits, QEMU's limits, and the parsed `Qcow2Header`. Constants and types only; header-parse.ts reads them.
 */
import type { Qcow2Snapshot } from './snapshots.js';

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
export const MAX_BACKING_FORMAT_BYTES = 15;

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
