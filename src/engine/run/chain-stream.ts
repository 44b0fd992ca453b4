/**
 * The chain stream of `volchain export` / `import` (docs/chain-stream.md is the format's reference): a magic,
 * a JSON manifest, each layer as its own extents (data and zeroes, a delta against its parent) closed by the
 * layer's SHA-256, and a trailer holding the SHA-256 of every byte before it. Written and read in one pass, so
 * it goes through pipes and ssh; the checksums come after what they cover because the exporter reads each
 * layer once.
 *
 * This module only frames and checks bytes; what a manifest may say is engine/planners/import.ts's.
 */
import { createHash, type Hash } from 'node:crypto';
import type { Writable } from 'node:stream';
import { CorruptImageError } from '../../errors.js';

/** The first 8 bytes of every chain stream. */
export const CHAIN_STREAM_MAGIC = Buffer.from('VCCHAIN\n', 'latin1');
/** The manifest's `format` and the one `version` this reader knows. */
export const CHAIN_STREAM_FORMAT = 'volchain-chain';
export const CHAIN_STREAM_VERSION = 1;
/** Largest data record: bounds what a reader buffers (and what one qemu-io write takes). */
export const MAX_DATA_RECORD = 4 * 1024 * 1024;
/** Largest manifest: far above any real chain (1000 layers take ~150 KiB). */
export const MAX_MANIFEST_BYTES = 1024 * 1024;
/** Offsets and lengths are multiples of this (qcow2 addresses guest data in 512-byte sectors). */
export const SECTOR = 512;

export type ChainRecord =
  | { tag: 'L'; index: number }
  | { tag: 'D'; offset: number; data: Buffer }
  | { tag: 'Z'; offset: number; length: number }
  | { tag: 'E'; sha256: Buffer }
  | { tag: 'T'; sha256: Buffer };

/** What the stream's reader refuses: a stream that is not a whole, well-framed chain stream (exit 8). */
export function streamError(message: string): CorruptImageError {
  return new CorruptImageError('import stream', message);
}

// ---- writing --------------------------------------------------------------------------------------------

/**
 * Writes a chain stream to `out` with backpressure (each write waits for 'drain' when the pipe is full), and
 * keeps the running checksums the 'E' and 'T' records carry.
 */
export class ChainStreamWriter {
  private readonly total: Hash = createHash('sha256');
  private layer: Hash | undefined;
  bytes = 0;

  constructor(private readonly out: Writable) {}

  async begin(manifestJson: string): Promise<void> {
    const json = Buffer.from(manifestJson, 'utf8');
    await this.put(CHAIN_STREAM_MAGIC);
    const head = Buffer.alloc(5);
    head.write('M', 0, 'latin1');
    head.writeUInt32BE(json.length, 1);
    await this.put(head);
    await this.put(json);
  }

  async layerStart(index: number): Promise<void> {
    this.layer = createHash('sha256');
    const b = Buffer.alloc(5);
    b.write('L', 0, 'latin1');
    b.writeUInt32BE(index, 1);
    await this.put(b);
  }

  async data(offset: number, data: Buffer): Promise<void> {
    const b = Buffer.alloc(13);
    b.write('D', 0, 'latin1');
    b.writeBigUInt64BE(BigInt(offset), 1);
    b.writeUInt32BE(data.length, 9);
    await this.put(b);
    await this.put(data);
  }

  async zero(offset: number, length: number): Promise<void> {
    const b = Buffer.alloc(17);
    b.write('Z', 0, 'latin1');
    b.writeBigUInt64BE(BigInt(offset), 1);
    b.writeBigUInt64BE(BigInt(length), 9);
    await this.put(b);
  }

  async layerEnd(): Promise<void> {
    const digest = this.layer?.digest();
    this.layer = undefined;
    if (!digest) throw new Error('layerEnd without layerStart');
    await this.put(Buffer.concat([Buffer.from('E', 'latin1'), digest]));
  }

  /** The trailer; the caller ends or flushes `out`. */
  async end(): Promise<void> {
    const t = Buffer.from('T', 'latin1');
    this.total.update(t);
    await this.raw(Buffer.concat([t, this.total.digest()]));
  }

  private async put(buf: Buffer): Promise<void> {
    this.total.update(buf);
    this.layer?.update(buf);
    await this.raw(buf);
  }

  private raw(buf: Buffer): Promise<void> {
    this.bytes += buf.length;
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      this.out.once('error', onError);
      const flushed = this.out.write(buf, (err) => {
        if (err) reject(err);
      });
      const done = (): void => {
        this.out.removeListener('error', onError);
        resolve();
      };
      if (flushed) done();
      else this.out.once('drain', done);
    });
  }
}

// ---- reading --------------------------------------------------------------------------------------------

/**
 * Reads a chain stream from any byte source (a file, stdin), exactly as many bytes as each record says, and
 * checks the framing: a stream that ends early, a checksum that does not match, or bytes after the trailer
 * are refused. Only a bounded amount is ever buffered (one record).
 */
export class ChainStreamReader {
  private readonly chunks: Buffer[] = [];
  private buffered = 0;
  private readonly source: AsyncIterator<Buffer | string>;
  private readonly total: Hash = createHash('sha256');
  private layer: Hash | undefined;
  /** Bytes consumed so far. */
  bytes = 0;

  constructor(input: AsyncIterable<Buffer | string>) {
    this.source = input[Symbol.asyncIterator]();
  }

  /** The magic and the manifest's JSON text. */
  async begin(): Promise<string> {
    const magic = await this.exact(CHAIN_STREAM_MAGIC.length, 'its magic');
    if (!magic.equals(CHAIN_STREAM_MAGIC)) throw streamError('is not a volchain chain stream (wrong magic; was it made by volchain export?)');
    const head = await this.exact(5, 'the manifest');
    if (head.toString('latin1', 0, 1) !== 'M') throw streamError('has no manifest after its magic');
    const length = head.readUInt32BE(1);
    if (length === 0 || length > MAX_MANIFEST_BYTES) throw streamError(`announces a manifest of ${length} bytes (at most ${MAX_MANIFEST_BYTES})`);
    return (await this.exact(length, 'the manifest')).toString('utf8');
  }

  /** The next record; data records carry their bytes (at most MAX_DATA_RECORD). */
  async next(): Promise<ChainRecord> {
    const tag = (await this.peekTag()).toString('latin1');
    switch (tag) {
      case 'L': {
        this.layer = createHash('sha256');
        const b = await this.exact(5, 'a layer start');
        return { tag: 'L', index: b.readUInt32BE(1) };
      }
      case 'D': {
        const b = await this.exact(13, 'a data record');
        const offset = safeOffset(b.readBigUInt64BE(1));
        const length = b.readUInt32BE(9);
        if (length === 0 || length > MAX_DATA_RECORD) throw streamError(`has a data record of ${length} bytes at offset ${offset} (1 to ${MAX_DATA_RECORD})`);
        return { tag: 'D', offset, data: await this.exact(length, 'a data record') };
      }
      case 'Z': {
        const b = await this.exact(17, 'a zero record');
        return { tag: 'Z', offset: safeOffset(b.readBigUInt64BE(1)), length: safeOffset(b.readBigUInt64BE(9)) };
      }
      case 'E': {
        // The layer's checksum covers its records up to here, not the 'E' record itself.
        const digest = this.layer?.digest();
        this.layer = undefined;
        const b = await this.exact(33, 'a layer end');
        return { tag: 'E', sha256: checked(digest, b.subarray(1), 'a layer') };
      }
      case 'T': {
        this.total.update(Buffer.from('T', 'latin1'));
        const digest = this.total.digest();
        const b = await this.rawExact(33, 'the trailer');
        return { tag: 'T', sha256: checked(digest, b.subarray(1), 'the stream') };
      }
      default:
        throw streamError(`has an unknown record type 0x${Buffer.from(tag, 'latin1').toString('hex')} at byte ${this.bytes}`);
    }
  }

  /** After the trailer: the stream must end here. */
  async expectEnd(): Promise<void> {
    if (this.buffered > 0) throw streamError('has bytes after its trailer');
    const next = await this.source.next();
    if (next.done !== true && toBuffer(next.value).length > 0) throw streamError('has bytes after its trailer');
  }

  private async peekTag(): Promise<Buffer> {
    await this.fill(1, 'the next record');
    const first = this.chunks[0] as Buffer;
    return first.subarray(0, 1);
  }

  /** `n` bytes, counted in the running checksums. */
  private async exact(n: number, what: string): Promise<Buffer> {
    const b = await this.rawExact(n, what);
    this.total.update(b);
    this.layer?.update(b);
    return b;
  }

  private async rawExact(n: number, what: string): Promise<Buffer> {
    await this.fill(n, what);
    const out = Buffer.allocUnsafe(n);
    let at = 0;
    while (at < n) {
      const head = this.chunks[0] as Buffer;
      const take = Math.min(head.length, n - at);
      head.copy(out, at, 0, take);
      at += take;
      if (take === head.length) this.chunks.shift();
      else this.chunks[0] = head.subarray(take);
    }
    this.buffered -= n;
    this.bytes += n;
    return out;
  }

  private async fill(n: number, what: string): Promise<void> {
    while (this.buffered < n) {
      const next = await this.source.next();
      if (next.done === true) throw streamError(`ends early, inside ${what} (after ${this.bytes + this.buffered} bytes): the stream is truncated`);
      const chunk = toBuffer(next.value);
      if (chunk.length === 0) continue;
      this.chunks.push(chunk);
      this.buffered += chunk.length;
    }
  }
}

function toBuffer(value: unknown): Buffer {
  return typeof value === 'string' ? Buffer.from(value, 'latin1') : (value as Buffer);
}

function safeOffset(value: bigint): number {
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw streamError(`has an offset or length of ${value} bytes, beyond any disk`);
  return Number(value);
}

function checked(expected: Buffer | undefined, found: Buffer, what: string): Buffer {
  if (expected === undefined) throw streamError(`has a layer end outside any layer`);
  if (!expected.equals(found))
    throw streamError(`checksum of ${what} does not match (SHA-256 ${found.toString('hex')} in the stream, ${expected.toString('hex')} computed)`);
  return found;
}
