/**
 * The kinds of QMP failure. All are QmpError (code COMMAND_FAILED), so the CLI needs no special case; callers
 * that must react differently tell them apart with instanceof:
 * - QmpCommandError: QEMU answered `{"error": ...}`; nothing changed in QEMU (commands are atomic).
 * - QmpDisconnectedError: the connection ended. Commands that were pending may or may not have taken effect
 *   in QEMU: a caller must re-read QEMU's state (or the files) before deciding what happened.
 * - QmpTimeoutError: no answer in time. Same uncertainty as a disconnect, but the connection stays usable.
 * - QmpConnectError: QEMU was never reached; nothing was sent.
 * - QmpProtocolError: QEMU (or whatever listens on the socket) broke the protocol; the client disconnects.
 * - QmpJobError: a block job ended without doing its work (failed or cancelled).
 */
import { QmpError } from '../errors.js';

export { QmpError };

export class QmpCommandError extends QmpError {
  readonly command: string;
  /** QEMU's error class, e.g. GenericError, DeviceNotFound, CommandNotFound. */
  readonly errorClass: string;
  /** QEMU's human-readable description, verbatim. */
  readonly desc: string;
  constructor(command: string, errorClass: string, desc: string) {
    super(`QEMU refused ${command}: ${desc} (${errorClass})`);
    this.command = command;
    this.errorClass = errorClass;
    this.desc = desc;
  }
}

/**
 * The one error every pending call (and every event waiter) receives when the connection ends: callers can
 * compare identity to see that their failures share one cause.
 */
export class QmpDisconnectedError extends QmpError {
  /** Commands that were waiting for an answer when the connection ended (they were interrupted). */
  readonly interrupted: readonly string[];
  constructor(message: string, options: { cause?: unknown; interrupted?: readonly string[] } = {}) {
    const interrupted = options.interrupted ?? [];
    super(interrupted.length > 0 ? `${message}; interrupted: ${interrupted.join(', ')}` : message, { cause: options.cause });
    this.interrupted = interrupted;
  }
}

export class QmpTimeoutError extends QmpError {
  readonly what: string;
  readonly timeoutMs: number;
  constructor(what: string, timeoutMs: number) {
    super(`${what}: no answer from QEMU within ${timeoutMs} ms (it may still take effect)`);
    this.what = what;
    this.timeoutMs = timeoutMs;
  }
}

export class QmpConnectError extends QmpError {
  readonly address: string;
  constructor(address: string, cause: unknown) {
    super(`cannot connect to QEMU's QMP socket ${address}: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
    this.address = address;
  }
}

export class QmpProtocolError extends QmpError {}

export type JobOutcome = 'failed' | 'cancelled' | 'missing';

export class QmpJobError extends QmpError {
  readonly jobId: string;
  /** How the job ended (named apart from VolchainError.outcome, which says what the failure left on disk). */
  readonly jobOutcome: JobOutcome;
  /** QEMU's own message for a failed job (JobInfo.error or BLOCK_JOB_COMPLETED's error), if it gave one. */
  readonly qemuMessage: string | undefined;
  constructor(jobId: string, outcome: JobOutcome, message: string, qemuMessage?: string) {
    super(`block job ${jobId} ${message}`, { fields: { jobId, jobOutcome: outcome } });
    this.jobId = jobId;
    this.jobOutcome = outcome;
    this.qemuMessage = qemuMessage;
  }
}
