/**
 * Live operations benchmark (issue 8).
 *
 * 1. Guest I/O pause during a live snapshot of 1 and of 3 disks. A writer keeps writing 4 KiB blocks through
 *    HMP `qemu-io -d <disk>` (QEMU's main loop, where the guest's I/O completes too), disk after disk, each
 *    disk at increasing offsets, while `vm snapshot --qmp` runs in this process. Afterwards `qemu-img map` of
 *    each new top tells the first write that went into it: the pause is the time between the completion of
 *    the last write that went into the old tops and that of the first that went into the new ones. The same
 *    map proves the switch was one instant for all disks (the first write after it is the same on each disk).
 * 2. block-commit throughput: a live delete commits 256 MiB of the active layer into the snapshot's layer; in
 *    the same run, on the same disk, `dd` and `cp` copy the same bytes of the same file, and `qemu-img commit`
 *    commits an identical copy offline. The pivot's guest pause (stop → job-complete → journal → cont) comes
 *    from the engine's step events.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/live-pause.js
 *
 * Environment: BENCH_REPS (snapshots per disk count, default 5), BENCH_DIR (parent of the scratch storage,
 * default the OS temp dir), BENCH_KEEP=1 (keep it), BENCH_COMMIT_MIB (default 256).
 */
import { spawn } from 'node:child_process';
import { copyFile, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseStorageConfig } from '../src/config/index.js';
import type { EngineEvent } from '../src/engine/run/step-rules.js';
import { Volchain } from '../src/engine/volchain.js';
import { humanMonitorCommand } from '../src/qmp/index.js';
import { startQemu, type RunningQemu } from '../test/integration/qemu-harness.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const REPS = Math.max(1, Number(process.env.BENCH_REPS ?? 5));
const COMMIT_MIB = Math.max(16, Number(process.env.BENCH_COMMIT_MIB ?? 256));
const STORAGE = 'bench';
const BLOCK = 4096;

function run(cmd: string, args: readonly string[]): Promise<{ stdout: string; ms: number }> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
    let out = '';
    let err = '';
    p.stdout.setEncoding('utf8').on('data', (t: string) => (out += t));
    p.stderr.setEncoding('utf8').on('data', (t: string) => (err += t));
    p.on('error', reject);
    p.on('close', (code) =>
      code === 0 ? resolve({ stdout: out, ms: performance.now() - t0 }) : reject(new Error(`${cmd} ${args.join(' ')}: exit ${String(code)}: ${err}`)),
    );
  });
}

const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};
const fmt = (ms: number): string => (ms >= 100 ? ms.toFixed(0) : ms.toFixed(1));

interface Write {
  disk: number;
  offset: number;
  endMs: number;
}

/** One HMP qemu-io write at a time; returns once it completed (the result line is on QEMU's stdout). */
async function hmpWrite(vm: RunningQemu, disk: string, offset: number): Promise<void> {
  const mark = vm.stdout().length;
  const reply = await humanMonitorCommand(vm.client, `qemu-io -d ${disk} "write -P 0x5c ${offset} ${BLOCK}"`);
  if (reply.trim() !== '') throw new Error(reply);
  for (;;) {
    if (vm.stdout().includes(`bytes at offset ${offset}\n`, mark)) return;
    if (vm.stdout().slice(mark).includes('write failed')) throw new Error(`write at ${offset} failed`);
    await new Promise((r) => setImmediate(r));
  }
}

/** Lowest guest offset a layer itself holds data for at or above `from` (qemu-img map of that file alone). */
async function firstOwnData(path: string, from: number): Promise<number | undefined> {
  const image = `json:${JSON.stringify({ driver: 'qcow2', file: { driver: 'file', filename: path }, backing: null })}`;
  const { stdout } = await run('qemu-img', ['map', '-U', '--output=json', image]);
  const entries = JSON.parse(stdout) as { start: number; length: number; data: boolean; depth: number }[];
  const hit = entries.filter((e) => e.data && e.depth === 0 && e.start + e.length > from).sort((a, b) => a.start - b.start)[0];
  return hit ? Math.max(hit.start, from) : undefined;
}

async function pauseBench(vc: Volchain, root: string, disks: number): Promise<{ pauses: number[]; ops: number[]; gaps: number[]; oneInstant: boolean }> {
  const vmid = 500 + disks;
  const volids: string[] = [];
  for (let i = 0; i < disks; i++) volids.push(await vc.alloc(STORAGE, vmid, GiB));
  const args = await vc.qemuArgs(volids);
  const sock = join(root, `vm${vmid}.qmp`);
  const ids = volids.map((_, i) => `d${i}`);
  const vm = await startQemu({
    machine: 'q35',
    blockdevs: args.volumes.flatMap((v) => v.nodes),
    disks: args.volumes.map((v, i) => ({ id: ids[i] as string, node: v.top })),
    extraArgs: ['-qmp', `unix:${sock},server=on,wait=off`],
  });
  const pauses: number[] = [];
  const ops: number[] = [];
  const gaps: number[] = [];
  let oneInstant = true;
  try {
    for (let rep = 0; rep < REPS; rep++) {
      const region = rep * 64 * MiB; // a fresh region per snapshot: offsets only grow within a run
      const writes: Write[] = [];
      const next = ids.map(() => region);
      let running = true;
      const loop = (async () => {
        for (let n = 0; running; n++) {
          const d = n % disks;
          const offset = next[d] as number;
          next[d] = offset + BLOCK;
          await hmpWrite(vm, ids[d] as string, offset);
          writes.push({ disk: d, offset, endMs: performance.now() });
        }
      })();
      await new Promise((r) => setTimeout(r, 400));
      const t0 = performance.now();
      await vc.vmSnapshot(vmid, `p${rep}`, { qmp: sock });
      const t1 = performance.now();
      await new Promise((r) => setTimeout(r, 400));
      running = false;
      await loop;
      // QEMU keeps qcow2 metadata in its caches until a flush: flush, then read the files.
      for (const id of ids) await humanMonitorCommand(vm.client, `qemu-io -d ${id} "flush"`);
      ops.push(t1 - t0);
      const before = writes.filter((w) => w.endMs < t0);
      for (let i = 1; i < before.length; i++) gaps.push((before[i] as Write).endMs - (before[i - 1] as Write).endMs);
      // The first write of each disk that went into its new top.
      const firstAfter: number[] = [];
      for (const [d, volid] of volids.entries()) {
        const path = await vc.path(volid);
        const off = await firstOwnData(path, region);
        const idx = writes.findIndex((w) => w.disk === d && w.offset === off);
        if (idx < 0) throw new Error(`disk ${d}: no write at ${String(off)} found`);
        firstAfter.push(idx);
      }
      // Writes are serialized: on every disk, the first write after the switch must follow the same last write before it.
      const j = Math.min(...firstAfter);
      for (const [d, idx] of firstAfter.entries()) {
        const firstOfDiskAfterJ = writes.findIndex((w, i) => i >= j && w.disk === d);
        if (firstOfDiskAfterJ !== idx) oneInstant = false;
      }
      const last = writes[j - 1];
      const first = writes[j];
      if (!last || !first) throw new Error('the snapshot did not fall between two writes');
      pauses.push(first.endMs - last.endMs);
    }
  } finally {
    await vm.stop();
  }
  return { pauses, ops, gaps, oneInstant };
}

async function commitBench(vc: Volchain, root: string): Promise<Record<string, number>> {
  const vmid = 600;
  const volid = await vc.alloc(STORAGE, vmid, GiB);
  const top = await vc.path(volid);
  // The snapshot's layer holds more than the active layer, so deleting it commits the active layer into it.
  await run('qemu-io', ['-f', 'qcow2', '-c', `write -P 0x11 0 ${COMMIT_MIB + 64}M`, top]);
  await vc.snapshotCreate(volid, 'base');
  await run('qemu-io', ['-f', 'qcow2', '-c', `write -P 0x22 0 ${COMMIT_MIB}M`, top]);
  const snap = await vc.path(volid, { snapshot: 'base' });
  // Identical copies for the offline reference, made outside any timing.
  const copyDir = join(root, 'copy');
  await run('mkdir', ['-p', copyDir]);
  await copyFile(snap, join(copyDir, 'snap-base-vm-600-disk-0.qcow2'));
  await copyFile(top, join(copyDir, 'vm-600-disk-0.qcow2'));
  await run('sync', []);
  const bytes = COMMIT_MIB * MiB;
  const out: Record<string, number> = { bytes };
  // The same bytes of the same file, copied plainly: first without, then with fsync.
  out.cp = (await run('cp', ['--reflink=never', top, join(root, 'cp.out')])).ms;
  out.cpBytes = (await stat(top)).size;
  await rm(join(root, 'cp.out'));
  out.dd = (await run('dd', [`if=${top}`, `of=${join(root, 'dd.out')}`, 'bs=1M', `count=${COMMIT_MIB}`, 'status=none'])).ms;
  await rm(join(root, 'dd.out'));
  out.ddFsync = (await run('dd', [`if=${top}`, `of=${join(root, 'dd.out')}`, 'bs=1M', `count=${COMMIT_MIB}`, 'conv=fsync', 'status=none'])).ms;
  await rm(join(root, 'dd.out'));
  out.qemuImgCommit = (await run('qemu-img', ['commit', '-q', '-f', 'qcow2', '-d', join(copyDir, 'vm-600-disk-0.qcow2')])).ms;
  await run('sync', []);

  const args = await vc.qemuArgs([volid]);
  const sock = join(root, `vm${vmid}.qmp`);
  const vm = await startQemu({
    machine: 'q35',
    blockdevs: args.volumes[0]?.nodes ?? [],
    disks: [{ id: 'd0', node: args.volumes[0]?.top ?? '' }],
    extraArgs: ['-qmp', `unix:${sock},server=on,wait=off`],
  });
  const at = new Map<string, number>();
  try {
    const t0 = performance.now();
    const plan = await vc.snapshotDelete(volid, 'base', {
      qmp: sock,
      onEvent: (e: EngineEvent) => {
        if (e.type === 'step') at.set(`start:${e.description.split(' ')[1] ?? ''}:${e.index}`, performance.now());
        if (e.type === 'step-done') at.set(`done:${e.index}`, performance.now());
      },
    });
    out.liveDelete = performance.now() - t0;
    const idx = (kind: string): number => plan.steps.findIndex((s) => s.kind === kind);
    const startOf = (i: number): number => [...at.entries()].find(([k]) => k.startsWith('start:') && k.endsWith(`:${i}`))?.[1] ?? NaN;
    const doneOf = (i: number): number => at.get(`done:${i}`) ?? NaN;
    out.commitToReady = doneOf(idx('qmp-commit')) - startOf(idx('qmp-commit'));
    // The guest is paused from the pivot's start (stop) to the end of the resume step (cont).
    out.pivotPause = doneOf(idx('qmp-resume')) - startOf(idx('qmp-pivot'));
  } finally {
    await vm.stop();
  }
  return out;
}

async function main(): Promise<void> {
  const root = await mkdtemp(join(process.env.BENCH_DIR ?? tmpdir(), 'volchain-bench-live-'));
  const cfg = join(root, 'storage.cfg');
  const text = `dir: ${STORAGE}\n\tpath ${join(root, 'store')}\n\tcontent images\n\tsnapshot-as-volume-chain 1\n`;
  await writeFile(cfg, text);
  const vc = new Volchain(parseStorageConfig(text, cfg));
  const qemuVersion = (await run('qemu-system-x86_64', ['--version'])).stdout.split('\n')[0] ?? '';
  const lines: string[] = [];
  const say = (l: string): void => {
    lines.push(l);
    console.log(l);
  };
  try {
    say(
      `machine: ${cpus().length} × ${cpus()[0]?.model ?? '?'}, load ${loadavg()
        .map((x) => x.toFixed(1))
        .join(' ')}; ${qemuVersion}; node ${process.version}; scratch ${root}`,
    );
    say('');
    say(
      '| disks | guest I/O pause at the switch (ms, median / max) | write-to-write gap without an operation (ms, median) | whole `vm snapshot` call (ms, median) | one instant on every disk |',
    );
    say('|---:|---:|---:|---:|---|');
    for (const n of [1, 3]) {
      const r = await pauseBench(vc, root, n);
      say(
        `| ${n} | ${fmt(median(r.pauses))} / ${fmt(Math.max(...r.pauses))} | ${fmt(median(r.gaps))} | ${fmt(median(r.ops))} | ${r.oneInstant ? `yes (${REPS} of ${REPS})` : 'NO'} |`,
      );
    }
    say('');
    const c = await commitBench(vc, root);
    const rate = (ms: number): string => `${((c.bytes as number) / MiB / (ms / 1000)).toFixed(0)} MiB/s`;
    say(`| ${COMMIT_MIB} MiB, same disk, same run | time (ms) | throughput |`);
    say('|---|---:|---:|');
    say(`| live block-commit to READY (active layer into the snapshot) | ${fmt(c.commitToReady as number)} | ${rate(c.commitToReady as number)} |`);
    say(`| whole live delete (lock, checks, commit, pivot, close, rename, checks) | ${fmt(c.liveDelete as number)} | ${rate(c.liveDelete as number)} |`);
    say(`| offline \`qemu-img commit\` of an identical copy | ${fmt(c.qemuImgCommit as number)} | ${rate(c.qemuImgCommit as number)} |`);
    say(`| \`dd bs=1M\` of the same bytes of the same file | ${fmt(c.dd as number)} | ${rate(c.dd as number)} |`);
    say(`| \`dd bs=1M conv=fsync\` | ${fmt(c.ddFsync as number)} | ${rate(c.ddFsync as number)} |`);
    say(
      `| \`cp\` of the whole top file (${((c.cpBytes as number) / MiB).toFixed(0)} MiB apparent; rate per ${COMMIT_MIB} MiB of data) | ${fmt(c.cp as number)} | ${rate(c.cp as number)} |`,
    );
    say('');
    say(`guest paused during the pivot (stop → job-complete → journal → cont): ${fmt(c.pivotPause as number)} ms`);
  } finally {
    if (process.env.BENCH_KEEP !== '1') await rm(root, { recursive: true, force: true });
  }
}

await main();
