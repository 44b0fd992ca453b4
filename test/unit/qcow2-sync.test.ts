/**
 * The table walkers run on two drivers: synchronously for regular files, asynchronously for block devices and
 * in-memory readers (io.ts). Both must see exactly the same thing: the same reads, the same header or
 * allocation, the same error class and message, whatever the bytes.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { CorruptImageError, UnsafeImageError } from '../../src/errors.js';
import { EXT_BACKING_FORMAT, INCOMPAT_EXTL2 } from '../../src/qcow2/header-format.js';
import { parseQcow2Header, readHeaderFrom } from '../../src/qcow2/header.js';
import { countAllocation } from '../../src/qcow2/allocation.js';
import { bufferReader, readExact, type ImageReader } from '../../src/qcow2/io.js';
import { encodeQcow2Header, stringExtension } from '../fixtures/qcow2-craft.js';

const LAYER = 'sync.qcow2';
const CLUSTER = 16384;

/** 16 KiB clusters: header with a backing name, L1 at cluster 1, L2 tables at 2 and 3, snapshot table at 8. */
function image(extendedL2: boolean): Buffer {
  const buf = Buffer.alloc(CLUSTER * 9);
  encodeQcow2Header({
    clusterBits: 14,
    virtualSize: BigInt(CLUSTER * (extendedL2 ? 1024 : 2048) + 1000),
    l1Size: 2,
    l1TableOffset: BigInt(CLUSTER),
    refcountTableOffset: BigInt(CLUSTER * 7),
    refcountTableClusters: 1,
    snapshotCount: 2,
    snapshotsOffset: BigInt(CLUSTER * 8),
    incompatibleFeatures: extendedL2 ? INCOMPAT_EXTL2 : 0n,
    extensions: [stringExtension(EXT_BACKING_FORMAT, 'qcow2')],
    backingFile: 'snap-a-vm-1-disk-0.qcow2',
    totalBytes: CLUSTER,
  }).copy(buf);
  buf.writeBigUInt64BE((1n << 63n) | BigInt(CLUSTER * 2), CLUSTER);
  buf.writeBigUInt64BE((1n << 63n) | BigInt(CLUSTER * 3), CLUSTER + 8);
  const entry = extendedL2 ? 16 : 8;
  for (let table = 2; table <= 3; table++) {
    for (let j = 0; j < 6; j++) {
      const at = CLUSTER * table + j * entry;
      buf.writeBigUInt64BE((1n << 63n) | BigInt(CLUSTER * (4 + (j % 3))), at);
      if (extendedL2) buf.writeUInt32BE(0x0000ffff >>> j, at + 12);
    }
    buf.writeBigUInt64BE(1n, CLUSTER * table + 6 * entry);
  }
  let pos = CLUSTER * 8;
  for (const [i, name] of ['one', 'two'].entries()) {
    buf.writeUInt16BE(1, pos + 12);
    buf.writeUInt16BE(name.length, pos + 14);
    buf.writeUInt32BE(16, pos + 36);
    buf.writeBigUInt64BE(BigInt(i * 512), pos + 40);
    buf.writeBigUInt64BE(1n << 20n, pos + 48);
    buf.write(String(i + 1), pos + 56);
    buf.write(name, pos + 57);
    pos = (pos + 57 + name.length + 7) & ~7;
  }
  return buf;
}

type Outcome = { value: unknown; reads: [number, number][] } | { error: string; reads: [number, number][] };

/** Runs `fn` on a reader over `buf` (sync or async driver), recording every read it makes. */
async function outcome(buf: Buffer, sync: boolean, fn: (r: ImageReader) => Promise<unknown>): Promise<Outcome> {
  const inner = bufferReader(buf, LAYER, { sync });
  const reads: [number, number][] = [];
  const reader: ImageReader = {
    layer: inner.layer,
    sizeBytes: inner.sizeBytes,
    readUpTo: (p, l) => {
      if (sync) throw new Error('the sync driver used readUpTo');
      reads.push([p, l]);
      return inner.readUpTo(p, l);
    },
    readUpToSync: sync
      ? (p, l) => {
          reads.push([p, l]);
          return inner.readUpToSync!(p, l);
        }
      : undefined,
  };
  try {
    return { value: await fn(reader), reads };
  } catch (err) {
    if (!(err instanceof CorruptImageError || err instanceof UnsafeImageError)) throw err;
    return { error: `${err.name}: ${err.message}`, reads };
  }
}

async function assertSameOnBothDrivers(buf: Buffer, fn: (r: ImageReader) => Promise<unknown>): Promise<Outcome> {
  const a = await outcome(buf, false, fn);
  const s = await outcome(buf, true, fn);
  assert.deepEqual(s, a);
  return s;
}

describe('sync and async drivers agree', () => {
  it('on a valid image: header, snapshots, allocation, reads', async () => {
    for (const extendedL2 of [false, true]) {
      const buf = image(extendedL2);
      const h = await assertSameOnBothDrivers(buf, (r) => readHeaderFrom(r));
      assert.ok('value' in h);
      const header = h.value as ReturnType<typeof parseQcow2Header>;
      assert.equal(header.backingFile, 'snap-a-vm-1-disk-0.qcow2');
      assert.deepEqual(
        header.internalSnapshots.map((s) => s.name),
        ['one', 'two'],
      );
      assert.deepEqual(h.reads, [
        [0, 4096],
        [CLUSTER * 8, 65536],
      ]);
      const a = await assertSameOnBothDrivers(buf, (r) => countAllocation(r, header));
      assert.ok('value' in a);
      assert.ok((a.value as { dataBytes: number }).dataBytes > 0);
    }
  });

  it('a header with no snapshots is one 4 KiB read', async () => {
    const buf = encodeQcow2Header({ clusterBits: 16, virtualSize: 1n << 20n, l1Size: 1, l1TableOffset: 65536n });
    const h = await assertSameOnBothDrivers(buf, (r) => readHeaderFrom(r));
    assert.deepEqual(h.reads, [[0, 4096]]);
  });

  it('on exact reads past the end', async () => {
    const buf = Buffer.alloc(100);
    const o = await assertSameOnBothDrivers(buf, (r) => readExact(r, 64, 64, 'test structure'));
    assert.ok('error' in o && o.error.includes('test structure (offset 64, 64 bytes) lies beyond the end of the image (100 bytes)'));
  });

  it('on truncations of a valid image', async () => {
    const base = image(false);
    for (const length of [0, 7, 8, 60, 103, 104, 111, 200, 4095, 4096, CLUSTER, CLUSTER + 8, CLUSTER * 3 + 10, CLUSTER * 8 + 20]) {
      const buf = base.subarray(0, length);
      await assertSameOnBothDrivers(buf, (r) => readHeaderFrom(r));
      await assertSameOnBothDrivers(buf, async (r) => countAllocation(r, parseQcow2Header(base, LAYER)));
    }
  });

  it('on random mutations of header, tables and snapshot table', async () => {
    const bases = [image(false), image(true)];
    const regions = [
      [0, 512],
      [CLUSTER, CLUSTER + 16],
      [CLUSTER * 2, CLUSTER * 2 + 128],
      [CLUSTER * 8, CLUSTER * 8 + 128],
    ] as const;
    await fc.assert(
      fc.asyncProperty(
        fc.nat({ max: 1 }),
        fc.array(fc.record({ region: fc.nat({ max: regions.length - 1 }), at: fc.nat({ max: 511 }), value: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }) }), {
          minLength: 1,
          maxLength: 6,
        }),
        async (which, writes) => {
          const buf = Buffer.from(bases[which]!);
          for (const w of writes) {
            const [start, end] = regions[w.region]!;
            const at = start + ((w.at % (end - start - 8)) & ~7);
            buf.writeBigUInt64BE(w.value, at);
          }
          const h = await assertSameOnBothDrivers(buf, (r) => readHeaderFrom(r));
          if ('value' in h) await assertSameOnBothDrivers(buf, (r) => countAllocation(r, h.value as ReturnType<typeof parseQcow2Header>));
        },
      ),
      { numRuns: 1500 },
    );
  });
});
