/**
 * Two hosts on one shared VG under lvmlockd + sanlock, each running the real CLI (bin/volchain.js).
 *
 * Two QEMU guests (scripts/lvm-vm/run-in-vm.sh with VM_SHARE=1) are the two hosts, "A" (lvmlockd host_id 1)
 * and "B" (host_id 2); they see one fresh sparse raw image as /dev/vdb, like a SAN LUN. Each writes a
 * storage.cfg with an `lvm` storage (`vgname vgs`, `shared 1`, `snapshot-as-volume-chain 1`), keeps its
 * volchain state (VOLCHAIN_STATE_DIR) in RAM, lost at power-off like a dead host's local disk, and runs
 * its half of the scenario (scripts/lvm-vm/cluster/volchain-host-{a,b}.sh, coordinated through files):
 *
 * Phase 1 (always):
 * - A: `vgcreate --shared vgs`, `volchain alloc` a 64M qcow2 disk of VM 100, writes 0x11 at 0, takes
 *   snapshot s1, writes 0x22 at 1M; A now holds the LVs (exclusive activation).
 * - B joins the lockspace; `volchain list` and `snapshot list` show the volume and s1 without activating
 *   anything on B; `volchain snapshot create s2` fails (non-zero exit, a `volchain: ...` message) and
 *   changes no LV and nothing in the chain.
 * - A releases the volume (`volchain deactivate` when the CLI has it, else `lvchange -an` on its LVs).
 * - B: `snapshot create s2` now succeeds; s1's layer reads 0x11 at 0, s2's and the current layer 0x11 and
 *   0x22; B writes 0x33 at 2M; `qemu-img check` clean on every layer; A lists s1 and s2 without activating.
 *
 * Phase 2 (the operation journal of LVM storages lives on the VG):
 * - B runs `snapshot delete s1` with VOLCHAIN_CRASH_AT after its commit/rebase step (SIGKILL, exit 137),
 *   then "dies": `vgchange -an`, leaves the lockspace, powers off (its local state is gone).
 * - A: `volchain status` shows the unfinished snapshot-delete recorded by host-b; `repair --all` finishes
 *   it; s2 and the current layer read their patterns (s1 too if it was kept), `qemu-img check` is clean,
 *   `status` is empty, no journal or temporary LV is left.
 *
 * Both guests always leave the lockspace (a host_id lease left on the image would stall the next start);
 * any failure shows both guests' logs. Needs qemu-system-x86, lvm2, lvm2-lockd, sanlock (scripts/setup.sh).
 * Knobs: VOLCHAIN_CLUSTER_IO_TIMEOUT (sanlock io_timeout, default 8 s: smaller values lose leases when TCG guests on a busy host stall),
 * VOLCHAIN_CLUSTER_VERBOSE=1 (both logs even on success), VOLCHAIN_IT_KEEP=1 (keep the work directory).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { constants } from 'node:fs';
import { mkdir, mkdtemp, open, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT, runCommand } from './helpers.js';

const RUN_IN_VM = join(ROOT, 'scripts', 'lvm-vm', 'run-in-vm.sh');
const CLUSTER = join(ROOT, 'scripts', 'lvm-vm', 'cluster');
const VERBOSE = process.env.VOLCHAIN_CLUSTER_VERBOSE === '1';
/**
 * sanlock's I/O timeout (lvmlockd -o). A renewal whose I/O takes longer fails and the host loses its lease:
 * 2 s and 3 s both lost it on a loaded machine where the emulated guests stalled; 8 s did not. Joining a
 * lockspace takes about 2 x this.
 */
const IO_TIMEOUT = process.env.VOLCHAIN_CLUSTER_IO_TIMEOUT ?? '8';
/** About 2.2 min on an idle 2-CPU machine without KVM (two emulated guests), 4-9 min on a loaded one. */
const TIMEOUT_MS = 20 * 60_000;
const IMAGE_BYTES = 1024 * 1024 * 1024;

interface HostRun {
  name: 'host-a' | 'host-b';
  /** run-in-vm.sh's exit status: the script's, 124 timeout, 125 the guest did not boot. */
  code: number;
  log: string;
}

interface ClusterRun {
  hosts: HostRun[];
  /** Files in the sync directory: rendezvous points and results (`A_phase1_ok`, `host-b_exit`, ...). */
  markers: Set<string>;
  seconds: number;
}

const shellQuote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

async function missingPrograms(): Promise<string[]> {
  const missing: string[] = [];
  for (const prog of ['qemu-system-x86_64', 'qemu-img', 'qemu-io', 'lvm', 'lvmlockd', 'sanlock']) {
    const r = await runCommand('bash', ['-c', `command -v ${prog}`]);
    if (r.code !== 0) missing.push(prog);
  }
  return missing;
}

/** True when `file` can be opened with O_DIRECT (not on tmpfs), as QEMU's cache=none needs. */
async function directIoWorks(file: string): Promise<boolean> {
  try {
    await (await open(file, constants.O_RDWR | constants.O_DIRECT)).close();
    return true;
  } catch {
    return false;
  }
}

/** Runs one guest; its stdout and stderr go to `logFile`. */
function runHost(name: HostRun['name'], env: NodeJS.ProcessEnv, logFile: string, signal: AbortSignal): Promise<number> {
  return new Promise((resolve, reject) => {
    void open(logFile, 'w').then((log) => {
      const script = join(CLUSTER, `volchain-${name}.sh`);
      const child = spawn('bash', [RUN_IN_VM, `bash ${shellQuote(script)}`], {
        env,
        cwd: ROOT,
        stdio: ['ignore', log.fd, log.fd],
        signal,
        killSignal: 'SIGTERM',
      });
      child.on('error', (err) => {
        if (err.name !== 'AbortError') reject(err);
      });
      child.on('close', (code, sig) => {
        void log.close();
        resolve(code ?? (sig ? 128 : 1));
      });
    }, reject);
  });
}

async function runCluster(work: string, signal: AbortSignal): Promise<ClusterRun> {
  const image = join(work, 'shared.raw');
  const sync = join(work, 'sync');
  await mkdir(sync);
  const fh = await open(image, 'w');
  await fh.truncate(IMAGE_BYTES); // sparse, fresh for every run
  await fh.close();
  const env: NodeJS.ProcessEnv = { ...process.env, LC_ALL: 'C' };
  for (const key of Object.keys(env)) if (key.startsWith('VOLCHAIN_')) delete env[key];
  Object.assign(env, {
    VM_WORKDIR: work,
    VM_SHARE: '1',
    // cache=none (O_DIRECT) as on a SAN; where the file system cannot (tmpfs), both QEMUs share this
    // kernel's page cache, which is just as coherent.
    VM_SHARE_CACHE: (await directIoWorks(image)) ? 'none' : 'writethrough',
    VM_DISKS: image,
    VM_CPUS: '1',
    VM_MEM: '1024',
    VM_TIMEOUT: String(Math.floor(TIMEOUT_MS / 1000) - 60),
    VM_ENV: 'CLUSTER_SYNC CLUSTER_IO_TIMEOUT CLUSTER_PHASE2 CLUSTER_WAIT',
    CLUSTER_SYNC: sync,
    CLUSTER_IO_TIMEOUT: IO_TIMEOUT,
    CLUSTER_PHASE2: '1',
    CLUSTER_WAIT: String(Math.floor(TIMEOUT_MS / 1000) - 120),
  });
  const started = Date.now();
  const names: HostRun['name'][] = ['host-a', 'host-b'];
  const codes = await Promise.all(names.map((name) => runHost(name, env, join(work, `${name}.log`), signal)));
  const seconds = (Date.now() - started) / 1000;
  const hosts = await Promise.all(names.map(async (name, i) => ({ name, code: codes[i] ?? 1, log: await readFile(join(work, `${name}.log`), 'utf8') })));
  return { hosts, markers: new Set(await readdir(sync)), seconds };
}

function logs(run: ClusterRun): string {
  return run.hosts.map((h) => `===== ${h.name} (exit ${h.code}) =====\n${h.log.trimEnd()}`).join('\n');
}

function why(run: ClusterRun): string {
  const notes = run.hosts
    .filter((h) => h.code === 124 || h.code === 125)
    .map((h) => `${h.name}: ${h.code === 124 ? 'the guest timed out' : 'the guest did not boot'}`);
  const fails = run.hosts.flatMap((h) =>
    h.log
      .split('\n')
      .filter((l) => l.includes('FAIL:'))
      .map((l) => `${h.name}: ${l.trim()}`),
  );
  return [...notes, ...fails].join('\n');
}

test('two hosts on one shared VG (lvmlockd + sanlock) run volchain; a host holding the LVs locks the other out', { timeout: TIMEOUT_MS }, async (t) => {
  assert.match(IO_TIMEOUT, /^[1-9][0-9]*$/, 'VOLCHAIN_CLUSTER_IO_TIMEOUT: whole seconds');
  const missing = await missingPrograms();
  assert.deepEqual(missing, [], `missing programs ${missing.join(', ')}: run scripts/setup.sh (as root)`);
  await runCommand('bash', ['-c', 'test -f bin/volchain.js && test -d dist/src']).then((r) =>
    assert.equal(r.code, 0, 'bin/volchain.js or dist/src missing: npm run build first'),
  );
  const work = await mkdtemp(join(tmpdir(), 'volchain-cluster-'));
  const abort = new AbortController();
  t.signal.addEventListener('abort', () => abort.abort()); // test timeout: take both guests down
  let run: ClusterRun | undefined;
  try {
    run = await runCluster(work, abort.signal);
  } finally {
    abort.abort(); // nothing left running if runCluster threw
    if (process.env.VOLCHAIN_IT_KEEP === '1') t.diagnostic(`kept ${work}`);
    else await rm(work, { recursive: true, force: true });
  }
  const r = run;
  t.diagnostic(`two guests, ${r.seconds.toFixed(1)} s (sanlock io_timeout ${IO_TIMEOUT} s)`);
  for (const h of r.hosts) {
    const total = /total in-guest: ([\d.]+) s/.exec(h.log)?.[1];
    if (total) t.diagnostic(`${h.name}: ${total} s in the guest`);
  }
  const refusal = /snapshot create \S+ s2 while A holds the LVs: (.*)$/m.exec(r.hosts[1]?.log ?? '')?.[1];
  if (refusal) t.diagnostic(`B refused while A held the LVs: ${refusal}`);
  if (VERBOSE) for (const line of logs(r).split('\n')) t.diagnostic(line);

  let phasesOk = true;
  await t.test('phase 1: B lists without activating, is refused while A holds the LVs, snapshots after A released', () => {
    const ok = r.markers.has('A_phase1_ok') && r.markers.has('B_phase1_ok');
    phasesOk &&= ok;
    assert.ok(ok, `phase 1 failed:\n${why(r)}\n${logs(r)}`);
  });

  await t.test('phase 2: B dies in the middle of a delete; A sees the pending operation, repairs it, data intact', () => {
    assert.ok(phasesOk, 'phase 2 did not run: phase 1 failed (its logs are above)');
    const ok = r.markers.has('A_phase2_ok') && r.markers.has('B_phase2_ok');
    phasesOk &&= ok;
    assert.ok(ok, `phase 2 failed:\n${why(r)}\n${logs(r)}`);
  });

  // Both scripts ran to their end (their teardown included) and both guests exited cleanly (the logs are
  // shown once: by the phase that failed, else here).
  if (!phasesOk) return;
  assert.deepEqual(
    r.hosts.map((h) => `${h.name} exit ${h.code}`),
    ['host-a exit 0', 'host-b exit 0'],
    `a guest failed:\n${why(r)}\n${logs(r)}`,
  );
});
