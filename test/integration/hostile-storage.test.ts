/**
 * Issue 13 (part 1): a storage is a tree volchain owns. Below the configured path, symlinks are never
 * followed, FIFOs, directories and devices are never taken for layers, and a layer file with hard links
 * outside its VM's directory is refused: exit 8, a message naming the path, and nothing written anywhere
 * (the sha256 of every file, in the storage and at the symlinks' targets, is compared before and after).
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { link, lstat, mkdir, readFile, readdir, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { MiB, assertPattern, assertSameTree, cli, cliFails, cliOk, makeStorage, runCommand, snapshotOf, writePattern, type TestStorage } from './helpers.js';

const sha = async (p: string): Promise<string> =>
  createHash('sha256')
    .update(await readFile(p))
    .digest('hex');

/** A storage plus a directory outside it holding a "victim" file (a qcow2 image, or a device stand-in). */
async function setup(): Promise<{ s: TestStorage; outside: string; victim: string }> {
  const s = await makeStorage();
  const outside = join(s.root, 'outside');
  await mkdir(outside);
  const victim = join(outside, 'victim.qcow2');
  const r = await runCommand('qemu-img', ['create', '-q', '-f', 'qcow2', victim, '1M']);
  assert.equal(r.code, 0, r.stderr);
  await writePattern(victim, 0x5a, 0, 64 * 1024);
  return { s, outside, victim };
}

async function mkfifo(p: string): Promise<void> {
  const r = await runCommand('mkfifo', [p]);
  assert.equal(r.code, 0, r.stderr);
}

describe('hostile storage: symlinks and non-regular files (issue 13)', () => {
  let s: TestStorage;
  let outside: string;
  let victim: string;
  before(async () => {
    ({ s, outside, victim } = await setup());
  });
  after(() => s.cleanup());

  it("a snapshot layer symlinked to another VM's disk: snapshot delete exits 8 and neither disk changes", async () => {
    await cliOk(s, ['alloc', s.id, '500', '1M', '--name', 'vm-500-disk-0.qcow2']);
    await cliOk(s, ['alloc', s.id, '501', '1M', '--name', 'vm-501-disk-0.qcow2']);
    const v500 = s.volid(500, 'vm-500-disk-0.qcow2');
    await writePattern(s.layer(500, 'vm-500-disk-0.qcow2'), 0x11, 0, 64 * 1024);
    await cliOk(s, ['snapshot', 'create', v500, 'aa']);
    await writePattern(s.layer(500, 'vm-500-disk-0.qcow2'), 0x22, 64 * 1024, 64 * 1024);
    await writePattern(s.layer(501, 'vm-501-disk-0.qcow2'), 0x33, 0, 64 * 1024);
    const snapLayer = s.layer(500, 'vm-500-disk-0.qcow2', 'aa');
    await rm(snapLayer);
    await symlink('../501/vm-501-disk-0.qcow2', snapLayer);
    const before501 = await sha(s.layer(501, 'vm-501-disk-0.qcow2'));
    const tree = await snapshotOf(s.path);
    const msg = await cliFails(s, ['snapshot', 'delete', v500, 'aa'], { code: 8, match: /symbolic link/ });
    assert.match(msg, /snap-aa-vm-500-disk-0\.qcow2/);
    for (const args of [
      ['info', v500],
      ['snapshot', 'list', v500],
      ['snapshot', 'rollback', v500, 'aa'],
      ['resize', v500, '2M'],
      ['free', v500],
    ]) {
      await cliFails(s, args, { code: 8 });
    }
    assert.equal(await sha(s.layer(501, 'vm-501-disk-0.qcow2')), before501);
    assertSameTree(tree, await snapshotOf(s.path), 'after refusals');
    assert.ok((await lstat(s.layer(500, 'vm-500-disk-0.qcow2'))).isFile(), 'VM 500 volume is still a regular file');
    await assertPattern(s.layer(501, 'vm-501-disk-0.qcow2'), 0x33, 0, 64 * 1024);
  });

  it('alloc over a symlink to a device stand-in, or a dangling one, exits 8 and creates nothing', async () => {
    // A regular file stands in for /dev/loopN: what matters is that no qcow2 header is written through it.
    const dev = join(outside, 'loop-standin');
    await writeFile(dev, Buffer.alloc(1 * MiB, 0xee));
    const before = await sha(dev);
    await mkdir(join(s.path, 'images', '405'), { recursive: true });
    await symlink(dev, s.layer(405, 'vm-405-disk-0.qcow2'));
    await cliFails(s, ['alloc', s.id, '405', '1M', '--name', 'vm-405-disk-0.qcow2'], { code: 8, match: /vm-405-disk-0\.qcow2.*symbolic link/ });
    assert.equal(await sha(dev), before);
    const dangling = join(outside, 'created-by-volchain.qcow2');
    await symlink(dangling, s.layer(405, 'vm-405-disk-1.qcow2'));
    await cliFails(s, ['alloc', s.id, '405', '1M', '--name', 'vm-405-disk-1.qcow2'], { code: 8, match: /symbolic link/ });
    await assert.rejects(lstat(dangling), /ENOENT/, 'nothing created outside the storage');
  });

  it('a symlinked images/<vmid> or images directory is refused for readers and writers', async () => {
    const s2 = (await setup()).s;
    try {
      const elsewhere = join(s2.root, 'elsewhere');
      await mkdir(elsewhere);
      const r = await runCommand('qemu-img', ['create', '-q', '-f', 'qcow2', join(elsewhere, 'vm-406-disk-0.qcow2'), '1M']);
      assert.equal(r.code, 0, r.stderr);
      const before = await sha(join(elsewhere, 'vm-406-disk-0.qcow2'));
      await mkdir(join(s2.path, 'images'), { recursive: true });
      await symlink(elsewhere, join(s2.path, 'images', '406'));
      const v = s2.volid(406, 'vm-406-disk-0.qcow2');
      await cliFails(s2, ['info', v], { code: 8, match: /images\/406.*symbolic link/ });
      // `list` lists the storage (issue 14): the refused VM directory is a problem row naming the path, exit 0;
      // every operation on that VM still exits 8.
      const fifo = await runCommand('mkfifo', [join(s2.path, 'images', '409')]);
      assert.equal(fifo.code, 0, fifo.stderr);
      await cliOk(s2, ['alloc', s2.id, '407', '1M']);
      // Beside it: an unknown name (listed with its problem), a container subvolume and a dot file (left out).
      await writeFile(join(s2.path, 'images', '407', 'notes.txt'), 'hello');
      await mkdir(join(s2.path, 'images', '407', 'subvol-407-disk-0.subvol'));
      await writeFile(join(s2.path, 'images', '407', '.hidden'), '');
      const listed = JSON.parse(await cliOk(s2, ['list', s2.id, '--json'])) as {
        volumes: { volid: string; problem: { code: string; message: string } | null }[];
      };
      assert.deepEqual(
        listed.volumes.map((e) => [e.volid, e.problem?.code ?? null]),
        [
          [`${s2.id}:406/`, 'UNSAFE_IMAGE'],
          [`${s2.id}:407/notes.txt`, 'INVALID_INPUT'],
          [`${s2.id}:407/vm-407-disk-0.qcow2`, null],
          [`${s2.id}:409/`, 'UNSAFE_IMAGE'],
        ],
      );
      assert.equal((listed.volumes[1] as { fileBytes?: number }).fileBytes, 5);
      await cliFails(s2, ['info', `${s2.id}:407/notes.txt`], { code: 2 });
      assert.match(listed.volumes[3]?.problem?.message ?? '', /images\/409.*FIFO/);
      assert.match(listed.volumes[0]?.problem?.message ?? '', /images\/406.*symbolic link/);
      assert.match(await cliOk(s2, ['list', s2.id]), new RegExp(`^${s2.id}:406/: cannot be read \\(UNSAFE_IMAGE\\): .*images/406.*symbolic link`, 'm'));
      const one = JSON.parse(await cliOk(s2, ['list', s2.id, '--vmid', '406', '--json'])) as { volumes: { volid: string }[] };
      assert.deepEqual(
        one.volumes.map((e) => e.volid),
        [`${s2.id}:406/`],
      );
      await cliFails(s2, ['snapshot', 'create', v, 'xx'], { code: 8 });
      await cliFails(s2, ['vm', 'snapshot', '406', 'xx'], { code: 8, match: /images\/406.*symbolic link/ });
      await cliOk(s2, ['free', `${s2.id}:407/vm-407-disk-0.qcow2`]);
      await rm(join(s2.path, 'images', '407'), { recursive: true });
      await rm(join(s2.path, 'images', '409'));
      await cliFails(s2, ['alloc', s2.id, '406', '1M', '--name', 'vm-406-disk-1.qcow2'], { code: 8 });
      await cliFails(s2, ['free', v], { code: 8 });
      assert.deepEqual((await readdir(elsewhere)).sort(), ['vm-406-disk-0.qcow2']);
      assert.equal(await sha(join(elsewhere, 'vm-406-disk-0.qcow2')), before);
      // The images directory itself.
      await rm(join(s2.path, 'images'), { recursive: true });
      await symlink(outside, join(s2.path, 'images'));
      await cliFails(s2, ['list', s2.id], { code: 8, match: /images.*symbolic link/ });
      await cliFails(s2, ['alloc', s2.id, '407', '1M'], { code: 8 });
      assert.deepEqual((await readdir(outside)).sort(), ['loop-standin', 'victim.qcow2']);
    } finally {
      await s2.cleanup();
    }
  });

  it('a current layer symlinked to a qcow2 outside the storage is not snapshotted', async () => {
    await mkdir(join(s.path, 'images', '408'), { recursive: true });
    await symlink(victim, s.layer(408, 'vm-408-disk-0.qcow2'));
    const before = await sha(victim);
    const v = s.volid(408, 'vm-408-disk-0.qcow2');
    await cliFails(s, ['snapshot', 'create', v, 'xx'], { code: 8, match: /symbolic link/ });
    assert.equal(await sha(victim), before);
    assert.deepEqual(await readdir(join(s.path, 'images', '408')), ['vm-408-disk-0.qcow2']);
  });

  it("a FIFO, a directory or a /dev/zero symlink in a layer's place exits 8, not 3", async () => {
    const vol = 'vm-409-disk-0.qcow2';
    const v = s.volid(409, vol);
    await cliOk(s, ['alloc', s.id, '409', '1M', '--name', vol]);
    await cliOk(s, ['snapshot', 'create', v, 'aa']);
    const snap = s.layer(409, vol, 'aa');
    const plant = async (kind: string): Promise<void> => {
      await rm(snap, { recursive: true, force: true });
      if (kind === 'fifo') await mkfifo(snap);
      else if (kind === 'dir') await mkdir(snap);
      else await symlink('/dev/zero', snap);
    };
    for (const kind of ['fifo', 'dir', 'zero']) {
      await plant(kind);
      const tree = await snapshotOf(s.path);
      await cliFails(s, ['info', v], { code: 8, match: /snap-aa-vm-409-disk-0\.qcow2/ });
      await cliFails(s, ['snapshot', 'delete', v, 'aa'], { code: 8 });
      assertSameTree(tree, await snapshotOf(s.path), kind);
    }
  });

  it("a layer hard-linked with another VM's disk is refused; two names in one VM directory (an interrupted rename) are not", async () => {
    await cliOk(s, ['alloc', s.id, '410', '1M', '--name', 'vm-410-disk-0.qcow2']);
    const v = s.volid(410, 'vm-410-disk-0.qcow2');
    await cliOk(s, ['snapshot', 'create', v, 'aa']);
    const snap = s.layer(410, 'vm-410-disk-0.qcow2', 'aa');
    const other = s.layer(501, 'vm-501-disk-0.qcow2');
    const before = await sha(other);
    await rename(snap, `${snap}.orig`);
    await link(other, snap);
    await cliFails(s, ['snapshot', 'delete', v, 'aa'], { code: 8, match: /hard links/ });
    assert.equal(await sha(other), before);
    await rm(snap);
    await rename(`${snap}.orig`, snap);
    // A second name for a layer inside its own directory is what a crash mid-rename leaves: still readable.
    await link(snap, join(s.path, 'images', '410', 'stray-name'));
    const info = await cli(s, ['info', v]);
    assert.equal(info.code, 0, info.stderr);
  });

  it('a symlinked state directory or a dangling symlink as a lock file is refused, and nothing is made outside', async () => {
    const s4 = await makeStorage();
    try {
      await cliOk(s4, ['alloc', s4.id, '412', '1M', '--name', 'vm-412-disk-0.qcow2']);
      const v = s4.volid(412, 'vm-412-disk-0.qcow2');
      const state = join(s4.path, '.volchain');
      const elsewhere = join(s4.root, 'state-elsewhere');
      await rename(state, elsewhere);
      await symlink(elsewhere, state);
      const before = await snapshotOf(elsewhere);
      await cliFails(s4, ['snapshot', 'create', v, 'aa'], { code: 8, match: /\.volchain.*symbolic link/ });
      assertSameTree(before, await snapshotOf(elsewhere), 'the state directory behind the symlink');
      await rm(state);
      await rename(elsewhere, state);
      const lock = join(state, 'locks', '412.lock');
      await rm(lock, { force: true });
      const target = join(s4.root, 'made-through-lock');
      await symlink(target, lock);
      await cliFails(s4, ['snapshot', 'create', v, 'aa'], { code: 8, match: /412\.lock.*symbolic link/ });
      await assert.rejects(lstat(target), /ENOENT/, 'no file created through the lock symlink');
      assert.deepEqual(await readdir(join(s4.path, 'images', '412')), ['vm-412-disk-0.qcow2']);
    } finally {
      await s4.cleanup();
    }
  });

  it('a failed preallocated alloc leaves no empty images/<vmid> directory', async () => {
    const s3 = await makeStorage();
    try {
      // fallocate(2) of more than the file system holds fails at once with ENOSPC (not after writing zeroes,
      // as 'full' would).
      const cfg = (await readFile(s3.cfg, 'utf8')).replace('\tcontent images\n', '\tcontent images\n\tpreallocation falloc\n');
      assert.match(cfg, /preallocation falloc/);
      await writeFile(s3.cfg, cfg);
      const r = await cli(s3, ['alloc', s3.id, '411', '15T', '--name', 'vm-411-disk-0.raw', '--format', 'raw']);
      assert.equal(r.code, 9, `the allocation fails for want of space: ${r.stderr}`);
      assert.deepEqual(await readdir(join(s3.path, 'images')), []);
      await assert.rejects(lstat(join(s3.path, 'images', '411')), /ENOENT/);
    } finally {
      await s3.cleanup();
    }
  });
});

// ---- fuzz -----------------------------------------------------------------------------------------------

type Hazard = 'symlink-out' | 'symlink-other-vm' | 'fifo' | 'dir' | 'hardlink-out' | 'dev-zero';
const HAZARDS: Hazard[] = ['symlink-out', 'symlink-other-vm', 'fifo', 'dir', 'hardlink-out', 'dev-zero'];
const OPS = ['snapshot create', 'snapshot delete', 'snapshot rollback', 'resize', 'free', 'list', 'info'] as const;

describe('hostile storage fuzz: a hazard at a random layer of a random chain (issue 13)', () => {
  it("never writes outside the volume's own layers, and every refusal exits 8", async () => {
    const { s, outside, victim } = await setup();
    try {
      // VM 900's disk is the bystander every symlink / hard link in the storage points at.
      await cliOk(s, ['alloc', s.id, '900', '1M', '--name', 'vm-900-disk-0.qcow2']);
      await writePattern(s.layer(900, 'vm-900-disk-0.qcow2'), 0x90, 0, 64 * 1024);
      let vmid = 600;
      await fc.assert(
        fc.asyncProperty(fc.integer({ min: 1, max: 4 }), fc.nat(), fc.constantFrom(...HAZARDS), fc.constantFrom(...OPS), async (depth, at, hazard, op) => {
          vmid++;
          const vol = `vm-${vmid}-disk-0.qcow2`;
          const v = s.volid(vmid, vol);
          await cliOk(s, ['alloc', s.id, String(vmid), '1M', '--name', vol]);
          const snaps: string[] = [];
          for (let i = 0; i < depth; i++) {
            await cliOk(s, ['snapshot', 'create', v, `s${i}`]);
            snaps.push(`s${i}`);
          }
          // Position 0 .. depth-1: a snapshot layer; depth: the current layer.
          const pos = at % (depth + 1);
          const target = pos === depth ? s.layer(vmid, vol) : s.layer(vmid, vol, snaps[pos]);
          await rm(target);
          switch (hazard) {
            case 'symlink-out':
              await symlink(victim, target);
              break;
            case 'symlink-other-vm':
              await symlink('../900/vm-900-disk-0.qcow2', target);
              break;
            case 'fifo':
              await mkfifo(target);
              break;
            case 'dir':
              await mkdir(target);
              break;
            case 'hardlink-out':
              await link(s.layer(900, 'vm-900-disk-0.qcow2'), target);
              break;
            case 'dev-zero':
              await symlink('/dev/zero', target);
              break;
          }
          const outsideTree = await snapshotOf(outside);
          const bystander = await sha(s.layer(900, 'vm-900-disk-0.qcow2'));
          const ownTree = await snapshotOf(join(s.path, 'images', String(vmid)));
          const snap = snaps[Math.min(depth - 1, at % depth)] ?? 's0';
          const args: Record<(typeof OPS)[number], string[]> = {
            'snapshot create': ['snapshot', 'create', v, 'new'],
            'snapshot delete': ['snapshot', 'delete', v, snap],
            'snapshot rollback': ['snapshot', 'rollback', v, snap],
            resize: ['resize', v, '2M'],
            free: ['free', v],
            list: ['list', s.id],
            info: ['info', v],
          };
          if (op === 'list') {
            // `list` never fails for one volume: the volume is listed with its problem (the refusal any
            // command on it gives), and the listing exits 0.
            const r = await cli(s, ['list', s.id, '--json']);
            assert.equal(r.code, 0, `list with ${hazard} at layer ${pos} of ${depth + 1}: exit ${r.code} ${r.stderr}`);
            const entry = (JSON.parse(r.stdout) as { volumes: { volid: string; problem: { code: string; message: string } | null }[] }).volumes.find(
              (e) => e.volid === v,
            );
            assert.ok(entry?.problem, `list shows ${v} with its problem: ${r.stdout}`);
            assert.match(entry.problem.code, /^(UNSAFE_IMAGE|CORRUPT_IMAGE)$/);
            assert.match(entry.problem.message, new RegExp(`images/${vmid}/`), 'the problem names the path');
          } else {
            const r = await cli(s, args[op]);
            assert.equal(r.code, 8, `${op} with ${hazard} at layer ${pos} of ${depth + 1}: exit ${r.code} ${r.stderr}`);
            assert.match(r.stderr, new RegExp(`images/${vmid}/`), 'the message names the path');
          }
          assertSameTree(outsideTree, await snapshotOf(outside), `${op}/${hazard}: outside the storage`);
          assert.equal(await sha(s.layer(900, 'vm-900-disk-0.qcow2')), bystander, `${op}/${hazard}: VM 900's disk`);
          assertSameTree(ownTree, await snapshotOf(join(s.path, 'images', String(vmid))), `${op}/${hazard}: refused, so unchanged`);
          // Clear the volume so `list` in later runs only meets the hazard it plants.
          await rm(join(s.path, 'images', String(vmid)), { recursive: true, force: true });
        }),
        { seed: 1313, numRuns: 24, endOnFailure: true },
      );
      await assertPattern(s.layer(900, 'vm-900-disk-0.qcow2'), 0x90, 0, 64 * 1024);
    } finally {
      await s.cleanup();
    }
  });
});
