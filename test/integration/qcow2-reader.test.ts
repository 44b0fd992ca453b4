/**
 * The native reader against real qemu-img output: every header field volchain relies on must equal what
 * `qemu-img info --output=json` says, and allocation figures must equal `qemu-img map --output=json` at
 * depth 0, for images made by qemu-img itself with every option that changes the layout.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../../src/tools/runner.js';
import { allocatedBytes, openImage, readQcow2Header, readQcow2Layer, walkChain, type Qcow2Header } from '../../src/qcow2/index.js';

let dir = '';
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'volchain-qcow2-reader-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function qemuImg(...args: string[]): Promise<string> {
  return (await run('qemu-img', args)).stdout;
}
async function qemuIo(path: string, ...commands: string[]): Promise<void> {
  await run('qemu-io', ['-f', 'qcow2', ...commands.flatMap((c) => ['-c', c]), path]);
}
/** qemu-io in `cwd`: QEMU resolves a relative external data file name against its working directory. */
async function qemuIoIn(cwd: string, path: string, ...commands: string[]): Promise<void> {
  await run('qemu-io', ['-f', 'qcow2', ...commands.flatMap((c) => ['-c', c]), path], { cwd });
}

interface InfoJson {
  'virtual-size': number;
  'cluster-size': number;
  'backing-filename'?: string;
  'backing-filename-format'?: string;
  'full-backing-filename'?: string;
  'dirty-flag'?: boolean;
  snapshots?: { id: string; name: string; 'vm-state-size': number; 'date-sec': number; 'date-nsec': number; 'vm-clock-sec': number; 'vm-clock-nsec': number }[];
  'format-specific': { type: string; data: Record<string, unknown> };
}

async function info(path: string): Promise<InfoJson> {
  return JSON.parse(await qemuImg('info', '--output=json', '-f', 'qcow2', path)) as InfoJson;
}

/** What `qemu-img map` says this layer defines itself: depth 0 and present, split by the data flag. */
async function mapDepth0(path: string, cwd?: string): Promise<{ dataBytes: number; zeroBytes: number }> {
  const argv = ['map', '--output=json', '-f', 'qcow2', path];
  const entries = JSON.parse((await run('qemu-img', argv, cwd !== undefined ? { cwd } : {})).stdout) as {
    length: number;
    depth: number;
    present: boolean;
    zero: boolean;
    data: boolean;
  }[];
  const sums = { dataBytes: 0, zeroBytes: 0 };
  for (const e of entries) {
    if (e.depth !== 0 || !e.present) continue;
    if (e.data) sums.dataBytes += e.length;
    else if (e.zero) sums.zeroBytes += e.length;
  }
  return sums;
}

/** Field-by-field comparison with qemu-img info. */
function assertMatchesInfo(h: Qcow2Header, i: InfoJson): void {
  assert.equal(h.virtualSize, i['virtual-size'], 'virtual-size');
  assert.equal(h.clusterSize, i['cluster-size'], 'cluster-size');
  const d = i['format-specific'].data;
  assert.equal(i['format-specific'].type, 'qcow2');
  assert.equal(h.version === 3 ? '1.1' : '0.10', d['compat'], 'compat');
  assert.equal(h.refcountBits, d['refcount-bits'], 'refcount-bits');
  assert.equal(h.compressionType, d['compression-type'], 'compression-type');
  if (h.version === 3) {
    assert.equal(h.lazyRefcounts, d['lazy-refcounts'], 'lazy-refcounts');
    assert.equal(h.extendedL2, d['extended-l2'], 'extended-l2');
    assert.equal(h.corrupt, d['corrupt'], 'corrupt');
    assert.equal(h.dataFile, d['data-file'], 'data-file');
    assert.equal(h.dataFileRaw, d['data-file-raw'] ?? false, 'data-file-raw');
  }
  assert.equal(h.dirty, i['dirty-flag'] ?? false, 'dirty-flag');
  assert.equal(h.backingFile, i['backing-filename'], 'backing-filename');
  assert.equal(h.backingFormat, i['backing-filename-format'], 'backing-filename-format');
  const snaps = i.snapshots ?? [];
  assert.equal(h.snapshotCount, snaps.length, 'snapshot count');
  assert.deepEqual(
    h.internalSnapshots.map((s) => ({
      id: s.id,
      name: s.name,
      vmStateSize: s.vmStateSize,
      dateSec: s.dateSec,
      dateNsec: s.dateNsec,
      vmClockNsec: s.vmClockNsec,
    })),
    snaps.map((s) => ({
      id: s.id,
      name: s.name,
      vmStateSize: s['vm-state-size'],
      dateSec: s['date-sec'],
      dateNsec: s['date-nsec'],
      vmClockNsec: BigInt(s['vm-clock-sec']) * 1_000_000_000n + BigInt(s['vm-clock-nsec']),
    })),
    'snapshots',
  );
}

async function assertAllocationMatchesMap(path: string, header?: Qcow2Header, cwd?: string): Promise<void> {
  assert.deepEqual(await allocatedBytes(path, header), await mapDepth0(path, cwd), `allocation of ${path}`);
}

// Not a multiple of any cluster size, so the last cluster is cut by the virtual size.
const ODD_SIZE = 3 * 1024 * 1024 + 3 * 4096;
const CLUSTER_SIZES = [512, 4096, 65536, 131072, 2 * 1024 * 1024];
const PREALLOCATIONS = ['off', 'metadata', 'falloc', 'full'];

interface Combo {
  clusterSize: number;
  extendedL2: boolean;
  compat: '0.10' | '1.1';
  compression: 'zlib' | 'zstd';
  preallocation: string;
}

function combos(): Combo[] {
  const out: Combo[] = [];
  for (const clusterSize of CLUSTER_SIZES) {
    for (const preallocation of PREALLOCATIONS) {
      // Version 2 has neither extended L2 entries nor a compression type field.
      out.push({ clusterSize, extendedL2: false, compat: '0.10', compression: 'zlib', preallocation });
      for (const extendedL2 of clusterSize >= 16384 ? [false, true] : [false]) {
        for (const compression of ['zlib', 'zstd'] as const) {
          out.push({ clusterSize, extendedL2, compat: '1.1', compression, preallocation });
        }
      }
    }
  }
  return out;
}

describe('qcow2 header reader agrees with qemu-img info', () => {
  for (const c of combos()) {
    const label = `cluster ${c.clusterSize}, extended_l2 ${c.extendedL2 ? 'on' : 'off'}, compat ${c.compat}, ${c.compression}, preallocation ${c.preallocation}`;
    it(label, async () => {
      const path = join(dir, `m-${c.clusterSize}-${String(c.extendedL2)}-${c.compat}-${c.compression}-${c.preallocation}.qcow2`);
      const opts = [`cluster_size=${c.clusterSize}`, `compat=${c.compat}`, `preallocation=${c.preallocation}`];
      if (c.compat === '1.1') opts.push(`extended_l2=${c.extendedL2 ? 'on' : 'off'}`, `compression_type=${c.compression}`);
      await qemuImg('create', '-q', '-f', 'qcow2', '-o', opts.join(','), path, String(ODD_SIZE));
      const h = await readQcow2Header(path, 'vm-100-disk-0.qcow2');
      assertMatchesInfo(h, await info(path));
      assert.equal(h.version, c.compat === '1.1' ? 3 : 2);
      assert.equal(h.clusterBits, Math.log2(c.clusterSize));
      await assertAllocationMatchesMap(path, h);
    });
  }

  for (const bits of [1, 2, 4, 8, 16, 32, 64]) {
    it(`refcount_bits=${bits} with lazy_refcounts`, async () => {
      const path = join(dir, `refcount-${bits}.qcow2`);
      await qemuImg('create', '-q', '-f', 'qcow2', '-o', `refcount_bits=${bits},lazy_refcounts=on`, path, '1M');
      const h = await readQcow2Header(path);
      assert.equal(h.refcountBits, bits);
      assert.equal(h.refcountOrder, Math.log2(bits));
      assert.equal(h.lazyRefcounts, true);
      assertMatchesInfo(h, await info(path));
    });
  }

  it('qcow2 backing file with -F qcow2, v3 and v2', async () => {
    const base = join(dir, 'b-base.qcow2');
    await qemuImg('create', '-q', '-f', 'qcow2', base, '4M');
    for (const compat of ['1.1', '0.10']) {
      const top = join(dir, `b-top-${compat}.qcow2`);
      await qemuImg('create', '-q', '-f', 'qcow2', '-o', `compat=${compat}`, '-F', 'qcow2', '-b', 'b-base.qcow2', top);
      const h = await readQcow2Header(top);
      assert.equal(h.backingFile, 'b-base.qcow2');
      assert.equal(h.backingFormat, 'qcow2');
      assert.equal(h.backingFileSize, 'b-base.qcow2'.length);
      const i = await info(top);
      assert.equal(i['full-backing-filename'], join(dir, 'b-base.qcow2'));
      assertMatchesInfo(h, i);
    }
  });

  it('raw backing file with -F raw', async () => {
    const base = join(dir, 'r-base.raw');
    await qemuImg('create', '-q', '-f', 'raw', base, '2M');
    const top = join(dir, 'r-top.qcow2');
    await qemuImg('create', '-q', '-f', 'qcow2', '-F', 'raw', '-b', 'r-base.raw', top);
    const h = await readQcow2Header(top);
    assert.equal(h.backingFormat, 'raw');
    assertMatchesInfo(h, await info(top));
  });

  it('a long backing name (1000 bytes) written with -u', async () => {
    const name = 'x'.repeat(1000);
    const top = join(dir, 'long-backing.qcow2');
    await qemuImg('create', '-q', '-f', 'qcow2', '-u', '-F', 'qcow2', '-b', name, top, '1M');
    const h = await readQcow2Header(top);
    assert.equal(h.backingFile, name);
    assertMatchesInfo(h, await info(top));
  });

  it('internal snapshots made by qemu-img snapshot -c', async () => {
    const path = join(dir, 'snapshots.qcow2');
    await qemuImg('create', '-q', '-f', 'qcow2', path, '8M');
    const names = ['first', 'with space', 'ünïcödé', 'x'.repeat(200)];
    for (const [n, name] of names.entries()) {
      await qemuIo(path, `write -P 0x${(0x10 + n).toString(16)} ${n * 65536} 64k`);
      await qemuImg('snapshot', '-c', name, path);
    }
    const h = await readQcow2Header(path);
    assert.deepEqual(
      h.internalSnapshots.map((s) => s.name),
      names,
    );
    assert.ok(h.internalSnapshots.every((s) => s.virtualSize === 8 * 1024 * 1024));
    assertMatchesInfo(h, await info(path));
    // Writing after the snapshots copies clusters; allocation follows the active L1 table only.
    await qemuIo(path, 'write -P 0x77 32k 64k');
    await assertAllocationMatchesMap(path);
  });

  it('internal snapshots with the longest names qemu-img keeps (255 bytes)', async () => {
    const path = join(dir, 'long-snapshot-names.qcow2');
    await qemuImg('create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4k', path, '1M');
    const names: string[] = [];
    for (let n = 0; n < 12; n++) names.push(`${String(n).padStart(3, '0')}${'n'.repeat(252)}`);
    for (const name of names) await qemuImg('snapshot', '-c', name, path);
    const h = await readQcow2Header(path);
    assert.deepEqual(
      h.internalSnapshots.map((s) => s.name),
      names,
    );
    assertMatchesInfo(h, await info(path));
  });

  it('external data file, with and without data_file_raw', async () => {
    for (const raw of ['off', 'on']) {
      const path = join(dir, `datafile-${raw}.qcow2`);
      // qemu-img resolves a relative data_file against its working directory: create it beside the image.
      await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', `data_file=datafile-${raw}.raw,data_file_raw=${raw}`, path, '1M'], { cwd: dir });
      const h = await readQcow2Header(path);
      assert.equal(h.externalData, true);
      assert.equal(h.dataFile, `datafile-${raw}.raw`);
      assertMatchesInfo(h, await info(path));
      await qemuIoIn(dir, path, 'write -P 0x5a 64k 128k');
      await assertAllocationMatchesMap(path, undefined, dir);
    }
  });

  it('reads a block-device-like path through a symlink', async () => {
    const path = join(dir, 'target.qcow2');
    await qemuImg('create', '-q', '-f', 'qcow2', path, '1M');
    const link = join(dir, 'link.qcow2');
    await run('ln', ['-s', 'target.qcow2', link]);
    assert.equal((await readQcow2Header(link)).virtualSize, 1024 * 1024);
  });
});

describe('allocatedBytes agrees with qemu-img map at depth 0', () => {
  const writes = [
    'write -P 0xab 0 1M',
    'write -P 0xac 1536k 4k',
    'write -P 0xad 2052k 12k',
    'write -z 2560k 128k',
    'write -z 2700k 4k',
    'write -c -P 0xae 1024k 64k',
    // Into the last, partial cluster.
    `write -P 0xaf ${ODD_SIZE - 4096} 4096`,
  ];
  for (const clusterSize of [4096, 65536, 131072, 2 * 1024 * 1024]) {
    for (const extendedL2 of clusterSize >= 16384 ? [false, true] : [false]) {
      for (const backed of [false, true]) {
        it(`cluster ${clusterSize}, extended_l2 ${extendedL2 ? 'on' : 'off'}, ${backed ? 'overlay' : 'no backing'}`, async () => {
          const name = `a-${clusterSize}-${String(extendedL2)}-${String(backed)}`;
          const base = join(dir, `${name}-base.qcow2`);
          const path = join(dir, `${name}.qcow2`);
          const opts = `cluster_size=${clusterSize},extended_l2=${extendedL2 ? 'on' : 'off'}`;
          if (backed) {
            await qemuImg('create', '-q', '-f', 'qcow2', base, String(ODD_SIZE));
            await qemuIo(base, 'write -P 0x11 0 3M');
            await qemuImg('create', '-q', '-f', 'qcow2', '-o', opts, '-F', 'qcow2', '-b', `${name}-base.qcow2`, path);
          } else {
            await qemuImg('create', '-q', '-f', 'qcow2', '-o', opts, path, String(ODD_SIZE));
          }
          await assertAllocationMatchesMap(path);
          // Compressed writes must cover whole clusters.
          const applicable = writes.filter((w) => !w.includes('-c') || clusterSize <= 65536);
          await qemuIo(path, ...applicable);
          await assertAllocationMatchesMap(path);
        });
      }
    }
  }

  it('4k writes into an extended_l2 overlay (128k clusters, 4k subclusters)', async () => {
    const base = join(dir, 'sub-base.qcow2');
    const top = join(dir, 'sub-top.qcow2');
    await qemuImg('create', '-q', '-f', 'qcow2', base, '16M');
    await qemuIo(base, 'write -P 0x22 0 16M');
    await qemuImg('create', '-q', '-f', 'qcow2', '-o', 'cluster_size=128k,extended_l2=on', '-F', 'qcow2', '-b', 'sub-base.qcow2', top);
    await qemuIo(top, 'write -P 0x33 4k 4k', 'write -P 0x34 132k 8k', 'write -z 300k 4k', 'write -P 0x35 1M 4k', 'write -z 2M 128k');
    const ours = await allocatedBytes(top);
    assert.deepEqual(ours, await mapDepth0(top));
    assert.deepEqual(ours, { dataBytes: 4096 + 8192 + 4096, zeroBytes: 4096 + 131072 });
  });

  it('raw backing file: areas past the raw file are not this layer’s', async () => {
    const base = join(dir, 'short.raw');
    const top = join(dir, 'over-short.qcow2');
    await qemuImg('create', '-q', '-f', 'raw', base, '1M');
    await qemuImg('create', '-q', '-f', 'qcow2', '-F', 'raw', '-b', 'short.raw', top, '4M');
    await qemuIo(top, 'write -P 0x44 512k 1M', 'write -z 3M 64k');
    await assertAllocationMatchesMap(top);
  });

  for (const preallocation of PREALLOCATIONS) {
    for (const extendedL2 of [false, true]) {
      it(`preallocation=${preallocation}, extended_l2 ${extendedL2 ? 'on' : 'off'}, then writes`, async () => {
        const path = join(dir, `pre-${preallocation}-${String(extendedL2)}.qcow2`);
        await qemuImg(
          'create',
          '-q',
          '-f',
          'qcow2',
          '-o',
          `preallocation=${preallocation},cluster_size=128k,extended_l2=${extendedL2 ? 'on' : 'off'}`,
          path,
          '5M',
        );
        await assertAllocationMatchesMap(path);
        await qemuIo(path, 'write -P 0x66 8k 4k', 'write -z 1M 256k', 'write -z -u 2M 128k');
        await assertAllocationMatchesMap(path);
      });
    }
  }

  it('version 2 image: write -z stores data, not zero flags', async () => {
    const path = join(dir, 'v2-alloc.qcow2');
    await qemuImg('create', '-q', '-f', 'qcow2', '-o', 'compat=0.10', path, '2M');
    await qemuIo(path, 'write -P 0x01 0 100k', 'write -z 1M 64k');
    await assertAllocationMatchesMap(path);
  });
});

/**
 * LVM layers are block devices reached through /dev/<vg>/<lv> symlinks. Loop devices behind symlinks in a
 * directory stand in for them (needs root and loop devices, as the suite's set-up has). Only devices this test attached are detached.
 */
describe('block devices behind symlinks, as LVs are', () => {
  const attached: string[] = [];
  after(async () => {
    for (const dev of attached) await run('losetup', ['-d', dev]).catch(() => undefined);
  });

  async function attach(file: string): Promise<string | undefined> {
    try {
      const dev = (await run('losetup', ['--find', '--show', file])).stdout.trim();
      attached.push(dev);
      return dev;
    } catch {
      return undefined;
    }
  }

  it('walks a chain of loop devices and counts allocation on the device', async () => {
    const base = join(dir, 'lv-base.img');
    const top = join(dir, 'lv-top.img');
    await qemuImg('create', '-q', '-f', 'qcow2', '-o', 'cluster_size=128k,extended_l2=on', base, '8M');
    await qemuIo(base, 'write -P 0x10 0 2M');
    await qemuImg('create', '-q', '-f', 'qcow2', '-o', 'cluster_size=128k,extended_l2=on', '-F', 'qcow2', '-b', 'lv-base.img', top);
    await qemuIo(top, 'write -P 0x20 4k 4k', 'write -z 1M 128k');
    // Name the parent as an LV would be named in its VG.
    await qemuImg('rebase', '-q', '-u', '-f', 'qcow2', '-F', 'qcow2', '-b', 'snap_vm-100-disk-0_s1.qcow2', top);
    // Thick LVs are larger than the image inside them.
    await run('truncate', ['-s', '16M', base, top]);
    const baseDev = await attach(base);
    const topDev = await attach(top);
    // The test suite runs as root (README): a missing loop device is a failure, not a reason to skip.
    assert.ok(baseDev !== undefined && topDev !== undefined, 'losetup could not attach the images (needs root and loop devices)');
    const vg = join(dir, 'vg_test');
    await mkdir(vg);
    await symlink(baseDev, join(vg, 'snap_vm-100-disk-0_s1.qcow2'));
    await symlink(topDev, join(vg, 'vm-100-disk-0.qcow2'));

    const device = await openImage(join(vg, 'vm-100-disk-0.qcow2'), 'vm-100-disk-0.qcow2');
    try {
      assert.equal(device.sizeBytes, 16 * 1024 * 1024, 'block device size from sysfs');
    } finally {
      await device.close();
    }
    const chain = await walkChain(join(vg, 'vm-100-disk-0.qcow2'), 'vm-100-disk-0.qcow2', {
      isExpectedLayerName: (ref) => ref === 'snap_vm-100-disk-0_s1.qcow2',
    });
    assert.deepEqual(
      chain.map((l) => [l.name, l.path]),
      [
        ['vm-100-disk-0.qcow2', join(vg, 'vm-100-disk-0.qcow2')],
        ['snap_vm-100-disk-0_s1.qcow2', join(vg, 'snap_vm-100-disk-0_s1.qcow2')],
      ],
    );
    assert.deepEqual(await allocatedBytes(join(vg, 'vm-100-disk-0.qcow2')), { dataBytes: 4096, zeroBytes: 131072 });
    assert.deepEqual(await allocatedBytes(baseDev), await mapDepth0(base));
    // Block devices take the asynchronous read path; the one-open layer reader gives the same figures.
    assert.equal(device.type, 'block');
    assert.equal(device.readUpToSync, undefined, 'block devices are never read synchronously');
    const layer = await readQcow2Layer(join(vg, 'vm-100-disk-0.qcow2'), 'vm-100-disk-0.qcow2', { allocation: true });
    assert.equal(layer.type, 'block');
    assert.equal(layer.usedBytes, 16 * 1024 * 1024);
    assert.equal(layer.header.backingFile, 'snap_vm-100-disk-0_s1.qcow2');
    assert.deepEqual(layer.allocation, { dataBytes: 4096, zeroBytes: 131072 });
    assert.deepEqual(await readQcow2Header(baseDev), (await readQcow2Layer(baseDev)).header);
  });
});
