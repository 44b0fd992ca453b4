/**
 * How the CLI writes and fails: every error is one line `volchain: <message>` on stderr with the exit status of
 * its code (usage errors from the argument parser included), plus, under --json, one JSON document
 * `{"error": {code, exitStatus, message, outcome, fields}}` on stdout (VolchainError.toJSON); a reader that goes away (`volchain list st | head -1`)
 * ends the output quietly instead of crashing with a stack trace.
 */
import type { CommanderError, CommandUnknownOpts as Command } from '@commander-js/extra-typings';
import { asVolchainError, InvalidInputError, type VolchainError } from '../errors.js';
import { escapeUnsafe } from '../quote.js';

/** Set once a stream's reader is gone: nothing more is written to it. */
const closed = { stdout: false, stderr: false };
/** The exit status owed to an output failure other than a gone reader (a full disk behind `> file`). */
let outputFailure: number | undefined;
let guarded = false;

/**
 * Handles write errors of stdout and stderr, which node otherwise turns into an uncaught exception and a stack
 * trace. EPIPE (the reader closed the pipe, as `head` does) is not a failure: like coreutils, volchain stops
 * writing; unlike them it is not killed by SIGPIPE mid-way (node ignores it), so a command that was changing a
 * chain finishes that change — it never stops between two steps because its output is unread — and exits
 * with the status it would have had anyway (0 on success). Any other write error (ENOSPC, EIO) makes the
 * command fail with that error's status, said on stderr if stderr still works.
 */
export function guardOutput(): void {
  if (guarded) return;
  guarded = true;
  for (const name of ['stdout', 'stderr'] as const) {
    process[name].on('error', (err: NodeJS.ErrnoException) => {
      closed[name] = true;
      if (err.code === 'EPIPE') return;
      const error = asVolchainError(err);
      outputFailure ??= error.exitStatus;
      process.exitCode = outputFailure;
      if (name === 'stdout') writeErr(`volchain: cannot write standard output: ${escapeUnsafe(err.message)}\n`);
    });
  }
}

export function writeOut(text: string): void {
  if (!closed.stdout) process.stdout.write(text);
}

export function writeErr(text: string): void {
  if (!closed.stderr) process.stderr.write(text);
}

/** The command's status, unless writing its output failed (a gone reader is no failure). */
export function finalStatus(status: number): number {
  return status === 0 && outputFailure !== undefined ? outputFailure : status;
}

/**
 * The argument parser's output settings: it says nothing itself (its messages are two lines, `error: ...` and
 * a hint); main() turns its error into one volchain line. --help and --version still print normally.
 */
export const PARSER_OUTPUT = {
  outputError: (): void => undefined,
  // Only the help shown for a missing subcommand is written here (help requested with --help goes to stdout).
  writeErr: (): void => undefined,
};

/**
 * Reports `error` as the CLI does: one line on stderr; under --json also the error object on stdout, so a
 * script reading --json output always gets one JSON document, with the error's outcome and fields for
 * programs (never parse the message). The message is escaped (it may quote names from image headers or
 * another program's stderr) and is the same text in both places; field values are plain JSON strings.
 */
export function reportError(error: VolchainError, json: boolean): void {
  const message = escapeUnsafe(error.message);
  writeErr(`volchain: ${message}\n`);
  if (json) writeOut(`${JSON.stringify({ error: { ...error.toJSON(), message } }, null, 2)}\n`);
}

/** Whether the command line asks for --json (before a `--`), for errors raised while it is being parsed. */
export function argvWantsJson(argv: readonly string[]): boolean {
  const end = argv.indexOf('--');
  return (end === -1 ? argv : argv.slice(0, end)).includes('--json');
}

/**
 * A usage error of the argument parser as an InvalidInputError (exit 2): its message on one line without the
 * `error:` prefix, with the command's own --help to run. A group command given without a subcommand
 * (`volchain snapshot`) names the subcommands instead of printing the whole help on stderr.
 */
export function usageError(err: CommanderError, program: Command, argv: readonly string[]): InvalidInputError {
  const command = commandOf(program, argv);
  const path = command.path.join(' ');
  const hint = `(run '${path} --help' for usage)`;
  if (err.code === 'commander.help') {
    const names = command.command.commands.map((c) => c.name()).filter((n) => n !== 'help');
    // `volchain help nosuch` ends here too: the parser shows the help instead of naming the word.
    const what = command.unknown !== undefined ? `unknown command '${escapeUnsafe(command.unknown)}'; '${path}' has` : `'${path}' needs a command:`;
    return new InvalidInputError(`${what} ${names.join(', ')} ${hint}`);
  }
  const text = err.message
    .replace(/^error: /, '')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.length > 0)
    .join(' ');
  return new InvalidInputError(`${text} ${hint}`);
}

/** The (sub)command the arguments name: follows subcommand names, skipping options and their values. */
function commandOf(program: Command, argv: readonly string[]): { command: Command; path: string[]; unknown?: string } {
  let command: Command = program;
  const path = [program.name()];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? '';
    if (arg === '--') break;
    if (arg.startsWith('-')) {
      // An option with a value in the next argument (--config FILE): skip that value too.
      const option = command.options.find((o) => o.long === arg || o.short === arg);
      if (option !== undefined && (option.required || option.optional)) i++;
      continue;
    }
    // `help <command>` names the same command as `<command> --help`.
    if (arg === 'help' && command.commands.length > 0) continue;
    const sub = command.commands.find((c) => c.name() === arg || c.aliases().includes(arg));
    if (sub === undefined) return { command, path, ...(command.commands.length > 0 ? { unknown: arg } : {}) };
    command = sub;
    path.push(sub.name());
  }
  return { command, path };
}
