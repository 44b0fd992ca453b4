/**
 * The test guest (scripts/lvm-vm/run-in-vm.sh) chooses its accelerator by proof: KVM only after a probe boot
 * under KVM succeeded on this host boot, else TCG. Proven with a fake `qemu-system-x86_64` first on PATH that
 * aborts like QEMU on a broken nested KVM (exit 134 after "failed to set MSR 0x10a") whenever `-accel kvm` is
 * given and otherwise runs the real QEMU, logging every argv. `VM_KVM_DEV` points at a writable file so the
 * probe also runs on hosts without /dev/kvm; each test has its own cache directory (the kernel and initrd are
 * links to the project's cached ones), so the verdict cached by one test never answers another. With
 * FAKE_QEMU_HANGS=N the fake's first N starts hang like a guest that never reaches its init (seen in CI
 * under TCG on a loaded host), to prove the boot watchdog.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT, runCommand, type RunResult } from './helpers.js';

const GUEST_SCRIPT = join(ROOT, 'scripts', 'lvm-vm', 'run-in-vm.sh');
const KERNEL_CACHE = join(ROOT, '.cache', 'lvmvm');
const TIMEOUT_MS = 10 * 60_000;

let work = '';
let fakeBin = '';
let realQemu = '';

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'volchain-accel-'));
  realQemu = (await runCommand('bash', ['-c', 'command -v qemu-system-x86_64'])).stdout.trim();
  assert.ok(realQemu, 'qemu-system-x86_64 is not installed (scripts/setup.sh installs it)');
  // The kernel and initrd the guests boot: built once into the project's cache, no guest started.
  const r = await runCommand('bash', [GUEST_SCRIPT, 'true'], { env: { ...process.env, VM_PREPARE_ONLY: '1' }, cwd: ROOT });
  assert.equal(r.code, 0, `building the test guest's kernel failed:\n${r.stderr}`);
  fakeBin = join(work, 'bin');
  await mkdir(fakeBin);
  const fake = join(fakeBin, 'qemu-system-x86_64');
  await writeFile(
    fake,
    [
      '#!/bin/bash',
      '# Like QEMU on a nested host whose hypervisor refuses IA32_ARCH_CAPABILITIES: KVM aborts at once.',
      'printf "%s\\n" "$*" >> "$FAKE_QEMU_LOG"',
      'n=$(grep -c . "$FAKE_QEMU_LOG")',
      'if [ "$n" -le "${FAKE_QEMU_HANGS:-0}" ]; then exec sleep 900; fi   # a boot that never reaches init',
      'prev=',
      'for a in "$@"; do',
      '  if [ "$prev" = -accel ] && [ "${a%%,*}" = kvm ]; then',
      '    echo "qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69" >&2; exit 134',
      '  fi',
      '  prev=$a',
      'done',
      `exec ${realQemu} "$@"`,
      '',
    ].join('\n'),
  );
  await chmod(fake, 0o755);
});

after(async () => {
  await rm(work, { recursive: true, force: true });
});

interface GuestRun extends RunResult {
  /** argv of every qemu-system-x86_64 start, in order. */
  qemuCalls: string[];
  cache: string;
}

/** A fresh cache directory sharing the project's kernel, and a writable stand-in for /dev/kvm. */
async function freshCache(name: string): Promise<{ cache: string; kvmDev: string }> {
  const cache = join(work, name);
  await mkdir(cache);
  for (const f of ['vmlinux', 'initrd.img', 'recipe']) await symlink(join(KERNEL_CACHE, f), join(cache, f));
  const kvmDev = join(cache, 'fake-kvm');
  await writeFile(kvmDev, '');
  return { cache, kvmDev };
}

async function runGuest(cache: string, command: string, env: Record<string, string>): Promise<GuestRun> {
  const log = join(cache, `qemu-calls.${Date.now()}.log`);
  // The caller's own VM_* knobs (VM_ACCEL=tcg, say) must not decide these tests.
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('VM_')));
  const result = await runCommand('bash', [GUEST_SCRIPT, command], {
    env: { ...base, PATH: `${fakeBin}:${process.env.PATH ?? ''}`, FAKE_QEMU_LOG: log, VM_CACHE: cache, VM_DISKS: '', ...env },
    cwd: ROOT,
  });
  const qemuCalls = existsSync(log) ? (await readFile(log, 'utf8')).split('\n').filter((l) => l !== '') : [];
  return { ...result, qemuCalls, cache };
}

const usesKvm = (argv: string): boolean => ` ${argv} `.includes(' -accel kvm ');
const usesTcg = (argv: string): boolean => / -accel tcg[, ]/.test(` ${argv} `);
const tcgNotice = (stderr: string): string[] => stderr.split('\n').filter((l) => /^run-in-vm: .*using TCG/.test(l));

async function cachedVerdicts(cache: string): Promise<string[]> {
  const files = (await readdir(cache)).filter((f) => /^accel\.[0-9a-f-]+$/.test(f) || f === 'accel.unknown-boot');
  return Promise.all(files.map(async (f) => (await readFile(join(cache, f), 'utf8')).trim()));
}

test(
  'a KVM that aborts is probed with both CPU models, then the guest runs under TCG; the verdict is cached for this host boot',
  { timeout: TIMEOUT_MS },
  async () => {
    const { cache, kvmDev } = await freshCache('probe');
    const first = await runGuest(cache, 'echo guest-ran-$((6*7))', { VM_KVM_DEV: kvmDev });
    assert.equal(first.code, 0, `guest failed: ${first.stderr}`);
    assert.match(first.stdout, /^guest-ran-42$/m);
    const kvmCalls = first.qemuCalls.filter(usesKvm);
    assert.deepEqual(
      kvmCalls.map((a) => / -cpu (\S+)/.exec(a)?.[1]),
      ['host', 'host,-arch-capabilities'],
      `probe boots: ${first.qemuCalls.join('\n')}`,
    );
    const last = first.qemuCalls.at(-1) ?? '';
    assert.ok(usesTcg(last) && !usesKvm(last), `the real boot must use TCG: ${last}`);
    assert.equal(tcgNotice(first.stderr).length, 1, `one line on stderr says TCG is used:\n${first.stderr}`);
    assert.deepEqual(await cachedVerdicts(cache), ['tcg']);
    const bootId = (await readFile('/proc/sys/kernel/random/boot_id', 'utf8')).trim();
    assert.ok(existsSync(join(cache, `accel.${bootId}`)), 'the verdict is keyed by the host boot id');

    // Second run: no probe, the cached verdict decides.
    const second = await runGuest(cache, 'echo again', { VM_KVM_DEV: kvmDev });
    assert.equal(second.code, 0, second.stderr);
    assert.match(second.stdout, /^again$/m);
    assert.equal(second.qemuCalls.length, 1, `one boot, no probe: ${second.qemuCalls.join('\n')}`);
    assert.ok(usesTcg(second.qemuCalls[0] ?? ''));
    assert.equal(tcgNotice(second.stderr).length, 1);
  },
);

test('VM_ACCEL=tcg boots under TCG without probing, even where a KVM device is present', { timeout: TIMEOUT_MS }, async () => {
  const { cache, kvmDev } = await freshCache('forced-tcg');
  const r = await runGuest(cache, 'echo tcg-ok', { VM_KVM_DEV: kvmDev, VM_ACCEL: 'tcg' });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^tcg-ok$/m);
  assert.equal(r.qemuCalls.length, 1, r.qemuCalls.join('\n'));
  assert.ok(usesTcg(r.qemuCalls[0] ?? '') && !usesKvm(r.qemuCalls[0] ?? ''));
  assert.deepEqual(tcgNotice(r.stderr), [], 'a forced choice needs no notice');
  assert.deepEqual(await cachedVerdicts(cache), [], 'nothing probed, nothing cached');
});

test('VM_ACCEL=kvm uses KVM without probing (here the fake KVM aborts, so the guest fails to start: exit 125)', { timeout: TIMEOUT_MS }, async () => {
  const { cache, kvmDev } = await freshCache('forced-kvm');
  const r = await runGuest(cache, 'true', { VM_KVM_DEV: kvmDev, VM_ACCEL: 'kvm' });
  assert.equal(r.code, 125, `${r.stdout}\n${r.stderr}`);
  assert.match(r.stderr, /failed to set MSR 0x10a/);
  assert.equal(r.qemuCalls.length, 1, r.qemuCalls.join('\n'));
  assert.match(` ${r.qemuCalls[0] ?? ''} `, / -accel kvm -cpu host /);
  assert.deepEqual(await cachedVerdicts(cache), []);
});

test('without a KVM device the guest runs under TCG with no probe and no notice; a bad VM_ACCEL is refused', { timeout: TIMEOUT_MS }, async () => {
  const { cache } = await freshCache('no-kvm');
  const r = await runGuest(cache, 'echo no-kvm-ok', { VM_KVM_DEV: join(cache, 'absent-kvm') });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^no-kvm-ok$/m);
  assert.equal(r.qemuCalls.length, 1);
  assert.ok(usesTcg(r.qemuCalls[0] ?? ''));
  assert.deepEqual(tcgNotice(r.stderr), []);

  const bad = await runGuest(cache, 'true', { VM_ACCEL: 'xen' });
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /VM_ACCEL must be kvm or tcg, not 'xen'/);
  assert.deepEqual(bad.qemuCalls, [], 'no guest started');
});

test(
  'a guest that hangs while booting is killed and booted again with the kernel log on; the command runs once; one that never boots exits 125',
  { timeout: TIMEOUT_MS },
  async () => {
    const { cache } = await freshCache('hang');
    const once = await runGuest(cache, 'echo ran >> ran.txt; echo guest-out', {
      VM_ACCEL: 'tcg',
      FAKE_QEMU_HANGS: '1',
      VM_BOOT_TIMEOUT: '3 600',
      VM_WORKDIR: cache,
    });
    assert.equal(once.code, 0, once.stderr);
    assert.match(once.stdout, /^guest-out$/m);
    assert.match(once.stderr, /the guest did not boot within 3s \(attempt 1 of 2, tcg\)/);
    assert.equal(once.qemuCalls.length, 2, once.qemuCalls.join('\n'));
    assert.ok(/\bquiet loglevel=0\b/.test(once.qemuCalls[0] ?? ''), `first boot quiet: ${once.qemuCalls[0] ?? ''}`);
    assert.ok(/\bloglevel=7\b/.test(once.qemuCalls[1] ?? '') && !/\bquiet\b/.test(once.qemuCalls[1] ?? ''), `retry logs: ${once.qemuCalls[1] ?? ''}`);
    assert.equal(await readFile(join(cache, 'ran.txt'), 'utf8'), 'ran\n', 'the command ran exactly once');

    const never = await runGuest(cache, 'echo ran >> ran.txt', { VM_ACCEL: 'tcg', FAKE_QEMU_HANGS: '9', VM_BOOT_TIMEOUT: '2 2', VM_WORKDIR: cache });
    assert.equal(never.code, 125, never.stderr);
    assert.match(never.stderr, /the guest never booted \(2 attempts\)/);
    assert.equal(never.qemuCalls.length, 2, 'two starts, both hung');
    assert.equal(await readFile(join(cache, 'ran.txt'), 'utf8'), 'ran\n', 'a guest that never booted ran nothing');
  },
);
