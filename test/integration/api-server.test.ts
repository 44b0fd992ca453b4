/**
 * The HTTP API's frame (issue 18): the health check without a token, the generated OpenAPI 3.1 document,
 * authentication (no token, a wrong one, a revoked one: 401; a read-only token mutating: 403) and bad input
 * refused with a JSON error, the right status, and nothing changed on the storage: path traversal in volids,
 * bad names and sizes, unknown fields, bodies over the limit, malformed JSON.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { assertSameTree, cliOk, makeStorage, snapshotOf, type TestStorage } from './helpers.js';
import { enc, errorOf, makeApi, type TestApi } from './api-helpers.js';

describe('HTTP API: documents, auth, bad input', () => {
  let s: TestStorage;
  let api: TestApi;
  let volid: string;
  before(async () => {
    s = await makeStorage();
    volid = (await cliOk(s, ['alloc', s.id, '100', '4M'])).trim();
    await cliOk(s, ['snapshot', 'create', volid, 's1']);
    api = await makeApi(s);
  });
  after(async () => {
    await api.close();
    await s.cleanup();
  });

  it('GET /api/health answers without a token', async () => {
    const r = await api.call('GET', '/api/health', { token: null });
    assert.equal(r.status, 200);
    assert.deepEqual(r.body, { ok: true, version: 'test' });
  });

  it('GET /api/openapi.json is an OpenAPI 3.1 document of every route, with bearer auth and the zod schemas', async () => {
    const r = await api.call('GET', '/api/openapi.json');
    assert.equal(r.status, 200, r.text);
    const doc = r.body as {
      openapi: string;
      paths: Record<string, Record<string, { requestBody?: { content: Record<string, { schema: unknown }> } }>>;
      components: unknown;
    };
    assert.equal(doc.openapi, '3.1.0');
    for (const path of [
      '/api/storages',
      '/api/storages/{storage}/volumes',
      '/api/volumes/{volid}',
      '/api/volumes/{volid}/path',
      '/api/volumes/{volid}/snapshots',
      '/api/volumes/{volid}/snapshots/{snapshot}',
      '/api/volumes/{volid}/snapshots/{snapshot}/rollback',
      '/api/volumes/{volid}/resize',
      '/api/vms/{vmid}/disks',
      '/api/vms/{vmid}/snapshots',
      '/api/vms/{vmid}/snapshots/{snapshot}',
      '/api/vms/{vmid}/snapshots/{snapshot}/rollback',
      '/api/status',
      '/api/repair',
      '/api/wipe',
      '/api/tasks',
      '/api/tasks/{id}',
      '/api/tasks/{id}/events',
      '/api/volumes/{volid}/clone',
      '/api/volumes/{volid}/convert',
      '/api/volumes/{volid}/template',
      '/api/volumes/{volid}/move',
      '/api/volumes/{volid}/export',
      '/api/storages/{storage}/import',
    ]) {
      assert.ok(doc.paths[path], `${path} in the document`);
    }
    // Export and import carry the chain stream live: not tasks, and the document says so.
    const exportOp = doc.paths['/api/volumes/{volid}/export']?.get as unknown as { description: string };
    assert.match(exportOp.description, /Not a task/);
    const importOp = doc.paths['/api/storages/{storage}/import']?.post as unknown as { description: string };
    assert.match(importOp.description, /Not a task/);
    const cloneBody = doc.paths['/api/volumes/{volid}/clone']?.post?.requestBody?.content['application/json']?.schema as {
      additionalProperties: boolean;
      required: string[];
    };
    assert.equal(cloneBody.additionalProperties, false);
    assert.deepEqual(cloneBody.required.sort(), ['storage', 'vmid']);
    const createBody = doc.paths['/api/volumes/{volid}/snapshots']?.post?.requestBody?.content['application/json']?.schema as {
      properties: Record<string, unknown>;
      additionalProperties: boolean;
      required: string[];
    };
    assert.deepEqual(Object.keys(createBody.properties).sort(), ['dryRun', 'name']);
    assert.equal(createBody.additionalProperties, false, 'unknown fields are refused, and the document says so');
    assert.deepEqual(createBody.required, ['name']);
    assert.match(JSON.stringify(doc.components), /"scheme":"bearer"/);
    const responses = (doc.paths['/api/volumes/{volid}/snapshots']?.post as unknown as { responses: Record<string, unknown> }).responses;
    assert.deepEqual(Object.keys(responses).sort(), ['200', '202', '4XX', '5XX'], 'a mutation documents its plan (200), its task (202) and its errors');
  });

  it('the documentation page loads without a token (static files, no data)', async () => {
    const r = await api.call('GET', '/api/docs/', { token: null });
    assert.equal(r.status, 200);
    assert.match(r.text, /swagger/i);
  });

  it('no token, a malformed header, an unknown token, a revoked token: 401 with a JSON error; nothing else is public', async () => {
    const urls = ['/api/storages', '/api/openapi.json', '/api/docs/json', `/api/volumes/${enc(volid)}/snapshots`, '/api/tasks', '/api/status'];
    for (const url of urls) {
      const error = errorOf(await api.call('GET', url, { token: null }), 401, 'INVALID_INPUT', `GET ${url} without a token`);
      assert.equal(error.fields.auth, 'missing');
    }
    errorOf(await api.call('GET', '/api/storages', { token: null, headers: { authorization: `Basic ${api.admin}` } }), 401, 'INVALID_INPUT', 'Basic auth');
    // The public documentation files are chosen by the route matched, not by the URL's text.
    for (const url of [
      '/api/docs/../storages',
      '/api/docs/%2e%2e/storages',
      '/api/docs/static/../json',
      '/api/docs/static/..%2f..%2fjson',
      '/api/health/../storages',
    ]) {
      const r = await api.call('GET', url, { token: null });
      assert.ok(r.status !== 200 || !/storages|openapi/.test(r.text), `${url} without a token: ${r.status} ${r.text.slice(0, 200)}`);
    }
    errorOf(await api.call('GET', '/api/nowhere', { token: null }), 401, 'INVALID_INPUT', 'an unknown route without a token');
    const bad = errorOf(await api.call('GET', '/api/storages', { token: `vct_${'A'.repeat(43)}` }), 401, 'INVALID_INPUT', 'an unknown token');
    assert.equal(bad.fields.auth, 'invalid');
    const made = await api.tokens.create('temp', false);
    assert.equal((await api.call('GET', '/api/storages', { token: made.token })).status, 200, 'a new token works at once');
    await api.tokens.revoke('temp');
    errorOf(await api.call('GET', '/api/storages', { token: made.token }), 401, 'INVALID_INPUT', 'a revoked token, at once');
    // A mutation without a token is refused before anything runs.
    const before = await snapshotOf(s.path);
    errorOf(
      await api.call('POST', `/api/volumes/${enc(volid)}/snapshots`, { token: null, body: { name: 's2' } }),
      401,
      'INVALID_INPUT',
      'POST without a token',
    );
    assertSameTree(before, await snapshotOf(s.path), 'an unauthenticated mutation');
  });

  it('the token file holds hashes only, mode 0600 in a 0700 directory', async () => {
    const file = join(api.stateDir, 'tokens.json');
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    assert.equal((await stat(api.stateDir)).mode & 0o777, 0o700);
    const { readFile } = await import('node:fs/promises');
    const text = await readFile(file, 'utf8');
    assert.ok(!text.includes(api.admin) && !text.includes(api.admin.slice(4)), 'the secret is not stored');
    assert.match(text, /"sha256": "[0-9a-f]{64}"/);
  });

  it('a read-only token reads, and is refused every mutation (403), nothing changed', async () => {
    assert.equal((await api.call('GET', `/api/volumes/${enc(volid)}/snapshots`, { token: api.reader })).status, 200);
    const before = await snapshotOf(s.path);
    const refused: [string, 'POST' | 'DELETE', string, unknown][] = [
      ['snapshot create', 'POST', `/api/volumes/${enc(volid)}/snapshots`, { name: 's2' }],
      ['snapshot delete', 'DELETE', `/api/volumes/${enc(volid)}/snapshots/s1`, undefined],
      ['rollback', 'POST', `/api/volumes/${enc(volid)}/snapshots/s1/rollback`, {}],
      ['free', 'DELETE', `/api/volumes/${enc(volid)}`, undefined],
      ['alloc', 'POST', `/api/storages/${s.id}/volumes`, { vmid: '101', size: '1M' }],
      ['vm snapshot', 'POST', '/api/vms/100/snapshots', { name: 's3' }],
      ['repair', 'POST', '/api/repair', {}],
      ['wipe', 'POST', '/api/wipe', {}],
      ['even a dry run', 'POST', `/api/volumes/${enc(volid)}/snapshots`, { name: 's2', dryRun: true }],
    ];
    for (const [what, method, url, body] of refused) {
      const error = errorOf(await api.call(method, url, { token: api.reader, ...(body !== undefined ? { body } : {}) }), 403, 'INVALID_INPUT', what);
      assert.equal(error.fields.auth, 'read-only');
    }
    assertSameTree(before, await snapshotOf(s.path), 'refused mutations');
  });

  it('bad input: 400 with the validator message, nothing changed (traversal in volids, bad names, sizes, unknown fields, bad JSON)', async () => {
    const before = await snapshotOf(s.path);
    const cases: [string, 'GET' | 'POST' | 'DELETE', string, unknown, RegExp][] = [
      ['traversal in a volid', 'GET', `/api/volumes/${enc(`${s.id}:100/../../../etc/passwd`)}`, undefined, /volume|not valid|\.\./i],
      ['traversal into another VM', 'POST', `/api/volumes/${enc(`${s.id}:100/../101/vm-101-disk-0.qcow2`)}/snapshots`, { name: 's2' }, /./],
      ['an absolute path as volid', 'GET', `/api/volumes/${enc('/etc/passwd')}/path`, undefined, /no ':'/],
      ['a control character in a volid', 'GET', `/api/volumes/${enc(`${s.id}:100/vm-100-disk-0.qcow2\n`)}`, undefined, /control character/],
      ['a bad snapshot name', 'POST', `/api/volumes/${enc(volid)}/snapshots`, { name: '../x' }, /snapshot name/],
      ['a reserved snapshot name', 'POST', `/api/volumes/${enc(volid)}/snapshots`, { name: 'current' }, /reserved/],
      ['option injection in a name', 'POST', `/api/volumes/${enc(volid)}/snapshots`, { name: '-o' }, /snapshot name/],
      ['a bad size', 'POST', `/api/volumes/${enc(volid)}/resize`, { size: '1.5' }, /whole number of bytes/],
      ['a bad vmid', 'POST', `/api/storages/${s.id}/volumes`, { vmid: '0100', size: '1M' }, /VM id/],
      ['an unknown field', 'POST', `/api/volumes/${enc(volid)}/snapshots`, { name: 's2', qmp: '/tmp/evil.sock' }, /qmp|unrecognized/i],
      ['an unknown query parameter', 'GET', `/api/storages/${s.id}/volumes?vmid=100&path=/etc`, undefined, /path|unrecognized/i],
      ['a wrong type', 'POST', `/api/volumes/${enc(volid)}/snapshots/s1/rollback`, { purgeNewer: 'yes' }, /purgeNewer|boolean/i],
    ];
    for (const [what, method, url, body, match] of cases) {
      const error = errorOf(await api.call(method, url, body !== undefined ? { body } : {}), 400, 'INVALID_INPUT', what);
      assert.match(error.message, match, what);
    }
    errorOf(await api.call('POST', `/api/volumes/${enc(volid)}/snapshots`, { payload: '{"name": "s2"' }), 400, 'INVALID_INPUT', 'malformed JSON');
    assertSameTree(before, await snapshotOf(s.path), 'bad input');
  });

  it('a body over the limit is refused (413) before it is read, and a small limit can be set', async () => {
    const before = await snapshotOf(s.path);
    const big = { name: 's2', pad: 'x'.repeat(70 * 1024) };
    errorOf(await api.call('POST', `/api/volumes/${enc(volid)}/snapshots`, { body: big }), 413, 'INVALID_INPUT', 'a 70 KiB body (limit 64 KiB)');
    const tiny = await makeApi(s, { bodyLimitBytes: 16 });
    try {
      errorOf(await tiny.call('POST', `/api/volumes/${enc(volid)}/snapshots`, { body: { name: 'snap_two' } }), 413, 'INVALID_INPUT', 'over a 16-byte limit');
    } finally {
      await tiny.close();
    }
    assertSameTree(before, await snapshotOf(s.path), 'oversized bodies');
  });

  it('errors of the library keep their code and fields, with the status of the code (404, 409, 422)', async () => {
    const missing = `${s.id}:100/vm-100-disk-7.qcow2`;
    const notFound = errorOf(await api.call('GET', `/api/volumes/${enc(missing)}`), 404, 'NOT_FOUND', 'info of a missing volume');
    assert.deepEqual(notFound.fields, { volid: missing, vmid: 100, storage: s.id });
    assert.equal(notFound.outcome, 'unchanged');
    errorOf(await api.call('GET', `/api/storages/nosuch/volumes`), 404, 'NOT_FOUND', 'an unknown storage');
    const before = await snapshotOf(s.path);
    const exists = errorOf(
      await api.call('POST', `/api/volumes/${enc(volid)}/snapshots`, { body: { name: 's1' } }),
      409,
      'ALREADY_EXISTS',
      'a snapshot that exists',
    );
    assert.match(exists.message, /s1/);
    assert.equal((await api.call('GET', '/api/tasks')).text, '{"tasks":[]}', 'refused before a task was made: the plan is checked first');
    assertSameTree(before, await snapshotOf(s.path), 'refused requests');
    errorOf(await api.call('GET', '/api/nowhere'), 404, 'NOT_FOUND', 'an unknown route');
    errorOf(await api.call('DELETE', `/api/volumes/${enc(volid)}/snapshots/nosuch`), 404, 'NOT_FOUND', 'delete of a missing snapshot');
  });
});
