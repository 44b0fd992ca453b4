/**
 * The error tree. Every failure volchain reports is a VolchainError with a stable `code`; the CLI maps codes
 * to exit statuses and prints `message` on one line, so messages must name the offending value and say what
 * to do about it. For programs (the CLI's --json, the library, an API) an error also carries structured
 * data: `outcome` (whether anything on disk is left for `repair`) and `fields` (the values involved: volid,
 * vmid, snapshot, layer, path, holder...), so that no caller ever has to parse message text.
 */
import { quoteForeign } from './quote.js';

export type ErrorCode =
  | 'INVALID_INPUT'
  | 'CONFIG'
  | 'NOT_FOUND'
  | 'ALREADY_EXISTS'
  | 'NOT_SUPPORTED'
  | 'LOCKED'
  | 'PENDING_OPERATION'
  | 'UNSAFE_IMAGE'
  | 'CORRUPT_IMAGE'
  | 'NO_SPACE'
  | 'COMMAND_FAILED'
  | 'INTERNAL';

/** Exit statuses by code: 2 for what the caller got wrong, 3+ for state of the world, 1 for the rest. */
const EXIT_STATUS: Record<ErrorCode, number> = {
  INVALID_INPUT: 2,
  CONFIG: 2,
  NOT_FOUND: 3,
  ALREADY_EXISTS: 4,
  NOT_SUPPORTED: 5,
  LOCKED: 6,
  PENDING_OPERATION: 7,
  UNSAFE_IMAGE: 8,
  CORRUPT_IMAGE: 8,
  NO_SPACE: 9,
  COMMAND_FAILED: 10,
  INTERNAL: 1,
};

/**
 * What a failure left on disk: 'unchanged' (the call changed nothing, or undid all it did) or 'needs-repair'
 * (an operation stopped part-way and its journal stays: `volchain repair` finishes it).
 */
export type ErrorOutcome = 'unchanged' | 'needs-repair';

/** A value an error names, as JSON can carry it. */
export type ErrorFieldValue = string | number | boolean | null | readonly string[] | Readonly<Record<string, string | number | null>>;

/**
 * The values an error is about. Known keys have one meaning everywhere (an error sets those that apply):
 * `volid`, `vmid`, `storage`, `snapshot`, `layer`, `path`, `operation`, `step` (1-based, as --dry-run numbers
 * them), `holder` (who holds a lock: pid, host, operation, since), `file`, `line`, `argv`, `exitCode`.
 */
export type ErrorFields = Readonly<Record<string, ErrorFieldValue | undefined>>;

export interface VolchainErrorOptions {
  cause?: unknown;
  /** Default 'unchanged'; an error wrapping another keeps the wrapped one's outcome unless it says otherwise. */
  outcome?: ErrorOutcome;
  fields?: ErrorFields;
}

/** The JSON form of an error (the CLI's `{"error": ...}` under --json; an API's error body). */
export interface ErrorJson {
  code: ErrorCode;
  exitStatus: number;
  message: string;
  outcome: ErrorOutcome;
  fields: Record<string, ErrorFieldValue>;
}

export class VolchainError extends Error {
  readonly code: ErrorCode;
  readonly outcome: ErrorOutcome;
  /** The values involved; undefined entries dropped. */
  readonly fields: Readonly<Record<string, ErrorFieldValue>>;
  constructor(code: ErrorCode, message: string, options: VolchainErrorOptions = {}) {
    super(message, options.cause !== undefined ? { cause: options.cause } : undefined);
    this.code = code;
    this.name = new.target.name;
    // A wrapper (`new VolchainError(inner.code, more context, { cause: inner })`) keeps what the inner error
    // knew, so adding words to a message never loses the structured data.
    const inner = options.cause instanceof VolchainError ? options.cause : undefined;
    this.outcome = options.outcome ?? inner?.outcome ?? 'unchanged';
    this.fields = definedFields({ ...inner?.fields, ...options.fields });
  }
  get exitStatus(): number {
    return EXIT_STATUS[this.code];
  }
  /** The error as data (message unescaped: the CLI escapes what it prints). */
  toJSON(): ErrorJson {
    return { code: this.code, exitStatus: this.exitStatus, message: this.message, outcome: this.outcome, fields: { ...this.fields } };
  }
}

function definedFields(fields: ErrorFields): Record<string, ErrorFieldValue> {
  const out: Record<string, ErrorFieldValue> = {};
  for (const [key, value] of Object.entries(fields)) if (value !== undefined) out[key] = value;
  return out;
}

export class InvalidInputError extends VolchainError {
  constructor(message: string, options?: VolchainErrorOptions) {
    super('INVALID_INPUT', message, options);
  }
}

export class ConfigError extends VolchainError {
  readonly file: string;
  readonly line: number | undefined;
  constructor(file: string, line: number | undefined, message: string) {
    super('CONFIG', line === undefined ? `${file}: ${message}` : `${file}:${line}: ${message}`, { fields: { file, line } });
    this.file = file;
    this.line = line;
  }
}

export class NotFoundError extends VolchainError {
  constructor(message: string, options?: VolchainErrorOptions) {
    super('NOT_FOUND', message, options);
  }
}

export class AlreadyExistsError extends VolchainError {
  constructor(message: string, options?: VolchainErrorOptions) {
    super('ALREADY_EXISTS', message, options);
  }
}

export class NotSupportedError extends VolchainError {
  constructor(message: string, options?: VolchainErrorOptions) {
    super('NOT_SUPPORTED', message, options);
  }
}

export class LockedError extends VolchainError {
  constructor(message: string, options?: VolchainErrorOptions) {
    super('LOCKED', message, options);
  }
}

export class PendingOperationError extends VolchainError {
  constructor(message: string, options?: VolchainErrorOptions) {
    super('PENDING_OPERATION', message, options);
  }
}

/** A qcow2 header that breaks a security rule (DESIGN.md section 6): never hand such an image to QEMU. */
export class UnsafeImageError extends VolchainError {
  readonly layer: string;
  readonly reference: string | undefined;
  constructor(layer: string, message: string, reference?: string) {
    // The reference comes from a header anyone may have written: escaped, and cut (QEMU allows 1023 bytes).
    super('UNSAFE_IMAGE', `${layer}: ${message}${reference === undefined ? '' : ` (${quoteForeign(reference, 128)})`}`, {
      fields: { layer, reference: reference === undefined ? undefined : quoteForeign(reference, 128) },
    });
    this.layer = layer;
    this.reference = reference;
  }
}

/** A file that is not a well-formed image of the expected format (truncated, wrong magic, bad offsets). */
export class CorruptImageError extends VolchainError {
  readonly layer: string;
  constructor(layer: string, message: string) {
    super('CORRUPT_IMAGE', `${layer}: ${message}`, { fields: { layer } });
    this.layer = layer;
  }
}

export class NoSpaceError extends VolchainError {
  constructor(message: string, options?: VolchainErrorOptions) {
    super('NO_SPACE', message, options);
  }
}

export class CommandFailedError extends VolchainError {
  readonly argv: readonly string[];
  readonly exitCode: number | null;
  readonly stderr: string;
  constructor(argv: readonly string[], exitCode: number | null, stderr: string, signal?: string | null) {
    const how = exitCode === null ? `was killed by ${signal ?? 'a signal'}` : `exited with status ${exitCode}`;
    const detail = lastMeaningfulLine(stderr);
    super('COMMAND_FAILED', `${argv.join(' ')} ${how}${detail ? `: ${detail}` : ''}`, {
      fields: { argv: [...argv], exitCode, signal: exitCode === null ? (signal ?? null) : undefined },
    });
    this.argv = argv;
    this.exitCode = exitCode;
    this.stderr = stderr;
  }
}

/**
 * A failure talking to a running QEMU over QMP: QEMU refused a command, went away, did not answer in time, or
 * a block job failed. QEMU is an external program, so the code (and exit status) is that of a failed command;
 * src/qmp/errors.ts has the specific kinds.
 */
export class QmpError extends VolchainError {
  constructor(message: string, options?: VolchainErrorOptions) {
    super('COMMAND_FAILED', message, options);
  }
}

function lastMeaningfulLine(text: string): string {
  const lines = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.length > 0);
  return lines[lines.length - 1] ?? '';
}

/** Wraps anything thrown into a VolchainError so the CLI has a code and a one-line message. */
export function asVolchainError(err: unknown): VolchainError {
  if (err instanceof VolchainError) return err;
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    const path = (err as NodeJS.ErrnoException).path;
    const fields = path !== undefined ? { path } : {};
    if (code === 'ENOSPC') return new NoSpaceError(`no space left on device: ${err.message}`, { fields });
    if (code === 'ENOENT') return new NotFoundError(err.message, { cause: err, fields });
    return new VolchainError('INTERNAL', err.message, { cause: err, fields });
  }
  return new VolchainError('INTERNAL', String(err));
}
