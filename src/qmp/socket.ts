/**
 * The production transport: QEMU's `-qmp unix:<path>,server=on,wait=off` socket.
 */
import { createConnection, type Socket } from 'node:net';
import { QmpConnectError } from './errors.js';
import type { QmpTransport, QmpTransportHandlers } from './protocol.js';

class SocketTransport implements QmpTransport {
  readonly address: string;
  readonly #socket: Socket;
  #lastError: Error | undefined;
  #closed = false;
  #handlers: QmpTransportHandlers | undefined;

  constructor(address: string, socket: Socket) {
    this.address = address;
    this.#socket = socket;
    // Listeners from the start: an 'error' without a listener would crash the process, and a 'close' before
    // start() must still reach the client.
    socket.on('error', (err) => {
      this.#lastError = err;
    });
    socket.on('close', () => {
      this.#closed = true;
      this.#handlers?.closed(this.#lastError);
    });
  }

  start(handlers: QmpTransportHandlers): void {
    this.#handlers = handlers;
    // Until a 'data' listener exists the socket stays paused and buffers, so nothing said before start()
    // (QEMU greets immediately) is lost.
    this.#socket.setEncoding('utf8');
    this.#socket.on('data', (text: string) => handlers.data(text));
    if (this.#closed) queueMicrotask(() => handlers.closed(this.#lastError));
  }

  send(text: string): void {
    this.#socket.write(text);
  }

  close(): void {
    this.#socket.destroy();
  }
}

/** Connects to a QMP unix socket. Rejects with QmpConnectError (ENOENT: QEMU not started or gone; ECONNREFUSED). */
export function connectUnixSocket(path: string, options: { timeoutMs?: number } = {}): Promise<QmpTransport> {
  const address = `unix:${path}`;
  const timeoutMs = options.timeoutMs ?? 10_000;
  return new Promise((resolve, reject) => {
    const socket = createConnection({ path });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new QmpConnectError(address, new Error(`no connection within ${timeoutMs} ms`)));
    }, timeoutMs);
    const onError = (err: Error): void => {
      clearTimeout(timer);
      socket.destroy();
      reject(new QmpConnectError(address, err));
    };
    socket.once('error', onError);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeListener('error', onError);
      resolve(new SocketTransport(address, socket));
    });
  });
}
