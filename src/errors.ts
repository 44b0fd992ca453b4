/**
 * The error tree. Every failure volchain reports is a VolchainError with a stable `code`; the CLI maps codes
 * to exit statuses and prints `message` on one line, so messages must name the offending value and say what
 * to do about it.
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

export class VolchainError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
  get exitStatus(): number {
    return EXIT_STATUS[this.code];
  }
}

export class InvalidInputError extends VolchainError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('INVALID_INPUT', message, options);
  }
}

export class ConfigError extends VolchainError {
  readonly file: string;
  readonly line: number | undefined;
  constructor(file: string, line: number | undefined, message: string) {
    super('CONFIG', line === undefined ? `${file}: ${message}` : `${file}:${line}: ${message}`);
    this.file = file;
    this.line = line;
  }
}

export class NotFoundError extends VolchainError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('NOT_FOUND', message, options);
  }
}

export class AlreadyExistsError extends VolchainError {
  constructor(message: string) {
    super('ALREADY_EXISTS', message);
  }
}

export class NotSupportedError extends VolchainError {
  constructor(message: string) {
    super('NOT_SUPPORTED', message);
  }
}

export class LockedError extends VolchainError {
  constructor(message: string) {
    super('LOCKED', message);
  }
}

export class PendingOperationError extends VolchainError {
  constructor(message: string) {
    super('PENDING_OPERATION', message);
  }
}

/** A qcow2 header that breaks a security rule (DESIGN.md section 6): never hand such an image to QEMU. */
export class UnsafeImageError extends VolchainError {
  readonly layer: string;
  readonly reference: string | undefined;
  constructor(layer: string, message: string, reference?: string) {
    // The reference comes from a header anyone may have written: escaped, and cut (QEMU allows 1023 bytes).
    super('UNSAFE_IMAGE', `${layer}: ${message}${reference === undefined ? '' : ` (${quoteForeign(reference, 128)})`}`);
    this.layer = layer;
    this.reference = reference;
  }
}

/** A file that is not a well-formed image of the expected format (truncated, wrong magic, bad offsets). */
export class CorruptImageError extends VolchainError {
  readonly layer: string;
  constructor(layer: string, message: string) {
    super('CORRUPT_IMAGE', `${layer}: ${message}`);
    this.layer = layer;
  }
}

export class NoSpaceError extends VolchainError {
  constructor(message: string, options?: { cause?: unknown }) {
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
    super('COMMAND_FAILED', `${argv.join(' ')} ${how}${detail ? `: ${detail}` : ''}`);
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
  constructor(message: string, options?: { cause?: unknown }) {
    super('COMMAND_FAILED', message, options);
  }
}

function lastMeaningfulLine(text: string): string {
  const lines = text.split('\n').map((l) => l.trim()).filter((l) => l.length > 0);
  return lines[lines.length - 1] ?? '';
}

/** Wraps anything thrown into a VolchainError so the CLI has a code and a one-line message. */
export function asVolchainError(err: unknown): VolchainError {
  if (err instanceof VolchainError) return err;
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOSPC') return new NoSpaceError(`no space left on device: ${err.message}`);
    if (code === 'ENOENT') return new NotFoundError(err.message, { cause: err });
    return new VolchainError('INTERNAL', err.message, { cause: err });
  }
  return new VolchainError('INTERNAL', String(err));
}
