/**
 * `volchain move` on dir storages, with real qemu-img/qemu-io on real files: a branched snapshot tree (three
 * snapshots, two branches, a pattern written in every layer and a zero write in the current layer that hides
 * its parent's data) moves to a second storage, to a second storage under another VM id, and is reassigned
 * to another VM in place. Every view (each snapshot and the current state) is compared (`qemu-img compare`)
 * with a reference tree built the same way, every new layer checks clean, and each layer's own data (its
 * delta) is the source layer's, not a flattened view. Bad input changes nothing; a SIGKILL at every step of
 * a move and of a reassign followed by `repair` loses nothing.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFile, mkdir, readFile, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import {
  MiB,
  assertPatterns,
  checkClean,
  cli,
  cliFails,
  cliJson,
  cliOk,
  imageInfo,
  makeStorage,
  runCommand,
  writePattern,
  type Expect,
  type TestStorage,
} from './helpers.js';
import type { PlansJson, StatusJson } from '../../src/results.js';
import { startVm } from './live-vm.js';
import { clearImmutableFlags } from '../fixtures/pve-dir-fixture.js';
import { parseStorageConfig } from '../../src/config/index.js';
import { Volchain } from '../../src/engine/volchain.js';
import type { EngineEvent } from '../../src/engine/run/step-rules.js';

const SIZE = 16 * MiB;
/** The reference tree, never moved: every moved view is compared with its twin here. */
const REF = 100;

let s: TestStorage;
let bbPath: string;

const half = MiB / 2;
/** What each view holds (zero where nothing was written; the current layer zeroes the first half MiB of s1's data). */
const VIEWS: Record<string, Expect[]> = {
  s1: [pat(0xa1, 0, MiB), pat(0, MiB, 3 * MiB)],
  s2: [pat(0xa1, 0, MiB), pat(0xb2, MiB, MiB), pat(0, 2 * MiB, 2 * MiB)],
  s3: [pat(0xa1, 0, MiB), pat(0, MiB, MiB), pat(0xc3, 2 * MiB, MiB), pat(0, 3 * MiB, MiB)],
  current: [pat(0, 0, half), pat(0xa1, half, half), pat(0, MiB, MiB), pat(0xc3, 2 * MiB, MiB), pat(0xd4, 3 * MiB, MiB)],
};
const SNAPS = ['s1', 's2', 's3'];

function pat(byte: number, offset: number, len: number): Expect {
  return { byte, offset, len };
}

function file(storage: 'aa' | 'bb', vmid: number, name: string): string {
  return join(storage === 'aa' ? s.path : bbPath, 'images', String(vmid), name);
}

/** The layer holding `view` of `vm-<vmid>-disk-<disk>.qcow2` on `storage`. */
function viewLayer(storage: 'aa' | 'bb', vmid: number, view: string, disk = 0): string {
  const name = `vm-${vmid}-disk-${disk}.qcow2`;
  return file(storage, vmid, view === 'current' ? name : `snap-${view}-${name}`);
}

async function compare(a: string, b: string, context: string): Promise<void> {
  const r = await runCommand('qemu-img', ['compare', '-f', 'qcow2', '-F', 'qcow2', a, b]);
  assert.equal(r.code, 0, `${context}: qemu-img compare ${a} ${b}: ${r.stdout}${r.stderr}`);
}

/** Guest bytes the layer itself defines (data and zero clusters), not its backing's: its delta. */
async function ownBytes(path: string): Promise<number> {
  const r = await runCommand('qemu-img', ['map', '-f', 'qcow2', '--output=json', path]);
  assert.equal(r.code, 0, r.stderr);
  const map = JSON.parse(r.stdout) as { length: number; depth: number; present: boolean }[];
  return map.filter((e) => e.depth === 0 && e.present).reduce((sum, e) => sum + e.length, 0);
}

/** Builds the branched tree as VM `vmid`'s disk 0 on aa: s1 <- s2, s1 <- s3 <- current (rollback to s1 keeps s2). */
async function makeTree(vmid: number): Promise<string> {
  const volid = `aa:${vmid}/vm-${vmid}-disk-0.qcow2`;
  await cliOk(s, ['alloc', 'aa', String(vmid), String(SIZE)]);
  const top = file('aa', vmid, `vm-${vmid}-disk-0.qcow2`);
  await writePattern(top, 0xa1, 0, MiB);
  await cliOk(s, ['snapshot', 'create', volid, 's1']);
  await writePattern(top, 0xb2, MiB, MiB);
  await cliOk(s, ['snapshot', 'create', volid, 's2']);
  await cliOk(s, ['snapshot', 'rollback', volid, 's1']);
  await writePattern(top, 0xc3, 2 * MiB, MiB);
  await cliOk(s, ['snapshot', 'create', volid, 's3']);
  await writePattern(top, 0xd4, 3 * MiB, MiB);
  // A zero write: the current layer's zero clusters must keep hiding s1's 0xa1 after the move.
  const z = await runCommand('qemu-io', ['-f', 'qcow2', '-c', `write -z 0 ${half}`, top]);
  assert.equal(z.code, 0, z.stderr);
  return volid;
}

/** Every view of the moved tree equals the reference's, every layer checks clean and names the right parent. */
async function assertMoved(storage: 'aa' | 'bb', vmid: number, context: string, disk = 0): Promise<void> {
  const name = `vm-${vmid}-disk-${disk}.qcow2`;
  const parents: Record<string, string | undefined> = { s1: undefined, s2: 's1', s3: 's1', current: 's3' };
  for (const view of [...SNAPS, 'current']) {
    const moved = viewLayer(storage, vmid, view, disk);
    await compare(viewLayer('aa', REF, view), moved, `${context}: view ${view}`);
    await assertPatterns(moved, VIEWS[view] as Expect[], `${context}: view ${view}`);
    await checkClean(moved);
    const parent = parents[view];
    const info = await imageInfo(moved);
    assert.equal(info['backing-filename'], parent === undefined ? undefined : `snap-${parent}-${name}`, `${context}: ${view}'s backing`);
    // Deltas kept: each layer defines what its reference twin defines, no more (not flattened).
    assert.equal(await ownBytes(moved), await ownBytes(viewLayer('aa', REF, view)), `${context}: ${view}'s own data`);
    if (parent !== undefined) assert.equal(info['backing-filename-format'], 'qcow2');
  }
  const listed = await cliJson<{ snapshots: { name: string; parent?: string | null }[] }>(s, ['snapshot', 'list', `${storage}:${vmid}/${name}`]);
  assert.deepEqual(listed.snapshots.map((x) => x.name).sort(), SNAPS, `${context}: the snapshots are listed`);
}

async function gone(storage: 'aa' | 'bb', vmid: number, context: string): Promise<void> {
  const left = await readdir(join(storage === 'aa' ? s.path : bbPath, 'images', String(vmid))).catch(() => [] as string[]);
  assert.deepEqual(left, [], `${context}: nothing left in ${storage}'s images/${vmid}`);
}

/** Every file and directory under the test's root. */
async function tree(dir = s.root): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(`${path}/`, ...(await tree(path)));
    else out.push(`${path} ${(await stat(path)).size}`);
  }
  return out.sort();
}

async function nothingPending(context: string): Promise<void> {
  assert.deepEqual((await cliJson<StatusJson>(s, ['status'])).pending, [], `${context}: nothing pending`);
}

before(async () => {
  s = await makeStorage({ id: 'aa' });
  bbPath = join(s.root, 'store2');
  await mkdir(bbPath);
  await appendFile(s.cfg, `\ndir: bb\n\tpath ${bbPath}\n\tcontent images\n\tsnapshot-as-volume-chain 1\n`);
  await makeTree(REF);
  for (const [view, expects] of Object.entries(VIEWS)) await assertPatterns(viewLayer('aa', REF, view), expects, `reference view ${view}`);
});

after(async () => {
  // The template's base is immutable where the file system allows (as PVE's create_base makes it).
  await clearImmutableFlags([file('aa', 900, 'base-900-disk-0.qcow2')]).catch(() => undefined);
  await s.cleanup();
});

test('move to another dir storage carries the branched tree: every view identical, deltas kept, the source removed', async () => {
  const volid = await makeTree(101);
  const out = await cliOk(s, ['move', volid, 'bb']);
  assert.equal(out.trim(), `moved ${volid} to bb:101/vm-101-disk-0.qcow2 (update the VM configuration to the new volid)`);
  await assertMoved('bb', 101, 'moved to bb');
  await gone('aa', 101, 'after the move');
  await nothingPending('after the move');
  // The moved volume works: a snapshot and a rollback on the new storage.
  await cliOk(s, ['snapshot', 'rollback', 'bb:101/vm-101-disk-0.qcow2', 's2']);
  await assertPatterns(viewLayer('bb', 101, 'current'), VIEWS.s2 as Expect[], 'rolled back to s2 after the move');
});

test('move with --vmid to another storage gives the volume the new VM id (same disk number when free) and back again', async () => {
  const volid = await makeTree(102);
  const out = await cliOk(s, ['move', volid, 'bb', '--vmid', '302']);
  assert.match(out, /to bb:302\/vm-302-disk-0\.qcow2 /);
  await assertMoved('bb', 302, 'moved to bb as VM 302');
  await gone('aa', 102, 'after the move');
  // And back onto aa, where VM 302's disk-0 is free too.
  await cliOk(s, ['move', 'bb:302/vm-302-disk-0.qcow2', 'aa']);
  await assertMoved('aa', 302, 'moved back to aa');
  await gone('bb', 302, 'after the move back');
});

test('reassign on the same storage renames every layer, rewrites the backing names, copies nothing', async () => {
  const volid = await makeTree(103);
  const inode = (await stat(file('aa', 103, 'snap-s1-vm-103-disk-0.qcow2'))).ino;
  // VM 303 already has disk-0: the volume takes the next free number.
  await cliOk(s, ['alloc', 'aa', '303', '1M']);
  const dry = await cliJson<PlansJson>(s, ['move', volid, 'aa', '--vmid', '303', '--dry-run']);
  assert.equal(dry.plans[0]?.operation, 'reassign');
  assert.equal(dry.plans[0].newVolid, 'aa:303/vm-303-disk-1.qcow2');
  assert.equal(dry.plans[0].bytesMoved, 0, 'a reassign copies nothing');
  const out = await cliOk(s, ['move', volid, 'aa', '--vmid', '303']);
  assert.match(out, /to aa:303\/vm-303-disk-1\.qcow2 /);
  await assertMoved('aa', 303, 'reassigned to VM 303', 1);
  assert.equal((await stat(file('aa', 303, 'snap-s1-vm-303-disk-1.qcow2'))).ino, inode, 'the same file, renamed (no copy)');
  await gone('aa', 103, 'after the reassign');
  await nothingPending('after the reassign');
});

test('--dry-run prints the plan with the bytes to copy and the space needed, and changes nothing', async () => {
  const volid = await makeTree(104);
  const before = await tree();
  const dry = await cliOk(s, ['move', volid, 'bb', '--dry-run']);
  assert.match(dry, /^plan: move aa:104\/vm-104-disk-0\.qcow2 with 3 snapshot layer\(s\) to bb:104\/vm-104-disk-0\.qcow2/m);
  assert.match(dry, /1\. copy the view of snap-s1-vm-104-disk-0\.qcow2 .* into new snap-s1-vm-104-disk-0\.qcow2/);
  assert.match(
    dry,
    /copy what vm-104-disk-0\.qcow2 of aa:104\/vm-104-disk-0\.qcow2 holds over its parent into new vm-104-disk-0\.qcow2 backed by snap-s3-vm-104-disk-0\.qcow2/,
  );
  assert.match(dry, /8\. check vm-104-disk-0\.qcow2 and compare its view/);
  assert.match(dry, /^then, on the source:$/m);
  assert.match(dry, /1\. remove vm-104-disk-0\.qcow2/);
  assert.match(dry, /^bytes to copy: [\d.]+ MiB \(\d+ bytes\) in 4 layer\(s\)$/m);
  assert.match(dry, /^space needed on the target: [\d.]+ [KM]iB \(\d+ bytes\) of .* free$/m);
  const json = await cliJson<PlansJson>(s, ['move', volid, 'bb', '--dry-run']);
  const plan = json.plans[0];
  assert.equal(plan?.operation, 'move');
  assert.equal(plan.steps.length, 8);
  assert.equal(plan.move?.finish?.steps.length, 4);
  // 1 MiB (s1) + 1 MiB (s2) + 1 MiB (s3) + 1.5 MiB (current: 1 MiB data, 0.5 MiB zeroes): each layer once.
  assert.equal(plan.move?.bytesToCopy, 4 * MiB + half);
  assert.ok(plan.move.spaceNeededBytes >= 4 * MiB, JSON.stringify(plan.move));
  assert.deepEqual(await tree(), before, 'a dry run changes nothing');
});

test('bad input is refused with its exit status and changes nothing', async () => {
  const volid = await makeTree(105);
  await cliOk(s, ['alloc', 'bb', '105', '1M']); // takes bb:105/vm-105-disk-0.qcow2
  await cliOk(s, ['alloc', 'aa', '106', '1M', '--format', 'raw']);
  const before = await tree();
  await cliFails(s, ['move', volid, 'nosuch'], { code: 3, match: /storage 'nosuch' is not defined/ });
  await cliFails(s, ['move', volid, 'aa'], { code: 2, match: /on storage 'aa' already: give another storage, or --vmid/ });
  await cliFails(s, ['move', volid, 'aa', '--vmid', '105'], { code: 2, match: /on storage 'aa' already/ });
  await cliFails(s, ['move', volid, 'bb'], { code: 4, match: /vm-105-disk-0\.qcow2 already exist\(s\) on storage 'bb' for VM 105/ });
  await cliFails(s, ['move', volid, 'bb', '--vmid', 'x1'], { code: 2, match: /VM id/ });
  await cliFails(s, ['move', 'aa:105/vm-105-disk-9.qcow2', 'bb', '--vmid', '405'], { code: 3, match: /does not exist/ });
  await cliFails(s, ['move', 'aa:106/vm-106-disk-0.raw', 'bb'], { code: 5, match: /raw volume/ });
  assert.deepEqual(await tree(), before, 'refused moves change nothing, not even a lock file');
  // A running VM (its QMP socket answers) is refused.
  const vm = await startVm(s, [volid]);
  try {
    await cliFails(s, ['move', volid, 'bb', '--vmid', '405', '--qmp', vm.socket], { code: 6, match: /VM 105 is running .*: move of .* needs the VM stopped/ });
    await cliFails(s, ['move', volid, 'aa', '--vmid', '405', '--qmp', vm.socket], {
      code: 6,
      match: /VM 105 is running .*: reassign of .* needs the VM stopped/,
    });
  } finally {
    await vm.stop();
  }
  await gone('bb', 405, 'after refusing a running VM');
  for (const view of [...SNAPS, 'current']) await compare(viewLayer('aa', REF, view), viewLayer('aa', 105, view), `source ${view} after the refusals`);
});

test('SIGKILL at every step of a move, then repair: before the point of no return the copies go, after it the move finishes', async () => {
  let vmid = 500;
  const points: [string, number, string][] = [];
  for (let step = 1; step <= 8; step++) points.push(['move', step, 'started']);
  points.push(['move', 8, 'after']);
  for (let step = 1; step <= 4; step++) points.push(['move-finish', step, 'started']);
  points.push(['move-finish', 4, 'after']);
  for (const [op, step, moment] of points) {
    vmid++;
    const label = `crash at ${op}:${step}:${moment}`;
    const volid = await makeTree(vmid);
    const run = await cli(s, ['move', volid, 'bb'], { env: { VOLCHAIN_CRASH_AT: `${op}:${step}:${moment}` } });
    assert.equal(run.code, 128, `${label}: the process was expected to die (${run.stderr})`);
    const pending = (await cliJson<StatusJson>(s, ['status'])).pending;
    assert.equal(pending.length, 1, `${label}: one unfinished operation`);
    // Until repaired, the VM is refused other operations (exit 7).
    await cliFails(s, ['snapshot', 'create', op === 'move' ? `bb:${vmid}/vm-${vmid}-disk-0.qcow2` : volid, 'xx'], { code: 7 });
    const repaired = await cliOk(s, ['repair', '--all']);
    assert.match(repaired, op === 'move' ? /finish undoing move/ : /finish move-finish/, label);
    await nothingPending(label);
    if (op === 'move') {
      // Before the point of no return: no copy left on bb, the source whole on aa.
      await gone('bb', vmid, label);
      for (const view of [...SNAPS, 'current']) await compare(viewLayer('aa', REF, view), viewLayer('aa', vmid, view), `${label}: source ${view}`);
    } else {
      await assertMoved('bb', vmid, label);
      await gone('aa', vmid, label);
    }
  }
  assert.equal(points.length, 14);
});

test('SIGKILL at every step of a reassign, then repair: the reassign is finished, every view intact', async () => {
  let vmid = 600;
  for (let step = 1; step <= 7; step++) {
    vmid++;
    const label = `crash at reassign:${step}`;
    const volid = await makeTree(vmid);
    const run = await cli(s, ['move', volid, 'aa', '--vmid', String(vmid + 100)], { env: { VOLCHAIN_CRASH_AT: `reassign:${step}:started` } });
    assert.equal(run.code, 128, `${label}: the process was expected to die (${run.stderr})`);
    assert.equal((await cliJson<StatusJson>(s, ['status'])).pending.length, 1, `${label}: one unfinished operation`);
    const repaired = await cliOk(s, ['repair', volid]);
    assert.match(repaired, /finish reassign/, label);
    await nothingPending(label);
    await assertMoved('aa', vmid + 100, label);
    await gone('aa', vmid, label);
  }
});

test('a failing step of a move is undone: no copy on the target, the source intact, no journal', async () => {
  const volid = await makeTree(700);
  const r = await cli(s, ['move', volid, 'bb'], { env: { VOLCHAIN_FAIL_AT: 'move:6' } });
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /injected failure at move step 6 .*nothing was changed/);
  await gone('bb', 700, 'after a failed verify');
  await nothingPending('after a failed move');
  for (const view of [...SNAPS, 'current']) await compare(viewLayer('aa', REF, view), viewLayer('aa', 700, view), `source ${view}`);
});

test('a linked clone moves with a copy of its base as its bottom layer, and reassigns keeping its base', async () => {
  // A template (base-900-disk-0.qcow2) and PVE's linked clone layout: ../900/base-900-disk-0.qcow2 as backing.
  await cliOk(s, ['alloc', 'aa', '900', String(SIZE)]);
  await writePattern(file('aa', 900, 'vm-900-disk-0.qcow2'), 0x90, 0, 2 * MiB);
  await cliOk(s, ['template', 'aa:900/vm-900-disk-0.qcow2']);
  const base = file('aa', 900, 'base-900-disk-0.qcow2');
  await mkdir(join(s.path, 'images', '901'));
  const top = file('aa', 901, 'vm-901-disk-0.qcow2');
  const made = await runCommand('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', '../900/base-900-disk-0.qcow2', top, String(SIZE)]);
  assert.equal(made.code, 0, made.stderr);
  const volid = 'aa:900/base-900-disk-0.qcow2/901/vm-901-disk-0.qcow2';
  await writePattern(top, 0x91, MiB, MiB);
  await cliOk(s, ['snapshot', 'create', volid, 'c1']);
  await writePattern(top, 0x92, 3 * MiB, MiB);
  const expects: Record<string, Expect[]> = {
    c1: [pat(0x90, 0, MiB), pat(0x91, MiB, MiB), pat(0, 2 * MiB, 2 * MiB)],
    current: [pat(0x90, 0, MiB), pat(0x91, MiB, MiB), pat(0, 2 * MiB, MiB), pat(0x92, 3 * MiB, MiB)],
  };
  const baseBefore = (await stat(base)).mtimeMs;

  // Reassign in place: the clone's layers go to VM 902, its bottom layer still names the same base.
  const reassigned = await cliOk(s, ['move', volid, 'aa', '--vmid', '902']);
  assert.match(reassigned, /to aa:900\/base-900-disk-0\.qcow2\/902\/vm-902-disk-0\.qcow2 /);
  const bottom = file('aa', 902, 'snap-c1-vm-902-disk-0.qcow2');
  assert.equal((await imageInfo(bottom))['backing-filename'], '../900/base-900-disk-0.qcow2');
  await assertPatterns(bottom, expects.c1 as Expect[], 'reassigned clone c1');
  await assertPatterns(file('aa', 902, 'vm-902-disk-0.qcow2'), expects.current as Expect[], 'reassigned clone current');

  // Move to bb: the bottom layer holds the base's data and has no backing; the base stays on aa, unchanged.
  await cliOk(s, ['move', 'aa:902/vm-902-disk-0.qcow2', 'bb']);
  const movedBottom = file('bb', 902, 'snap-c1-vm-902-disk-0.qcow2');
  assert.equal((await imageInfo(movedBottom))['backing-filename'], undefined, 'the moved bottom layer stands alone');
  await assertPatterns(movedBottom, expects.c1 as Expect[], 'moved clone c1');
  await assertPatterns(file('bb', 902, 'vm-902-disk-0.qcow2'), expects.current as Expect[], 'moved clone current');
  await checkClean(movedBottom);
  await gone('aa', 902, 'after moving the clone');
  assert.equal((await stat(base)).mtimeMs, baseBefore, 'the base was never written');
});

test('through the library: every copy and check is a long step reporting progress up to 100%, then the source removal', async () => {
  const volid = await makeTree(710);
  const text = await readFile(s.cfg, 'utf8');
  const vc = new Volchain(parseStorageConfig(text, s.cfg));
  const events: EngineEvent[] = [];
  const plan = await vc.move(volid, 'bb', { onEvent: (e) => events.push(e) });
  assert.equal(plan.newVolid, 'bb:710/vm-710-disk-0.qcow2');
  const steps = events.filter((e) => e.type === 'step');
  // The move's eight steps on bb (copies, then checks: all long), then the four removals on aa.
  assert.deepEqual(
    steps.map((e) => [e.volid, e.index, e.long]),
    [...[0, 1, 2, 3, 4, 5, 6, 7].map((i) => ['bb:710/vm-710-disk-0.qcow2', i, true]), ...[0, 1, 2, 3].map((i) => [volid, i, false])],
  );
  for (let index = 0; index < 8; index++) {
    const percents = events
      .filter((e) => e.type === 'progress' && e.volid === plan.volid && e.index === index)
      .map((e) => (e.type === 'progress' ? e.percent : -1));
    assert.equal(Math.max(...percents), 100, `step ${index + 1} reached 100%`);
  }
  await assertMoved('bb', 710, 'moved through the library');
  await gone('aa', 710, 'moved through the library');
});
