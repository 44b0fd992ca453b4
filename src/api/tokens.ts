/**
 * API tokens: `volchain token create|list|revoke` and the server's check of `Authorization: Bearer <token>`.
 * A token is 32 random bytes (base64url, prefixed `vct_` so it is recognisable in a leaked log); only its
 * SHA-256 is stored, in `<state dir>/api/tokens.json` (mode 0600, its directory 0700), so reading the file
 * gives no usable token. The secret is shown once, when made. The file is read on every check, so a revoked
 * token stops working at once, without restarting the server. Writers take a flock on a lock file beside it
 * (two `token create` at once must not lose one) and replace the file by rename (a reader never sees half).
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmod, mkdir, open, readFile, rename, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { AlreadyExistsError, InvalidInputError, NotFoundError, VolchainError } from '../errors.js';
import { acquireLock, DEFAULT_LOCK_TIMEOUT_MS } from '../engine/session/lock.js';
import { DEFAULT_STATE_ROOT } from '../backends/lvm/state-dirs.js';
import type { Settings } from '../settings.js';

export interface TokenInfo {
  name: string;
  readOnly: boolean;
  createdAt: string;
}

interface StoredToken extends TokenInfo {
  /** sha256 of the token, hex. */
  sha256: string;
}

interface TokenFile {
  version: 1;
  tokens: StoredToken[];
}

/** A name a person types and reads in logs: no spaces, no path characters. */
const TOKEN_NAME = /^[A-Za-z][A-Za-z0-9_.-]{0,63}$/;
const TOKEN_PREFIX = 'vct_';

/** `<state dir>/api`: the API's own state (tokens, tasks), beside the LVM storages' state. */
export function apiStateDir(settings: Pick<Settings, 'stateDir'>): string {
  return join(settings.stateDir !== undefined && settings.stateDir !== '' ? settings.stateDir : DEFAULT_STATE_ROOT, 'api');
}

export function validateTokenName(name: string): void {
  if (!TOKEN_NAME.test(name)) {
    throw new InvalidInputError(`token name '${name}' is not valid: a letter, then up to 63 letters, digits, '_', '.' or '-'`);
  }
}

function sha256(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

export class TokenStore {
  readonly file: string;
  constructor(readonly dir: string) {
    this.file = join(dir, 'tokens.json');
  }

  /** Makes a token; returns it with its secret, which is stored nowhere (only its hash). */
  async create(name: string, readOnly: boolean): Promise<TokenInfo & { token: string }> {
    validateTokenName(name);
    return this.update((tokens) => {
      if (tokens.some((t) => t.name === name))
        throw new AlreadyExistsError(`token '${name}' exists: revoke it first or pick another name`, { fields: { token: name } });
      const token = TOKEN_PREFIX + randomBytes(32).toString('base64url');
      const info: TokenInfo = { name, readOnly, createdAt: new Date().toISOString() };
      return { tokens: [...tokens, { ...info, sha256: sha256(token) }], result: { ...info, token } };
    });
  }

  async list(): Promise<TokenInfo[]> {
    return (await this.read()).map(({ name, readOnly, createdAt }) => ({ name, readOnly, createdAt }));
  }

  async revoke(name: string): Promise<void> {
    validateTokenName(name);
    await this.update((tokens) => {
      if (!tokens.some((t) => t.name === name)) throw new NotFoundError(`token '${name}' does not exist`, { fields: { token: name } });
      return { tokens: tokens.filter((t) => t.name !== name), result: undefined };
    });
  }

  /** The token `presented` is, or undefined. Every stored hash is compared in constant time. */
  async verify(presented: string): Promise<TokenInfo | undefined> {
    if (!presented.startsWith(TOKEN_PREFIX) || presented.length > 128) return undefined;
    const digest = Buffer.from(sha256(presented), 'hex');
    let found: StoredToken | undefined;
    for (const t of await this.read()) {
      const stored = Buffer.from(t.sha256, 'hex');
      if (stored.length === digest.length && timingSafeEqual(stored, digest)) found = t;
    }
    return found ? { name: found.name, readOnly: found.readOnly, createdAt: found.createdAt } : undefined;
  }

  /** The stored tokens; none when there is no file yet. A file others may write is refused (they could add a token). */
  private async read(): Promise<StoredToken[]> {
    let text: string;
    try {
      const st = await stat(this.file);
      if ((st.mode & 0o022) !== 0 || (process.getuid !== undefined && st.uid !== process.getuid())) {
        throw new VolchainError('CONFIG', `${this.file} is writable by others or not owned by this user: refusing to trust its tokens (chmod 600)`, {
          fields: { file: this.file },
        });
      }
      text = await readFile(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    try {
      const doc = JSON.parse(text) as Partial<Record<keyof TokenFile, unknown>> | null;
      if (doc?.version !== 1 || !Array.isArray(doc.tokens)) throw new Error('not a version 1 token file');
      return doc.tokens as StoredToken[];
    } catch (err) {
      throw new VolchainError('CONFIG', `${this.file} is not a token file volchain wrote: ${(err as Error).message}`, { fields: { file: this.file } });
    }
  }

  /** Read, change, write back, under the token file's lock. */
  private async update<T>(change: (tokens: StoredToken[]) => { tokens: StoredToken[]; result: T }): Promise<T> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    await chmod(this.dir, 0o700);
    const lock = await acquireLock(join(this.dir, 'tokens.lock'), 'token', DEFAULT_LOCK_TIMEOUT_MS);
    try {
      const { tokens, result } = change(await this.read());
      const tmp = `${this.file}.tmp-${process.pid}`;
      const handle = await open(tmp, 'w', 0o600);
      try {
        await handle.writeFile(JSON.stringify({ version: 1, tokens } satisfies TokenFile, null, 2) + '\n');
        await handle.sync();
      } finally {
        await handle.close();
      }
      // If we die before the rename, the old file stands and a tmp file is left; the next write replaces it.
      await rename(tmp, this.file);
      return result;
    } finally {
      await lock.release();
    }
  }
}
