/**
 * The pure parts of saferemove's background wipe: chunk planning, PVE's saferemove_throughput, pacing, the
 * progress file (parsing, resuming only the same LV), `del-` names, the wipe mode setting, status lines.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  DEFAULT_WIPE_CHUNK_BYTES,
  chunkSizeFor,
  listWipeProgress,
  parseThroughput,
  parseWipeProgress,
  planChunks,
  readWipeProgress,
  removeWipeProgress,
  resumeOffset,
  throttleDelayMs,
  wiperAlive,
  writeWipeProgress,
  type WipeProgress,
} from '../../src/backends/lvm/wipe.js';
import { DEL_PREFIX, deletionName, isVolchainDeletion } from '../../src/backends/lvm/tags.js';
import type { PendingRemoval } from '../../src/backends/backend.js';
import { renderRemoval } from '../../src/cli/progress.js';
import { resolveWipeMode } from '../../src/engine/run/wipe.js';
import { InvalidInputError } from '../../src/errors.js';
import { LV_NAME_MAX } from '../../src/naming/index.js';

const MiB = 1024 * 1024;

const progress = (over: Partial<WipeProgress> = {}): WipeProgress => ({
  lv: 'del-vm-100-disk-0.qcow2',
  vg: 'vg0',
  storage: 'lvm1',
  uuid: 'T1aEbm-Z4O2-OcnW-9yM3-A7L1-bYUc-gs7vO7',
  totalBytes: 256 * MiB,
  doneBytes: 64 * MiB,
  pid: 4242,
  host: 'pve1',
  startedAt: '2025-01-01T00:00:00.000Z',
  updatedAt: '2025-01-01T00:00:02.000Z',
  ...over,
});

test('planChunks covers [from, total) exactly, in chunks, the last one shorter', () => {
  assert.deepEqual(planChunks(256 * MiB, 0, 64 * MiB), [
    { offset: 0, length: 64 * MiB },
    { offset: 64 * MiB, length: 64 * MiB },
    { offset: 128 * MiB, length: 64 * MiB },
    { offset: 192 * MiB, length: 64 * MiB },
  ]);
  assert.deepEqual(planChunks(100 * MiB, 64 * MiB, 64 * MiB), [{ offset: 64 * MiB, length: 36 * MiB }]);
  assert.deepEqual(planChunks(4 * MiB, 0, 128 * MiB), [{ offset: 0, length: 4 * MiB }]);
  assert.deepEqual(planChunks(4 * MiB, 4 * MiB, MiB), [], 'nothing left');
  assert.deepEqual(planChunks(4 * MiB, 8 * MiB, MiB), [], 'a start past the end leaves nothing');
  assert.deepEqual(planChunks(0, 0, MiB), []);
  // Every byte once, whatever the sizes (multiples of 512).
  for (const [total, from, chunk] of [
    [3 * MiB + 512, 1024, MiB],
    [10 * MiB, 3 * MiB, 3 * MiB],
    [512, 0, 512],
  ] as const) {
    const chunks = planChunks(total, from, chunk);
    let at = from;
    for (const c of chunks) {
      assert.equal(c.offset, at);
      assert.ok(c.length > 0 && c.length <= chunk);
      at += c.length;
    }
    assert.equal(at, total);
  }
  assert.throws(() => planChunks(MiB + 1, 0, MiB), InvalidInputError);
  assert.throws(() => planChunks(MiB, 100, MiB), InvalidInputError);
  assert.throws(() => planChunks(MiB, 0, 0), InvalidInputError);
  assert.throws(() => planChunks(-512, 0, MiB), InvalidInputError);
});

test('saferemove_throughput as PVE writes it: bytes/s, k/m/g suffix, negative = its absolute value, 0 = no limit', () => {
  assert.equal(parseThroughput(undefined), undefined);
  assert.equal(parseThroughput(''), undefined);
  assert.equal(parseThroughput('0'), undefined);
  assert.equal(parseThroughput('1048576'), MiB);
  assert.equal(parseThroughput('-10485760'), 10 * MiB, "PVE's old default");
  assert.equal(parseThroughput('32m'), 32 * MiB);
  assert.equal(parseThroughput('32M'), 32 * MiB);
  assert.equal(parseThroughput('512k'), 512 * 1024);
  assert.equal(parseThroughput('1G'), 1024 * MiB);
  for (const bad of ['fast', '10 MB', '1.5m', '10t', '0x10']) assert.throws(() => parseThroughput(bad), InvalidInputError, bad);
});

test('chunk size: the default without a limit, about one second of the limit otherwise (1 MiB .. default)', () => {
  assert.equal(chunkSizeFor(undefined), DEFAULT_WIPE_CHUNK_BYTES);
  assert.equal(chunkSizeFor(32 * MiB), 32 * MiB);
  assert.equal(chunkSizeFor(32 * MiB + 12345), 32 * MiB, 'whole MiB');
  assert.equal(chunkSizeFor(100 * 1024), MiB, 'at least 1 MiB');
  assert.equal(chunkSizeFor(10 * 1024 * MiB), DEFAULT_WIPE_CHUNK_BYTES, 'at most the default');
  assert.equal(DEFAULT_WIPE_CHUNK_BYTES % MiB, 0);
});

test('pacing: the pause that keeps the bytes done within the limit', () => {
  assert.equal(throttleDelayMs(64 * MiB, 0, undefined), 0, 'no limit, no pause');
  assert.equal(throttleDelayMs(32 * MiB, 0, 32 * MiB), 1000);
  assert.equal(throttleDelayMs(32 * MiB, 400, 32 * MiB), 600);
  assert.equal(throttleDelayMs(32 * MiB, 1500, 32 * MiB), 0, 'behind schedule: no pause');
});

test('a wipe continues from the recorded offset only on the same LV (uuid and size)', () => {
  const lv = { uuid: progress().uuid, sizeBytes: 256 * MiB };
  assert.equal(resumeOffset(progress(), lv), 64 * MiB);
  assert.equal(resumeOffset(undefined, lv), 0);
  assert.equal(resumeOffset(progress({ uuid: 'other' }), lv), 0, 'a new LV of the same name starts over');
  assert.equal(resumeOffset(progress(), { ...lv, sizeBytes: 128 * MiB }), 0, 'a resized LV starts over');
  assert.equal(resumeOffset(progress({ doneBytes: 256 * MiB }), lv), 256 * MiB, 'zeroed completely: only the lvremove is left');
});

test('progress files: parsed strictly, torn or foreign content is no progress', () => {
  const p = progress({ method: 'blkdiscard' });
  assert.deepEqual(parseWipeProgress(JSON.stringify(p)), p);
  assert.deepEqual(parseWipeProgress(JSON.stringify({ ...p, extra: 1 })), p, 'unknown fields are dropped');
  const { method: _m, ...noMethod } = p;
  assert.deepEqual(parseWipeProgress(JSON.stringify(noMethod)), noMethod);
  assert.equal(parseWipeProgress(''), undefined);
  assert.equal(parseWipeProgress(JSON.stringify(p).slice(0, 40)), undefined, 'torn');
  assert.equal(parseWipeProgress('null'), undefined);
  assert.equal(parseWipeProgress('[1]'), undefined);
  assert.equal(parseWipeProgress(JSON.stringify({ ...p, doneBytes: p.totalBytes + 512 })), undefined, 'done > total');
  assert.equal(parseWipeProgress(JSON.stringify({ ...p, doneBytes: -1 })), undefined);
  assert.equal(parseWipeProgress(JSON.stringify({ ...p, doneBytes: '5' })), undefined);
  assert.equal(parseWipeProgress(JSON.stringify({ ...p, pid: 1.5 })), undefined);
  assert.equal(parseWipeProgress(JSON.stringify({ ...p, uuid: '' })), undefined);
  assert.equal(parseWipeProgress(JSON.stringify({ ...p, method: 'cstream' })), undefined);
  const { lv: _lv, ...noLv } = p;
  assert.equal(parseWipeProgress(JSON.stringify(noLv)), undefined);
});

test('progress files on disk: written whole, listed, read back by LV name, removed; a dead wiper is not alive', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'volchain-wipe-'));
  try {
    assert.deepEqual(await listWipeProgress(join(dir, 'missing')), []);
    const a = progress({ lv: 'del-vm-100-disk-0.qcow2' });
    const b = progress({ lv: 'del-1-vm-100-disk-0.qcow2', doneBytes: 0 });
    await writeWipeProgress(dir, a);
    await writeWipeProgress(dir, b);
    await writeWipeProgress(dir, { ...a, doneBytes: 128 * MiB });
    await writeFile(join(dir, 'del-vm-7-x.json'), '{"torn":');
    await writeFile(join(dir, 'wipe.log'), 'not a progress file\n');
    assert.equal((await readWipeProgress(dir, a.lv))?.doneBytes, 128 * MiB, 'the last write wins');
    assert.equal(await readWipeProgress(dir, 'del-vm-7-x'), undefined);
    assert.equal(await readWipeProgress(dir, 'nothing'), undefined);
    assert.deepEqual((await listWipeProgress(dir)).map((p) => p.lv).sort(), [b.lv, a.lv].sort());
    assert.deepEqual(
      (await readdir(dir)).filter((n) => n.endsWith('.tmp')),
      [],
      'no temporary files left',
    );
    await removeWipeProgress(dir, a.lv);
    await removeWipeProgress(dir, a.lv); // harmless twice
    assert.deepEqual(
      (await listWipeProgress(dir)).map((p) => p.lv),
      [b.lv],
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  assert.equal(wiperAlive({ pid: process.pid, host: hostname() }), true);
  assert.equal(wiperAlive({ pid: process.pid, host: `not-${hostname()}` }), false, 'another host: cannot tell, not here');
  assert.equal(wiperAlive({ pid: 0, host: hostname() }), false);
  assert.equal(wiperAlive({ pid: 2 ** 22 + 12345, host: hostname() }), false, 'beyond pid_max');
});

test('del- names: del-<lv>, then del-<n>-<lv> while earlier ones are still being wiped; volchain recognises its own by tags', () => {
  assert.equal(deletionName('vm-100-disk-0.qcow2'), 'del-vm-100-disk-0.qcow2');
  assert.equal(deletionName('vm-100-disk-0.qcow2', 1), 'del-1-vm-100-disk-0.qcow2');
  assert.equal(deletionName('vm-100-disk-0.qcow2', 12), 'del-12-vm-100-disk-0.qcow2');
  const long = `snap_vm-100-disk-0_${'s'.repeat(LV_NAME_MAX - 25)}.qcow2`;
  for (const attempt of [0, 1, 42]) {
    const name = deletionName(long, attempt);
    assert.ok(name.length <= LV_NAME_MAX, `${name.length} characters`);
    assert.ok(name.startsWith(DEL_PREFIX));
  }
  assert.notEqual(deletionName(long, 1), deletionName(long, 2));
  assert.equal(isVolchainDeletion({ name: 'del-vm-100-disk-0.qcow2', tags: ['pve-vm-100', 'volchain.vol.vm-100-disk-0.qcow2'] }), true);
  assert.equal(isVolchainDeletion({ name: 'del-vm-100-disk-0', tags: ['pve-vm-100', 'volchain.removing'] }), true);
  assert.equal(isVolchainDeletion({ name: 'del-vm-100-disk-0', tags: ['pve-vm-100'] }), false, "PVE's own del- LV");
  assert.equal(isVolchainDeletion({ name: 'vm-100-disk-0.qcow2', tags: ['volchain.noparent'] }), false, 'not a del- LV');
});

test('wipe mode: the option, else VOLCHAIN_WIPE, else background; anything else is refused', () => {
  assert.equal(resolveWipeMode(undefined, {}), 'background');
  assert.equal(resolveWipeMode(undefined, { VOLCHAIN_WIPE: '' }), 'background');
  assert.equal(resolveWipeMode(undefined, { VOLCHAIN_WIPE: 'foreground' }), 'foreground');
  assert.equal(resolveWipeMode('background', { VOLCHAIN_WIPE: 'foreground' }), 'background', 'the option wins');
  assert.throws(() => resolveWipeMode(undefined, { VOLCHAIN_WIPE: 'later' }), /VOLCHAIN_WIPE must be background or foreground, got 'later'/);
});

test('status lines of wipes: running (who, since when, how far) and waiting (what to run)', () => {
  const base: PendingRemoval = {
    storage: 'lvm1',
    layer: 'del-vm-100-disk-0',
    path: '/dev/vg0/del-vm-100-disk-0',
    vmid: 100,
    totalBytes: 256 * MiB,
    doneBytes: 64 * MiB,
    state: 'running',
    pid: 4242,
    host: 'pve1',
    startedAt: '2025-01-01T00:00:00.000Z',
    updatedAt: null,
  };
  assert.equal(
    renderRemoval(base),
    'lvm1:del-vm-100-disk-0: being wiped by pid 4242 on pve1 since 2025-01-01T00:00:00.000Z, 67108864 of 268435456 bytes zeroed (25%)',
  );
  assert.equal(
    renderRemoval({ ...base, state: 'waiting' }),
    "lvm1:del-vm-100-disk-0: removed, waiting to be wiped, 67108864 of 268435456 bytes zeroed (25%); its wiper (pid 4242 on pve1) stopped: 'volchain wipe' finishes it",
  );
  assert.equal(
    renderRemoval({ ...base, state: 'waiting', doneBytes: 0, pid: null, host: null, startedAt: null }),
    "lvm1:del-vm-100-disk-0: removed, waiting to be wiped, 0 of 268435456 bytes zeroed (0%); no wiper runs: 'volchain wipe' finishes it",
  );
});
