/**
 * The one place that starts subprocesses. argv arrays only (never a shell), LC_ALL=C so parsers see stable
 * output, and every failure becomes a CommandFailedError carrying argv, exit status and stderr.
 */
import { spawn } from 'node:child_process';
import { accessSync, closeSync, constants, openSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { CommandFailedError, NoSpaceError, NotSupportedError } from '../errors.js';

export interface RunOptions {
  /** Called with each progress percentage qemu-img prints with -p ("(12.34/100%)"). */
  onProgress?: (percent: number) => void;
  /** Extra environment; LC_ALL=C is always set. */
  env?: Record<string, string>;
  /** Exit codes that are not failures (e.g. qemu-img compare's 1 = "different"). */
  okExitCodes?: readonly number[];
  input?: string;
  timeoutMs?: number;
  /** Working directory (qemu-img resolves some relative names, e.g. data_file, against it). */
  cwd?: string;
  /**
   * A descriptor the child gets as its fd 3, e.g. one holding a flock: the lock then stays held while the
   * child lives, even when this process is killed first.
   */
  shareFd?: number;
  /**
   * The child is killed (SIGKILL) when this process dies: for the long commands that move data (a commit, a
   * rebase, a copy, a compare). A SIGKILL of volchain releases the VM's lock at once; a qemu-img left running
   * would go on writing into the chain while `repair`, now free to run, rewrites the same layers (or, on LVM,
   * could not remove a temporary LV it holds open). Killed with us, the command is interrupted exactly where
   * the journal says the step was, which repair already handles. Through util-linux `setpriv --pdeathsig`
   * (Node has no prctl binding); without setpriv the command runs as before.
   */
  stopWithCaller?: boolean;
}

export interface RunResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

/** Observers of every command started, e.g. tests proving that no qemu-img runs on a hostile chain. */
type CommandObserver = (argv: readonly string[]) => void;
const observers = new Set<CommandObserver>();
export function observeCommands(observer: CommandObserver): () => void {
  observers.add(observer);
  return () => observers.delete(observer);
}

const PROGRESS_RE = /\((\d+(?:\.\d+)?)\/100%\)/g;

export function run(command: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  const argv = [command, ...args];
  for (const observer of observers) observer(argv);
  const [file, fileArgs] = options.stopWithCaller === true && hasSetpriv() ? ['setpriv', ['--pdeathsig', 'KILL', '--', command, ...args]] : [command, args];
  return new Promise((resolve, reject) => {
    const child = spawn(file, fileArgs, {
      env: { ...process.env, ...options.env, LC_ALL: 'C' },
      stdio: [options.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe', ...(options.shareFd !== undefined ? [options.shareFd] : [])],
      timeout: options.timeoutMs,
      ...(options.cwd !== undefined ? { cwd: options.cwd } : {}),
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout?.on('data', (chunk: Buffer) => {
      out.push(chunk);
      if (options.onProgress) {
        for (const m of chunk.toString('latin1').matchAll(PROGRESS_RE)) options.onProgress(Number(m[1]));
      }
    });
    child.stderr?.on('data', (chunk: Buffer) => err.push(chunk));
    if (options.input !== undefined && child.stdin) child.stdin.end(options.input);
    child.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') {
        reject(new NotSupportedError(`${command} is not installed (install the Debian package that provides it)`));
      } else {
        reject(new CommandFailedError(argv, null, e.message));
      }
    });
    child.on('close', (code, signal) => {
      const stdout = Buffer.concat(out).toString('utf8');
      const stderr = Buffer.concat(err).toString('utf8');
      if (file === 'setpriv' && code === 127 && stderr.includes('failed to execute')) {
        // setpriv could not exec the command: the same as spawn's ENOENT above.
        reject(new NotSupportedError(`${command} is not installed (install the Debian package that provides it)`));
      } else if (code === 0 || (code !== null && options.okExitCodes?.includes(code))) {
        resolve({ stdout, stderr, exitCode: code });
      } else {
        const failure = new CommandFailedError(argv, code, stderr || stdout, signal);
        // A full storage is the one failure users can act on directly: give it its own code and say so.
        if (/No space left on device/i.test(stderr)) {
          reject(new NoSpaceError(`no space left on the storage: ${failure.message}`, { cause: failure }));
        } else {
          reject(failure);
        }
      }
    });
  });
}

let setprivFound: boolean | undefined;
/** Whether util-linux's setpriv is on PATH (looked up once; Debian's util-linux is essential, so nearly always). */
function hasSetpriv(): boolean {
  setprivFound ??= (process.env['PATH'] ?? '').split(delimiter).some((dir) => {
    try {
      accessSync(join(dir, 'setpriv'), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
  return setprivFound;
}

/**
 * Starts a process that outlives this one: its own session (no signal from our terminal reaches it), stdin
 * closed, stdout and stderr appended to `logPath`, not waited for. Returns its pid.
 */
export function spawnDetached(command: string, args: readonly string[], logPath: string, env: Record<string, string> = {}): number {
  for (const observer of observers) observer([command, ...args]);
  const log = openSync(logPath, 'a');
  try {
    const child = spawn(command, args, { env: { ...process.env, ...env, LC_ALL: 'C' }, stdio: ['ignore', log, log], detached: true });
    // A failed start (ENOENT) is reported asynchronously: never let it crash the caller, which is done anyway.
    child.on('error', () => undefined);
    child.unref();
    return child.pid ?? 0;
  } finally {
    closeSync(log);
  }
}
