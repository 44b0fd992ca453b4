/**
 * Hostile images: real qemu-img images whose first cluster was rewritten the way an attacker who controls a
 * layer would. Each must be refused by walkChain with the right error class and a message naming the layer
 * and the value, and no qemu-img (or any other) process may be started while walking.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { link, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CorruptImageError, NotFoundError, UnsafeImageError, type VolchainError } from '../../src/errors.js';
import { observeCommands, run } from '../../src/tools/runner.js';
import { walkChain, type BackingPolicy, type ChainLayer } from '../../src/qcow2/index.js';
import { EXT_BACKING_FORMAT, EXT_DATA_FILE, INCOMPAT_DATA_FILE } from '../../src/qcow2/header-format.js';
import { encodeQcow2Header, rewriteQcow2Header, stringExtension, type HeaderEdits } from '../fixtures/qcow2-craft.js';

type ErrorClass = new (...args: never[]) => VolchainError;

const TOP = 'vm-100-disk-0.qcow2';
const SNAP = 'snap-s1-vm-100-disk-0.qcow2';

let root = '';
let vmDir = '';
let topImage: Buffer;
let snapImage: Buffer;

/** The names a policy for vm-100-disk-0 would accept as parents: its snapshot layers. */
const volumePolicy: BackingPolicy = {
  isExpectedLayerName: (ref) => /^snap-[A-Za-z][A-Za-z0-9_]{1,39}-vm-100-disk-0\.qcow2$/.test(ref),
};

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'volchain-qcow2-hostile-'));
  vmDir = join(root, 'images', '100');
  await mkdir(vmDir, { recursive: true });
  await mkdir(join(root, 'images', '101'), { recursive: true });
  await run('qemu-img', ['create', '-q', '-f', 'qcow2', join(root, 'images', '101', 'vm-101-disk-0.qcow2'), '1M']);
  await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=128k,extended_l2=on', join(vmDir, SNAP), '4M']);
  await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=128k,extended_l2=on', '-F', 'qcow2', '-b', SNAP, join(vmDir, TOP)]);
  topImage = await readFile(join(vmDir, TOP));
  snapImage = await readFile(join(vmDir, SNAP));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

/** Writes `name` into the VM directory: the real top image with its header rewritten. */
async function craft(name: string, edits: HeaderEdits, from: Buffer = topImage): Promise<string> {
  const path = join(vmDir, name);
  await writeFile(path, rewriteQcow2Header(from, edits));
  return path;
}

/** Walks the chain while recording every subprocess started; asserts none was. */
async function walkObserved(path: string, name: string, policy: BackingPolicy = volumePolicy, maxDepth?: number): Promise<ChainLayer[]> {
  const started: (readonly string[])[] = [];
  const stop = observeCommands((argv) => started.push(argv));
  try {
    return await walkChain(path, name, policy, maxDepth === undefined ? {} : { maxDepth });
  } finally {
    stop();
    assert.deepEqual(started, [], 'no process may be started while walking a chain');
  }
}

async function assertRefused(
  path: string,
  name: string,
  expected: { class: ErrorClass; layer?: string; message: RegExp },
  policy?: BackingPolicy,
): Promise<void> {
  await assert.rejects(walkObserved(path, name, policy), (err: unknown) => {
    assert.ok(err instanceof expected.class, `expected ${expected.class.name}, got ${String(err)}`);
    assert.match(err.message, expected.message);
    if (expected.layer !== undefined) assert.equal((err as UnsafeImageError | CorruptImageError).layer, expected.layer);
    return true;
  });
}

describe('walkChain on a well-formed chain', () => {
  it('returns the layers top first with their headers', async () => {
    const layers = await walkObserved(join(vmDir, TOP), TOP);
    assert.deepEqual(
      layers.map((l) => [l.name, l.path, l.header.backingFile]),
      [
        [TOP, join(vmDir, TOP), SNAP],
        [SNAP, join(vmDir, SNAP), undefined],
      ],
    );
  });
});

describe('walkChain refuses hostile backing references', () => {
  const cases: { description: string; edits: HeaderEdits; error: ErrorClass; message: RegExp }[] = [
    {
      description: 'an absolute path (/etc/shadow)',
      edits: { backingFile: '/etc/shadow' },
      error: UnsafeImageError,
      message: /absolute path \("\/etc\/shadow"\)/,
    },
    {
      description: "another VM's disk by relative path",
      edits: { backingFile: '../101/vm-101-disk-0.qcow2' },
      error: UnsafeImageError,
      message: /contains '\/' \("\.\.\/101\/vm-101-disk-0\.qcow2"\)/,
    },
    {
      description: "another VM's disk by bare name",
      edits: { backingFile: 'vm-101-disk-0.qcow2' },
      error: UnsafeImageError,
      message: /not an expected layer name .*"vm-101-disk-0\.qcow2"/,
    },
    {
      description: 'a json: pseudo-protocol',
      edits: { backingFile: 'json:{"file":{"driver":"file","filename":"/etc/shadow"}}' },
      error: UnsafeImageError,
      message: /json: pseudo-protocol/,
    },
    { description: 'an nbd: URL', edits: { backingFile: 'nbd:localhost:10809' }, error: UnsafeImageError, message: /protocol prefix .*"nbd:localhost:10809"/ },
    { description: 'an http: URL', edits: { backingFile: 'http://x' }, error: UnsafeImageError, message: /protocol prefix .*"http:\/\/x"/ },
    {
      description: "a ':' after characters no protocol name has",
      edits: { backingFile: 'snap_s1 x:y' },
      error: UnsafeImageError,
      message: /contains ':'/,
    },
    { description: 'a bare ..', edits: { backingFile: '..' }, error: UnsafeImageError, message: /contains '\.\.'/ },
    { description: 'a NUL byte', edits: { backingFile: `${SNAP}\0/etc/shadow` }, error: UnsafeImageError, message: /contains '\/'|NUL/ },
    { description: 'a NUL byte without slash', edits: { backingFile: `${SNAP}\0x` }, error: UnsafeImageError, message: /NUL byte/ },
    { description: 'a control character', edits: { backingFile: `${SNAP}\n` }, error: UnsafeImageError, message: /control character/ },
    {
      description: 'bytes that are not UTF-8',
      edits: { backingFile: Buffer.from([0x73, 0x6e, 0x61, 0x70, 0xff, 0xfe]) },
      error: CorruptImageError,
      message: /backing file name is not valid UTF-8/,
    },
    { description: 'a raw backing format', edits: { backingFormat: 'raw' }, error: UnsafeImageError, message: /backing format is "raw"/ },
    { description: 'no backing format (QEMU would probe)', edits: { backingFormat: null }, error: UnsafeImageError, message: /no backing format/ },
    {
      description: 'a huge backing name length',
      edits: { backingFileSize: 0xffffffff },
      error: CorruptImageError,
      message: /backing file name is 4294967295 bytes, more than QEMU's limit of 1023/,
    },
    {
      description: 'a backing name offset outside the first cluster',
      edits: { backingFileOffset: 1n << 40n },
      error: CorruptImageError,
      message: /backing file name at offset 1099511627776 .* lies outside the header area/,
    },
    {
      description: 'an external data file (bit and extension)',
      edits: { dataFile: '/etc/shadow', incompatibleFeatures: (1n << 4n) | INCOMPAT_DATA_FILE },
      error: UnsafeImageError,
      message: /external data file.*"\/etc\/shadow"/,
    },
    {
      description: 'an external data file extension without the bit',
      edits: { dataFile: '/dev/sda' },
      error: UnsafeImageError,
      message: /external data file.*"\/dev\/sda"/,
    },
    {
      description: 'an unknown incompatible feature bit',
      edits: { incompatibleFeatures: (1n << 4n) | (1n << 5n) },
      error: UnsafeImageError,
      message: /unknown incompatible features: bit 5/,
    },
    { description: 'encryption (LUKS)', edits: { cryptMethod: 2 }, error: UnsafeImageError, message: /encrypted \(LUKS\)/ },
    {
      description: 'an extension overrunning the first cluster',
      edits: { extensions: [{ type: 0x12345678, data: Buffer.alloc(8), length: 1_000_000 }], removeBacking: true },
      error: CorruptImageError,
      message: /header extension 0x12345678 at offset \d+ has length 1000000, overrunning/,
    },
    {
      description: 'a duplicated backing format extension',
      edits: { extensions: [stringExtension(EXT_BACKING_FORMAT, 'raw')] },
      error: CorruptImageError,
      message: /appears more than once/,
    },
  ];
  for (const [index, c] of cases.entries()) {
    it(`refuses ${c.description}`, async () => {
      // Each case gets its own file; the layer name the walk uses is still the volume's.
      const path = await craft(`case-${index}.qcow2`, c.edits);
      await assertRefused(path, TOP, { class: c.error, layer: TOP, message: c.message });
    });
  }

  it('refuses a version 2 (compat=0.10) layer', async () => {
    const v2 = join(vmDir, 'v2.qcow2');
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'compat=0.10', '-F', 'qcow2', '-b', SNAP, v2]);
    await assertRefused(v2, TOP, { class: UnsafeImageError, layer: TOP, message: /version 2 \(compat=0\.10\) is not accepted/ });
  });

  it('refuses a truncated header', async () => {
    const path = join(vmDir, 'truncated.qcow2');
    await writeFile(path, topImage.subarray(0, 50));
    await assertRefused(path, TOP, { class: CorruptImageError, layer: TOP, message: /too short for a qcow2 version 3 header \(50 bytes, need 104\)/ });
  });

  it('refuses an empty file and a file with the wrong magic', async () => {
    const empty = join(vmDir, 'empty.qcow2');
    await writeFile(empty, Buffer.alloc(0));
    await assertRefused(empty, TOP, { class: CorruptImageError, message: /too short .*\(0 bytes\)/ });
    const raw = join(vmDir, 'raw.qcow2');
    await writeFile(raw, Buffer.concat([Buffer.from('QFI\xfa', 'latin1'), topImage.subarray(4)]));
    await assertRefused(raw, TOP, { class: CorruptImageError, message: /not a qcow2 image: it does not start with the qcow2 magic 0x514649fb/ });
  });

  it('refuses a hostile reference in a lower layer before opening it, naming that layer', async () => {
    const evil = 'snap-evil-vm-100-disk-0.qcow2';
    await craft(evil, { backingFile: '/etc/shadow', backingFormat: 'qcow2' }, snapImage);
    const top = await craft('lower-top.qcow2', { backingFile: evil });
    await assertRefused(top, TOP, { class: UnsafeImageError, layer: evil, message: /absolute path \("\/etc\/shadow"\)/ });
  });

  it('reports a missing parent as NotFoundError naming the layer and the reference', async () => {
    const path = await craft('missing-parent.qcow2', { backingFile: 'snap-gone-vm-100-disk-0.qcow2' });
    await assertRefused(path, TOP, {
      class: NotFoundError,
      message: /^vm-100-disk-0\.qcow2: backing file "snap-gone-vm-100-disk-0\.qcow2" not found/,
    });
  });

  it('does not hang on a FIFO named as a parent', async () => {
    await run('mkfifo', [join(vmDir, 'snap-fifo-vm-100-disk-0.qcow2')]);
    const path = await craft('fifo-child.qcow2', { backingFile: 'snap-fifo-vm-100-disk-0.qcow2' });
    await assertRefused(path, TOP, { class: CorruptImageError, message: /neither a regular file nor a block device/ });
  });
});

describe('walkChain refuses loops', () => {
  const allSnapshots: BackingPolicy = { isExpectedLayerName: (ref) => ref.startsWith('snap-') };

  it('a layer naming itself (a → a)', async () => {
    const a = await craft('snap-a-vm-100-disk-0.qcow2', { backingFile: 'snap-a-vm-100-disk-0.qcow2' });
    await assertRefused(a, 'snap-a-vm-100-disk-0.qcow2', { class: UnsafeImageError, message: /loops back .*"snap-a-vm-100-disk-0\.qcow2"/ }, allSnapshots);
  });

  it('two layers naming each other (top → a → b → a)', async () => {
    await craft('snap-la-vm-100-disk-0.qcow2', { backingFile: 'snap-lb-vm-100-disk-0.qcow2' });
    await craft('snap-lb-vm-100-disk-0.qcow2', { backingFile: 'snap-la-vm-100-disk-0.qcow2' });
    const top = await craft('loop-top.qcow2', { backingFile: 'snap-la-vm-100-disk-0.qcow2' });
    await assertRefused(top, 'loop-top.qcow2', { class: UnsafeImageError, layer: 'snap-lb-vm-100-disk-0.qcow2', message: /loops back/ }, allSnapshots);
  });

  it('a different name for the same file (symlink and hard link), caught by device and inode', async () => {
    const top = await craft('inode-top.qcow2', { backingFile: 'snap-sym-vm-100-disk-0.qcow2' });
    await symlink('inode-top.qcow2', join(vmDir, 'snap-sym-vm-100-disk-0.qcow2'));
    await assertRefused(
      top,
      'inode-top.qcow2',
      { class: UnsafeImageError, message: /snap-sym-vm-100-disk-0\.qcow2 is the same file as inode-top\.qcow2/ },
      allSnapshots,
    );
    const top2 = await craft('inode-top2.qcow2', { backingFile: 'snap-hard-vm-100-disk-0.qcow2' });
    await link(top2, join(vmDir, 'snap-hard-vm-100-disk-0.qcow2'));
    await assertRefused(top2, 'inode-top2.qcow2', { class: UnsafeImageError, message: /same file as inode-top2\.qcow2/ }, allSnapshots);
  });
});

describe('walkChain bounds the depth', () => {
  /*
   * A real 100k-deep chain would take minutes to build with qemu-img, and proves nothing more: the walker
   * stops after maxDepth layers whatever lies below, so its work is bounded by maxDepth header reads (plus
   * the name and inode sets). Header-only 512-byte files written by the crafting helper make chains of
   * 1000+ layers in milliseconds; they show the bound for both a small maxDepth and the default of 1000.
   */
  const deep: BackingPolicy = { isExpectedLayerName: (ref) => /^l-\d+$/.test(ref) };
  let deepDir = '';

  async function writeChain(length: number): Promise<void> {
    deepDir = await mkdtemp(join(root, 'deep-'));
    for (let i = 0; i < length; i++) {
      const last = i === length - 1;
      const bytes = encodeQcow2Header({
        clusterBits: 9,
        totalBytes: 512,
        extensions: last ? [] : [stringExtension(EXT_BACKING_FORMAT, 'qcow2')],
        ...(last ? {} : { backingFile: `l-${i + 1}` }),
      });
      await writeFile(join(deepDir, `l-${i}`), bytes);
    }
  }

  it('a 1001-layer chain is refused at the default bound of 1000, a 1000-layer chain is accepted', async () => {
    await writeChain(1001);
    const started = Date.now();
    await assertRefused(
      join(deepDir, 'l-0'),
      'l-0',
      { class: UnsafeImageError, layer: 'l-999', message: /deeper than the limit of 1000 layers \("l-1000"\)/ },
      deep,
    );
    assert.ok(Date.now() - started < 5000, 'walking 1000 headers takes well under 5 s');
    const layers = await walkObserved(join(deepDir, 'l-1'), 'l-1', deep);
    assert.equal(layers.length, 1000);
  });

  it('a small maxDepth stops the walk after that many layers', async () => {
    await writeChain(1000);
    await assert.rejects(walkChain(join(deepDir, 'l-0'), 'l-0', deep, { maxDepth: 10 }), /l-9: backing chain is deeper than the limit of 10 layers \("l-10"\)/);
    assert.equal((await walkChain(join(deepDir, 'l-990'), 'l-990', deep, { maxDepth: 10 })).length, 10);
  });
});

describe('header-only crafted files keep the data file rule independent of the extension', () => {
  it('refuses the data file bit alone', async () => {
    const path = join(vmDir, 'bit-only.qcow2');
    await writeFile(path, encodeQcow2Header({ incompatibleFeatures: INCOMPAT_DATA_FILE, totalBytes: 65536 }));
    await assertRefused(path, TOP, { class: UnsafeImageError, message: /external data file/ });
    const ext = join(vmDir, 'ext-only.qcow2');
    await writeFile(ext, encodeQcow2Header({ extensions: [stringExtension(EXT_DATA_FILE, 'x.raw')], totalBytes: 65536 }));
    await assertRefused(ext, TOP, { class: UnsafeImageError, message: /external data file.*"x\.raw"/ });
  });
});
