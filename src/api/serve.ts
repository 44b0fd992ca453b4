/**
 * `volchain serve`: what the CLI (cli/commands/serve.ts) loads, lazily, for that command only, so that no
 * other command loads fastify (`volchain token ...` loads tokens.ts alone).
 *
 * The default address is 127.0.0.1:8017: local only unless told otherwise, and a port no Proxmox VE service
 * uses (pveproxy 8006, spiceproxy 3128, pvedaemon 85, PBS 8007, VNC 5900-5999, corosync 5405-5412,
 * migration 60000-60050), so the server can run on a PVE node beside them.
 */
import { readFile } from 'node:fs/promises';
import { pino } from 'pino';
import type { Volchain } from '../engine/volchain.js';
import { InvalidInputError } from '../errors.js';
import type { Settings } from '../settings.js';
import { buildApi } from './app.js';
import { apiStateDir } from './tokens.js';

export const DEFAULT_LISTEN = '127.0.0.1:8017';

export interface ListenAddress {
  host: string;
  port: number;
}

/** `ADDR:PORT` or `[IPv6]:PORT`; port 0 lets the system choose (the address is then printed). */
export function parseListen(text: string): ListenAddress {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) {
    throw new InvalidInputError(`--listen '${text}' is not valid: expected ADDR:PORT, e.g. 127.0.0.1:8017 or [::1]:8017`);
  }
  return { host: m[1] ?? m[2] ?? '', port };
}

export interface ServeOptions {
  volchain: Volchain;
  settings: Settings;
  listen: string;
  tlsCert?: string;
  tlsKey?: string;
  version: string;
  /** Told the URL once the server listens. */
  onListening: (url: string) => void;
}

/** Serves until SIGINT or SIGTERM; then stops accepting requests and waits for running tasks to end. */
export async function serve(options: ServeOptions): Promise<void> {
  const address = parseListen(options.listen);
  if ((options.tlsCert === undefined) !== (options.tlsKey === undefined)) {
    throw new InvalidInputError('--tls-cert and --tls-key go together: give both, or neither for plain HTTP');
  }
  const https =
    options.tlsCert !== undefined && options.tlsKey !== undefined ? { cert: await readFile(options.tlsCert), key: await readFile(options.tlsKey) } : undefined;
  const logger = pino({ level: 'info' }, pino.destination({ fd: 2, sync: true }));
  const app = await buildApi({
    volchain: options.volchain,
    stateDir: apiStateDir(options.settings),
    logger,
    version: options.version,
    ...(https ? { https } : {}),
  });
  const url = await app.listen({ host: address.host, port: address.port });
  options.onListening(url);
  await new Promise<void>((resolve) => {
    const stop = (): void => {
      process.removeListener('SIGINT', stop);
      process.removeListener('SIGTERM', stop);
      logger.info('stopping: waiting for running tasks');
      void app.close().then(resolve, resolve);
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
}
