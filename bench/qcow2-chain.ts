/**
 * Benchmark: walking and validating a 50-layer chain natively (walkChain) versus asking
 * `qemu-img info --backing-chain --output=json` for the same chain. Run after building:
 *   node dist/bench/qcow2-chain.js [layers] [native runs] [qemu-img runs]
 * The native walk is timed in-process and averaged over many runs; qemu-img includes its process start,
 * which is what volchain would pay for each call.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../src/tools/runner.js';
import { walkChain } from '../src/qcow2/index.js';

const layers = Number(process.argv[2] ?? 50);
const nativeRuns = Number(process.argv[3] ?? 500);
const qemuRuns = Number(process.argv[4] ?? 20);

const name = (i: number): string => `snap-l${String(i).padStart(3, '0')}-vm-100-disk-0.qcow2`;
const TOP = 'vm-100-disk-0.qcow2';

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'volchain-bench-chain-'));
  try {
    // Oldest first; the top is named like a volume, the rest like snapshot layers.
    const opts = ['-o', 'cluster_size=128k,extended_l2=on'];
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', ...opts, join(dir, name(0)), '1G']);
    for (let i = 1; i < layers; i++) {
      const file = i === layers - 1 ? TOP : name(i);
      await run('qemu-img', ['create', '-q', '-f', 'qcow2', ...opts, '-F', 'qcow2', '-b', name(i - 1), join(dir, file)]);
    }
    const top = join(dir, TOP);
    const policy = { isExpectedLayerName: (ref: string) => /^snap-l\d{3}-vm-100-disk-0\.qcow2$/.test(ref) };

    const chain = await walkChain(top, TOP, policy); // warm-up and sanity check
    if (chain.length !== layers) throw new Error(`walkChain found ${chain.length} layers, expected ${layers}`);
    let started = process.hrtime.bigint();
    for (let i = 0; i < nativeRuns; i++) await walkChain(top, TOP, policy);
    const nativeMs = Number(process.hrtime.bigint() - started) / 1e6 / nativeRuns;

    const info = JSON.parse((await run('qemu-img', ['info', '--backing-chain', '--output=json', '-f', 'qcow2', top])).stdout) as unknown[];
    if (info.length !== layers) throw new Error(`qemu-img found ${info.length} layers, expected ${layers}`);
    started = process.hrtime.bigint();
    for (let i = 0; i < qemuRuns; i++) await run('qemu-img', ['info', '--backing-chain', '--output=json', '-f', 'qcow2', top]);
    const qemuMs = Number(process.hrtime.bigint() - started) / 1e6 / qemuRuns;

    console.log(`chain of ${layers} layers (128k clusters, extended_l2)`);
    console.log(`walkChain (native, validated):        ${nativeMs.toFixed(3)} ms per chain (mean of ${nativeRuns})`);
    console.log(`qemu-img info --backing-chain --json: ${qemuMs.toFixed(3)} ms per chain (mean of ${qemuRuns})`);
    console.log(`ratio qemu-img / native:              ${(qemuMs / nativeMs).toFixed(1)}x`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
