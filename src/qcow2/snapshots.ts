/**
 * The internal snapshot table (qcow2 spec, "Snapshots"). volchain only lists these — for storages without
 * chains a user may have internal snapshots it must show — so the parser keeps names and sizes and ignores
 * the L1 tables they point to.
 *
 * The table is untrusted: entry count and total size are bounded by QEMU's own limits, and the parser reports
 * how many bytes it still needs instead of reading past what it was given, so the caller controls all I/O.
 */
import { CorruptImageError } from '../errors.js';

/** QEMU's limits (block/qcow2.h): QCOW_MAX_SNAPSHOTS, QCOW_MAX_SNAPSHOTS_SIZE, QCOW_MAX_SNAPSHOT_EXTRA_DATA. */
export const MAX_SNAPSHOTS = 65536;
export const MAX_SNAPSHOT_TABLE_BYTES = 64 * 1024 * 1024;
export const MAX_SNAPSHOT_EXTRA_BYTES = 1024;

const ENTRY_FIXED_BYTES = 40;

export interface Qcow2Snapshot {
  /** Unique id string (QEMU numbers them "1", "2", …). */
  id: string;
  name: string;
  l1TableOffset: bigint;
  l1Size: number;
  dateSec: number;
  dateNsec: number;
  /** dateSec + dateNsec as a Date (millisecond precision). */
  date: Date;
  /** Guest run time when the snapshot was taken. */
  vmClockNsec: bigint;
  /** Bytes of saved VM state (0 for a disk-only snapshot); the 64-bit extra field wins when present. */
  vmStateSize: number;
  /** Virtual disk size at snapshot time (extra data bytes 48-55), when recorded. */
  virtualSize: number | undefined;
  /** Instruction count (extra data bytes 56-63; -1 in the file means none), when recorded. */
  icount: bigint | undefined;
}

export type SnapshotTableResult = { snapshots: Qcow2Snapshot[] } | { needBytes: number };

/**
 * Parses `count` entries from `table`, which starts at the table's offset in the file. Returns the entries, or
 * the number of bytes (from the table start) needed to go further when `table` is too short. Throws
 * CorruptImageError for entries that break the format or QEMU's bounds.
 */
export function parseSnapshotTable(table: Buffer, count: number, layer: string): SnapshotTableResult {
  if (count > MAX_SNAPSHOTS) {
    throw new CorruptImageError(layer, `snapshot table has ${count} entries, more than QEMU's limit of ${MAX_SNAPSHOTS}`);
  }
  const snapshots: Qcow2Snapshot[] = [];
  const utf8 = new TextDecoder('utf-8'); // names are for display: invalid bytes become U+FFFD
  let pos = 0;
  for (let i = 0; i < count; i++) {
    if (pos + ENTRY_FIXED_BYTES > MAX_SNAPSHOT_TABLE_BYTES) throw tooLarge(layer);
    if (pos + ENTRY_FIXED_BYTES > table.length) return { needBytes: pos + ENTRY_FIXED_BYTES };
    const l1TableOffset = table.readBigUInt64BE(pos);
    const l1Size = table.readUInt32BE(pos + 8);
    const idBytes = table.readUInt16BE(pos + 12);
    const nameBytes = table.readUInt16BE(pos + 14);
    const dateSec = table.readUInt32BE(pos + 16);
    const dateNsec = table.readUInt32BE(pos + 20);
    const vmClockNsec = table.readBigUInt64BE(pos + 24);
    const vmState32 = table.readUInt32BE(pos + 32);
    const extraBytes = table.readUInt32BE(pos + 36);
    if (extraBytes > MAX_SNAPSHOT_EXTRA_BYTES) {
      throw new CorruptImageError(
        layer,
        `snapshot table entry ${i} has ${extraBytes} bytes of extra data, more than QEMU's limit of ${MAX_SNAPSHOT_EXTRA_BYTES}`,
      );
    }
    const entryEnd = pos + ENTRY_FIXED_BYTES + extraBytes + idBytes + nameBytes;
    if (entryEnd > MAX_SNAPSHOT_TABLE_BYTES) throw tooLarge(layer);
    if (entryEnd > table.length) return { needBytes: entryEnd };

    const extra = pos + ENTRY_FIXED_BYTES;
    let vmStateSize = vmState32;
    let virtualSize: number | undefined;
    let icount: bigint | undefined;
    if (extraBytes >= 8) vmStateSize = safeNumber(table.readBigUInt64BE(extra), layer, `snapshot ${i} VM state size`);
    if (extraBytes >= 16) virtualSize = safeNumber(table.readBigUInt64BE(extra + 8), layer, `snapshot ${i} virtual size`);
    if (extraBytes >= 24) {
      const raw = table.readBigInt64BE(extra + 16);
      icount = raw === -1n ? undefined : raw;
    }
    const idStart = extra + extraBytes;
    const nameStart = idStart + idBytes;
    snapshots.push({
      id: utf8.decode(table.subarray(idStart, nameStart)),
      name: utf8.decode(table.subarray(nameStart, nameStart + nameBytes)),
      l1TableOffset,
      l1Size,
      dateSec,
      dateNsec,
      date: new Date(dateSec * 1000 + Math.floor(dateNsec / 1e6)),
      vmClockNsec,
      vmStateSize,
      virtualSize,
      icount,
    });
    // Entries start on 8-byte boundaries; the last one's padding need not exist.
    pos = (entryEnd + 7) & ~7;
  }
  return { snapshots };
}

function tooLarge(layer: string): CorruptImageError {
  return new CorruptImageError(layer, `snapshot table exceeds QEMU's limit of ${MAX_SNAPSHOT_TABLE_BYTES} bytes`);
}

function safeNumber(value: bigint, layer: string, what: string): number {
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new CorruptImageError(layer, `${what} ${value} is beyond ${Number.MAX_SAFE_INTEGER}`);
  }
  return Number(value);
}
