/**
 * A QMP client: one connection to one QEMU, modelled on python's qemu.qmp.
 *
 * States: idle → connecting → negotiating → ready → closed. `connect` walks the first three (transport up,
 * greeting read, `qmp_capabilities` answered); `execute` is allowed only when ready. Any end of the
 * connection (QEMU exits or crashes, the socket breaks, QEMU breaks the protocol, or `close()`) moves to
 * closed, and every pending call and event waiter fails with the *same* QmpDisconnectedError: a caller that
 * had several commands in flight sees one cause, and knows none of them can be trusted to have (or not have)
 * taken effect.
 *
 * Requests carry string ids ("c1", "c2", ...); replies are matched by id, so replies may come in any order
 * and events may come between them. A reply without an id means QEMU could not parse what we sent; like
 * qemu.qmp we do not guess which request it belongs to and disconnect instead.
 */
import { QmpCommandError, QmpDisconnectedError, QmpError, QmpProtocolError, QmpTimeoutError } from './errors.js';
import { LineSplitter, encodeRequest, parseMessage, type QmpEvent, type QmpGreeting, type QmpMessage, type QmpTransport } from './protocol.js';
import { connectUnixSocket } from './socket.js';

export type QmpState = 'idle' | 'connecting' | 'negotiating' | 'ready' | 'closed';

export interface QmpClientOptions {
  /** Timeout of a command that gives none (default 30 s); 0 waits forever. */
  defaultTimeoutMs?: number;
  /** Sees every line sent ('out') and received ('in'): debugging, and recording transcripts for tests. */
  trace?: (direction: 'in' | 'out', line: string) => void;
  /** Sees every state change. */
  onStateChange?: (state: QmpState) => void;
}

export interface ExecuteOptions {
  /** 0 waits forever. A timed-out command may still run in QEMU; its late answer is dropped. */
  timeoutMs?: number;
}

/** What commands.ts needs from a client: tests of the vocabulary can stub just this. */
export interface QmpExecutor {
  execute<T = unknown>(command: string, args?: Record<string, unknown>, options?: ExecuteOptions): Promise<T>;
}

export type EventListener = (event: QmpEvent) => void;

export interface SubscribeOptions {
  filter?: (event: QmpEvent) => boolean;
  onClose?: (error: QmpDisconnectedError) => void;
}

interface Pending {
  command: string;
  resolve(value: unknown): void;
  reject(error: Error): void;
  timer: NodeJS.Timeout | undefined;
}

interface Subscription {
  names: ReadonlySet<string> | '*';
  filter: ((event: QmpEvent) => boolean) | undefined;
  listener: EventListener;
  onClose: ((error: QmpDisconnectedError) => void) | undefined;
}

const DEFAULT_TIMEOUT_MS = 30_000;
const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;

export class QmpClient implements QmpExecutor {
  #state: QmpState = 'idle';
  #transport: QmpTransport | undefined;
  readonly #splitter = new LineSplitter();
  readonly #pending = new Map<string, Pending>();
  readonly #subscriptions = new Set<Subscription>();
  #nextId = 1;
  #greeting: QmpGreeting | undefined;
  #greetingWaiter: { resolve(g: QmpGreeting): void; reject(e: Error): void } | undefined;
  #closeError: QmpDisconnectedError | undefined;
  readonly #closed: Promise<QmpDisconnectedError>;
  #resolveClosed!: (error: QmpDisconnectedError) => void;
  readonly #options: QmpClientOptions;

  constructor(options: QmpClientOptions = {}) {
    this.#options = options;
    this.#closed = new Promise((resolve) => {
      this.#resolveClosed = resolve;
    });
  }

  /** Connects to a QMP unix socket and negotiates: the usual way in. */
  static async connectUnix(path: string, options: QmpClientOptions & { connectTimeoutMs?: number } = {}): Promise<QmpClient> {
    const client = new QmpClient(options);
    await client.connect(() => connectUnixSocket(path, { timeoutMs: options.connectTimeoutMs }), { timeoutMs: options.connectTimeoutMs });
    return client;
  }

  get state(): QmpState {
    return this.#state;
  }

  /** QEMU's greeting (version, capabilities), once negotiating has begun. */
  get greeting(): QmpGreeting | undefined {
    return this.#greeting;
  }

  /** Resolves when the connection has ended, with the error pending calls received. Never rejects. */
  get closed(): Promise<QmpDisconnectedError> {
    return this.#closed;
  }

  /**
   * Brings the connection up: opens the transport (or takes an open one), reads the greeting, negotiates
   * capabilities (none enabled: no out-of-band execution). On any failure the client ends up closed.
   */
  async connect(transport: QmpTransport | (() => Promise<QmpTransport>), options: { timeoutMs?: number } = {}): Promise<QmpGreeting> {
    if (this.#state !== 'idle') throw new QmpError(`cannot connect: the QMP client is already ${this.#state}`);
    const timeoutMs = options.timeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    this.#setState('connecting');
    let t: QmpTransport;
    try {
      t = typeof transport === 'function' ? await transport() : transport;
    } catch (err) {
      this.#shutdown(new QmpDisconnectedError('QMP connection could not be opened', { cause: err }));
      throw err;
    }
    if ((this.#state as QmpState) !== 'connecting') {
      // close() was called while the transport was being opened.
      t.close();
      throw this.#closeError ?? new QmpDisconnectedError('QMP client closed while connecting');
    }
    this.#transport = t;
    this.#setState('negotiating');
    const greeting = new Promise<QmpGreeting>((resolve, reject) => {
      this.#greetingWaiter = { resolve, reject };
    });
    t.start({ data: (text) => this.#onData(text), closed: (err) => this.#onTransportClosed(err) });

    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      if (timeoutMs > 0) {
        timer = setTimeout(() => reject(new QmpTimeoutError(`QMP handshake with ${t.address}`, timeoutMs)), timeoutMs);
      }
    });
    try {
      const g = await Promise.race([greeting, deadline]);
      await Promise.race([this.#send('qmp_capabilities', undefined, 0), deadline]);
      this.#setState('ready');
      return g;
    } catch (err) {
      const cause = err instanceof Error ? err : new Error(String(err));
      this.#shutdown(new QmpDisconnectedError(`QMP handshake with ${t.address} failed: ${cause.message}`, { cause }));
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Runs one command and returns what QEMU answered in `return`. Rejects with QmpCommandError when QEMU
   * answers with an error, QmpTimeoutError after `timeoutMs`, QmpDisconnectedError when the connection ends
   * first (or has ended).
   */
  execute<T = unknown>(command: string, args?: Record<string, unknown>, options: ExecuteOptions = {}): Promise<T> {
    if (this.#state !== 'ready') {
      if (this.#state === 'closed') {
        const reason = this.#closeError?.message ?? 'closed';
        return Promise.reject(new QmpDisconnectedError(`cannot run ${command}: not connected to QEMU (${reason})`, { cause: this.#closeError }));
      }
      return Promise.reject(new QmpError(`cannot run ${command}: the QMP connection is ${this.#state}, not ready`));
    }
    return this.#send(command, args, options.timeoutMs ?? this.#options.defaultTimeoutMs ?? DEFAULT_TIMEOUT_MS) as Promise<T>;
  }

  /**
   * Calls `listener` for every event named in `names` ('*' for all) that passes `filter`, until the returned
   * function is called or the connection ends; `onClose` then hears the disconnect error (at once, if the
   * connection has already ended). Listeners run synchronously as events arrive, in order; one that throws
   * does not stop the others, its error surfaces as an uncaught exception (as with an EventEmitter).
   */
  subscribe(names: string | readonly string[], listener: EventListener, options: SubscribeOptions = {}): () => void {
    const sub: Subscription = {
      names: names === '*' ? '*' : new Set(typeof names === 'string' ? [names] : names),
      filter: options.filter,
      listener,
      onClose: options.onClose,
    };
    if (this.#state === 'closed') {
      const error = this.#closeError ?? new QmpDisconnectedError('not connected to QEMU');
      if (options.onClose) queueMicrotask(() => options.onClose?.(error));
      return () => undefined;
    }
    this.#subscriptions.add(sub);
    return () => this.#subscriptions.delete(sub);
  }

  /**
   * The next event called `name` (one of `name`) that satisfies `predicate`. Only events arriving after this
   * call count: call it *before* the command that causes the event. Rejects with QmpTimeoutError, or with
   * the disconnect error when the connection ends.
   */
  waitForEvent(name: string | readonly string[], predicate?: (event: QmpEvent) => boolean, timeoutMs = 0): Promise<QmpEvent> {
    if (this.#state === 'closed') {
      return Promise.reject(this.#closeError ?? new QmpDisconnectedError('not connected to QEMU'));
    }
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const sub: Subscription = {
        names: new Set(typeof name === 'string' ? [name] : name),
        filter: predicate,
        listener: (event) => {
          finish();
          resolve(event);
        },
        onClose: (err) => {
          finish();
          reject(err);
        },
      };
      const finish = (): void => {
        clearTimeout(timer);
        this.#subscriptions.delete(sub);
      };
      if (timeoutMs > 0) {
        const what = `waiting for event ${typeof name === 'string' ? name : name.join('|')}`;
        timer = setTimeout(() => {
          finish();
          reject(new QmpTimeoutError(what, timeoutMs));
        }, timeoutMs);
      }
      this.#subscriptions.add(sub);
    });
  }

  /**
   * Ends the connection without asking QEMU to quit. Pending calls fail with a disconnect error saying the
   * client closed. Idempotent.
   */
  close(): Promise<void> {
    this.#shutdown(new QmpDisconnectedError('QMP connection closed by the client'));
    return Promise.resolve();
  }

  // ---- internals --------------------------------------------------------------------------------------

  #setState(state: QmpState): void {
    this.#state = state;
    this.#options.onStateChange?.(state);
  }

  #send(command: string, args: Record<string, unknown> | undefined, timeoutMs: number): Promise<unknown> {
    const transport = this.#transport;
    if (!transport) return Promise.reject(new QmpError(`cannot run ${command}: no transport`));
    const id = `c${this.#nextId++}`;
    const line = encodeRequest(args === undefined ? { execute: command, id } : { execute: command, arguments: args, id });
    return new Promise((resolve, reject) => {
      const pending: Pending = { command, resolve, reject, timer: undefined };
      if (timeoutMs > 0) {
        pending.timer = setTimeout(() => {
          // Forget the id: a late answer is dropped (traced), the connection stays usable.
          this.#pending.delete(id);
          reject(new QmpTimeoutError(command, timeoutMs));
        }, timeoutMs);
      }
      this.#pending.set(id, pending);
      this.#options.trace?.('out', line.trimEnd());
      try {
        transport.send(line);
      } catch (err) {
        this.#shutdown(new QmpDisconnectedError(`sending ${command} to QEMU failed`, { cause: err }));
      }
    });
  }

  #onData(text: string): void {
    for (const line of this.#splitter.push(text)) {
      if (this.#state === 'closed') return;
      this.#options.trace?.('in', line);
      let msg: QmpMessage;
      try {
        msg = parseMessage(line);
      } catch (err) {
        this.#protocolViolation(err as QmpProtocolError);
        return;
      }
      this.#dispatch(msg);
    }
  }

  #dispatch(msg: QmpMessage): void {
    switch (msg.kind) {
      case 'greeting': {
        const waiter = this.#greetingWaiter;
        if (this.#state !== 'negotiating' || !waiter) {
          this.#protocolViolation(new QmpProtocolError('QEMU sent a second greeting'));
          return;
        }
        this.#greetingWaiter = undefined;
        this.#greeting = msg.greeting;
        waiter.resolve(msg.greeting);
        return;
      }
      case 'event':
        this.#deliver(msg.event);
        return;
      case 'return':
      case 'error': {
        if (this.#greetingWaiter) {
          this.#protocolViolation(new QmpProtocolError('QEMU answered before greeting'));
          return;
        }
        if (msg.id === undefined) {
          const detail = msg.kind === 'error' ? `: ${msg.desc}` : '';
          this.#protocolViolation(new QmpProtocolError(`QEMU sent a reply without id (it could not parse a request)${detail}`));
          return;
        }
        const key = typeof msg.id === 'string' ? msg.id : JSON.stringify(msg.id);
        const pending = this.#pending.get(key);
        if (!pending) return; // the answer to a call that timed out
        this.#pending.delete(key);
        clearTimeout(pending.timer);
        if (msg.kind === 'return') pending.resolve(msg.value);
        else pending.reject(new QmpCommandError(pending.command, msg.errorClass, msg.desc));
        return;
      }
    }
  }

  #deliver(event: QmpEvent): void {
    // A copy: listeners may (un)subscribe while we iterate.
    for (const sub of [...this.#subscriptions]) {
      if (!this.#subscriptions.has(sub)) continue;
      if (sub.names !== '*' && !sub.names.has(event.event)) continue;
      try {
        if (sub.filter && !sub.filter(event)) continue;
        sub.listener(event);
      } catch (err) {
        // A broken listener must not stop the reader (and with it every other caller); surface it the way
        // an EventEmitter would, as an uncaught exception.
        queueMicrotask(() => {
          throw err;
        });
      }
    }
  }

  #protocolViolation(error: QmpProtocolError): void {
    const address = this.#transport?.address ?? 'QEMU';
    this.#shutdown(new QmpDisconnectedError(`QMP protocol error on ${address}, disconnected: ${error.message}`, { cause: error }));
  }

  #onTransportClosed(error?: Error): void {
    const address = this.#transport?.address ?? 'QEMU';
    const how = error ? `failed: ${error.message}` : 'was closed by QEMU';
    this.#shutdown(new QmpDisconnectedError(`QMP connection ${address} ${how}`, { cause: error }));
  }

  /** The one way to 'closed'. Builds the final error naming what was interrupted, and fails everything with it. */
  #shutdown(reason: QmpDisconnectedError): void {
    if (this.#state === 'closed') return;
    const interrupted = [...this.#pending.values()].map((p) => p.command);
    const error = interrupted.length > 0 ? new QmpDisconnectedError(reason.message, { cause: reason.cause, interrupted }) : reason;
    this.#closeError = error;
    this.#setState('closed');
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const p of pending) {
      clearTimeout(p.timer);
      p.reject(error);
    }
    const greetingWaiter = this.#greetingWaiter;
    this.#greetingWaiter = undefined;
    greetingWaiter?.reject(error);
    const subs = [...this.#subscriptions];
    this.#subscriptions.clear();
    for (const sub of subs) sub.onClose?.(error);
    try {
      this.#transport?.close();
    } catch {
      // Already gone: nothing more to close.
    }
    this.#resolveClosed(error);
  }
}
