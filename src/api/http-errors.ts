/**
 * Errors as HTTP: every failure the API sends is `{"error": ErrorJson}` (the CLI's --json error document,
 * src/results.ts ErrorDocument) with a status chosen from the error's code, so a client reads the code, the
 * outcome and the fields (volid, holder, ...) and never parses the message.
 */
import { asVolchainError, InvalidInputError, NotFoundError, VolchainError, type ErrorCode, type ErrorFields } from '../errors.js';
import type { ErrorDocument } from '../results.js';

/**
 * The HTTP status of each error code. NOT_SUPPORTED is 422, not 501: the server implements the route, what
 * it refuses is this request on this resource (a disabled storage, a raw volume's snapshot). CONFIG is 500:
 * the configuration is the server's (storage.cfg, a VM config), not something the client sent.
 */
const HTTP_STATUS: Record<ErrorCode, number> = {
  INVALID_INPUT: 400,
  CONFIG: 500,
  NOT_FOUND: 404,
  ALREADY_EXISTS: 409,
  NOT_SUPPORTED: 422,
  LOCKED: 409,
  PENDING_OPERATION: 409,
  UNSAFE_IMAGE: 422,
  CORRUPT_IMAGE: 422,
  NO_SPACE: 507,
  COMMAND_FAILED: 500,
  INTERNAL: 500,
};

export function httpStatusOf(code: ErrorCode): number {
  return HTTP_STATUS[code];
}

/**
 * An error refused by the API itself (authentication 401, permission 403), with the HTTP status to send. Its
 * code is INVALID_INPUT (what the caller sent is wrong: errors.ts has no code of its own for it); the field
 * `auth` says which: 'missing', 'invalid' or 'read-only'.
 */
export class HttpError extends VolchainError {
  constructor(
    readonly statusCode: number,
    message: string,
    fields: ErrorFields = {},
  ) {
    super('INVALID_INPUT', message, { fields });
  }
}

/** What fastify reports for a request it refused before any handler ran (its own error codes). */
interface FastifyLikeError {
  code?: unknown;
  statusCode?: unknown;
  message: string;
  validation?: unknown;
}

/** The status and the document for anything a route threw or fastify refused. */
export function errorResponse(err: unknown): { status: number; body: ErrorDocument } {
  if (err instanceof HttpError) return { status: err.statusCode, body: { error: err.toJSON() } };
  if (err instanceof VolchainError) return { status: httpStatusOf(err.code), body: { error: err.toJSON() } };
  const f = err as FastifyLikeError;
  const status = typeof f.statusCode === 'number' ? f.statusCode : undefined;
  if (status !== undefined && status >= 400 && status < 500) {
    // Schema validation, a body over the limit, bad JSON, an unsupported content type: the client's input.
    const error = status === 404 ? new NotFoundError(f.message) : new InvalidInputError(f.message);
    return { status, body: { error: error.toJSON() } };
  }
  const error = asVolchainError(err);
  return { status: httpStatusOf(error.code), body: { error: error.toJSON() } };
}
