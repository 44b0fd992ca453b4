/**
 * The QMP wire protocol without any vocabulary (QEMU's docs/interop/qmp-spec): what a message looks like,
 * how messages are framed on the stream, and the transport the client talks through. Nothing here knows a
 * command name except the capabilities handshake in client.ts; commands.ts holds the vocabulary.
 *
 * Framing: QEMU writes every message as one line of compact JSON ending in "\r\n" (strings escape their
 * newlines), so splitting on '\n' is exact. We send one JSON object per line too; QEMU's parser does not
 * need the newline but it keeps traces readable.
 */
import { QmpProtocolError } from './errors.js';

export interface QmpVersion {
  qemu: { major: number; minor: number; micro: number };
  package: string;
}

/** The first message on every connection: `{"QMP": {"version": ..., "capabilities": [...]}}`. */
export interface QmpGreeting {
  QMP: { version: QmpVersion; capabilities: string[] };
}

export interface QmpEventTimestamp {
  seconds: number;
  microseconds: number;
}

export interface QmpEvent<D = Record<string, unknown>> {
  event: string;
  data: D;
  timestamp: QmpEventTimestamp;
}

/** A request as it goes on the wire. Our ids are strings; QEMU echoes any JSON value back unchanged. */
export interface QmpRequest {
  execute: string;
  arguments?: Record<string, unknown>;
  id: string;
}

/** A message from QEMU, classified. `id` is absent only on replies QEMU could not tie to a request. */
export type QmpMessage =
  | { kind: 'greeting'; greeting: QmpGreeting }
  | { kind: 'return'; id: unknown; value: unknown }
  | { kind: 'error'; id: unknown; errorClass: string; desc: string }
  | { kind: 'event'; event: QmpEvent };

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Parses and classifies one line from QEMU; throws QmpProtocolError for anything that is not QMP. */
export function parseMessage(line: string): QmpMessage {
  let msg: unknown;
  try {
    msg = JSON.parse(line);
  } catch (err) {
    throw new QmpProtocolError(`QEMU sent a line that is not JSON: ${JSON.stringify(line.slice(0, 200))}`, { cause: err });
  }
  if (!isObject(msg)) throw new QmpProtocolError(`QEMU sent JSON that is not an object: ${line.slice(0, 200)}`);
  if ('QMP' in msg) {
    const qmp = msg['QMP'];
    if (!isObject(qmp) || !isObject(qmp['version']) || !Array.isArray(qmp['capabilities'])) {
      throw new QmpProtocolError(`malformed QMP greeting: ${line.slice(0, 200)}`);
    }
    return { kind: 'greeting', greeting: msg as unknown as QmpGreeting };
  }
  if ('event' in msg) {
    if (typeof msg['event'] !== 'string') throw new QmpProtocolError(`malformed QMP event: ${line.slice(0, 200)}`);
    const data = isObject(msg['data']) ? msg['data'] : {};
    const ts = isObject(msg['timestamp']) ? msg['timestamp'] : {};
    return {
      kind: 'event',
      event: {
        event: msg['event'],
        data,
        timestamp: { seconds: Number(ts['seconds'] ?? 0), microseconds: Number(ts['microseconds'] ?? 0) },
      },
    };
  }
  if ('return' in msg) return { kind: 'return', id: msg['id'], value: msg['return'] };
  if ('error' in msg) {
    const e = msg['error'];
    if (!isObject(e)) throw new QmpProtocolError(`malformed QMP error reply: ${line.slice(0, 200)}`);
    return {
      kind: 'error',
      id: msg['id'],
      errorClass: typeof e['class'] === 'string' ? e['class'] : 'GenericError',
      desc: typeof e['desc'] === 'string' ? e['desc'] : JSON.stringify(e),
    };
  }
  throw new QmpProtocolError(`QEMU sent an unknown kind of message: ${line.slice(0, 200)}`);
}

/** One request, framed for the wire. Arguments are left out when there are none (QEMU accepts both). */
export function encodeRequest(request: QmpRequest): string {
  return `${JSON.stringify(request)}\n`;
}

/**
 * Cuts a stream of text into lines. Chunks may end anywhere (mid-message, mid-line); `push` returns the
 * complete lines seen so far, without their "\r\n", skipping empty ones.
 */
export class LineSplitter {
  #rest = '';

  push(chunk: string): string[] {
    const text = this.#rest + chunk;
    const parts = text.split('\n');
    this.#rest = parts.pop() ?? '';
    return parts.map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l)).filter((l) => l.trim().length > 0);
  }

  /** Text received after the last newline (a partial message when the stream ends). */
  get pending(): string {
    return this.#rest;
  }
}

export interface QmpTransportHandlers {
  /** Text as it arrives (any chunking, already decoded from UTF-8). */
  data(text: string): void;
  /** The stream ended, by either side; `error` when it ended by a failure. Called once. */
  closed(error?: Error): void;
}

/**
 * What the client talks through: a unix socket in production (socket.ts), a replayed transcript in tests
 * (replay.ts). A transport buffers whatever arrives before `start` so the greeting cannot be lost.
 */
export interface QmpTransport {
  /** Where this leads, for messages ("unix:/run/qemu/100.qmp"). */
  readonly address: string;
  start(handlers: QmpTransportHandlers): void;
  send(text: string): void;
  /** Ends the connection; `closed` follows (possibly later, possibly never once the client stopped caring). */
  close(): void;
}
