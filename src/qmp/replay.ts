/**
 * A transport that plays QEMU from a transcript, for tests of the client and of anything built on it (live
 * plans) without a QEMU process. Steps run in order:
 * - `{ send }`: QEMU sends this message (an object is written as one JSON line; a string goes out verbatim,
 *   so tests can split messages across chunks or send garbage);
 * - `{ expect, arguments?, as? }`: the client must now send command `expect` (with exactly these arguments
 *   when given); its id is remembered under `as` (default: the command name);
 * - `{ reply, return | error }`: QEMU answers the request remembered as `reply`, with that request's id, so
 *   replies can be played in any order relative to the requests;
 * - `{ close }`: QEMU goes away.
 * A request that does not match the transcript (or comes after its end) is recorded in `mismatches` and ends
 * the connection, so a test fails loudly instead of hanging. `finished` resolves once every step has been played.
 */
import { isDeepStrictEqual } from 'node:util';
import type { QmpGreeting, QmpTransport, QmpTransportHandlers } from './protocol.js';

export type ReplayStep =
  | { send: Record<string, unknown> | string }
  | { expect: string; arguments?: Record<string, unknown>; as?: string }
  | { reply: string; return?: unknown; error?: { class: string; desc: string } }
  | { close: true };

export class ReplayTransport implements QmpTransport {
  readonly address = 'replay:transcript';
  /** Every request the client sent, parsed. */
  readonly sent: Record<string, unknown>[] = [];
  readonly mismatches: string[] = [];
  readonly finished: Promise<void>;
  readonly #steps: ReplayStep[];
  readonly #ids = new Map<string, unknown>();
  readonly #inbox: Record<string, unknown>[] = [];
  #scheduled = false;
  #at = 0;
  #handlers: QmpTransportHandlers | undefined;
  #closed = false;
  #resolveFinished!: () => void;

  constructor(steps: readonly ReplayStep[]) {
    this.#steps = [...steps];
    this.finished = new Promise((resolve) => {
      this.#resolveFinished = resolve;
    });
  }

  /** Steps not played yet (for assertion messages). */
  get remaining(): readonly ReplayStep[] {
    return this.#steps.slice(this.#at);
  }

  start(handlers: QmpTransportHandlers): void {
    this.#handlers = handlers;
    this.#advance();
  }

  send(text: string): void {
    if (this.#closed) throw new Error('replay transport is closed');
    for (const line of text.split('\n').filter((l) => l.trim() !== '')) {
      const request = JSON.parse(line) as Record<string, unknown>;
      this.sent.push(request);
      this.#inbox.push(request);
    }
    this.#advance();
  }

  close(): void {
    this.#end();
  }

  #mismatch(step: { expect: string; arguments?: Record<string, unknown> }, request: Record<string, unknown>): string | undefined {
    if (request['execute'] !== step.expect) return `expected ${step.expect}`;
    if (step.arguments !== undefined && !isDeepStrictEqual(request['arguments'], step.arguments)) {
      return `expected arguments ${JSON.stringify(step.arguments)}`;
    }
    return undefined;
  }

  #reject(request: Record<string, unknown>, problem: string): void {
    this.mismatches.push(`request ${JSON.stringify(request)}: ${problem}`);
    this.#end(new Error(`unexpected request: ${problem}`));
  }

  /**
   * Plays QEMU's side up to the next request it waits for, each message on its own turn of the event loop.
   * Requests wait in the inbox until their `expect` step comes up, like bytes in a socket that QEMU has not
   * read yet: a client may send before QEMU's earlier output has arrived.
   */
  #advance(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      if (this.#closed || !this.#handlers) return;
      const step = this.#steps[this.#at];
      if (step === undefined) {
        const extra = this.#inbox.shift();
        if (extra) this.#reject(extra, 'the transcript expected no more requests');
        else this.#resolveFinished();
        return;
      }
      if ('expect' in step) {
        const request = this.#inbox.shift();
        if (!request) return; // wait for send()
        const problem = this.#mismatch(step, request);
        if (problem !== undefined) {
          this.#reject(request, problem);
          return;
        }
        this.#ids.set(step.as ?? step.expect, request['id']);
        this.#at++;
        this.#advance();
        return;
      }
      this.#at++;
      if ('close' in step) {
        this.#end();
        this.#resolveFinished();
        return;
      }
      if ('send' in step) {
        this.#handlers.data(typeof step.send === 'string' ? step.send : `${JSON.stringify(step.send)}\r\n`);
      } else {
        if (!this.#ids.has(step.reply)) {
          this.mismatches.push(`reply to ${step.reply}: no such request was sent`);
          this.#end(new Error(`transcript replies to unknown request ${step.reply}`));
          return;
        }
        const id = this.#ids.get(step.reply);
        const msg = step.error !== undefined ? { error: step.error, id } : { return: step.return ?? {}, id };
        this.#handlers.data(`${JSON.stringify(msg)}\r\n`);
      }
      this.#advance();
    });
  }

  #end(error?: Error): void {
    if (this.#closed) return;
    this.#closed = true;
    const handlers = this.#handlers;
    setImmediate(() => handlers?.closed(error));
  }
}

/** QEMU 7.2's greeting. */
export function greeting(version: { major: number; minor: number; micro: number } = { major: 7, minor: 2, micro: 0 }): QmpGreeting {
  return { QMP: { version: { qemu: version, package: 'replay' }, capabilities: ['oob'] } };
}

/** The steps of a normal handshake: greeting, qmp_capabilities, its answer. */
export function handshake(): ReplayStep[] {
  return [
    { send: greeting() as unknown as Record<string, unknown> },
    { expect: 'qmp_capabilities', as: 'qmp_capabilities' },
    { reply: 'qmp_capabilities', return: {} },
  ];
}

/** An event as QEMU sends it (timestamp included). */
export function event(name: string, data: Record<string, unknown> = {}): { send: Record<string, unknown> } {
  return { send: { event: name, data, timestamp: { seconds: 1700000000, microseconds: 0 } } };
}
