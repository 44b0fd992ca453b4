/**
 * Property tests over untrusted bytes: whatever a header (or a whole small image) contains, the reader either
 * returns or throws CorruptImageError/UnsafeImageError — never a RangeError, TypeError or a hang — and it
 * finishes quickly, because no loop runs on a count read from the file without a bound.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { CorruptImageError, UnsafeImageError } from '../../src/errors.js';
import { EXT_BACKING_FORMAT, EXT_BITMAPS, EXT_CRYPTO_HEADER, EXT_DATA_FILE, EXT_FEATURE_TABLE, INCOMPAT_EXTL2 } from '../../src/qcow2/header-format.js';
import { parseQcow2Header, readHeaderFrom } from '../../src/qcow2/header.js';
import { backingNameProblem, countAllocation, validateLayerHeader, type Qcow2Header } from '../../src/qcow2/index.js';
import { bufferReader, type ImageFile } from '../../src/qcow2/io.js';
import { encodeQcow2Header, stringExtension, type HeaderExtension } from '../fixtures/qcow2-craft.js';

const LAYER = 'fuzz.qcow2';
const MAX_MS = 250; // generous: a single parse takes microseconds; this only catches runaway loops

function expectedError(err: unknown): boolean {
  return err instanceof CorruptImageError || err instanceof UnsafeImageError;
}

/**
 * CPU time (user + system) of this process in ms. The guards measure work, not wall time: on a loaded
 * machine a parse that takes microseconds can wait longer than MAX_MS for a CPU, which is not a runaway loop.
 */
function cpuMs(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
}

/** Runs `fn`; fails on any error that is not Corrupt/Unsafe, or when it uses more than MAX_MS of CPU. */
function guarded<T>(fn: () => T): T | undefined {
  const started = cpuMs();
  try {
    return fn();
  } catch (err) {
    if (!expectedError(err)) throw err;
    return undefined;
  } finally {
    assert.ok(cpuMs() - started < MAX_MS, 'took too long');
  }
}

async function guardedAsync<T>(fn: () => Promise<T>): Promise<T | undefined> {
  const started = cpuMs();
  try {
    return await fn();
  } catch (err) {
    if (!expectedError(err)) throw err;
    return undefined;
  } finally {
    assert.ok(cpuMs() - started < MAX_MS * 4, 'took too long');
  }
}

const acceptAll = { isExpectedLayerName: () => true };

/** A valid header using every extension, a backing name and a snapshot table that lies inside the buffer. */
function validImage(): Buffer {
  const featureTable = Buffer.alloc(48 * 2);
  featureTable.writeUInt8(0, 0);
  featureTable.writeUInt8(0, 1);
  featureTable.write('dirty bit', 2);
  featureTable.writeUInt8(1, 48);
  featureTable.writeUInt8(0, 49);
  featureTable.write('lazy refcounts', 50);
  const bitmaps = Buffer.alloc(24);
  bitmaps.writeUInt32BE(1, 0);
  bitmaps.writeBigUInt64BE(64n, 8);
  bitmaps.writeBigUInt64BE(8192n, 16);
  const crypto = Buffer.alloc(16);
  const extensions: HeaderExtension[] = [
    stringExtension(EXT_BACKING_FORMAT, 'qcow2'),
    stringExtension(EXT_DATA_FILE, 'data.raw'),
    { type: EXT_FEATURE_TABLE, data: featureTable },
    { type: EXT_BITMAPS, data: bitmaps },
    { type: EXT_CRYPTO_HEADER, data: crypto },
    { type: 0x7777_0000, data: Buffer.from('unknown extension') },
  ];
  const header = encodeQcow2Header({
    clusterBits: 12,
    virtualSize: 1n << 20n,
    l1Size: 1,
    l1TableOffset: 4096n,
    refcountTableOffset: 8192n,
    refcountTableClusters: 1,
    snapshotCount: 2,
    snapshotsOffset: 4096n * 3n,
    extensions,
    backingFile: 'snap-a-vm-1-disk-0.qcow2',
  });
  const snapshots = Buffer.alloc(4096);
  let pos = 0;
  for (const [i, name] of ['one', 'two'].entries()) {
    snapshots.writeBigUInt64BE(4096n * 2n, pos);
    snapshots.writeUInt32BE(1, pos + 8);
    snapshots.writeUInt16BE(1, pos + 12);
    snapshots.writeUInt16BE(name.length, pos + 14);
    snapshots.writeUInt32BE(24, pos + 36); // extra data: vm state, disk size, icount
    snapshots.writeBigUInt64BE(BigInt(i * 512), pos + 40);
    snapshots.writeBigUInt64BE(1n << 20n, pos + 48);
    snapshots.writeBigInt64BE(-1n, pos + 56);
    snapshots.write(String(i + 1), pos + 64);
    snapshots.write(name, pos + 65);
    pos = (pos + 65 + name.length + 7) & ~7;
  }
  return Buffer.concat([header, Buffer.alloc(4096 * 2), snapshots]);
}

// Offsets of every fixed header field, and their widths.
const FIELDS: [offset: number, width: 1 | 4 | 8][] = [
  [4, 4],
  [8, 8],
  [16, 4],
  [20, 4],
  [24, 8],
  [32, 4],
  [36, 4],
  [40, 8],
  [48, 8],
  [56, 4],
  [60, 4],
  [64, 8],
  [72, 8],
  [80, 8],
  [88, 8],
  [96, 4],
  [100, 4],
  [104, 1],
];

/** Field overwrites biased toward boundary values, plus raw byte flips anywhere in the first 512 bytes. */
const mutation = fc.oneof(
  fc.record({
    field: fc.constantFrom(...FIELDS),
    value: fc.oneof(
      fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
      fc.constantFrom(0n, 1n, 7n, 8n, 9n, 21n, 22n, 104n, 105n, 112n, 1023n, 1024n, 4096n, 0xffffffffn, 1n << 63n, (1n << 64n) - 1n),
    ),
  }),
  fc.record({ at: fc.nat({ max: 511 }), byte: fc.nat({ max: 255 }) }),
);

type Mutation = { field: [number, 1 | 4 | 8]; value: bigint } | { at: number; byte: number };

function applyMutation(buf: Buffer, m: Mutation): void {
  if ('at' in m) {
    buf[m.at] = m.byte;
    return;
  }
  const [offset, width] = m.field;
  if (width === 1) buf.writeUInt8(Number(m.value & 0xffn), offset);
  else if (width === 4) buf.writeUInt32BE(Number(m.value & 0xffffffffn), offset);
  else buf.writeBigUInt64BE(m.value, offset);
}

function asFile(buf: Buffer): ImageFile {
  return { ...bufferReader(buf, LAYER), path: LAYER, dev: 0n, ino: 0n, close: () => Promise.resolve() };
}

describe('qcow2 header parser under random input', () => {
  it('the crafted valid image parses completely', () => {
    const h = parseQcow2Header(validImage(), LAYER);
    assert.equal(h.backingFile, 'snap-a-vm-1-disk-0.qcow2');
    assert.equal(h.dataFile, 'data.raw');
    assert.deepEqual(
      h.featureNames.map((f) => f.name),
      ['dirty bit', 'lazy refcounts'],
    );
    assert.deepEqual(h.unknownExtensions, [0x7777_0000]);
    assert.deepEqual(
      h.internalSnapshots.map((s) => [s.id, s.name, s.vmStateSize, s.virtualSize, s.icount]),
      [
        ['1', 'one', 0, 1 << 20, undefined],
        ['2', 'two', 512, 1 << 20, undefined],
      ],
    );
  });

  it('random bytes: returns or throws CorruptImageError, quickly', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 4096 }), (bytes) => {
        guarded(() => parseQcow2Header(Buffer.from(bytes), LAYER));
      }),
      { numRuns: 3000 },
    );
  });

  it('random bytes behind a valid magic, version and cluster size', () => {
    fc.assert(
      fc.property(fc.constantFrom(2, 3), fc.integer({ min: 9, max: 16 }), fc.uint8Array({ minLength: 0, maxLength: 70_000 }), (version, clusterBits, bytes) => {
        const buf = Buffer.alloc(Math.max(bytes.length, 24));
        Buffer.from(bytes).copy(buf);
        buf.writeUInt32BE(0x514649fb, 0);
        buf.writeUInt32BE(version, 4);
        buf.writeUInt32BE(clusterBits, 20);
        const h = guarded(() => parseQcow2Header(buf, LAYER));
        if (h) guarded(() => validateLayerHeader(LAYER, h, acceptAll));
      }),
      { numRuns: 1500 },
    );
  });

  it('mutations of a valid header: parse, validate and the file reader never fail otherwise', async () => {
    const base = validImage();
    await fc.assert(
      fc.asyncProperty(fc.array(mutation, { minLength: 1, maxLength: 6 }), async (mutations) => {
        const buf = Buffer.from(base);
        for (const m of mutations) applyMutation(buf, m);
        const h = guarded(() => parseQcow2Header(buf, LAYER));
        if (h) {
          assert.ok(h.internalSnapshots.length === 0 || h.internalSnapshots.length === h.snapshotCount);
          guarded(() => validateLayerHeader(LAYER, h, acceptAll));
        }
        const read = await guardedAsync(() => readHeaderFrom(asFile(buf)));
        if (read) assert.equal(read.internalSnapshots.length, read.snapshotCount);
      }),
      { numRuns: 3000 },
    );
  });

  it('every truncation of a valid image is parsed or refused as corrupt', () => {
    const base = validImage();
    for (let length = 0; length <= 1024; length++) {
      guarded(() => parseQcow2Header(base.subarray(0, length), LAYER));
    }
  });
});

/** A small whole image: 16 KiB clusters, L1 at cluster 1, two L2 tables at clusters 2 and 3, data after. */
function smallImage(extendedL2: boolean): Buffer {
  const cluster = 16384;
  const image = Buffer.alloc(cluster * 8);
  encodeQcow2Header({
    clusterBits: 14,
    virtualSize: BigInt(cluster * (extendedL2 ? 1024 : 2048) + 1000),
    l1Size: 2,
    l1TableOffset: BigInt(cluster),
    refcountTableOffset: BigInt(cluster * 7),
    refcountTableClusters: 1,
    incompatibleFeatures: extendedL2 ? INCOMPAT_EXTL2 : 0n,
    totalBytes: cluster,
  }).copy(image);
  image.writeBigUInt64BE((1n << 63n) | BigInt(cluster * 2), cluster);
  image.writeBigUInt64BE((1n << 63n) | BigInt(cluster * 3), cluster + 8);
  const entry = extendedL2 ? 16 : 8;
  for (let table = 2; table <= 3; table++) {
    for (let j = 0; j < 6; j++) {
      const at = cluster * table + j * entry;
      image.writeBigUInt64BE((1n << 63n) | BigInt(cluster * (4 + (j % 3))), at);
      if (extendedL2) image.writeUInt32BE(0x0000ffff >>> j, at + 12);
    }
    image.writeBigUInt64BE(1n, cluster * table + 6 * entry); // zero cluster (standard) / nothing (extended)
    if (extendedL2) image.writeUInt32BE(0xf0000000, cluster * table + 6 * entry + 8);
  }
  return image;
}

describe('allocation walker under random tables', () => {
  for (const extendedL2 of [false, true]) {
    it(`mutated ${extendedL2 ? 'extended' : 'standard'} L1/L2 tables: counts or CorruptImageError, quickly`, async () => {
      const base = smallImage(extendedL2);
      const header = parseQcow2Header(base, LAYER);
      const clean = await countAllocation(bufferReader(base, LAYER), header);
      assert.ok(clean.dataBytes > 0 && clean.zeroBytes > 0);
      await fc.assert(
        fc.asyncProperty(
          fc.array(fc.record({ at: fc.nat({ max: base.length - 8 }), value: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }) }), {
            minLength: 1,
            maxLength: 8,
          }),
          fc.boolean(),
          async (writes, aimAtTables) => {
            const buf = Buffer.from(base);
            for (const w of writes) {
              // Half the runs hit the L1 and L2 tables, where the interesting entries live.
              const at = aimAtTables ? 16384 + (w.at % (16384 * 3 - 8)) : w.at;
              buf.writeBigUInt64BE(w.value, at & ~7);
            }
            const h = guarded(() => parseQcow2Header(buf, LAYER));
            if (!h) return;
            const sums = await guardedAsync(() => countAllocation(bufferReader(buf, LAYER), h));
            if (sums) {
              assert.ok(sums.dataBytes >= 0 && sums.zeroBytes >= 0);
              assert.ok(sums.dataBytes + sums.zeroBytes <= h.virtualSize, 'never more than the virtual size');
            }
          },
        ),
        { numRuns: 1500 },
      );
    });
  }
});

describe('backing name rule', () => {
  it('any name it accepts has no path, protocol, NUL or control character in it', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 40 }), (name) => {
        if (backingNameProblem(name) !== undefined) return;
        assert.ok(!name.includes('/') && !name.includes(':') && !name.includes('..') && name !== '.');
        // eslint-disable-next-line no-control-regex -- the property is exactly "no control character in a name"
        assert.ok(!/[\u0000-\u001f\u007f-\u009f]/u.test(name));
      }),
      { numRuns: 5000 },
    );
  });

  it('validateLayerHeader only throws UnsafeImageError for any parsed header and any policy answer', () => {
    const base = validImage();
    fc.assert(
      fc.property(fc.array(mutation, { maxLength: 4 }), fc.boolean(), (mutations, answer) => {
        const buf = Buffer.from(base);
        for (const m of mutations) applyMutation(buf, m);
        let h: Qcow2Header;
        try {
          h = parseQcow2Header(buf, LAYER);
        } catch (err) {
          assert.ok(err instanceof CorruptImageError);
          return;
        }
        try {
          validateLayerHeader(LAYER, h, { isExpectedLayerName: () => answer });
        } catch (err) {
          assert.ok(err instanceof UnsafeImageError, String(err));
        }
      }),
      { numRuns: 2000 },
    );
  });
});
