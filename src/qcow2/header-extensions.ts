/**
 * Header extensions and the names a header carries (backing file, backing format, data file), decoded from
 * the first cluster. Part of the parser in header-parse.ts: trusts nothing, throws only CorruptImageError.
 */
import type { CorruptImageError } from '../errors.js';
import {
  EXT_BACKING_FORMAT,
  EXT_BITMAPS,
  EXT_CRYPTO_HEADER,
  EXT_DATA_FILE,
  EXT_END,
  EXT_FEATURE_TABLE,
  MAX_BACKING_FORMAT_BYTES,
  type Qcow2FeatureName,
  type Qcow2Header,
} from './header-format.js';

export type MakeError = (message: string) => CorruptImageError;

const fatalUtf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Names that reach QEMU's command line or open() are decoded strictly: a name that is not valid UTF-8 cannot
 * be a volchain layer name, and lenient decoding could make two different byte strings compare equal.
 */
export function decodeName(bytes: Buffer, what: string, corrupt: MakeError): string {
  try {
    return fatalUtf8.decode(bytes);
  } catch {
    // Its length only: the bytes themselves are the image's content, not something to echo.
    throw corrupt(`${what} is not valid UTF-8 (${bytes.length} bytes)`);
  }
}

export interface Extensions {
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
export function parseExtensions(
  buf: Buffer,
  start: number,
  end: number,
  atEnd: boolean,
  need: (end: number, what: string) => void,
  corrupt: MakeError,
): Extensions {
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
