/**
 * Benchmark: time and subprocesses per operation on thick-LVM storage, volchain against the bare command
 * sequence Proxmox VE 9 runs for the same offline operation with `snapshot-as-volume-chain 1`, in the same
 * run, in the same VG, with the same data written into both volumes. Each LVM command reads the VG's
 * metadata and takes its locks, so the number of commands matters more than anything else.
 *
 *   VOLCHAIN_TEST_VG=<vg> node dist/bench/lvm-ops.js [virtual size MiB, default 128, at least 128]
 *
 * or, on a kernel without device-mapper (4-10 minutes per repetition under TCG, depending on the host's load):
 *   VM_DISKS=2G VM_TIMEOUT=3600 bash scripts/lvm-vm/run-in-vm.sh \
 *     'pvcreate -q /dev/vdb && vgcreate -q vgb /dev/vdb && VOLCHAIN_TEST_VG=vgb node dist/bench/lvm-ops.js'
 *
 * Environment: BENCH_REPS (repetitions of the whole scenario, default 2). The VG needs room for both volumes
 * at once: 5 x the virtual size for PVE's full-size layers (4 snapshots + current) plus up to 3 x for
 * volchain's (a full-size current layer, shrunk snapshots, one grown back while a delete commits into it).
 *
 * Scenario (each repetition, both sides): alloc; write; snapshot s1; write; s2; write; s3; write; s4; write
 * (discarded by the rollback); rollback to s4 (the newest: PVE refuses anything else); write; delete s1 (the
 * first snapshot: PVE commits its child into it), s3 (a middle one: PVE rebases its child), s4 (the newest:
 * PVE rebases the current layer); resize +64 MiB; free. volchain's volume is VM 9901's, PVE's VM 9902's.
 * Each operation runs once per side, the two sides one right after the other, the side that goes first
 * alternating from one operation to the next and from one repetition to the next, so that load changes hit
 * both. Writes (qemu-io, identical offsets and patterns on both sides) and checks are outside the timings.
 * Before the resize both volumes must show the data written (qemu-io reads of every chunk) and the same guest
 * data everywhere (`qemu-img compare`), in the current layer and in snapshot s2, or the bench fails. Before
 * each repetition the VG's free extents are zeroed (see zeroFreeExtents), outside the timings.
 *
 * The PVE column is the bare command sequence (test/lvm/pve-lvm-commands.ts) of pve-storage 9.1.7 (src/PVE/Storage/LVMPlugin.pm, Common.pm,
 * Plugin.pm, Storage.pm), reached from qemu-server 9.2 / pve-guest-common (AbstractConfig snapshot_create,
 * snapshot_rollback, snapshot_delete; API resize; vdisk_alloc / vdisk_free) for a VM that is not running,
 * on a local VG (`shared` off) with `saferemove` off, spawned through the same runner as volchain's commands
 * with the same argv PVE uses. Not reproduced: Perl start-up, pmxcfs config locks and writes, the
 * storage flock (PVE::Tools::lock_file, no subprocess) and the VM config update; so this column is a lower
 * bound of what PVE takes. volchain is timed as a library call in this process (no node start-up either).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { parseStorageConfig } from '../src/config/index.js';
import { Volchain } from '../src/engine/volchain.js';
import { observeCommands, run } from '../src/tools/runner.js';
import { PveLvm, pveSnapName } from '../test/lvm/pve-lvm-commands.js';

const vgEnv = process.env.VOLCHAIN_TEST_VG;
if (!vgEnv) {
  console.error('VOLCHAIN_TEST_VG must name a volume group to work in');
  process.exit(2);
}
const VG: string = vgEnv;
const MiB = 1024 * 1024;
const SIZE_MIB = Number(process.argv[2] ?? 128);
if (!Number.isInteger(SIZE_MIB) || SIZE_MIB < 128) {
  console.error('the virtual size must be a whole number of MiB, at least 128 (the data written spans 128 MiB)');
  process.exit(2);
}
const GROW_MIB = 64;
const REPS = Math.max(1, Number(process.env.BENCH_REPS ?? 2));
const STORAGE = 'bench';
const VC_VMID = 9901;
const PVE_VMID = 9902;

// ---- the data written (identical on both sides) -----------------------------------------------------------

interface Chunk {
  offsetMiB: number;
  pattern: number;
}
const CHUNK_MIB = 4;
/** Written before each step; the first layer holds most of the data, as PVE's delete strategy assumes. */
const WRITES: Record<string, Chunk[]> = {
  s1: Array.from({ length: 8 }, (_, i) => ({ offsetMiB: i * 16, pattern: 0x10 + i })), // 32 MiB
  s2: [
    { offsetMiB: 0, pattern: 0x21 },
    { offsetMiB: 8, pattern: 0x22 },
  ], // 8 MiB
  s3: [4, 20, 36, 52].map((offsetMiB, i) => ({ offsetMiB, pattern: 0x31 + i })), // 16 MiB
  s4: [
    { offsetMiB: 16, pattern: 0x41 },
    { offsetMiB: 72, pattern: 0x42 },
  ], // 8 MiB
  discarded: [
    { offsetMiB: 24, pattern: 0x51 },
    { offsetMiB: 96, pattern: 0x52 },
  ], // thrown away by the rollback
  afterRollback: [
    { offsetMiB: 0, pattern: 0x61 },
    { offsetMiB: 100, pattern: 0x62 },
  ],
};

// ---- subprocess accounting ----------------------------------------------------------------------------------

/** Commands started while an operation is being timed (one side at a time). */
let bucket: string[][] | undefined;
const stopObserving = observeCommands((argv) => bucket?.push([...argv]));

/** `qemu-img commit`, `lvcreate`, `lvcreate (journal)`, `lvchange --refresh`, ... */
function commandLabel(argv: readonly string[]): string {
  const name = basename(argv[0] ?? '?');
  const args = argv.slice(1);
  if (name === 'qemu-img' || name === 'qemu-io') return `${name} ${args[0] ?? ''}`;
  if (args.some((a) => a.includes('volchain-journal-'))) return `${name} (journal)`;
  if (name === 'lvchange') {
    if (args.some((a) => a === '--addtag' || a === '--deltag')) return 'lvchange (tags)';
    if (args.includes('--refresh')) return 'lvchange --refresh';
    const activation = args.find((a) => /^-a[a-z]*$/.test(a));
    if (activation) return `lvchange ${activation}`;
  }
  return name;
}
const LVM_COMMANDS = new Set(['lvs', 'vgs', 'pvs', 'lvcreate', 'lvremove', 'lvrename', 'lvchange', 'lvextend', 'lvreduce', 'lvresize', 'vgchange']);
/** LVM commands that commit new VG metadata (the costly kind: a metadata write, and on a SAN, for all hosts). */
const LVM_WRITES = new Set(['lvcreate', 'lvremove', 'lvrename', 'lvextend', 'lvreduce', 'lvresize']);
const isLvm = (label: string): boolean => LVM_COMMANDS.has(label.split(' ')[0] as string);
const isLvmWrite = (label: string): boolean => LVM_WRITES.has(label.split(' ')[0] as string) || label === 'lvchange (tags)';

interface Timed {
  ms: number;
  commands: string[];
}

async function timed(fn: () => Promise<unknown>): Promise<Timed> {
  const seen: string[][] = [];
  bucket = seen;
  const t0 = performance.now();
  try {
    await fn();
  } finally {
    bucket = undefined;
  }
  return { ms: performance.now() - t0, commands: seen.map(commandLabel) };
}

function breakdown(commands: readonly string[]): string {
  const counts = new Map<string, number>();
  for (const c of commands) counts.set(c, (counts.get(c) ?? 0) + 1);
  return [...counts].map(([c, n]) => (n > 1 ? `${c} ×${n}` : c)).join(', ');
}

// ---- the bare Proxmox VE 9 sequences ---------------------------------------------------------------------
//
// test/lvm/pve-lvm-commands.ts: every command one PVE runs, with PVE's argv, spawned through the same runner
// as volchain's commands (so observeCommands counts them). saferemove off, as on the bench's storage.

const PVE_ENV = { LVM_SUPPRESS_FD_WARNINGS: '1' };
const pveLvm = new PveLvm(VG);
const pveRun = async (command: string, args: readonly string[]): Promise<string> => (await run(command, args, { env: PVE_ENV })).stdout;
const dev = (lv: string): string => pveLvm.dev(lv);
const pveAlloc = (vmid: number, sizeBytes: number): Promise<string> => pveLvm.alloc(vmid, sizeBytes);
const pveSnapshotCreate = (vmid: number, volname: string, snap: string): Promise<void> => pveLvm.snapshotCreate(vmid, volname, snap);
const pveSnapshotRollback = (vmid: number, volname: string, snap: string): Promise<void> => pveLvm.snapshotRollback(vmid, volname, snap);
const pveSnapshotDelete = (volname: string, snap: string): Promise<'commit' | 'rebase'> => pveLvm.snapshotDelete(volname, snap);
const pveResize = (volname: string, newSizeBytes: number): Promise<void> => pveLvm.resize(volname, newSizeBytes);
const pveFree = (volname: string): Promise<void> => pveLvm.free(volname);

// ---- helpers outside the timings --------------------------------------------------------------------------

async function writeChunks(path: string, chunks: readonly Chunk[]): Promise<void> {
  const args = ['-f', 'qcow2'];
  for (const c of chunks) args.push('-c', `write -P 0x${c.pattern.toString(16)} ${c.offsetMiB}M ${CHUNK_MIB}M`);
  args.push(path);
  const { stdout } = await run('qemu-io', args);
  const wrote = (stdout.match(/^wrote /gm) ?? []).length;
  if (wrote !== chunks.length) throw new Error(`qemu-io wrote ${wrote} of ${chunks.length} chunks into ${path}: ${stdout}`);
}

async function sameView(a: string, b: string): Promise<boolean> {
  const r = await run('qemu-img', ['compare', '-q', '-f', 'qcow2', '-F', 'qcow2', a, b], { okExitCodes: [1] });
  return r.exitCode === 0;
}

/** Removes what an earlier, interrupted run of this bench left in the VG. */
async function cleanVg(): Promise<void> {
  const { stdout } = await run('/sbin/lvs', ['--noheadings', '-o', 'lv_name', VG], { env: PVE_ENV });
  const mine = (name: string): boolean =>
    [VC_VMID, PVE_VMID].some((v) => name.includes(`vm-${v}-disk-`) || name === `volchain-journal-${v}`) ||
    name === 'volchain-bench-probe' ||
    name === 'volchain-bench-zero';
  const names = stdout
    .split('\n')
    .map((l) => l.trim())
    .filter(mine);
  for (const name of names) await run('/sbin/lvremove', ['-f', `${VG}/${name}`], { env: PVE_ENV });
}

/**
 * Zeroes the VG's free extents (an LV over all of them, `blkdiscard --zeroout`, removed again), so that every
 * repetition starts like the first one on the fresh disk. It matters for what the guest reads, not for the
 * timings: PVE formats a new volume's LV with `preallocation=metadata`, which maps every cluster of the image
 * onto the LV as it is, so without saferemove the guest of a new PVE volume reads whatever the extents held
 * before (here: the previous repetition's layers); volchain creates its layers without preallocation.
 */
async function zeroFreeExtents(): Promise<void> {
  const zero = 'volchain-bench-zero';
  await run('/sbin/lvcreate', ['-aly', '-Wy', '-Zn', '-y', '--setautoactivation', 'n', '-l', '100%FREE', '-n', zero, VG], { env: PVE_ENV });
  await run('blkdiscard', ['--zeroout', dev(zero)]);
  await run('/sbin/lvremove', ['-f', `${VG}/${zero}`], { env: PVE_ENV });
}

/** The pattern each written 4 MiB chunk must show after `steps` (later writes hide earlier ones). */
function expectedChunks(steps: readonly string[]): Chunk[] {
  const byOffset = new Map<number, number>();
  for (const step of steps) for (const c of WRITES[step] as Chunk[]) byOffset.set(c.offsetMiB, c.pattern);
  return [...byOffset].map(([offsetMiB, pattern]) => ({ offsetMiB, pattern }));
}

/** Reads every chunk back from the view of `path` (one qemu-io), plus a never written range that must read as zeroes. */
async function checkView(path: string, chunks: readonly Chunk[]): Promise<void> {
  const args = ['-r', '-f', 'qcow2'];
  for (const c of [...chunks, { offsetMiB: 124, pattern: 0 }]) args.push('-c', `read -P 0x${c.pattern.toString(16)} ${c.offsetMiB}M ${CHUNK_MIB}M`);
  args.push(path);
  const { stdout } = await run('qemu-io', args);
  if (/verification failed/i.test(stdout) || (stdout.match(/^read /gm) ?? []).length !== chunks.length + 1) {
    throw new Error(`${path} does not show the data written: ${stdout}`);
  }
}

const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};
const fmt = (ms: number): string => ms.toFixed(0);
const loadText = (): string =>
  loadavg()
    .map((x) => x.toFixed(2))
    .join(' / ');

/**
 * Fixed costs that explain the columns: one LVM report, one qemu-img start, PVE's activation pair
 * (`lvchange -aey --select` + `lvchange --refresh --select`, run 1-3 times per PVE operation), and the
 * lvcreate + lvremove of a 4 MiB LV (what volchain's journal LV adds to every operation).
 */
async function fixedCosts(): Promise<string> {
  const lvs: number[] = [];
  const qemuImg: number[] = [];
  const activation: number[] = [];
  const createRemove: number[] = [];
  const probe = 'volchain-bench-probe';
  const filter = `vg_name = "${VG}" && lv_name =~ '^${probe}$'`;
  for (let i = 0; i < 3; i++) {
    let t = performance.now();
    await pveRun('/sbin/lvs', [VG]);
    lvs.push(performance.now() - t);
    t = performance.now();
    await pveRun('/usr/bin/qemu-img', ['--version']);
    qemuImg.push(performance.now() - t);
    t = performance.now();
    await pveRun('/sbin/lvcreate', ['-aly', '-Wy', '-Zy', '-y', '--setautoactivation', 'n', '-L', '4m', '-n', probe, VG]);
    const created = performance.now() - t;
    t = performance.now();
    await pveRun('/sbin/lvchange', ['-aey', '--select', filter]);
    await pveRun('/sbin/lvchange', ['--refresh', '--select', filter]);
    activation.push(performance.now() - t);
    t = performance.now();
    await pveRun('/sbin/lvremove', ['-f', `${VG}/${probe}`]);
    createRemove.push(created + performance.now() - t);
  }
  return (
    `fixed costs (median of 3): \`lvs ${VG}\` ${fmt(median(lvs))} ms; \`qemu-img --version\` ${fmt(median(qemuImg))} ms; ` +
    `PVE's activation pair (lvchange -aey + --refresh, --select) ${fmt(median(activation))} ms; ` +
    `lvcreate + lvremove of a 4 MiB LV (volchain's journal LV, per operation) ${fmt(median(createRemove))} ms`
  );
}

// ---- the scenario -----------------------------------------------------------------------------------------

interface Row {
  label: string;
  vc: Timed[];
  pve: Timed[];
}

async function main(): Promise<void> {
  const started = performance.now();
  process.env.VOLCHAIN_STATE_DIR = await mkdtemp(join(tmpdir(), 'volchain-bench-'));
  const text = `lvm: ${STORAGE}\n\tvgname ${VG}\n\tcontent images\n\tsnapshot-as-volume-chain 1\n`;
  const vc = new Volchain(parseStorageConfig(text, 'bench.cfg'));
  await cleanVg();
  const { stdout: lvmVersion } = await run('/sbin/lvm', ['version'], { env: PVE_ENV });
  const { stdout: qemuVersion } = await run('qemu-img', ['--version']);
  console.log(`# LVM operations: volchain vs the bare Proxmox VE 9 command sequence (VG ${VG})`);
  console.log(
    `machine: ${cpus().length} x ${cpus()[0]?.model ?? '?'}, KVM ${existsSync('/dev/kvm') ? 'present' : 'absent'}; node ${process.version}; ` +
      `${qemuVersion.split('\n')[0] ?? ''}; LVM ${/LVM version:\s*(\S+)/.exec(lvmVersion)?.[1] ?? '?'}`,
  );
  console.log(`date: ${new Date().toISOString()}; ${REPS} repetition(s); ${SIZE_MIB} MiB qcow2 volumes; load average ${loadText()}`);
  console.log(await fixedCosts());

  const rows = new Map<string, Row>();
  const volchainOnly = new Map<string, Timed[]>();
  const strategyLog: string[] = [];
  for (let rep = 0; rep < REPS; rep++) {
    await zeroFreeExtents();
    let opIndex = 0;
    let volid = '';
    let pveName = '';
    const vcPath = (snap = 'current'): string => dev(pveSnapName(`vm-${VC_VMID}-disk-0.qcow2`, snap));
    const pvePath = (snap = 'current'): string => dev(pveSnapName(pveName, snap));

    /** Times one operation on both sides, the side that goes first alternating. */
    const both = async (label: string, vcOp: () => Promise<unknown>, pveOp: () => Promise<unknown>): Promise<void> => {
      const row = rows.get(label) ?? { label, vc: [], pve: [] };
      rows.set(label, row);
      if ((opIndex + rep) % 2 === 0) {
        row.vc.push(await timed(vcOp));
        row.pve.push(await timed(pveOp));
      } else {
        row.pve.push(await timed(pveOp));
        row.vc.push(await timed(vcOp));
      }
      opIndex++;
    };
    const write = async (which: string): Promise<void> => {
      const chunks = WRITES[which] as Chunk[];
      await writeChunks(vcPath(), chunks);
      await writeChunks(pvePath(), chunks);
    };

    await both(
      'alloc',
      async () => (volid = await vc.alloc(STORAGE, VC_VMID, `${SIZE_MIB}M`)),
      async () => (pveName = await pveAlloc(PVE_VMID, SIZE_MIB * MiB)),
    );
    if (volid !== `${STORAGE}:vm-${VC_VMID}-disk-0.qcow2`) throw new Error(`volchain allocated ${volid}, expected vm-${VC_VMID}-disk-0.qcow2`);
    for (const snap of ['s1', 's2', 's3', 's4']) {
      await write(snap);
      await both(
        `snapshot create ${snap}`,
        () => vc.snapshotCreate(volid, snap),
        () => pveSnapshotCreate(PVE_VMID, pveName, snap),
      );
    }
    for (const [label, fn] of [
      ['snapshot list (4 snapshots)', () => vc.snapshotList(volid)],
      ['list (VM 9901)', () => vc.list(STORAGE, { vmid: VC_VMID })],
    ] as const) {
      const xs = volchainOnly.get(label) ?? [];
      xs.push(await timed(fn));
      volchainOnly.set(label, xs);
    }
    await write('discarded');
    await both(
      'rollback to newest (s4)',
      () => vc.snapshotRollback(volid, 's4'),
      () => pveSnapshotRollback(PVE_VMID, pveName, 's4'),
    );
    await write('afterRollback');
    const strategies: string[] = [];
    const deleteBoth = async (label: string, snap: string): Promise<void> =>
      both(
        label,
        async () => strategies.push(`volchain ${snap}: ${(await vc.snapshotDelete(volid, snap)).steps.map((s) => s.kind).join('+')}`),
        async () => strategies.push(`PVE ${snap}: ${await pveSnapshotDelete(pveName, snap)}`),
      );
    await deleteBoth('delete first (s1; child s2)', 's1');
    await deleteBoth('delete middle (s3; parent s2, child s4)', 's3');
    await deleteBoth('delete newest (s4; parent s2, child current)', 's4');
    // Both volumes must now show the data written, in the current layer and in the remaining snapshot, and
    // the same guest data everywhere else.
    // (24 MiB: written only before the rollback, so zeroes again.)
    const expected: [string, Chunk[]][] = [
      ['current', [...expectedChunks(['s1', 's2', 's3', 's4', 'afterRollback']), { offsetMiB: 24, pattern: 0 }]],
      ['s2', expectedChunks(['s1', 's2'])],
    ];
    for (const [snap, chunks] of expected) {
      await checkView(vcPath(snap), chunks);
      await checkView(pvePath(snap), chunks);
      if (!(await sameView(vcPath(snap), pvePath(snap)))) throw new Error(`repetition ${rep + 1}: ${snap} differs between the two volumes`);
    }
    await both(
      `resize +${GROW_MIB} MiB`,
      () => vc.resize(volid, `${SIZE_MIB + GROW_MIB}M`),
      () => pveResize(pveName, (SIZE_MIB + GROW_MIB) * MiB),
    );
    await both(
      'free (volume + 1 snapshot)',
      () => vc.free(volid),
      () => pveFree(pveName),
    );
    const left = (await run('/sbin/lvs', ['--noheadings', '-o', 'lv_name', VG], { env: PVE_ENV })).stdout;
    if (/vm-990[12]-|volchain-journal-990/.test(left)) throw new Error(`repetition ${rep + 1}: LVs left behind: ${left}`);
    strategyLog.push(`rep ${rep + 1}: ${strategies.join('; ')}`);
    process.stderr.write(
      `repetition ${rep + 1}/${REPS} done (${((performance.now() - started) / 1000).toFixed(0)} s); views identical; ${strategies.join('; ')}\n`,
    );
  }
  stopObserving();

  const sum = (t: Timed[]): number => median(t.map((x) => x.ms));
  /** "all (LVM, LVM writes)" of the first repetition. */
  const counts = (cmds: readonly string[]): string => `${cmds.length} (${cmds.filter(isLvm).length}, ${cmds.filter(isLvmWrite).length})`;
  const first = (t: Timed[]): string[] => (t[0] as Timed).commands;
  console.log(`\n## Timings (ms, ${REPS > 1 ? `median of ${REPS}` : 'one run'}; each repetition in the breakdown below)\n`);
  console.log('Commands: all (LVM commands, LVM metadata writes), first repetition.\n');
  console.log('| operation | volchain ms | bare PVE 9 ms | volchain / PVE | volchain commands | PVE commands |');
  console.log('|---|---:|---:|---:|---:|---:|');
  let vcTotal = 0;
  let pveTotal = 0;
  const vcAll: string[] = [];
  const pveAll: string[] = [];
  for (const row of rows.values()) {
    const a = sum(row.vc);
    const b = sum(row.pve);
    vcTotal += a;
    pveTotal += b;
    vcAll.push(...first(row.vc));
    pveAll.push(...first(row.pve));
    console.log(`| ${row.label} | ${fmt(a)} | ${fmt(b)} | ${(a / b).toFixed(2)} | ${counts(first(row.vc))} | ${counts(first(row.pve))} |`);
  }
  console.log(`| **whole scenario** | ${fmt(vcTotal)} | ${fmt(pveTotal)} | ${(vcTotal / pveTotal).toFixed(2)} | ${counts(vcAll)} | ${counts(pveAll)} |`);
  for (const [label, t] of volchainOnly) console.log(`| ${label}: volchain only | ${fmt(sum(t))} | – | – | ${counts(first(t))} | – |`);

  console.log('\nCommands per operation, and ms of each repetition (a repetition that ran other commands is listed apart):');
  const lines = (t: Timed[]): string => {
    const byList = new Map<string, number[]>();
    t.forEach((x, i) => {
      const key = breakdown(x.commands);
      byList.set(key, [...(byList.get(key) ?? []), i + 1]);
    });
    return [...byList].map(([key, reps]) => (byList.size > 1 ? `(rep ${reps.join(', ')}) ${key}` : key)).join('; ');
  };
  for (const row of rows.values()) {
    console.log(`- ${row.label}`);
    console.log(`  - volchain [${row.vc.map((t) => fmt(t.ms)).join(', ')} ms]: ${lines(row.vc)}`);
    console.log(`  - PVE      [${row.pve.map((t) => fmt(t.ms)).join(', ')} ms]: ${lines(row.pve)}`);
  }
  for (const [label, t] of volchainOnly) console.log(`- ${label}: volchain [${t.map((x) => fmt(x.ms)).join(', ')} ms]: ${lines(t)}`);
  console.log(`\nHow each delete was done (volchain: the plan's steps; PVE: its fixed rule):`);
  for (const line of strategyLog) console.log(`- ${line}`);
  console.log(`\nbench finished in ${((performance.now() - started) / 1000).toFixed(0)} s; load average at the end ${loadText()}`);
  await rm(process.env.VOLCHAIN_STATE_DIR, { recursive: true, force: true });
}

main().catch(async (err: unknown) => {
  console.error(err);
  bucket = undefined;
  await cleanVg().catch(() => undefined);
  process.exit(1);
});
