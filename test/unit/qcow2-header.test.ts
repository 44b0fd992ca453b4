/**
 * Table tests of the header parser's error messages and of the reader's bounded I/O, on crafted bytes (no
 * qemu-img needed). The integration tests compare well-formed images with qemu-img itself.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { CorruptImageError } from '../../src/errors.js';
import { EXT_BACKING_FORMAT, EXT_BITMAPS, EXT_DATA_FILE, INCOMPAT_COMPRESSION } from '../../src/qcow2/header-format.js';
import { parseQcow2Header, readHeaderFrom } from '../../src/qcow2/header.js';
import { countAllocation } from '../../src/qcow2/allocation.js';
import { bufferReader, type ImageFile } from '../../src/qcow2/io.js';
import { encodeQcow2Header, stringExtension, type HeaderSpec } from '../fixtures/qcow2-craft.js';

const LAYER = 'vm-1-disk-0.qcow2';

function asFile(buf: Buffer): ImageFile {
  return { ...bufferReader(buf, LAYER), path: LAYER, dev: 0n, ino: 0n, close: () => Promise.resolve() };
}

function corruptWith(spec: HeaderSpec | Buffer, message: RegExp): void {
  const buf = Buffer.isBuffer(spec) ? spec : encodeQcow2Header(spec);
  assert.throws(
    () => parseQcow2Header(buf, LAYER),
    (err: unknown) => err instanceof CorruptImageError && err.layer === LAYER && message.test(err.message),
  );
}

describe('parseQcow2Header reports malformed headers precisely', () => {
  const valid = encodeQcow2Header({ clusterBits: 12 });
  const cases: { description: string; input: HeaderSpec | Buffer; message: RegExp }[] = [
    { description: 'short file', input: valid.subarray(0, 3), message: /^vm-1-disk-0\.qcow2: file too short for a qcow2 header \(3 bytes\)$/ },
    { description: 'short v3 header', input: valid.subarray(0, 100), message: /too short for a qcow2 version 3 header \(100 bytes, need 104\)/ },
    {
      description: 'short v2 header',
      input: encodeQcow2Header({ version: 2, clusterBits: 12 }).subarray(0, 71),
      message: /version 2 header \(71 bytes, need 72\)/,
    },
    // The message names the expected magic and nothing of what the file holds (it may be anyone's data).
    {
      description: 'wrong magic',
      input: Buffer.from('QFI\xfa\0\0\0\x03', 'latin1'),
      message: /^vm-1-disk-0\.qcow2: not a qcow2 image: it does not start with the qcow2 magic 0x514649fb \("QFI\\xfb"\)$/,
    },
    {
      description: 'ext4 superblock-like bytes',
      input: Buffer.alloc(4096, 0x53),
      message: /^vm-1-disk-0\.qcow2: not a qcow2 image: it does not start with the qcow2 magic 0x514649fb \("QFI\\xfb"\)$/,
    },
    { description: 'version 1', input: { version: 1 }, message: /unsupported qcow2 version 1 \(only 2 and 3 exist\)/ },
    { description: 'version 4', input: { version: 4 }, message: /unsupported qcow2 version 4/ },
    { description: 'cluster_bits 8', input: { clusterBits: 8, totalBytes: 4096 }, message: /cluster_bits 8 out of range 9\.\.21/ },
    { description: 'cluster_bits 22', input: { clusterBits: 22, totalBytes: 4096 }, message: /cluster_bits 22 out of range 9\.\.21/ },
    { description: 'header_length 100', input: { headerLength: 100 }, message: /header_length 100 is inconsistent/ },
    { description: 'header_length 113', input: { headerLength: 113 }, message: /header_length 113 is inconsistent/ },
    {
      description: 'header_length past the cluster',
      input: { clusterBits: 9, headerLength: 1024, totalBytes: 2048 },
      message: /header_length 1024 is inconsistent .* cluster size 512/,
    },
    {
      description: 'virtual size beyond 2^53',
      input: { virtualSize: 1n << 60n, l1Size: 1 << 22 },
      message: /virtual size 1152921504606846976 is beyond 9007199254740991/,
    },
    {
      description: 'L1 too small',
      input: { virtualSize: 1n << 40n, l1Size: 1, l1TableOffset: 65536n },
      message: /L1 table of 1 entries is too small for the virtual size 1099511627776 \(needs 2048\)/,
    },
    {
      description: 'L1 too large',
      input: { l1Size: 0x1000000, l1TableOffset: 65536n },
      message: /active L1 table has 16777216 entries, more than QEMU's limit of 4194304/,
    },
    {
      description: 'unaligned L1',
      input: { virtualSize: 1n << 20n, l1Size: 1, l1TableOffset: 65537n },
      message: /L1 table offset 65537 is not a cluster-aligned offset/,
    },
    {
      description: 'snapshot table on the header',
      input: { snapshotCount: 1, snapshotsOffset: 0n },
      message: /snapshot table offset 0 is not a cluster-aligned offset after the header/,
    },
    {
      description: 'too many snapshots',
      input: { snapshotCount: 70000, snapshotsOffset: 65536n },
      message: /70000 internal snapshots, more than QEMU's limit of 65536/,
    },
    { description: 'unknown encryption', input: { cryptMethod: 3 }, message: /unknown encryption method 3/ },
    { description: 'refcount_order 7', input: { refcountOrder: 7 }, message: /refcount_order 7 is above 6/ },
    {
      description: 'extended L2 with 4 KiB clusters',
      input: { clusterBits: 12, incompatibleFeatures: 1n << 4n },
      message: /extended L2 entries need clusters of at least 16 KiB, cluster_bits is 12/,
    },
    { description: 'compression type 2', input: { compressionType: 2, incompatibleFeatures: INCOMPAT_COMPRESSION }, message: /unknown compression type 2/ },
    { description: 'zstd without its bit', input: { compressionType: 1 }, message: /compression_type 1 needs the compression type bit/ },
    {
      description: 'compression bit with zlib',
      input: { incompatibleFeatures: INCOMPAT_COMPRESSION },
      message: /compression type bit is set but compression_type is zlib/,
    },
    {
      description: 'backing name of 1024 bytes',
      input: { backingFile: 'a'.repeat(1024) },
      message: /backing file name is 1024 bytes, more than QEMU's limit of 1023/,
    },
    {
      description: 'backing name past the first cluster',
      input: { clusterBits: 9, backingFile: 'abc', backingFileOffset: 510n },
      message: /backing file name at offset 510 \(3 bytes\) lies outside the header area 112\.\.512/,
    },
    {
      description: 'backing name inside the header',
      input: { backingFile: 'abc', backingFileOffset: 108n },
      message: /backing file name at offset 108 .* lies outside the header area/,
    },
    {
      description: 'backing name cut by the end of the file',
      input: { clusterBits: 16, backingFile: 'abc', backingFileOffset: 600n, totalBytes: 601 },
      message: /file too short: the backing file name needs 603 bytes, the image has 601/,
    },
    {
      description: 'extension longer than its area',
      input: { extensions: [{ type: 0xabcdef01, data: Buffer.alloc(8), length: 70000 }] },
      message: /header extension 0xabcdef01 at offset 112 has length 70000, overrunning the extension area, which ends at 65536/,
    },
    {
      description: 'extension running into the backing name',
      input: { extensions: [{ type: EXT_DATA_FILE, data: Buffer.from('abcdefgh'), length: 20 }], backingFile: 'x', backingFileOffset: 136n },
      message: /header extension 0x44415441 at offset 112 has length 20, overrunning the extension area, which ends at 136/,
    },
    {
      description: 'extension header straddling the area end',
      input: { omitEndMarker: true, backingFile: 'x', backingFileOffset: 116n },
      message: /header extension at offset 112 overruns the extension area, which ends at 116/,
    },
    {
      description: 'backing format of 16 bytes',
      input: { extensions: [stringExtension(EXT_BACKING_FORMAT, 'q'.repeat(16))] },
      message: /backing format name of 16 bytes is too long/,
    },
    {
      description: 'bitmaps extension of the wrong size',
      input: { extensions: [{ type: EXT_BITMAPS, data: Buffer.alloc(16) }] },
      message: /bitmaps extension has length 16, expected 24/,
    },
    {
      description: 'two data file extensions',
      input: { extensions: [stringExtension(EXT_DATA_FILE, 'a'), stringExtension(EXT_DATA_FILE, 'b')] },
      message: /header extension 0x44415441 at offset 128 appears more than once/,
    },
  ];
  for (const c of cases) {
    it(c.description, () => corruptWith(c.input, c.message));
  }

  it('an empty backing name means no backing file, as in QEMU', () => {
    const h = parseQcow2Header(encodeQcow2Header({ backingFile: '' }), LAYER);
    assert.equal(h.backingFile, undefined);
  });

  it('a header-only file shorter than its cluster ends the extensions at end of file', () => {
    const h = parseQcow2Header(encodeQcow2Header({ clusterBits: 16, omitEndMarker: true, totalBytes: 112 }), LAYER);
    assert.equal(h.backingFormat, undefined);
    assert.equal(h.clusterSize, 65536);
  });
});

describe('readHeaderFrom reads only what it needs', () => {
  it('re-reads the whole first cluster when a 2 MiB-cluster header keeps its backing name past the first 4 KiB', async () => {
    const name = 'snap-far-vm-1-disk-0.qcow2';
    const buf = encodeQcow2Header({
      clusterBits: 21,
      extensions: [stringExtension(EXT_BACKING_FORMAT, 'qcow2')],
      backingFile: name,
      backingFileOffset: 1_000_000n,
    });
    const reads: [number, number][] = [];
    const file = asFile(buf);
    const h = await readHeaderFrom({ ...file, readUpTo: (pos, len) => (reads.push([pos, len]), file.readUpTo(pos, len)) });
    assert.equal(h.backingFile, name);
    assert.deepEqual(reads, [
      [0, 4096],
      [0, 2 * 1024 * 1024],
    ]);
  });

  it('reads a snapshot table larger than its first 64 KiB window', async () => {
    const count = 300;
    const table: Buffer[] = [];
    for (let i = 0; i < count; i++) {
      const name = `s${i}-${'n'.repeat(240)}`;
      const id = String(i + 1);
      const entry = Buffer.alloc((40 + 16 + id.length + name.length + 7) & ~7);
      entry.writeUInt16BE(id.length, 12);
      entry.writeUInt16BE(name.length, 14);
      entry.writeUInt32BE(1_700_000_000 + i, 16);
      entry.writeUInt32BE(16, 36);
      entry.writeBigUInt64BE(BigInt(i), 40);
      entry.write(id, 56);
      entry.write(name, 56 + id.length);
      table.push(entry);
    }
    const tableBytes = Buffer.concat(table);
    assert.ok(tableBytes.length > 65536);
    const header = encodeQcow2Header({ clusterBits: 16, snapshotCount: count, snapshotsOffset: 65536n });
    const buf = Buffer.concat([header, tableBytes]);
    const h = await readHeaderFrom(asFile(buf));
    assert.equal(h.internalSnapshots.length, count);
    assert.equal(h.internalSnapshots[299]?.name, `s299-${'n'.repeat(240)}`);
    assert.equal(h.internalSnapshots[7]?.vmStateSize, 7);
    assert.equal(h.internalSnapshots[7]?.date.getTime(), (1_700_000_000 + 7) * 1000);
    // The pure parser, given only the first cluster, leaves the table to the reader.
    assert.deepEqual(parseQcow2Header(header, LAYER).internalSnapshots, []);
  });

  it('refuses a snapshot table cut by the end of the image', async () => {
    const header = encodeQcow2Header({ clusterBits: 16, snapshotCount: 3, snapshotsOffset: 65536n });
    const buf = Buffer.concat([header, Buffer.alloc(50)]);
    await assert.rejects(readHeaderFrom(asFile(buf)), (err: unknown) => err instanceof CorruptImageError && err.message.includes('snapshot table (3 entries)'));
  });

  it('refuses snapshot entries with more extra data than QEMU allows', async () => {
    const entry = Buffer.alloc(64);
    entry.writeUInt32BE(4096, 36);
    const buf = Buffer.concat([encodeQcow2Header({ clusterBits: 16, snapshotCount: 1, snapshotsOffset: 65536n }), entry]);
    await assert.rejects(readHeaderFrom(asFile(buf)), /snapshot table entry 0 has 4096 bytes of extra data, more than QEMU's limit of 1024/);
  });
});

describe('countAllocation checks every table reference', () => {
  function image(l1: bigint[], opts: { clusterBits?: number; virtualSize?: bigint } = {}): Buffer {
    const clusterBits = opts.clusterBits ?? 16;
    const cluster = 2 ** clusterBits;
    const header = encodeQcow2Header({
      clusterBits,
      virtualSize: opts.virtualSize ?? BigInt(cluster) * BigInt(cluster / 8) * BigInt(l1.length),
      l1Size: l1.length,
      l1TableOffset: BigInt(cluster),
    });
    const l1Table = Buffer.alloc(Math.ceil((l1.length * 8) / cluster) * cluster);
    l1.forEach((e, i) => l1Table.writeBigUInt64BE(e, i * 8));
    return Buffer.concat([header, l1Table, Buffer.alloc(cluster * 2)]);
  }

  it('refuses an unaligned L2 table offset', async () => {
    const buf = image([131072n + 512n]);
    await assert.rejects(
      countAllocation(bufferReader(buf, LAYER), parseQcow2Header(buf, LAYER)),
      /L1 entry 0 points to an L2 table at unaligned offset 131584/,
    );
  });

  it('refuses an L2 table past the end of the image', async () => {
    const buf = image([0n, 1n << 40n]);
    await assert.rejects(
      countAllocation(bufferReader(buf, LAYER), parseQcow2Header(buf, LAYER)),
      /L2 table for L1 entry 1 \(offset 1099511627776, 65536 bytes\) lies beyond the end of the image \(262144 bytes\)/,
    );
  });

  it('refuses a data cluster at an unaligned host offset', async () => {
    const buf = image([131072n]);
    buf.writeBigUInt64BE(196608n + 4096n, 131072 + 8 * 5);
    await assert.rejects(
      countAllocation(bufferReader(buf, LAYER), parseQcow2Header(buf, LAYER)),
      /L2 entry for guest offset 327680 points to unaligned host offset 200704/,
    );
  });

  it('reads an L2 table shared by every L1 entry once: 4 Mi L1 entries finish quickly', async () => {
    const entries = 4 * 1024 * 1024;
    const l1 = new Array<bigint>(entries).fill(0n);
    const clusterBits = 9;
    const l1Bytes = entries * 8;
    const l2Offset = BigInt(512 + l1Bytes);
    l1.fill(l2Offset);
    const buf = image(l1, { clusterBits, virtualSize: BigInt(entries) * 64n * 512n });
    // One L2 table with a single data cluster (at the L2 table itself: only its alignment is checked).
    buf.writeBigUInt64BE(l2Offset, Number(l2Offset));
    const reads: number[] = [];
    const reader = bufferReader(buf, LAYER);
    // CPU time, not wall time: a loaded machine must not fail this, a walker visiting 4 Mi tables would.
    const cpuMs = (): number => {
      const { user, system } = process.cpuUsage();
      return (user + system) / 1000;
    };
    const started = cpuMs();
    const sums = await countAllocation({ ...reader, readUpTo: (pos, len) => (reads.push(pos), reader.readUpTo(pos, len)) }, parseQcow2Header(buf, LAYER));
    assert.equal(sums.dataBytes, entries * 512);
    assert.equal(reads.length, 2, 'the L1 table and the one L2 table');
    assert.ok(cpuMs() - started < 3000);
  });
});
