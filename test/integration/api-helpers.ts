/**
 * The HTTP API on a real dir storage (helpers.ts makeStorage), driven with fastify's app.inject(): no port,
 * the real routes, schemas, auth, tasks and library underneath. Tokens are made through the token store the
 * CLI uses, in a state directory of the test's own.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { buildApi } from '../../src/api/app.js';
import { TokenStore } from '../../src/api/tokens.js';
import type { Task } from '../../src/api/tasks.js';
import type { ErrorJson } from '../../src/errors.js';
import type { TestStorage } from './helpers.js';

export interface TestApi {
  app: FastifyInstance;
  stateDir: string;
  /** A read-write token and a read-only one. */
  admin: string;
  reader: string;
  tokens: TokenStore;
  /** A request with the admin token (or `token`; null: none). */
  call(
    method: 'GET' | 'POST' | 'DELETE' | 'PUT',
    url: string,
    opts?: { body?: unknown; token?: string | null; payload?: string; headers?: Record<string, string> },
  ): Promise<Reply>;
  close(): Promise<void>;
}

export interface Reply {
  status: number;
  body: unknown;
  text: string;
  headers: Record<string, unknown>;
}

/** `encodeURIComponent` of a volid: the form it takes in a URL path. */
export function enc(volid: string): string {
  return encodeURIComponent(volid);
}

/**
 * An API over `s.vc` in a fresh state directory with two tokens (admin, reader); or over the given state
 * directory (`stateDir`, the API's own: tokens.json, tasks/), whose `admin` token the caller made.
 */
export async function makeApi(
  s: Pick<TestStorage, 'vc'>,
  opts: { stateDir?: string; admin?: string; bodyLimitBytes?: number; importLimitBytes?: number } = {},
): Promise<TestApi> {
  const stateDir = opts.stateDir ?? (await mkdtemp(join(tmpdir(), 'volchain-api-state-')));
  const tokens = new TokenStore(stateDir);
  const admin = opts.stateDir === undefined ? (await tokens.create('admin', false)).token : (opts.admin ?? '');
  const reader = opts.stateDir === undefined ? (await tokens.create('reader', true)).token : '';
  const app = await buildApi({
    volchain: s.vc,
    stateDir,
    version: 'test',
    ...(opts.bodyLimitBytes !== undefined ? { bodyLimitBytes: opts.bodyLimitBytes } : {}),
    ...(opts.importLimitBytes !== undefined ? { importLimitBytes: opts.importLimitBytes } : {}),
  });
  const call: TestApi['call'] = async (method, url, o = {}) => {
    const token = o.token === undefined ? admin : o.token;
    const headers: Record<string, string> = { ...(token !== null ? { authorization: `Bearer ${token}` } : {}), ...o.headers };
    const payload = o.payload ?? (o.body !== undefined ? JSON.stringify(o.body) : undefined);
    if (payload !== undefined) headers['content-type'] ??= 'application/json';
    const r = await app.inject({ method, url, headers, ...(payload !== undefined ? { payload } : {}) });
    let body: unknown;
    try {
      body = JSON.parse(r.body);
    } catch {
      body = undefined;
    }
    return { status: r.statusCode, body, text: r.body, headers: r.headers };
  };
  return {
    app,
    stateDir,
    admin,
    reader,
    tokens,
    call,
    close: async () => {
      await app.close();
      if (opts.stateDir === undefined) await rm(stateDir, { recursive: true, force: true });
    },
  };
}

/** The reply must be an error document with this status and code; returns the error. */
export function errorOf(r: Reply, status: number, code: string, what: string): ErrorJson {
  assert.equal(r.status, status, `${what}: status (body ${r.text})`);
  const doc = r.body as { error?: ErrorJson };
  assert.ok(doc.error, `${what}: an error document, got ${r.text}`);
  assert.deepEqual(Object.keys(doc).sort(), ['error'], what);
  assert.equal(doc.error.code, code, `${what}: code (${doc.error.message})`);
  assert.equal(typeof doc.error.message, 'string');
  assert.ok(!doc.error.message.includes('\n'), `${what}: a one-line message`);
  return doc.error;
}

/** Starts a mutation (202) and returns its task id. */
export async function accepted(api: TestApi, method: 'POST' | 'DELETE', url: string, body?: unknown): Promise<string> {
  const r = await api.call(method, url, body !== undefined ? { body } : {});
  assert.equal(r.status, 202, `${method} ${url}: expected 202, got ${r.status}: ${r.text}`);
  const doc = r.body as { task: string; state: string; href: string };
  assert.equal(doc.href, `/api/tasks/${doc.task}`);
  assert.equal(r.headers.location, doc.href);
  return doc.task;
}

/** The events of a task's stream, to its end (the stream closes when the task ends). */
export async function eventsOf(api: TestApi, id: string): Promise<{ event: string; data: unknown }[]> {
  const r = await api.app.inject({ method: 'GET', url: `/api/tasks/${id}/events`, headers: { authorization: `Bearer ${api.admin}` } });
  assert.equal(r.statusCode, 200, r.body);
  assert.match(String(r.headers['content-type']), /^text\/event-stream/);
  return r.body
    .split('\n\n')
    .filter((block) => block.startsWith('event: '))
    .map((block) => {
      const [head = '', data = ''] = block.split('\n');
      return { event: head.slice('event: '.length), data: JSON.parse(data.slice('data: '.length)) as unknown };
    });
}

/** Waits for the task to end (through its event stream) and returns it as GET shows it. */
export async function finished(api: TestApi, id: string): Promise<Task> {
  const events = await eventsOf(api, id);
  assert.equal(events.at(-1)?.event, 'end', `task ${id}: the stream ends with 'end'`);
  const r = await api.call('GET', `/api/tasks/${id}`);
  assert.equal(r.status, 200, r.text);
  return r.body as Task;
}

/** Runs a mutation to its end; it must succeed. Returns the task. */
export async function runTask(api: TestApi, method: 'POST' | 'DELETE', url: string, body?: unknown): Promise<Task> {
  const task = await finished(api, await accepted(api, method, url, body));
  assert.equal(task.state, 'done', `${method} ${url}: task ${task.state}: ${JSON.stringify(task.error)}`);
  return task;
}
