/**
 * The API from the command line: `volchain token create|list|revoke` (the secret printed once, only its hash
 * in a 0600 file under the state directory), `volchain serve` over TLS with a certificate given, its
 * refusals of bad options, and no other command loading fastify (or any API package) at start-up.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { BIN, cli, cliFails, makeStorage, runCommand, type TestStorage } from './helpers.js';

describe('volchain token and serve', () => {
  let s: TestStorage;
  let env: Record<string, string>;
  before(async () => {
    s = await makeStorage();
    env = { VOLCHAIN_STATE_DIR: join(s.root, 'state') };
  });
  after(async () => s.cleanup());

  it('token create prints the secret once; list shows names and rights only; revoke removes it; bad names and duplicates are refused', async () => {
    const made = await cli(s, ['token', 'create', 'ci', '--read-only', '--json'], { env });
    assert.equal(made.code, 0, made.stderr);
    const doc = JSON.parse(made.stdout) as { name: string; readOnly: boolean; token: string };
    assert.equal(doc.name, 'ci');
    assert.equal(doc.readOnly, true);
    assert.match(doc.token, /^vct_[A-Za-z0-9_-]{43}$/);
    const plain = await cli(s, ['token', 'create', 'admin'], { env });
    assert.equal(plain.code, 0, plain.stderr);
    assert.match(plain.stdout, /^vct_\S+\n# token 'admin': keep it now, it is not shown again\n$/);
    const file = join(s.root, 'state', 'api', 'tokens.json');
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    const stored = await readFile(file, 'utf8');
    assert.ok(!stored.includes(doc.token.slice(4)), 'the secret is not in the file');
    const list = await cli(s, ['token', 'list', '--json'], { env });
    const tokens = (JSON.parse(list.stdout) as { tokens: { name: string; readOnly: boolean }[] }).tokens;
    assert.deepEqual(
      tokens.map((t) => [t.name, t.readOnly]),
      [
        ['ci', true],
        ['admin', false],
      ],
    );
    assert.ok(!list.stdout.includes('vct_'), 'list shows no secret');
    await cliFails(s, ['token', 'create', 'ci'], { code: 4, match: /token 'ci' exists/, env });
    await cliFails(s, ['token', 'create', '../x'], { code: 2, match: /token name/, env });
    assert.equal((await cli(s, ['token', 'revoke', 'ci'], { env })).code, 0);
    await cliFails(s, ['token', 'revoke', 'ci'], { code: 3, match: /does not exist/, env });
  });

  it('serve refuses a bad --listen and a certificate without its key (exit 2)', async () => {
    await cliFails(s, ['serve', '--listen', '0.0.0.0'], { code: 2, match: /--listen '0\.0\.0\.0' is not valid/, env });
    await cliFails(s, ['serve', '--listen', '127.0.0.1:99999'], { code: 2, match: /--listen/, env });
    await cliFails(s, ['serve', '--tls-cert', '/nonexistent.pem'], { code: 2, match: /--tls-cert and --tls-key go together/, env });
  });

  it('serve --tls-cert/--tls-key speaks HTTPS: health without a token, 401 without one elsewhere, 200 with one', async () => {
    const cert = join(s.root, 'cert.pem');
    const key = join(s.root, 'key.pem');
    const ssl = await runCommand('openssl', [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-days',
      '1',
      '-subj',
      '/CN=localhost',
      '-addext',
      'subjectAltName=IP:127.0.0.1',
      '-keyout',
      key,
      '-out',
      cert,
    ]);
    assert.equal(ssl.code, 0, ssl.stderr);
    const token = (JSON.parse((await cli(s, ['token', 'create', 'tls', '--json'], { env })).stdout) as { token: string }).token;
    const server = spawn(process.execPath, [BIN, '--config', s.cfg, 'serve', '--listen', '127.0.0.1:0', '--tls-cert', cert, '--tls-key', key], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    try {
      const first = (await createInterface({ input: server.stdout })[Symbol.asyncIterator]().next()).value as string;
      const url = /listening on (https:\/\/\S+)/.exec(first)?.[1];
      assert.ok(url, `an https URL: ${first}`);
      const ca = await readFile(cert);
      const get = (path: string, auth?: string) =>
        new Promise<{ status: number; body: string }>((resolve, reject) => {
          const req = request(`${url}${path}`, { ca, headers: auth !== undefined ? { authorization: `Bearer ${auth}` } : {} }, (res) => {
            let body = '';
            res.on('data', (c: Buffer) => (body += c.toString()));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
          });
          req.on('error', reject);
          req.end();
        });
      assert.equal((await get('/api/health')).status, 200);
      assert.equal((await get('/api/storages')).status, 401);
      const storages = await get('/api/storages', token);
      assert.equal(storages.status, 200);
      assert.match(storages.body, new RegExp(`"id":"${s.id}"`));
    } finally {
      server.kill('SIGTERM');
      await new Promise((r) => server.once('exit', r));
    }
  });

  it('no command but serve loads an API package (fastify, pino, zod): the API module runs only when serve imports it', async () => {
    // Every package the process requires, recorded by a preloaded hook: the CLI bundle is CommonJS and
    // requires the packages it leaves outside (scripts/bundle-cli.mjs) when the code needing them runs.
    const log = join(s.root, 'loaded.txt');
    const hook = join(s.root, 'record-requires.cjs');
    await writeFile(
      hook,
      `const M = require('node:module'); const fs = require('node:fs'); const load = M._load;
M._load = function (request, ...rest) { fs.appendFileSync(${JSON.stringify(log)}, request + '\\n'); return load.call(this, request, ...rest); };`,
    );
    const apiPackage = /^(fastify|@fastify\/[a-z-]+|fastify-type-provider-zod|pino|zod)(\/|$)/m;
    for (const argv of [
      ['storage', 'list', '--json'],
      ['list', s.id, '--json'],
      ['token', 'list', '--json'],
    ]) {
      await writeFile(log, '');
      const r = await runCommand(process.execPath, ['-r', hook, BIN, '--config', s.cfg, ...argv], { env: { ...process.env, ...env } });
      assert.equal(r.code, 0, r.stderr);
      const loaded = await readFile(log, 'utf8');
      assert.match(loaded, /commander|node:/, `the hook saw ${argv.join(' ')}'s requires`);
      assert.doesNotMatch(loaded, apiPackage, `${argv.join(' ')} loads no API package`);
    }
    await writeFile(log, '');
    const server = spawn(process.execPath, ['-r', hook, BIN, '--config', s.cfg, 'serve', '--listen', '127.0.0.1:0'], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    try {
      const first = (await createInterface({ input: server.stdout })[Symbol.asyncIterator]().next()).value as string;
      assert.match(first, /listening on http:/);
      assert.match(await readFile(log, 'utf8'), /^fastify$/m, 'serve loads fastify');
    } finally {
      server.kill('SIGTERM');
      await new Promise((r) => server.once('exit', r));
    }
  });
});
