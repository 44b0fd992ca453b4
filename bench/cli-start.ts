/**
 * Benchmark: how long a user waits for short CLI commands, whole processes (issue 16). Run after building:
 *   node dist/bench/cli-start.js [rounds] [layers]
 *
 * A dir storage holds one volume with `layers` snapshots (layers+1 files, made by the library). Timed in
 * alternating rounds (timeAlternating: one run of each contender per round, so load changes on a shared
 * machine hit all alike), each a fresh process:
 *   - `node -e 0`: the floor every node program pays;
 *   - `volchain --version`, `info --json`, `snapshot list --json` as users run them (bin/volchain.js, which
 *     loads the one-file bundle), and the same through the unbundled modules (dist/bench/cli-unbundled.js);
 *   - `qemu-img info -U --backing-chain --output=json` on the same chain: what a qemu-img based tool pays.
 * Prints medians (p10–p90) and the goals as ratios against the floor measured in the same run:
 * `--version` ≤ 1.25 × node -e 0; `info` and `snapshot list` ≤ node -e 0 + 40 ms.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { parseStorageConfig } from '../src/config/index.js';
import { Volchain } from '../src/engine/volchain.js';
import { show, timeAlternating, type Timing } from './qcow2-timing.js';

const rounds = Number(process.argv[2] ?? 20);
const layers = Number(process.argv[3] ?? 50);
const repoRoot = resolve(import.meta.dirname, '..', '..');
const CLI = join(repoRoot, 'bin', 'volchain.js');
const UNBUNDLED = join(repoRoot, 'dist', 'bench', 'cli-unbundled.js');
const execFileP = promisify(execFile);

async function proc(cmd: string, args: string[]): Promise<void> {
  await execFileP(cmd, args, { maxBuffer: 64 << 20 });
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'volchain-bench-start-'));
  try {
    const storagePath = join(dir, 'storage');
    const cfgPath = join(dir, 'storage.cfg');
    const cfgText = `dir: bench\n\tpath ${storagePath}\n\tcontent images\n\tsnapshot-as-volume-chain 1\n`;
    await writeFile(cfgPath, cfgText);
    const vc = new Volchain(parseStorageConfig(cfgText, cfgPath));
    const volid = await vc.alloc('bench', 100, '1G');
    for (let i = 1; i <= layers; i++) await vc.snapshotCreate(volid, `s${String(i).padStart(3, '0')}`);
    const top = await vc.path(volid);
    const state = join(dir, 'state');
    process.env.VOLCHAIN_STATE_DIR = state; // the children inherit it: nothing lands in /var/lib
    console.log(
      `node ${process.version}, ${cpus().length} CPUs, load ${loadavg()
        .map((l) => l.toFixed(1))
        .join(' ')}; ${volid} with ${layers} snapshots; ${rounds} rounds`,
    );
    const cli = (entry: string, args: string[]) => () => proc(process.execPath, [entry, '--config', cfgPath, ...args]);
    const contenders: [string, () => Promise<void>][] = [
      ['node -e 0', () => proc(process.execPath, ['-e', '0'])],
      ['volchain --version', () => proc(process.execPath, [CLI, '--version'])],
      ['volchain --version (unbundled)', () => proc(process.execPath, [UNBUNDLED, '--version'])],
      ['volchain info --json', cli(CLI, ['info', '--json', volid])],
      ['volchain info --json (unbundled)', cli(UNBUNDLED, ['info', '--json', volid])],
      ['volchain snapshot list --json', cli(CLI, ['snapshot', 'list', '--json', volid])],
      ['qemu-img info -U --backing-chain', () => proc('qemu-img', ['info', '-U', '--backing-chain', '--output=json', top])],
    ];
    const t = await timeAlternating(
      contenders.map(([, fn]) => ({ fn, perRound: 1, warmup: 2 })),
      rounds,
    );
    for (const [i, [label]] of contenders.entries()) console.log(show(label, t[i] as Timing, 40));
    const [node, version, versionU, info, infoU, snaps, qemu] = t as [Timing, Timing, Timing, Timing, Timing, Timing, Timing];
    const f = (x: number): string => x.toFixed(2);
    console.log('\ngoals (issue 16), medians:');
    console.log(`  --version / node -e 0          ${f(version.median / node.median)}  (goal ≤ 1.25; unbundled ${f(versionU.median / node.median)})`);
    console.log(`  info - node -e 0               ${f(info.median - node.median)} ms  (goal ≤ 40; unbundled ${f(infoU.median - node.median)})`);
    console.log(`  snapshot list - node -e 0      ${f(snaps.median - node.median)} ms  (goal ≤ 40)`);
    console.log(`  info / qemu-img info           ${f(info.median / qemu.median)}`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
