/**
 * `npm run bench -- <name> [args...]` runs one benchmark of this folder (compiled into dist/bench); with no
 * name it lists them. Each prints its figures with the baseline measured in the same run; bench/RESULTS.md
 * keeps what was recorded, and each file's header says what it needs (some need a VG, see there).
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const BENCHMARKS: Record<string, string> = {
  compare: "issue 16's goal table in one run: each row against its reference, the goal beside it, met or not",
  'snapshot-ops': "snapshot create/rollback/delete on dir storage: library and CLI vs PVE 9's command sequence",
  'qcow2-chain': 'reading and validating a deep chain natively vs qemu-img info --backing-chain',
  'cli-start': 'whole-process time of --version, info, snapshot list (bundled and not) vs node -e 0 and qemu-img',
  'list-1000': 'volchain list of 1,000 volumes vs one qemu-img info per volume',
  'live-pause': 'guest I/O pause of live snapshots, block-commit throughput vs dd/cp/qemu-img commit (QEMU)',
  'lvm-ops': "time and commands per operation on thick LVM vs PVE 9's sequence (needs VOLCHAIN_TEST_VG)",
  'lvm-space': "VG space of a chain with shrunk frozen layers vs PVE 9's full-size layers (needs VOLCHAIN_TEST_VG)",
  'move-bytes': 'bytes volchain move copies for a branched tree vs its allocated data and flattening copies',
  'portable-bytes': "bytes volchain export writes for a branched tree vs the layers' allocated data and a flattening qemu-img convert",
};

const here = dirname(fileURLToPath(import.meta.url));
const [name, ...args] = process.argv.slice(2);

if (name === undefined || name === '--help' || name === '-h') {
  console.log('usage: npm run bench -- <name> [args...]\n');
  for (const [bench, what] of Object.entries(BENCHMARKS)) console.log(`  ${bench.padEnd(14)} ${what}`);
  console.log('\nArguments and environment: see the header of bench/<name>.ts. Results: bench/RESULTS.md.');
  process.exit(0);
}

const script = join(here, `${name}.js`);
if (!(name in BENCHMARKS) || !existsSync(script)) {
  console.error(`volchain bench: no benchmark named '${name}' (one of: ${Object.keys(BENCHMARKS).join(', ')})`);
  process.exit(2);
}
const result = spawnSync(process.execPath, [script, ...args], { stdio: 'inherit' });
process.exit(result.status ?? 1);
