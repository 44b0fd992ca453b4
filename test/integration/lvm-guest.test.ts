/**
 * Runs the real-LVM tests (dist/test/lvm/*.test.js) where LVM can work:
 * - on a kernel with device-mapper (`dmsetup version` works) and as root: here, on a volume group made on a
 *   loop device over a sparse file;
 * - otherwise inside a throw-away QEMU guest (scripts/lvm-vm/run-in-vm.sh, booted once), whose kernel has
 *   device-mapper: a scratch disk becomes the VG, the guest sees this checkout at the same path and runs
 *   `node --test` on the same compiled files.
 * Either way this test passes only when every LVM test passed, and shows their output when one did not.
 * scripts/run-tests.mjs never runs dist/test/lvm/ itself.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deviceMapperWorks } from '../../src/tools/lvm.js';
import { ROOT, runCommand, type RunResult } from './helpers.js';

const LVM_TESTS = join('dist', 'test', 'lvm');
const GUEST_SCRIPT = join(ROOT, 'scripts', 'lvm-vm', 'run-in-vm.sh');
/** Scratch disk (sparse) for the test VG. */
const VG_DISK_SIZE = '3G';
/** A second, small VG: `move` between two LVM storages on different VGs (test/lvm/move.test.ts). */
const VG2_DISK_SIZE = '256M';
const TIMEOUT_MS = 75 * 60_000;

async function lvmTestFiles(): Promise<string[]> {
  const files = (await readdir(join(ROOT, LVM_TESTS))).filter((f) => f.endsWith('.test.js')).sort();
  return files.map((f) => join(LVM_TESTS, f));
}

function env(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const e: NodeJS.ProcessEnv = { ...process.env, LC_ALL: 'C', LVM_SUPPRESS_FD_WARNINGS: '1' };
  for (const key of Object.keys(e)) if (key.startsWith('VOLCHAIN_')) delete e[key];
  return { ...e, ...extra };
}

interface Summary {
  tests: number;
  pass: number;
  fail: number;
  skipped: number;
}

/** The TAP summary node's test runner prints at the end (`# pass 12`, ...). */
function summary(output: string): Summary {
  const count = (word: string): number => Number(new RegExp(`^# ${word} (\\d+)$`, 'm').exec(output)?.[1] ?? NaN);
  return { tests: count('tests'), pass: count('pass'), fail: count('fail'), skipped: count('skipped') };
}

/** "12.3 s  <test name>" for every test in a TAP report (each `ok N - name` is followed by its duration). */
function testDurations(tap: string): string[] {
  const out: string[] = [];
  let name: string | undefined;
  for (const line of tap.split('\n')) {
    const ok = /^\s*ok \d+ - (.*)$/.exec(line);
    if (ok) name = ok[1];
    const ms = /^\s*duration_ms: ([\d.]+)$/.exec(line);
    if (ms && name !== undefined) {
      out.push(`${(Number(ms[1]) / 1000).toFixed(1).padStart(6)} s  ${name}`);
      name = undefined;
    }
  }
  return out;
}

function assertAllPassed(r: RunResult, where: string, files: readonly string[]): Summary {
  const output = `${r.stdout}\n${r.stderr}`;
  const s = summary(r.stdout);
  const ok = r.code === 0 && s.fail === 0 && s.skipped === 0 && s.pass > 0 && s.pass === s.tests;
  assert.ok(
    ok,
    `LVM tests ${where} failed (exit ${r.code}; tests ${s.tests}, pass ${s.pass}, fail ${s.fail}, skipped ${s.skipped}; ` +
      `files: ${files.join(' ')}):\n${output}`,
  );
  return s;
}

async function onThisHost(files: readonly string[]): Promise<{ result: RunResult; where: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'volchain-lvm-loop-'));
  const vgs = [
    { vg: `volchain_test_${process.pid}`, size: VG_DISK_SIZE, loop: '' },
    { vg: `volchain_test2_${process.pid}`, size: VG2_DISK_SIZE, loop: '' },
  ];
  try {
    for (const [i, v] of vgs.entries()) {
      const image = join(dir, `pv${i}.img`);
      await runCommand('truncate', ['-s', v.size, image]);
      const attached = await runCommand('losetup', ['--find', '--show', image]);
      assert.equal(attached.code, 0, `losetup: ${attached.stderr}`);
      v.loop = attached.stdout.trim();
      for (const [cmd, args] of [
        ['pvcreate', ['-q', v.loop]],
        ['vgcreate', ['-q', v.vg, v.loop]],
      ] as const) {
        const r = await runCommand(cmd, args, { env: env() });
        assert.equal(r.code, 0, `${cmd}: ${r.stderr}`);
      }
    }
    const result = await runCommand(process.execPath, ['--test', '--test-concurrency=3', ...files], {
      env: env({ VOLCHAIN_TEST_VG: vgs[0]?.vg ?? '', VOLCHAIN_TEST_VG2: vgs[1]?.vg ?? '' }),
      cwd: ROOT,
    });
    return { result, where: `on this host (VGs ${vgs.map((v) => `${v.vg} on ${v.loop}`).join(', ')})` };
  } finally {
    for (const v of vgs) {
      if (!v.loop) continue;
      await runCommand('vgremove', ['-f', '-y', v.vg], { env: env() });
      await runCommand('pvremove', ['-y', v.loop], { env: env() });
      await runCommand('losetup', ['-d', v.loop]);
    }
    await rm(dir, { recursive: true, force: true });
  }
}

async function inGuest(files: readonly string[]): Promise<{ result: RunResult; where: string }> {
  const command = [
    'set -e',
    'pvcreate -q /dev/vdb >/dev/null',
    'vgcreate -q vgtest /dev/vdb >/dev/null',
    'pvcreate -q /dev/vdc >/dev/null',
    'vgcreate -q vgtest2 /dev/vdc >/dev/null',
    // The shell (not node 20) expands nothing here: the host listed the files.
    `VOLCHAIN_TEST_VG=vgtest VOLCHAIN_TEST_VG2=vgtest2 node --test --test-concurrency=3 ${files.join(' ')}`,
  ].join('\n');
  const result = await runCommand('bash', [GUEST_SCRIPT, command], {
    env: env({ VM_DISKS: `${VG_DISK_SIZE} ${VG2_DISK_SIZE}`, VM_WORKDIR: ROOT, VM_MEM: '1536', VM_TIMEOUT: String(TIMEOUT_MS / 1000 - 60) }),
    cwd: ROOT,
  });
  if (result.code === 125 || result.code === 124) {
    assert.fail(`the LVM test guest did not ${result.code === 124 ? 'finish in time' : 'boot'} (exit ${result.code}):\n${result.stderr.slice(-4000)}`);
  }
  return { result, where: 'in a QEMU guest (scripts/lvm-vm/run-in-vm.sh)' };
}

test('every test on real LVM passes (loop device here, else a QEMU guest with device-mapper)', { timeout: TIMEOUT_MS }, async (t) => {
  const files = await lvmTestFiles();
  assert.ok(files.length > 0, `no LVM tests under ${LVM_TESTS}: build first`);
  const started = Date.now();
  const local = (await deviceMapperWorks()) && process.getuid?.() === 0;
  const { result, where } = local ? await onThisHost(files) : await inGuest(files);
  const s = assertAllPassed(result, where, files);
  t.diagnostic(`${s.pass} LVM tests passed ${where} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  for (const line of testDurations(result.stdout)) t.diagnostic(line);
});
