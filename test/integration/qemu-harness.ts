/**
 * A real QEMU for QMP tests, without a guest OS (DESIGN.md section 7), that never outlives the test process.
 *
 * - `machine: 'none'` (default): `-M none`, nodes only. Guest-like I/O goes through `qemu-io <node>` in HMP,
 *   which in QEMU 7.2 accepts a node name and attaches a temporary, anonymous block backend to it.
 * - `machine: 'q35'`: TCG, plus one SCSI disk per `disks` entry (`scsi-hd` on a virtio-scsi controller).
 *   I/O then goes through the *device's* backend with `qemu-io -d <id>`, which follows the device when a
 *   snapshot or a job changes the graph (writes to a node name would bypass a commit job's filter). Not
 *   virtio-blk: QEMU 7.2's `qemu-io -d` only finds backends of devices whose own qdev id holds the drive,
 *   and virtio-blk-pci keeps it in an id-less child ("Device does not have a block device backend").
 *
 * QEMU 7.2's `qemu-io` HMP command prints its results on QEMU's *stdout*, not in the HMP reply (only its
 * errors come back there), so guestWrite/guestRead read the result line from the captured stdout.
 *
 * No orphans: every QEMU started here is SIGKILLed when the test process exits (normally, or by SIGINT /
 * SIGTERM), and `stop()` (or `withQemu`) waits for the process to be gone.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { QmpClient, blockdevArgv, humanMonitorCommand, quit, type BlockdevOptions } from '../../src/qmp/index.js';

export interface QemuOptions {
  machine?: 'none' | 'q35';
  /** -blockdev definitions, in order (referenced nodes first). */
  blockdevs?: readonly BlockdevOptions[];
  /** Guest disks (q35 only): device id → format node. */
  disks?: readonly { id: string; node: string }[];
  /** Start with the CPU stopped (-S). */
  paused?: boolean;
  extraArgs?: readonly string[];
  /** Print every QMP line (also: VOLCHAIN_QMP_TRACE=1). */
  trace?: boolean;
}

export interface RunningQemu {
  client: QmpClient;
  pid: number;
  argv: readonly string[];
  /** Everything QEMU printed on stdout so far (qemu-io results land here). */
  stdout(): string;
  stderr(): string;
  /** Resolves when the process is gone. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  isAlive(): boolean;
  /** Sends a signal to QEMU (SIGKILL to simulate a crash, SIGSTOP to freeze it). */
  signal(sig: NodeJS.Signals): void;
  /** Quits through QMP when connected, else (or if that fails) SIGKILLs; waits for exit. Idempotent. */
  stop(): Promise<void>;
}

const live = new Set<ChildProcess>();
let hooksInstalled = false;

function installExitHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  const killAll = (): void => {
    for (const p of live) {
      try {
        p.kill('SIGKILL');
      } catch {
        // already gone
      }
    }
  };
  process.on('exit', killAll);
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      killAll();
      process.kill(process.pid, sig); // default action now that our handler is gone
    });
  }
}

/** PIDs of QEMU processes started by this test process that are still running. */
export function runningQemuPids(): number[] {
  return [...live].map((p) => p.pid ?? -1);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function startQemu(options: QemuOptions = {}): Promise<RunningQemu> {
  installExitHooks();
  const dir = await mkdtemp(join(tmpdir(), 'volchain-qmp-'));
  const socketPath = join(dir, 'qmp.sock');
  const machine = options.machine ?? 'none';
  const argv = [
    '-nodefaults',
    '-no-user-config',
    '-display',
    'none',
    '-machine',
    machine === 'none' ? 'none' : 'q35,accel=tcg',
    '-qmp',
    `unix:${socketPath},server=on,wait=off`,
    ...(options.paused ? ['-S'] : []),
    ...blockdevArgv(options.blockdevs ?? []),
  ];
  if (options.disks && options.disks.length > 0) {
    if (machine !== 'q35') throw new Error('guest disks need machine q35');
    argv.push('-device', 'virtio-scsi-pci,id=scsi0');
    for (const d of options.disks) argv.push('-device', `scsi-hd,bus=scsi0.0,drive=${d.node},id=${d.id}`);
  }
  argv.push(...(options.extraArgs ?? []));

  const proc = spawn('qemu-system-x86_64', argv, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
  live.add(proc);
  let out = '';
  let err = '';
  proc.stdout.setEncoding('utf8').on('data', (t: string) => (out += t));
  proc.stderr.setEncoding('utf8').on('data', (t: string) => (err += t));
  let alive = true;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    proc.on('exit', (code, signal) => {
      alive = false;
      live.delete(proc);
      resolve({ code, signal });
    });
    proc.on('error', () => {
      alive = false;
      live.delete(proc);
      resolve({ code: null, signal: null });
    });
  });
  const cleanupDir = (): Promise<void> => rm(dir, { recursive: true, force: true });
  void exited.then(cleanupDir);

  const trace = options.trace || process.env['VOLCHAIN_QMP_TRACE'] === '1';
  // QEMU creates the socket after parsing its options and opening every -blockdev; poll until it answers.
  let client: QmpClient | undefined;
  const deadline = Date.now() + 15_000;
  let lastError: unknown;
  while (!client) {
    if (!alive) {
      throw new Error(`qemu-system-x86_64 exited during start-up: ${err.trim() || out.trim()}\nargv: ${argv.join(' ')}`);
    }
    if (Date.now() > deadline) {
      proc.kill('SIGKILL');
      await exited;
      throw new Error(`QEMU's QMP socket did not answer within 15 s: ${String(lastError)}`);
    }
    try {
      client = await QmpClient.connectUnix(socketPath, {
        connectTimeoutMs: 5000,
        ...(trace ? { trace: (d: 'in' | 'out', l: string) => console.error(`qmp ${d === 'in' ? '<-' : '->'} ${l}`) } : {}),
      });
    } catch (e) {
      lastError = e;
      await sleep(25);
    }
  }
  const connected = client;

  let stopping: Promise<void> | undefined;
  return {
    client: connected,
    pid: proc.pid ?? -1,
    argv,
    stdout: () => out,
    stderr: () => err,
    exited,
    isAlive: () => alive,
    signal: (sig) => {
      if (alive) proc.kill(sig);
    },
    stop: () => {
      stopping ??= (async () => {
        if (alive && connected.state === 'ready') {
          try {
            await quit(connected, { timeoutMs: 5000 });
            let timer: NodeJS.Timeout | undefined;
            await Promise.race([exited, new Promise((r) => (timer = setTimeout(r, 5000)))]);
            clearTimeout(timer);
          } catch {
            // fall through to SIGKILL
          }
        }
        if (alive) proc.kill('SIGKILL');
        await exited;
        await connected.close();
      })();
      return stopping;
    },
  };
}

/** Runs `fn` with a fresh QEMU and stops it afterwards, whatever happens. */
export async function withQemu<T>(options: QemuOptions, fn: (vm: RunningQemu) => Promise<T>): Promise<T> {
  const vm = await startQemu(options);
  try {
    return await fn(vm);
  } finally {
    await vm.stop();
  }
}

/** Where guest I/O goes: a node name (`-M none`), or a guest disk by device id (`{ qdev }`, q35). */
export type IoTarget = string | { qdev: string };

const hex = (byte: number): string => `0x${byte.toString(16).padStart(2, '0')}`;

/**
 * Runs one qemu-io command through HMP and returns the stdout lines it printed, up to and including the
 * line that says it finished (`<verb> N/N bytes at offset X` or `<verb> failed: ...`).
 */
async function qemuIo(vm: RunningQemu, target: IoTarget, verb: 'write' | 'read', command: string, offset: number): Promise<string[]> {
  const device = typeof target === 'string' ? target : `-d ${target.qdev}`;
  const mark = vm.stdout().length;
  const reply = await humanMonitorCommand(vm.client, `qemu-io ${device} "${command}"`);
  if (reply.trim() !== '') throw new Error(`qemu-io ${device} "${command}": ${reply.trim()}`);
  const past = verb === 'write' ? 'wrote' : 'read';
  const done = new RegExp(`^(${past} \\d+/\\d+ bytes at offset ${offset}|${verb} failed: .*)$`, 'm');
  const deadline = Date.now() + 5000;
  for (;;) {
    const text = vm.stdout().slice(mark);
    const m = done.exec(text);
    if (m) return text.slice(0, m.index + m[0].length).split('\n');
    if (Date.now() > deadline) throw new Error(`qemu-io ${device} "${command}": no result on QEMU's stdout within 5 s (got ${JSON.stringify(text)})`);
    await sleep(5);
  }
}

/** Writes `len` bytes of `pattern` at `offset` as the guest would. Calls on one VM must not overlap. */
export async function guestWrite(vm: RunningQemu, target: IoTarget, pattern: number, offset: number, len: number): Promise<void> {
  const lines = await qemuIo(vm, target, 'write', `write -P ${hex(pattern)} ${offset} ${len}`, offset);
  const last = lines[lines.length - 1] ?? '';
  if (!last.startsWith(`wrote ${len}/${len} bytes`)) throw new Error(`guest write of ${hex(pattern)} at ${offset}+${len} failed: ${lines.join(' | ')}`);
}

/** Reads `len` bytes at `offset` as the guest sees them and checks they are all `pattern`. */
export async function guestRead(vm: RunningQemu, target: IoTarget, pattern: number, offset: number, len: number): Promise<void> {
  const lines = await qemuIo(vm, target, 'read', `read -P ${hex(pattern)} ${offset} ${len}`, offset);
  const text = lines.join(' | ');
  if (text.includes('read failed')) throw new Error(`guest read at ${offset}+${len} failed: ${text}`);
  if (text.includes('Pattern verification failed')) throw new Error(`guest sees other data than ${hex(pattern)} at ${offset}+${len}: ${text}`);
}
