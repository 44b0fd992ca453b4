/**
 * The chain stream's pure parts (export/import, issue 17): framing written by ChainStreamWriter reads back
 * record by record with every checksum checked; a stream cut anywhere, a changed byte or bytes after the
 * trailer are refused; the manifest rules (table); the layer extents taken from `qemu-img map` output; and the
 * import planner's steps, names and refusals.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { ChainStreamReader, ChainStreamWriter, type ChainRecord } from '../../src/engine/run/chain-stream.js';
import { parseManifest, planImport } from '../../src/engine/planners/import.js';
import { ownExtentsOfMap } from '../../src/tools/qemu-layer-io.js';
import { VolchainError } from '../../src/errors.js';

async function write(fn: (w: ChainStreamWriter) => Promise<void>): Promise<Buffer> {
  const sink = new PassThrough();
  const chunks: Buffer[] = [];
  sink.on('data', (c: Buffer) => chunks.push(c));
  await fn(new ChainStreamWriter(sink));
  sink.end();
  return Buffer.concat(chunks);
}

/** Feeds `buf` in pieces of `piece` bytes, so records straddle chunk boundaries. */
async function* pieces(buf: Buffer, piece: number): AsyncIterable<Buffer> {
  for (let at = 0; at < buf.length; at += piece) yield buf.subarray(at, at + piece);
}

async function readAll(buf: Buffer, piece = 7): Promise<{ manifest: string; records: ChainRecord['tag'][] }> {
  const r = new ChainStreamReader(pieces(buf, piece));
  const manifest = await r.begin();
  const records: ChainRecord['tag'][] = [];
  for (;;) {
    const rec = await r.next();
    records.push(rec.tag);
    if (rec.tag === 'T') break;
  }
  await r.expectEnd();
  return { manifest, records };
}

const sample = (): Promise<Buffer> =>
  write(async (w) => {
    await w.begin('{"x":1}');
    await w.layerStart(0);
    await w.data(0, Buffer.alloc(1024, 0xa1));
    await w.zero(4096, 512);
    await w.layerEnd();
    await w.layerStart(1);
    await w.layerEnd();
    await w.end();
  });

async function refusal(buf: Buffer): Promise<string> {
  try {
    await readAll(buf);
  } catch (err) {
    assert.ok(err instanceof VolchainError);
    assert.equal(err.exitStatus, 8);
    return err.message;
  }
  assert.fail('the stream was accepted');
}

describe('chain stream framing', () => {
  it('reads back what the writer wrote, whatever the chunking, with every checksum checked', async () => {
    const buf = await sample();
    for (const piece of [1, 5, 64, buf.length]) {
      assert.deepEqual(await readAll(buf, piece), { manifest: '{"x":1}', records: ['L', 'D', 'Z', 'E', 'L', 'E', 'T'] });
    }
  });

  it('refuses a stream cut at any byte as truncated', async () => {
    const buf = await sample();
    for (let cut = 0; cut < buf.length; cut++) assert.match(await refusal(buf.subarray(0, cut)), /ends early|wrong magic/, `cut at ${cut}`);
  });

  it('refuses any changed byte after the manifest by a checksum, and bytes after the trailer', async () => {
    const buf = await sample();
    const start = buf.indexOf('{"x":1}') + 7;
    for (let at = start; at < buf.length; at++) {
      const bad = Buffer.from(buf);
      bad[at] = (bad[at] ?? 0) ^ 0x01;
      await assert.rejects(readAll(bad), (err: unknown) => err instanceof VolchainError, `byte ${at}`);
    }
    assert.match(await refusal(Buffer.concat([buf, Buffer.from([0])])), /bytes after its trailer/);
  });
});

const layer = { virtualSize: 1048576, dataBytes: 0, zeroBytes: 0, extents: 0 };
const valid = {
  format: 'volchain-chain',
  version: 1,
  volume: 'vm-100-disk-0.qcow2',
  virtualSize: 1048576,
  current: 2,
  layers: [
    { snapshot: 's1', parent: null, ...layer },
    { snapshot: 's2', parent: 0, ...layer },
    { snapshot: null, parent: 0, ...layer },
  ],
};

describe('manifest rules', () => {
  it('accepts a branched tree', () => {
    assert.equal(parseManifest(JSON.stringify(valid)).layers.length, 3);
  });
  const cases: [string, unknown, RegExp][] = [
    ['not JSON', '{', /is not JSON/],
    ['another format', { ...valid, format: 'x' }, /format/],
    ['a newer version', { ...valid, version: 2 }, /version "2"; this volchain reads version 1/],
    ['a volume path', { ...valid, volume: '../vm-100-disk-0.qcow2' }, /not a volume name/],
    ['a raw volume', { ...valid, volume: 'vm-100-disk-0.raw' }, /not a qcow2 volume/],
    ['an unknown key', { ...valid, backing: 'x' }, /unknown key/],
    ['a layer key unknown', { ...valid, layers: [valid.layers[0], valid.layers[1], { ...valid.layers[2], dataFile: 'x' }] }, /unknown key/],
    ['a missing key', { ...valid, layers: [{ snapshot: 's1', parent: null }] }, /lacks/],
    ['a slash in a snapshot', { ...valid, layers: [{ ...valid.layers[0], snapshot: 'a/b' }, valid.layers[1], valid.layers[2]] }, /snapshot name/],
    ['case twins', { ...valid, layers: [valid.layers[0], { ...valid.layers[1], snapshot: 'S1' }, valid.layers[2]] }, /twice/],
    ['two roots', { ...valid, layers: [valid.layers[0], { ...valid.layers[1], parent: null }, valid.layers[2]] }, /only the first layer/],
    ['a forward parent', { ...valid, layers: [valid.layers[0], { ...valid.layers[1], parent: 2 }, valid.layers[2]] }, /must come before/],
    [
      'the current as parent',
      { ...valid, current: 1, layers: [valid.layers[0], { ...valid.layers[1], snapshot: null }, { ...valid.layers[2], snapshot: 's3', parent: 1 }] },
      /cannot be a parent/,
    ],
    ['two current layers', { ...valid, layers: [valid.layers[0], { ...valid.layers[1], snapshot: null }, valid.layers[2]] }, /exactly the current layer/],
    ['an unaligned size', { ...valid, virtualSize: 1000 }, /not a size/],
    ['more data than the disk', { ...valid, layers: [{ ...valid.layers[0], dataBytes: 2097152 }, valid.layers[1], valid.layers[2]] }, /exceed/],
    ['a fractional index', { ...valid, current: 1.5 }, /not a layer index/],
  ];
  for (const [what, manifest, match] of cases) {
    it(`refuses ${what} (exit 2)`, () => {
      assert.throws(
        () => parseManifest(typeof manifest === 'string' ? manifest : JSON.stringify(manifest)),
        (err: unknown) => err instanceof VolchainError && err.exitStatus === 2 && match.test(err.message),
      );
    });
  }
});

describe('own extents from qemu-img map', () => {
  it('keeps what the layer itself holds: data with its file offset, and zeroes; drops what comes from below or is unallocated', () => {
    const map = JSON.stringify([
      { start: 0, length: 65536, depth: 0, present: true, zero: true, data: false, offset: 655360 },
      { start: 65536, length: 4096, depth: 1, present: true, zero: false, data: true, offset: 720896 },
      { start: 69632, length: 8192, depth: 0, present: true, zero: false, data: true, offset: 1703936 },
      { start: 77824, length: 1000000, depth: 0, present: false, zero: true, data: false },
    ]);
    assert.deepEqual(ownExtentsOfMap(map), [
      { start: 0, length: 65536, kind: 'zero' },
      { start: 69632, length: 8192, kind: 'data', hostOffset: 1703936 },
    ]);
  });
  it("a linked clone's bottom layer also keeps its base's data (depth 1), marked as in the base; never the base's zeroes or holes", () => {
    const map = JSON.stringify([
      { start: 0, length: 65536, depth: 0, present: true, zero: true, data: false, offset: 655360 },
      { start: 65536, length: 4096, depth: 1, present: true, zero: false, data: true, offset: 65536 },
      { start: 69632, length: 8192, depth: 0, present: true, zero: false, data: true, offset: 1703936 },
      { start: 77824, length: 4096, depth: 1, present: true, zero: true, data: false },
      { start: 81920, length: 1000000, depth: 1, present: false, zero: true, data: false },
    ]);
    assert.deepEqual(ownExtentsOfMap(map, true), [
      { start: 0, length: 65536, kind: 'zero' },
      { start: 65536, length: 4096, kind: 'data', hostOffset: 65536, inBase: true },
      { start: 69632, length: 8192, kind: 'data', hostOffset: 1703936 },
    ]);
  });
  it('refuses data without a file offset (compressed clusters), exit 5', () => {
    assert.throws(
      () => ownExtentsOfMap(JSON.stringify([{ start: 0, length: 512, depth: 0, present: true, zero: false, data: true }])),
      (err: unknown) => err instanceof VolchainError && err.exitStatus === 5,
    );
  });
});

describe('import planner', () => {
  const manifest = parseManifest(JSON.stringify(valid));
  const target = { storage: 'st', kind: 'dir' as const, vmid: 200, existingNames: [] as string[], freeBytes: 1e12, spaceNeeded: () => 1000 };
  it('imports every layer into a temporary, checks, renames snapshot layers first and the volume last', () => {
    const plan = planImport({ manifest, feed: 'f', target });
    assert.equal(plan.volid, 'st:200/vm-200-disk-0.qcow2');
    assert.deepEqual(
      plan.steps.map((s) => (s.kind === 'rename' ? `rename ${s.to}` : s.kind === 'import-layer' ? `import ${s.index} ${s.backingName ?? '-'}` : s.kind)),
      [
        'import 0 -',
        'import 1 snap-s1-vm-200-disk-0.qcow2',
        'import 2 snap-s1-vm-200-disk-0.qcow2',
        'verify-import',
        'rename snap-s1-vm-200-disk-0.qcow2',
        'rename snap-s2-vm-200-disk-0.qcow2',
        'rename vm-200-disk-0.qcow2',
        'freeze',
        'freeze',
      ],
    );
    assert.equal(plan.import?.spaceNeededBytes, 3000);
  });
  it('refuses a taken name (exit 4) and too little space (exit 9)', () => {
    assert.throws(
      () => planImport({ manifest, feed: 'f', target: { ...target, name: 'vm-200-x.qcow2', existingNames: ['snap-s2-vm-200-x.qcow2'] } }),
      (err: unknown) => err instanceof VolchainError && err.exitStatus === 4,
    );
    assert.throws(
      () => planImport({ manifest, feed: 'f', target: { ...target, freeBytes: 2999 } }),
      (err: unknown) => err instanceof VolchainError && err.exitStatus === 9 && err.message.includes('1 bytes missing'),
    );
  });
});
