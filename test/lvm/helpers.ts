/**
 * Helpers for the tests that run on real LVM. They need a volume group to work in, named by
 * VOLCHAIN_TEST_VG (test/integration/lvm-guest.test.ts creates one, on a loop device where this kernel has
 * device-mapper, else on a scratch disk inside a QEMU guest, and runs these files there). Without it every
 * test here is skipped: scripts/run-tests.mjs never runs dist/test/lvm/ directly.
 *
 * Each test file works with its own range of VM ids, so files may run side by side in one VG, and removes
 * every LV it made (selected by its exact `pve-vm-<vmid>` tag) when it ends.
 */
import type { ShrinkPolicy } from '../../src/engine/plan/shrink-policy.js';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseStorageConfig } from '../../src/config/index.js';
import { Volchain } from '../../src/engine/volchain.js';
import { spawnCliWiper } from '../../src/cli/wipe-runner.js';
import type { WipeMode } from '../../src/engine/run/wipe.js';
import * as lvm from '../../src/tools/lvm.js';
import { measureFullyAllocated } from '../../src/tools/lvm-measure.js';
import { BIN, runCommand, type RunResult } from '../integration/helpers.js';

export const VG = process.env.VOLCHAIN_TEST_VG ?? '';
/** Pass as the `skip` option of a test: a reason when there is no VG to work in. */
/** These tests need a real VG: run without one they fail (they are never skipped). */
export function requireVg(): void {
  if (VG === '') throw new Error('VOLCHAIN_TEST_VG is not set: test/integration/lvm-guest.test.ts runs these tests with a real VG');
}

/** A second VG (lvm-guest.test.ts makes a small one), for moves between two LVM storages. */
export const VG2 = process.env.VOLCHAIN_TEST_VG2 ?? '';
export function requireVg2(): void {
  if (VG2 === '') throw new Error('VOLCHAIN_TEST_VG2 is not set: test/integration/lvm-guest.test.ts runs these tests with a second VG');
}

export const MiB = 1024 * 1024;
export const BLOCK = 64 * 1024;

export interface LvmTestStorage {
  id: string;
  cfg: string;
  vc: Volchain;
  volid(name: string): string;
  /** /dev/<vg>/<lv> of a volume's current layer, or of snapshot `snap`'s layer. */
  path(name: string, snap?: string): string;
  snapLayer(name: string, snap: string): string;
}

let stateRoot: string | undefined;

/**
 * A storage.cfg with one lvm storage on the test VG. Locks and journals go to a temporary state directory
 * (VOLCHAIN_STATE_DIR), shared by every storage of the file so the CLI in a child process sees them too.
 * `throughput`: saferemove_throughput; `wipe`: where the library wipes removed LVs (default background).
 */
export async function lvmStorage(
  opts: { id?: string; saferemove?: boolean; shared?: boolean; throughput?: string; wipe?: WipeMode; shrinkFrozen?: ShrinkPolicy } = {},
): Promise<LvmTestStorage> {
  const id = opts.id ?? 'tvg';
  stateRoot ??= await mkdtemp(join(tmpdir(), 'volchain-lvm-state-'));
  process.env.VOLCHAIN_STATE_DIR = stateRoot;
  const text = [
    `lvm: ${id}`,
    `\tvgname ${VG}`,
    '\tcontent images',
    '\tsnapshot-as-volume-chain 1',
    ...(opts.saferemove ? ['\tsaferemove 1'] : []),
    ...(opts.shared ? ['\tshared 1'] : []),
    ...(opts.throughput !== undefined ? [`\tsaferemove_throughput ${opts.throughput}`] : []),
    '',
  ].join('\n');
  const cfg = join(stateRoot, `${id}.cfg`);
  await writeFile(cfg, text);
  const snapLayer = (name: string, snap: string): string => `snap_${name.replace(/\.qcow2$/, '')}_${snap}.qcow2`;
  return {
    id,
    cfg,
    vc: new Volchain(parseStorageConfig(text, cfg), {
      ...(opts.wipe !== undefined ? { wipe: opts.wipe } : {}),
      // The library leaves starting a background wiper to its host program: start the CLI's, as it does.
      backgroundWipe: spawnCliWiper,
      ...(opts.shrinkFrozen !== undefined ? { shrinkFrozen: opts.shrinkFrozen } : {}),
    }),
    volid: (name) => `${id}:${name}`,
    path: (name, snap) => `/dev/${VG}/${snap === undefined ? name : snapLayer(name, snap)}`,
    snapLayer,
  };
}

/**
 * One Volchain seeing the test VG as `tvg` (with `secondVg`, also VG2 as `tvg2`) and a dir storage `dd` in a
 * new temporary directory `root` (the caller removes it): for tests that carry volumes between LVM and files.
 */
export async function lvmAndDirStorages(prefix: string, opts: { secondVg?: boolean } = {}): Promise<{ vc: Volchain; cfg: string; root: string; dir: string }> {
  await lvmStorage(); // VOLCHAIN_STATE_DIR for the LVM storages' locks and journals
  const root = await mkdtemp(join(tmpdir(), prefix));
  const dir = join(root, 'store');
  await mkdir(dir);
  const chains = ['\tcontent images', '\tsnapshot-as-volume-chain 1', ''];
  const text = [
    'lvm: tvg',
    `\tvgname ${VG}`,
    ...chains,
    ...(opts.secondVg === true ? ['lvm: tvg2', `\tvgname ${VG2}`, ...chains] : []),
    'dir: dd',
    `\tpath ${dir}`,
    ...chains,
  ].join('\n');
  const cfg = join(root, 'storage.cfg');
  await writeFile(cfg, text);
  return { vc: new Volchain(parseStorageConfig(text, cfg), { wipe: 'foreground' }), cfg, root, dir };
}

/** `qemu-img compare` of two qcow2 images' guest views: identical, or the test fails saying which. */
export async function assertSameView(a: string, b: string, context: string): Promise<void> {
  const r = await runCommand('qemu-img', ['compare', '-f', 'qcow2', '-F', 'qcow2', a, b]);
  assert.equal(r.code, 0, `${context}: qemu-img compare ${a} ${b}: ${r.stdout}${r.stderr}`);
}

export async function cleanupState(): Promise<void> {
  if (stateRoot) await rm(stateRoot, { recursive: true, force: true });
}

/** All LVs of the test VG (or of `vgName`). */
export async function lvs(vgName = VG): Promise<lvm.LvRow[]> {
  return lvm.listLvs(vgName);
}

export async function lv(name: string): Promise<lvm.LvRow | undefined> {
  return (await lvs()).find((r) => r.name === name);
}

export async function mustLv(name: string): Promise<lvm.LvRow> {
  const row = await lv(name);
  assert.ok(row, `LV ${name} should exist in ${VG}`);
  return row;
}

export async function vg(): Promise<lvm.VgInfo> {
  return lvm.showVg(VG);
}

/** The LV size volchain must give a writable qcow2 layer of `virtualSize`. */
export async function fullLvSize(virtualSize: number): Promise<number> {
  return lvm.roundUpTo(await measureFullyAllocated(virtualSize), (await vg()).extentSizeBytes);
}

/** Removes every LV tagged for these VMs (exact tag match, never a prefix), whatever state it is in. */
export async function removeVmLvs(vmids: readonly number[], vgName = VG): Promise<void> {
  const tags = new Set(vmids.map((v) => `pve-vm-${v}`));
  const names = (await lvs(vgName))
    .filter((r) => r.tags.some((t) => tags.has(t)) || vmids.some((v) => new RegExp(`(^|[^A-Za-z0-9])vm-${v}-`).test(r.name)))
    .map((r) => `${vgName}/${r.name}`);
  if (names.length > 0) await sh('lvremove', ['-f', '--', ...names]); // one command: each costs a metadata commit
}

export async function sh(command: string, args: readonly string[]): Promise<RunResult> {
  return runCommand(command, args, { env: { ...process.env, LC_ALL: 'C', LVM_SUPPRESS_FD_WARNINGS: '1' } });
}

export async function shOk(command: string, args: readonly string[]): Promise<string> {
  const r = await sh(command, args);
  assert.equal(r.code, 0, `${command} ${args.join(' ')} exited ${r.code}: ${r.stderr}${r.stdout}`);
  return r.stdout;
}

/** Whether the first `bytes` bytes of `path` (an LV being wiped, or wiped) read as zeroes. */
export async function readsZero(path: string, bytes: number): Promise<boolean> {
  return (await sh('cmp', ['-n', String(bytes), path, '/dev/zero'])).code === 0;
}

/** The CLI, killed with SIGKILL at an LVM backend crash point (VOLCHAIN_LVM_CRASH_AT); removals wiped in the foreground. */
export async function crashingCli(cfg: string, args: readonly string[], crashAt: string): Promise<void> {
  const r = await runCommand(process.execPath, [BIN, '--config', cfg, ...args], {
    env: { ...process.env, LC_ALL: 'C', VOLCHAIN_LVM_CRASH_AT: crashAt, VOLCHAIN_WIPE: 'foreground' },
  });
  assert.equal(r.code, 128, `the CLI should have been killed at ${crashAt}: exit ${r.code} ${r.stderr}`);
}

/** Blocks of BLOCK bytes: block index -> pattern byte (0 = never written). */
export type Blocks = Map<number, number>;

export interface Io {
  byte: number;
  offset: number;
  len: number;
}

const hex = (byte: number): string => `0x${byte.toString(16).padStart(2, '0')}`;

/**
 * One qemu-io run on a qcow2 layer (with its backing chain): every read must find its pattern, then the
 * writes are done (read-only when there are none). One process instead of one per range: in a TCG guest
 * each process start costs a lot.
 */
export async function qemuIo(path: string, reads: readonly Io[], writes: readonly Io[] = [], context = ''): Promise<void> {
  const args = ['-f', 'qcow2', ...(writes.length === 0 ? ['-r'] : [])];
  for (const r of reads) args.push('-c', `read -P ${hex(r.byte)} ${r.offset} ${r.len}`);
  for (const w of writes) args.push('-c', `write -P ${hex(w.byte)} ${w.offset} ${w.len}`);
  args.push(path);
  const r = await sh('qemu-io', args);
  const out = r.stdout + r.stderr;
  const failed = [...out.matchAll(/Pattern verification failed at offset (\d+)/g)].map((m) => Number(m[1]) / BLOCK);
  if (r.code !== 0 || failed.length > 0 || /failed|error|can't open|could not/i.test(out)) {
    assert.fail(
      `${context ? `${context}: ` : ''}qemu-io on ${path} (exit ${r.code})${failed.length ? `: wrong data at blocks ${failed.join(', ')}` : ''}: ${out.trim().split('\n').slice(0, 4).join(' | ')}`,
    );
  }
}

/** Reads for a map of blocks: every block below `total` must hold its byte (0 when absent). */
export function blockReads(blocks: ReadonlyMap<number, number>, total: number): Io[] {
  const out: Io[] = [];
  for (let i = 0; i < total;) {
    const byte = blocks.get(i) ?? 0;
    let j = i + 1;
    while (j < total && (blocks.get(j) ?? 0) === byte) j++;
    out.push({ byte, offset: i * BLOCK, len: (j - i) * BLOCK });
    i = j;
  }
  return out;
}
