/**
 * Builds qcow2 header bytes, including broken and hostile ones, for tests and fuzzing. volchain itself never
 * writes headers (qemu-img does); this exists so the hostile-image corpus and the fuzzers can make exactly
 * the bytes an attacker would, starting from real images. Not re-exported from index.ts.
 */
import { EXT_BACKING_FORMAT, EXT_DATA_FILE, EXT_END, QCOW2_MAGIC, V2_HEADER_LENGTH, parseQcow2Header } from './header.js';

export interface HeaderExtension {
  type: number;
  data: Buffer;
  /** Declared length when it must differ from data.length (overrunning extensions). */
  length?: number;
}

export interface HeaderFields {
  version: number;
  clusterBits: number;
  virtualSize: bigint;
  cryptMethod: number;
  l1Size: number;
  l1TableOffset: bigint;
  refcountTableOffset: bigint;
  refcountTableClusters: number;
  snapshotCount: number;
  snapshotsOffset: bigint;
  incompatibleFeatures: bigint;
  compatibleFeatures: bigint;
  autoclearFeatures: bigint;
  refcountOrder: number;
  headerLength: number;
  compressionType: number;
}

export interface HeaderSpec extends Partial<HeaderFields> {
  extensions?: HeaderExtension[];
  /** Leave out the end-of-extensions marker. */
  omitEndMarker?: boolean;
  /** Backing name, written after the extensions (8-byte aligned). */
  backingFile?: string | Buffer;
  /** Overrides of the backing name's offset and size fields (hostile headers). */
  backingFileOffset?: bigint;
  backingFileSize?: number;
  /** Length of the returned buffer; default one cluster. */
  totalBytes?: number;
}

export function stringExtension(type: number, value: string): HeaderExtension {
  return { type, data: Buffer.from(value, 'utf8') };
}

/** Encodes a header, its extensions and backing name into a buffer of `totalBytes` (default: a cluster). */
export function encodeQcow2Header(spec: HeaderSpec): Buffer {
  const version = spec.version ?? 3;
  const clusterBits = spec.clusterBits ?? 16;
  const headerLength = spec.headerLength ?? (version === 2 ? V2_HEADER_LENGTH : 112);
  const totalBytes = spec.totalBytes ?? 2 ** Math.min(clusterBits, 21);
  const buf = Buffer.alloc(totalBytes);
  const put = (write: () => void, end: number): void => {
    if (end > totalBytes) throw new RangeError(`encodeQcow2Header: content needs ${end} bytes, buffer has ${totalBytes}`);
    write();
  };
  put(() => {
    buf.writeUInt32BE(QCOW2_MAGIC, 0);
    buf.writeUInt32BE(version >>> 0, 4);
    buf.writeUInt32BE(clusterBits >>> 0, 20);
    buf.writeBigUInt64BE(spec.virtualSize ?? 0n, 24);
    buf.writeUInt32BE(spec.cryptMethod ?? 0, 32);
    buf.writeUInt32BE(spec.l1Size ?? 0, 36);
    buf.writeBigUInt64BE(spec.l1TableOffset ?? 0n, 40);
    buf.writeBigUInt64BE(spec.refcountTableOffset ?? 0n, 48);
    buf.writeUInt32BE(spec.refcountTableClusters ?? 0, 56);
    buf.writeUInt32BE(spec.snapshotCount ?? 0, 60);
    buf.writeBigUInt64BE(spec.snapshotsOffset ?? 0n, 64);
  }, V2_HEADER_LENGTH);
  if (version !== 2) {
    put(() => {
      buf.writeBigUInt64BE(spec.incompatibleFeatures ?? 0n, 72);
      buf.writeBigUInt64BE(spec.compatibleFeatures ?? 0n, 80);
      buf.writeBigUInt64BE(spec.autoclearFeatures ?? 0n, 88);
      buf.writeUInt32BE(spec.refcountOrder ?? 4, 96);
      buf.writeUInt32BE(headerLength >>> 0, 100);
    }, 104);
    if (headerLength > 104) put(() => buf.writeUInt8(spec.compressionType ?? 0, 104), 105);
  }

  let pos = version === 2 ? V2_HEADER_LENGTH : Math.max(headerLength, 104);
  for (const ext of spec.extensions ?? []) {
    const at = pos;
    put(() => {
      buf.writeUInt32BE(ext.type >>> 0, at);
      buf.writeUInt32BE((ext.length ?? ext.data.length) >>> 0, at + 4);
    }, at + 8);
    const copied = Math.min(ext.data.length, totalBytes - at - 8);
    ext.data.copy(buf, at + 8, 0, copied);
    pos = at + 8 + Math.ceil(ext.data.length / 8) * 8;
  }
  if (!spec.omitEndMarker) {
    const at = pos;
    put(() => buf.writeUInt32BE(EXT_END, at), at + 8);
    pos += 8;
  }

  if (spec.backingFile !== undefined || spec.backingFileOffset !== undefined) {
    const name = typeof spec.backingFile === 'string' ? Buffer.from(spec.backingFile, 'utf8') : (spec.backingFile ?? Buffer.alloc(0));
    const offset = spec.backingFileOffset ?? BigInt(pos);
    buf.writeBigUInt64BE(offset, 8);
    buf.writeUInt32BE((spec.backingFileSize ?? name.length) >>> 0, 16);
    if (offset < BigInt(totalBytes)) name.copy(buf, Number(offset));
  }
  return buf;
}

export interface HeaderEdits extends HeaderSpec {
  /** New backing name (default: keep the image's). */
  backingFile?: string | Buffer;
  /** Drop the backing name altogether. */
  removeBacking?: boolean;
  /** New backing format; null removes the extension. */
  backingFormat?: string | null;
  /** External data file name extension; null removes it. */
  dataFile?: string | null;
}

/**
 * Returns a copy of a real image with its first cluster re-encoded: the original fields, backing format and
 * data file extensions, backing name, with `edits` applied. Other extensions (feature names, bitmaps) are
 * dropped unless given in `edits.extensions`, which are written after the standard ones.
 */
export function rewriteQcow2Header(image: Buffer, edits: HeaderEdits): Buffer {
  const h = parseQcow2Header(image, 'rewrite');
  const backingFormat = edits.backingFormat === undefined ? h.backingFormat : edits.backingFormat;
  const dataFile = edits.dataFile === undefined ? h.dataFile : edits.dataFile;
  const extensions: HeaderExtension[] = [];
  if (backingFormat !== undefined && backingFormat !== null) extensions.push(stringExtension(EXT_BACKING_FORMAT, backingFormat));
  if (dataFile !== undefined && dataFile !== null) extensions.push(stringExtension(EXT_DATA_FILE, dataFile));
  extensions.push(...(edits.extensions ?? []));
  const spec: HeaderSpec = {
    version: h.version,
    clusterBits: h.clusterBits,
    virtualSize: BigInt(h.virtualSize),
    cryptMethod: h.cryptMethod,
    l1Size: h.l1Size,
    l1TableOffset: h.l1TableOffset,
    refcountTableOffset: h.refcountTableOffset,
    refcountTableClusters: h.refcountTableClusters,
    snapshotCount: h.snapshotCount,
    snapshotsOffset: h.snapshotsOffset,
    incompatibleFeatures: h.incompatibleFeatures,
    compatibleFeatures: h.compatibleFeatures,
    autoclearFeatures: h.autoclearFeatures,
    refcountOrder: h.refcountOrder,
    headerLength: h.headerLength,
    compressionType: h.compressionType === 'zstd' ? 1 : 0,
    ...edits,
    extensions,
    backingFile: edits.removeBacking ? undefined : (edits.backingFile ?? h.backingFile),
    totalBytes: h.clusterSize,
  };
  const first = encodeQcow2Header(spec);
  return Buffer.concat([first, image.subarray(h.clusterSize)]);
}
