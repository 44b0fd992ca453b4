/**
 * A model of what every snapshot and the current layer of some volumes must contain, kept in step with real
 * operations, and checks of the real images against it (qemu-io pattern reads of every 64 KiB block, the
 * snapshot names volchain lists, nothing pending, qemu-img check clean). Shared by the crash, fault and
 * concurrency suites.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Volchain } from '../../src/engine/volchain.js';
import { parseStorageConfig } from '../../src/config/index.js';

const BIN = resolve('bin/volchain.js');
export const BLOCK = 64 * 1024;
export const BLOCKS = 8;
export const VMID = 100;

/** Guest-visible content of one layer view: byte per 64 KiB block (0 = never written). */
export type Content = number[];
export interface DiskModel {
  snapshots: Map<string, Content>;
  current: Content;
}
export type Model = Map<string, DiskModel>; // by volid

export interface Env {
  dir: string;
  /** Where the storage keeps its files. */
  store: string;
  cfg: string;
  vc: Volchain;
}

/** A temp dir storage named 'crash' (its files under `storePath`, default <tmp>/store). */
export function makeEnv(storePath?: string): Env {
  const dir = mkdtempSync(join(tmpdir(), 'volchain-model-'));
  const cfg = join(dir, 'storage.cfg');
  const text = `dir: crash\n\tpath ${storePath ?? `${dir}/store`}\n\tcontent images\n\tsnapshot-as-volume-chain 1\n`;
  writeFileSync(cfg, text);
  return { dir, store: storePath ?? join(dir, 'store'), cfg, vc: new Volchain(parseStorageConfig(text, cfg)) };
}

export function sh(
  cmd: string,
  args: string[],
  env: Record<string, string> = {},
): { status: number | null; signal: string | null; stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env: { ...process.env, ...env } });
  return { status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

export function cli(env: Env, args: string[], extraEnv: Record<string, string> = {}): ReturnType<typeof sh> {
  return sh(process.execPath, [BIN, '--config', env.cfg, ...args], extraEnv);
}

export async function write(env: Env, model: Model, volid: string, block: number, byte: number): Promise<void> {
  const path = await env.vc.path(volid);
  const r = sh('qemu-io', ['-f', 'qcow2', '-c', `write -P ${byte} ${block * BLOCK} ${BLOCK}`, path]);
  assert.equal(r.status, 0, r.stderr);
  (model.get(volid) as DiskModel).current[block] = byte;
}

export async function snap(env: Env, model: Model, volid: string, name: string): Promise<void> {
  await env.vc.snapshotCreate(volid, name);
  const disk = model.get(volid) as DiskModel;
  disk.snapshots.set(name, [...disk.current]);
}

export async function rollback(env: Env, model: Model, volid: string, name: string): Promise<void> {
  await env.vc.snapshotRollback(volid, name);
  const disk = model.get(volid) as DiskModel;
  disk.current = [...(disk.snapshots.get(name) as Content)];
}

/** Reads every block of a layer and compares with the expected bytes, in one qemu-io process. */
export function assertContent(path: string, expected: Content, what: string): void {
  const cmds = expected.flatMap((byte, i) => ['-c', `read -P ${byte} ${i * BLOCK} ${BLOCK}`]);
  const r = sh('qemu-io', ['-r', '-f', 'qcow2', ...cmds, path]);
  assert.equal(r.status, 0, `${what}: qemu-io failed: ${r.stderr}`);
  assert.doesNotMatch(r.stdout, /Pattern verification failed/, `${what} does not hold its data`);
}

export async function verify(env: Env, model: Model, label: string): Promise<void> {
  const status = cli(env, ['status', '--json']);
  assert.equal(status.status, 0, status.stderr);
  assert.deepEqual((JSON.parse(status.stdout) as { pending: unknown }).pending, [], `${label}: operations still pending after repair`);
  for (const [volid, disk] of model) {
    const listing = await env.vc.snapshotList(volid);
    assert.deepEqual(listing.snapshots.map((s) => s.name).sort(), [...disk.snapshots.keys()].sort(), `${label}: snapshots of ${volid}`);
    for (const [name, content] of disk.snapshots) {
      assertContent(await env.vc.path(volid, { snapshot: name }), content, `${label}: snapshot ${name} of ${volid}`);
    }
    assertContent(await env.vc.path(volid), disk.current, `${label}: current layer of ${volid}`);
  }
  const imagesDir = join(env.store, 'images', String(VMID));
  const files = existsSync(imagesDir) ? readdirSync(imagesDir) : [];
  for (const f of files) {
    assert.ok(!f.startsWith('.volchain-tmp'), `${label}: temporary ${f} left behind`);
    const check = sh('qemu-img', ['check', '-f', 'qcow2', join(imagesDir, f)]);
    assert.equal(check.status, 0, `${label}: qemu-img check ${f}: ${check.stdout}${check.stderr}`);
  }
  if (model.size === 0) assert.deepEqual(files, [], `${label}: files left after free`);
}
