/**
 * `volchain clone` on dir storages, with real qemu-img/qemu-io on real files: a branched snapshot tree is
 * cloned (its current state and every snapshot's view) to another VM on the same storage and on a second
 * storage; each clone is compared with its source view (`qemu-img compare`), read back by pattern, checked
 * clean, and shown to be independent of its source. Bad input changes nothing; a SIGKILL at every step
 * followed by `repair` leaves no clone or a whole one, and the source intact.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFile, mkdir, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import {
  MiB,
  assertPatterns,
  checkAllLayers,
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
import { acquireLock } from '../../src/engine/session/lock.js';

const SIZE = 64 * MiB;
const SRC = 'aa:100/vm-100-disk-0.qcow2';

let s: TestStorage;
/** The second storage's directory (`bb` in the same storage.cfg). */
let bbPath: string;

/** What each view of the source holds, 1 MiB ranges (zero where nothing was written). */
const VIEWS: Record<string, Expect[]> = {
  s1: [pat(0xa1, 0), pat(0, 1), pat(0, 2), pat(0, 3)],
  s2: [pat(0xa1, 0), pat(0xb2, 1), pat(0, 2), pat(0, 3)],
  s3: [pat(0xa1, 0), pat(0, 1), pat(0xc3, 2), pat(0, 3)],
  current: [pat(0xa1, 0), pat(0, 1), pat(0xc3, 2), pat(0xd4, 3)],
};

function pat(byte: number, mib: number): Expect {
  return { byte, offset: mib * MiB, len: MiB };
}

/** File of layer `name` of VM `vmid` on storage aa or bb. */
function file(storage: 'aa' | 'bb', vmid: number, name: string): string {
  return join(storage === 'aa' ? s.path : bbPath, 'images', String(vmid), name);
}

/** The source layer whose view is `view`. */
function sourceLayer(view: string): string {
  return file('aa', 100, view === 'current' ? 'vm-100-disk-0.qcow2' : `snap-${view}-vm-100-disk-0.qcow2`);
}

async function compare(a: string, b: string): Promise<void> {
  const r = await runCommand('qemu-img', ['compare', '-f', 'qcow2', '-F', 'qcow2', a, b]);
  assert.equal(r.code, 0, `qemu-img compare ${a} ${b}: ${r.stdout}${r.stderr}`);
}

/** Every file and directory under the test's root (both storages, their state directories, the config). */
async function tree(dir = s.root): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(`${path}/`, ...(await tree(path)));
    else out.push(`${path} ${(await stat(path)).size}`);
  }
  return out.sort();
}

async function sourceIntact(context: string): Promise<void> {
  for (const [view, expects] of Object.entries(VIEWS)) await assertPatterns(sourceLayer(view), expects, `${context}: source view ${view}`);
  assert.equal(await checkAllLayers(s.path, 100), 4, `${context}: the source's four layers check clean`);
}

async function noTemporaries(context: string): Promise<void> {
  for (const root of [s.path, bbPath]) {
    const images = join(root, 'images');
    const vmids = await readdir(images).catch(() => [] as string[]);
    for (const vmid of vmids) {
      const names = await readdir(join(images, vmid));
      assert.deepEqual(
        names.filter((n) => n.includes('volchain-tmp')),
        [],
        `${context}: no temporary left in ${images}/${vmid}`,
      );
    }
  }
}

before(async () => {
  s = await makeStorage({ id: 'aa' });
  bbPath = join(s.root, 'store2');
  await mkdir(bbPath);
  await appendFile(s.cfg, `\ndir: bb\n\tpath ${bbPath}\n\tcontent images\n\tsnapshot-as-volume-chain 1\n`);
  // The branched tree: s1 <- s2, s1 <- s3 <- current (a rollback to s1 keeps s2 as a branch).
  await cliOk(s, ['alloc', 'aa', '100', String(SIZE)]);
  const top = sourceLayer('current');
  await writePattern(top, 0xa1, 0, MiB);
  await cliOk(s, ['snapshot', 'create', SRC, 's1']);
  await writePattern(top, 0xb2, MiB, MiB);
  await cliOk(s, ['snapshot', 'create', SRC, 's2']);
  await cliOk(s, ['snapshot', 'rollback', SRC, 's1']);
  await writePattern(top, 0xc3, 2 * MiB, MiB);
  await cliOk(s, ['snapshot', 'create', SRC, 's3']);
  await writePattern(top, 0xd4, 3 * MiB, MiB);
  await sourceIntact('setup');
});

after(async () => {
  await s.cleanup();
});

test('clone copies the current state and every snapshot of a branched tree, to the same and to a second storage', async () => {
  let made = 0;
  for (const [storage, vmid] of [
    ['aa', 200],
    ['bb', 300],
  ] as const) {
    for (const [n, view] of ['current', 's1', 's2', 's3'].entries()) {
      const args = ['clone', SRC, storage, String(vmid), ...(view === 'current' ? [] : ['--snapshot', view])];
      const out = await cliOk(s, args);
      const name = `vm-${vmid}-disk-${n}.qcow2`;
      assert.equal(out.trim(), `cloned ${view === 'current' ? '' : `snapshot '${view}' of `}${SRC} to ${storage}:${vmid}/${name}`);
      const copy = file(storage, vmid, name);
      await compare(sourceLayer(view), copy);
      await assertPatterns(copy, VIEWS[view] as Expect[], `clone of ${view} on ${storage}`);
      await checkClean(copy);
      const info = await imageInfo(copy);
      assert.equal(info['virtual-size'], SIZE, 'the virtual size is kept exactly');
      assert.equal(info['backing-filename'], undefined, 'a full clone has no backing file');
      assert.equal(info['format-specific']?.data?.['extended-l2'], true, "the clone is made with volchain's qcow2 options");
      const listing = await cliJson<{ snapshots: unknown[] }>(s, ['snapshot', 'list', `${storage}:${vmid}/${name}`]);
      assert.deepEqual(listing.snapshots, [], 'the clone has no snapshots');
      made++;
    }
  }
  assert.equal(made, 8);
  await noTemporaries('after the clones');
  await sourceIntact('after the clones');
});

test('a raw volume clones into a qcow2 volume with the same data and virtual size', async () => {
  await cliOk(s, ['alloc', 'aa', '110', String(SIZE), '--format', 'raw']);
  const raw = file('aa', 110, 'vm-110-disk-0.raw');
  await writePattern(raw, 0x5e, 5 * MiB, MiB, 'raw');
  await cliOk(s, ['clone', 'aa:110/vm-110-disk-0.raw', 'bb', '110']);
  const copy = file('bb', 110, 'vm-110-disk-0.qcow2');
  const r = await runCommand('qemu-img', ['compare', '-f', 'raw', '-F', 'qcow2', raw, copy]);
  assert.equal(r.code, 0, `raw source vs qcow2 clone: ${r.stdout}${r.stderr}`);
  assert.equal((await imageInfo(copy))['virtual-size'], SIZE);
  await assertPatterns(copy, [pat(0x5e, 5), pat(0, 4)], 'clone of a raw volume');
});

test('a clone is independent: writes to it leave the source alone, and it outlives the source', async () => {
  await cliOk(s, ['clone', SRC, 'bb', '120', '--snapshot', 's2']);
  const copy = file('bb', 120, 'vm-120-disk-0.qcow2');
  await writePattern(copy, 0xee, 0, MiB);
  await assertPatterns(copy, [pat(0xee, 0), pat(0xb2, 1)], 'written clone');
  await sourceIntact('after writing to a clone');
  // A second source, cloned then freed: the clone still reads every byte.
  await cliOk(s, ['alloc', 'aa', '130', String(SIZE)]);
  await writePattern(file('aa', 130, 'vm-130-disk-0.qcow2'), 0x77, 0, 2 * MiB);
  await cliOk(s, ['snapshot', 'create', 'aa:130/vm-130-disk-0.qcow2', 'keep']);
  await writePattern(file('aa', 130, 'vm-130-disk-0.qcow2'), 0x78, MiB, MiB);
  await cliOk(s, ['clone', 'aa:130/vm-130-disk-0.qcow2', 'aa', '131']);
  await cliOk(s, ['free', 'aa:130/vm-130-disk-0.qcow2']);
  await assert.rejects(stat(file('aa', 130, 'vm-130-disk-0.qcow2')), 'the source is gone');
  await assertPatterns(file('aa', 131, 'vm-131-disk-0.qcow2'), [pat(0x77, 0), pat(0x78, 1), pat(0, 2)], 'clone of a freed source');
  await checkClean(file('aa', 131, 'vm-131-disk-0.qcow2'));
});

test('--name gives the clone its name; --dry-run prints the plan with the bytes to copy and the space needed, and changes nothing', async () => {
  const before = await tree();
  const dry = await cliOk(s, ['clone', SRC, 'bb', '140', '--snapshot', 's3', '--name', 'vm-140-copy.qcow2', '--dry-run']);
  assert.match(dry, /^plan: copy snapshot 's3' of aa:100\/vm-100-disk-0\.qcow2 into the new volume bb:140\/vm-140-copy\.qcow2/m);
  assert.match(dry, /1\. copy snapshot 's3' .* into new \.volchain-tmp-clone-vm-140-copy\.qcow2/);
  assert.match(dry, /2\. compare \.volchain-tmp-clone-vm-140-copy\.qcow2 with snapshot 's3'/);
  assert.match(dry, /3\. rename \.volchain-tmp-clone-vm-140-copy\.qcow2 -> vm-140-copy\.qcow2/);
  assert.match(dry, /^bytes moved: 2 MiB \(2097152 bytes\)$/m, 'the view of s3 holds 2 MiB of data');
  assert.match(dry, /^space needed on the target: [\d.]+ [KM]iB \(\d+ bytes\) of .* free$/m);
  const json = await cliJson<PlansJson>(s, ['clone', SRC, 'bb', '140', '--snapshot', 's3', '--name', 'vm-140-copy.qcow2', '--dry-run']);
  assert.equal(json.dryRun, true);
  const plan = json.plans[0];
  assert.equal(plan?.operation, 'clone');
  assert.equal(plan.volid, 'bb:140/vm-140-copy.qcow2');
  assert.equal(plan.bytesMoved, 2 * MiB);
  assert.ok(plan.clone && plan.clone.spaceNeededBytes >= 2 * MiB && plan.clone.spaceNeededBytes < 4 * MiB, JSON.stringify(plan.clone));
  assert.deepEqual(await tree(), before, 'a dry run changes nothing');
  await cliOk(s, ['clone', SRC, 'bb', '140', '--snapshot', 's3', '--name', 'vm-140-copy.qcow2']);
  await compare(sourceLayer('s3'), file('bb', 140, 'vm-140-copy.qcow2'));
});

test('bad input is refused with its exit status and changes nothing', async () => {
  await cliOk(s, ['alloc', 'bb', '150', '1M', '--name', 'vm-150-taken.qcow2']);
  const before = await tree();
  await cliFails(s, ['clone', SRC, 'bb', '150', '--snapshot', 'nope'], { code: 3, match: /snapshot 'nope' of aa:100\/vm-100-disk-0\.qcow2 does not exist/ });
  await cliFails(s, ['clone', SRC, 'bb', '150', '--snapshot', 'S1'], { code: 3, match: /did you mean 's1'/ });
  await cliFails(s, ['clone', SRC, 'bb', '150', '--snapshot', '1bad'], { code: 2, match: /snapshot name/i });
  await cliFails(s, ['clone', SRC, 'bb', '12'], { code: 2, match: /VM id "12" is not valid/ });
  await cliFails(s, ['clone', SRC, 'bb', 'abc'], { code: 2, match: /VM id/ });
  await cliFails(s, ['clone', SRC, 'bb', '150', '--name', 'vm-150-taken.qcow2'], { code: 4, match: /bb:150\/vm-150-taken\.qcow2 already exists/ });
  await cliFails(s, ['clone', SRC, 'bb', '150', '--name', 'vm-150-x.raw'], { code: 2, match: /always qcow2/ });
  await cliFails(s, ['clone', SRC, 'bb', '150', '--name', 'vm-151-x.qcow2'], { code: 2 });
  await cliFails(s, ['clone', SRC, 'nosuch', '150'], { code: 3, match: /storage 'nosuch' is not defined/ });
  await cliFails(s, ['clone', 'aa:100/vm-100-disk-7.qcow2', 'bb', '150'], { code: 3, match: /does not exist/ });
  assert.deepEqual(await tree(), before, 'refused clones change nothing, not even a lock file');
});

test("the source VM's lock held by another operation: the clone waits, then is refused (exit 6) and changes nothing", async () => {
  const held = await acquireLock(join(s.path, '.volchain', 'locks', '100.lock'), 'snapshot-delete', 1000);
  try {
    const before = await tree();
    await cliFails(s, ['clone', SRC, 'bb', '170'], { code: 6, match: /lock/i, env: { VOLCHAIN_LOCK_TIMEOUT: '0.2' } });
    assert.deepEqual(
      (await tree()).filter((f) => !f.includes('/.volchain/locks/')),
      before.filter((f) => !f.includes('/.volchain/locks/')),
      'nothing but a lock file',
    );
  } finally {
    await held.release();
  }
});

test("a running VM's current state is refused; its snapshots (frozen) clone", async () => {
  await cliOk(s, ['alloc', 'aa', '160', String(SIZE)]);
  const volid = 'aa:160/vm-160-disk-0.qcow2';
  await writePattern(file('aa', 160, 'vm-160-disk-0.qcow2'), 0x16, 0, MiB);
  await cliOk(s, ['snapshot', 'create', volid, 'frozen']);
  const vm = await startVm(s, [volid]);
  try {
    await cliFails(s, ['clone', volid, 'bb', '160', '--qmp', vm.socket], {
      code: 6,
      match: /VM 160 is running .*: clone of .* needs the VM stopped: .*\(--snapshot\)/,
    });
    await cliOk(s, ['clone', volid, 'bb', '160', '--snapshot', 'frozen', '--qmp', vm.socket]);
  } finally {
    await vm.stop();
  }
  await assertPatterns(file('bb', 160, 'vm-160-disk-0.qcow2'), [pat(0x16, 0), pat(0, 1)], 'clone of a running VM snapshot');
});

test('SIGKILL at every step, then repair: no clone or a whole one, the source intact', async () => {
  let vmid = 500;
  let covered = 0;
  for (const step of [1, 2, 3]) {
    for (const moment of ['before', 'started', 'after']) {
      vmid++;
      const label = `crash at clone:${step}:${moment}`;
      const target = `bb:${vmid}/vm-${vmid}-disk-0.qcow2`;
      const run = await cli(s, ['clone', SRC, 'bb', String(vmid), '--snapshot', 's2'], { env: { VOLCHAIN_CRASH_AT: `clone:${step}:${moment}` } });
      assert.equal(run.code, 128, `${label}: the process was expected to die (${run.stderr})`);
      const status = await cliJson<StatusJson>(s, ['status']);
      assert.equal(status.pending.length, 1, `${label}: the journal says the clone is unfinished`);
      // Until repaired, another operation on the target VM is refused (exit 7).
      await cliFails(s, ['clone', SRC, 'bb', String(vmid)], { code: 7, match: /unfinished clone/ });
      const repaired = await cliOk(s, ['repair', target]);
      // Before the final rename repair walks the clone back (it never redoes a copy); from it on, it finishes.
      assert.match(repaired, step === 3 ? /finish clone \(\d of 3 steps left\)/ : new RegExp(`finish undoing clone \\(it failed at step ${step}:`), label);
      assert.deepEqual((await cliJson<StatusJson>(s, ['status'])).pending, [], `${label}: nothing pending after repair`);
      await noTemporaries(label);
      const copy = file('bb', vmid, `vm-${vmid}-disk-0.qcow2`);
      // The final rename is the point of no return: from the start of step 3 on, repair finishes the clone.
      if (step === 3) {
        await compare(sourceLayer('s2'), copy);
        await checkClean(copy);
      } else {
        await assert.rejects(stat(copy), `${label}: no clone under the final name`);
        const listed = await cliJson<{ volumes: { volid: string }[] }>(s, ['list', 'bb', '--vmid', String(vmid)]).catch(() => ({ volumes: [] }));
        assert.deepEqual(
          listed.volumes.map((v) => v.volid),
          [],
          `${label}: ${target} does not exist`,
        );
      }
      covered++;
    }
  }
  assert.equal(covered, 9);
  await sourceIntact('after the crashes');
});

test('a step that fails is undone: no temporary, no clone, no journal', async () => {
  const r = await cli(s, ['clone', SRC, 'bb', '600'], { env: { VOLCHAIN_FAIL_AT: 'clone:2' } });
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /injected failure at clone step 2 .*nothing was changed/);
  await noTemporaries('after a failed verify');
  await assert.rejects(stat(file('bb', 600, 'vm-600-disk-0.qcow2')));
  assert.deepEqual((await cliJson<StatusJson>(s, ['status'])).pending, []);
});
