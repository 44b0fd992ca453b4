/**
 * A journal document kept on a raw block device (an LV of one extent or a few MiB), updated in place so
 * that a power loss at any moment leaves either the previous or the new version readable, never a mix:
 *
 *   bytes 0..511     header of copy A      bytes 512..1023  header of copy B
 *   PAYLOAD_OFFSET.. payload area A        PAYLOAD_OFFSET + capacity.. payload area B
 *
 * An update writes the payload into the copy not holding the newest version, flushes, then writes that
 * copy's one-sector header (generation + 1, length, SHA-256 of the payload) and flushes again. A sector
 * write is atomic on every disk LVM runs on, so a header is either old or new; a reader takes the valid
 * header with the highest generation whose payload matches its hash. A new LV has its first 4 KiB zeroed
 * by lvcreate (-Z), so stale data of an older LV on the same extents can never pass for a header.
 */
import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';

export const HEADER_BYTES = 512;
export const PAYLOAD_OFFSET = 64 * 1024;
const MAGIC = 'VOLCHAIN-JOURNAL-1';

export interface CopyHeader {
  copy: 0 | 1;
  generation: number;
  length: number;
  sha256: string;
}

/** Bytes each of the two payload copies can hold on a device of `deviceBytes`. */
export function payloadCapacity(deviceBytes: number): number {
  return Math.max(0, Math.floor((deviceBytes - PAYLOAD_OFFSET) / 2 / 4096) * 4096);
}

export function payloadOffset(copy: 0 | 1, deviceBytes: number): number {
  return PAYLOAD_OFFSET + copy * payloadCapacity(deviceBytes);
}

export function encodeHeader(h: Omit<CopyHeader, 'copy'>): Buffer {
  const buf = Buffer.alloc(HEADER_BYTES);
  buf.write(`${MAGIC} ${h.generation} ${h.length} ${h.sha256}\n`, 'ascii');
  return buf;
}

/** The header in a 512-byte sector, or undefined when the sector holds none (zeroes, garbage). */
export function decodeHeader(sector: Buffer, copy: 0 | 1): CopyHeader | undefined {
  const end = sector.indexOf(0x0a);
  if (end < 0) return undefined;
  const m = /^VOLCHAIN-JOURNAL-1 ([1-9][0-9]{0,15}) ([0-9]{1,12}) ([0-9a-f]{64})$/.exec(sector.subarray(0, end).toString('latin1'));
  if (!m) return undefined;
  return { copy, generation: Number(m[1]), length: Number(m[2]), sha256: m[3] as string };
}

export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Headers to try, newest first. */
export function candidates(headers: readonly (CopyHeader | undefined)[], deviceBytes: number): CopyHeader[] {
  const capacity = payloadCapacity(deviceBytes);
  return headers.filter((h): h is CopyHeader => h !== undefined && h.length <= capacity).sort((a, b) => b.generation - a.generation);
}

export interface DeviceDocument {
  generation: number;
  /** Which copy holds it (the next write goes to the other). */
  copy: 0 | 1;
  payload: Buffer;
}

/** Reads the newest intact version, or undefined when the device holds none yet. */
export async function readDeviceDocument(path: string, deviceBytes: number): Promise<DeviceDocument | undefined> {
  const fh = await open(path, 'r');
  try {
    const sectors = Buffer.alloc(2 * HEADER_BYTES);
    await fh.read(sectors, 0, sectors.length, 0);
    const headers = [decodeHeader(sectors.subarray(0, HEADER_BYTES), 0), decodeHeader(sectors.subarray(HEADER_BYTES), 1)];
    for (const h of candidates(headers, deviceBytes)) {
      const payload = Buffer.alloc(h.length);
      await fh.read(payload, 0, h.length, payloadOffset(h.copy, deviceBytes));
      if (sha256(payload) === h.sha256) return { generation: h.generation, copy: h.copy, payload };
    }
    return undefined;
  } finally {
    await fh.close();
  }
}

/**
 * Writes `payload` as the version after `previous` (undefined: the device holds none yet) into the other
 * copy, payload first, header last, each flushed to the device before going on.
 */
export async function writeDeviceDocument(
  path: string,
  deviceBytes: number,
  previous: Pick<DeviceDocument, 'generation' | 'copy'> | undefined,
  payload: Buffer,
): Promise<Pick<DeviceDocument, 'generation' | 'copy'>> {
  const capacity = payloadCapacity(deviceBytes);
  if (payload.length > capacity) {
    throw new RangeError(`journal of ${payload.length} bytes does not fit in ${path} (${capacity} bytes per copy)`);
  }
  const copy: 0 | 1 = previous === undefined ? 0 : previous.copy === 0 ? 1 : 0;
  const generation = (previous?.generation ?? 0) + 1;
  const fh = await open(path, 'r+');
  try {
    await fh.write(payload, 0, payload.length, payloadOffset(copy, deviceBytes));
    await fh.datasync();
    await fh.write(encodeHeader({ generation, length: payload.length, sha256: sha256(payload) }), 0, HEADER_BYTES, copy * HEADER_BYTES);
    await fh.datasync();
  } finally {
    await fh.close();
  }
  return { generation, copy };
}
