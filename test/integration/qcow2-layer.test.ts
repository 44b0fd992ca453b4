/**
 * The synchronous fast path for regular files (io.ts, layer.ts): readQcow2Layer gives what readQcow2Header,
 * allocatedBytes and stat give separately; a check runs before any table is read; FIFOs, directories and
 * character devices are refused without blocking; and no file descriptor outlives a call, on success or
 * on any error path.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { link, mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CorruptImageError, NotFoundError, UnsafeImageError } from '../../src/errors.js';
import { run } from '../../src/tools/runner.js';
import { allocatedBytes, openImage, readQcow2Header, readQcow2Layer, walkChain } from '../../src/qcow2/index.js';
import { rewriteQcow2Header } from '../fixtures/qcow2-craft.js';

let dir = '';
const TOP = 'vm-100-disk-0.qcow2';
const SNAP = 'snap-s1-vm-100-disk-0.qcow2';
const policy = { isExpectedLayerName: (ref: string) => ref.startsWith('snap-') && ref.endsWith('-vm-100-disk-0.qcow2') };

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'volchain-qcow2-layer-'));
  await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=64k', join(dir, SNAP), '8M']);
  await run('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x11 0 1M', join(dir, SNAP)]);
  await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', SNAP, join(dir, TOP)]);
  await run('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x22 2M 128k', '-c', 'write -z 4M 64k', join(dir, TOP)]);
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

function openFds(): number {
  return readdirSync('/proc/self/fd').length;
}

describe('readQcow2Layer', () => {
  it('gives the header, allocation and stat figures of one open', async () => {
    for (const name of [TOP, SNAP]) {
      const path = join(dir, name);
      const layer = await readQcow2Layer(path, name, { allocation: true });
      assert.deepEqual(layer.header, await readQcow2Header(path, name));
      assert.deepEqual(layer.allocation, await allocatedBytes(path));
      const st = await stat(path, { bigint: true });
      assert.equal(layer.type, 'file');
      assert.equal(layer.sizeBytes, Number(st.size));
      assert.equal(layer.usedBytes, Number(st.blocks * 512n));
      assert.equal(layer.identity, `${st.dev}:${st.ino}`);
    }
    assert.equal((await readQcow2Layer(join(dir, TOP))).allocation, undefined, 'allocation only when asked');
  });

  it('runs the header validator before reading any table, so a refused layer is refused by the validator', async () => {
    const unknownBit = join(dir, 'unknown-bit.qcow2');
    await writeFile(unknownBit, rewriteQcow2Header(await readFile(join(dir, TOP)), { incompatibleFeatures: 1n << 20n }));
    await assert.rejects(
      readQcow2Layer(unknownBit, TOP, { allocation: true, policy }),
      (err: unknown) => err instanceof UnsafeImageError && err.message.includes('unknown incompatible features: bit 20'),
    );
    // Without a policy the allocation walker still refuses to interpret the tables.
    await assert.rejects(readQcow2Layer(unknownBit, TOP, { allocation: true }), /cannot interpret the tables/);

    // An L1 table past the end of the file: the validator's error wins, the table is never read.
    const badL1 = join(dir, 'bad-l1.qcow2');
    await writeFile(badL1, rewriteQcow2Header(await readFile(join(dir, TOP)), { l1TableOffset: 1n << 40n }));
    const seen: string[] = [];
    await assert.rejects(
      readQcow2Layer(badL1, TOP, {
        allocation: true,
        policy: {
          isExpectedLayerName: () => {
            seen.push('check');
            return false;
          },
        },
      }),
      /backing reference is not an expected layer name/,
    );
    assert.deepEqual(seen, ['check']);
    await assert.rejects(
      readQcow2Layer(badL1, TOP, { allocation: true }),
      (err: unknown) => err instanceof CorruptImageError && err.message.includes('L1 table'),
    );
  });

  it('refuses FIFOs, directories and character devices at once, and missing files as not found', async () => {
    const fifo = join(dir, 'fifo.qcow2');
    await run('mkfifo', [fifo]);
    const sub = join(dir, 'a-directory.qcow2');
    await mkdir(sub);
    for (const path of [fifo, sub, '/dev/null', '/dev/zero']) {
      const started = performance.now();
      for (const read of [
        () => readQcow2Layer(path, 'x.qcow2', { allocation: true }),
        () => readQcow2Header(path, 'x.qcow2'),
        () => allocatedBytes(path),
        () => openImage(path, 'x.qcow2'),
        () => walkChain(path, 'x.qcow2', policy),
      ]) {
        await assert.rejects(read(), (err: unknown) => err instanceof CorruptImageError && err.message.includes('neither a regular file nor a block device'));
      }
      assert.ok(performance.now() - started < 5000, `${path} refused without blocking`);
    }
    await assert.rejects(readQcow2Layer(join(dir, 'missing.qcow2')), NotFoundError);
  });
});

describe('no file descriptor outlives a read', () => {
  it('on success and on every error path', async () => {
    const chainDir = join(dir, 'fds');
    await mkdir(chainDir);
    const top = await readFile(join(dir, TOP));
    await writeFile(join(chainDir, SNAP), await readFile(join(dir, SNAP)));
    await writeFile(join(chainDir, TOP), top);
    await writeFile(join(chainDir, 'missing-parent.qcow2'), rewriteQcow2Header(top, { backingFile: 'snap-gone-vm-100-disk-0.qcow2' }));
    await writeFile(join(chainDir, 'loop.qcow2'), rewriteQcow2Header(top, { backingFile: 'snap-loop-vm-100-disk-0.qcow2' }));
    await symlink('loop.qcow2', join(chainDir, 'snap-loop-vm-100-disk-0.qcow2'));
    await link(join(chainDir, TOP), join(chainDir, 'hardlink.qcow2'));
    await writeFile(join(chainDir, 'truncated.qcow2'), top.subarray(0, 90));
    await writeFile(join(chainDir, 'hostile.qcow2'), rewriteQcow2Header(top, { backingFile: '/etc/passwd' }));
    await run('mkfifo', [join(chainDir, 'snap-fifo-vm-100-disk-0.qcow2')]);
    await writeFile(join(chainDir, 'to-fifo.qcow2'), rewriteQcow2Header(top, { backingFile: 'snap-fifo-vm-100-disk-0.qcow2' }));

    const calls: (() => Promise<unknown>)[] = [
      () => walkChain(join(chainDir, TOP), TOP, policy),
      () => walkChain(join(chainDir, 'missing-parent.qcow2'), TOP, policy),
      () => walkChain(join(chainDir, 'loop.qcow2'), TOP, policy),
      () => walkChain(join(chainDir, 'truncated.qcow2'), TOP, policy),
      () => walkChain(join(chainDir, 'hostile.qcow2'), TOP, policy),
      () => walkChain(join(chainDir, 'to-fifo.qcow2'), TOP, policy),
      () => walkChain(join(chainDir, TOP), TOP, policy, { maxDepth: 1 }),
      () => readQcow2Header(join(chainDir, 'truncated.qcow2')),
      () => readQcow2Layer(join(chainDir, TOP), TOP, { allocation: true }),
      () =>
        readQcow2Layer(join(chainDir, TOP), TOP, {
          allocation: true,
          policy: { isExpectedLayerName: () => false },
        }),
      () => readQcow2Layer(join(chainDir, 'truncated.qcow2'), TOP, { allocation: true }),
      () => allocatedBytes(join(chainDir, 'truncated.qcow2')),
      async () => (await openImage(join(chainDir, TOP), TOP)).close(),
    ];
    for (const call of calls) await call().catch(() => undefined); // warm up: lazily opened descriptors
    const before = openFds();
    for (let i = 0; i < 50; i++) {
      for (const call of calls) await call().catch(() => undefined);
    }
    assert.equal(openFds(), before);
    // And the walk over a hard link of the top is still a valid two-layer chain.
    assert.equal((await walkChain(join(chainDir, 'hardlink.qcow2'), TOP, policy)).length, 2);
  });
});
