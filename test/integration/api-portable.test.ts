/**
 * The portable-chain routes of the HTTP API on two real dir storages (aa, bb), with real qemu-img/qemu-io:
 * clone (full, of a snapshot, linked), convert of a raw volume, template, move to the second storage and a
 * reassign there, and an export → import round trip whose every snapshot view is compared (`qemu-img compare`)
 * with the source's. A truncated or hostile import body is refused with nothing left; a read-only token is
 * refused on each route; while another process holds the lock of a VM the operation involves (source or
 * target), the request is refused with 409 and nothing changes.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { get as httpGet } from 'node:http';
import { appendFile, mkdir, readdir, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { parseStorageConfig } from '../../src/config/index.js';
import { Volchain } from '../../src/engine/volchain.js';
import type { StatusJson } from '../../src/results.js';
import { assertPattern, checkClean, makeStorage, MiB, ROOT, runCommand, snapshotOf, writePattern, type TestStorage } from './helpers.js';
import { clearImmutableFlags } from '../fixtures/pve-dir-fixture.js';
import { enc, errorOf, makeApi, runTask, type TestApi } from './api-helpers.js';

const SRC = 'aa:100/vm-100-disk-0.qcow2';
/** What each view of SRC holds: 1 MiB of a pattern per layer. */
const VIEWS: Record<string, [number, number][]> = {
  s1: [[0xa1, 0]],
  s2: [
    [0xa1, 0],
    [0xb2, MiB],
  ],
  current: [
    [0xa1, 0],
    [0xb2, MiB],
    [0xc3, 2 * MiB],
  ],
};

describe('HTTP API: clone, convert, template, move, export and import', () => {
  let s: TestStorage;
  let bbPath: string;
  let api: TestApi;

  const file = (storage: 'aa' | 'bb', vmid: number, name: string): string => join(storage === 'aa' ? s.path : bbPath, 'images', String(vmid), name);
  const view = (storage: 'aa' | 'bb', vmid: number, v: string, name = `vm-${vmid}-disk-0.qcow2`): string =>
    file(storage, vmid, v === 'current' ? name : `snap-${v}-${name}`);
  const filesOf = async (storage: 'aa' | 'bb', vmid: number): Promise<string[]> =>
    readdir(join(storage === 'aa' ? s.path : bbPath, 'images', String(vmid))).catch(() => []);
  async function compare(a: string, b: string): Promise<void> {
    const r = await runCommand('qemu-img', ['compare', '-f', 'qcow2', '-F', 'qcow2', a, b]);
    assert.equal(r.code, 0, `qemu-img compare ${a} ${b}: ${r.stdout}${r.stderr}`);
  }
  /** Every view of `name` on storage/vmid holds SRC's patterns and checks clean (views: which of them exist). */
  async function holdsSource(storage: 'aa' | 'bb', vmid: number, views: string[], name?: string): Promise<void> {
    for (const v of views) {
      const layer = view(storage, vmid, v, name);
      for (const [byte, offset] of VIEWS[v] ?? []) await assertPattern(layer, byte, offset, MiB);
      await checkClean(layer);
    }
  }
  /** The image files of both storages (not lock files or journal directories, which a dry run may make). */
  const images = async () => [await snapshotOf(join(s.path, 'images')).catch(() => []), await snapshotOf(join(bbPath, 'images')).catch(() => [])];
  async function importBody(url: string, payload: Buffer, token = api.admin) {
    const r = await api.app.inject({
      method: 'POST',
      url,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/octet-stream' },
      payload,
    });
    return { status: r.statusCode, text: r.body, body: JSON.parse(r.body) as unknown, headers: r.headers };
  }

  before(async () => {
    s = await makeStorage({ id: 'aa' });
    bbPath = join(s.root, 'store2');
    await mkdir(bbPath);
    await appendFile(s.cfg, `\ndir: bb\n\tpath ${bbPath}\n\tcontent images\n\tsnapshot-as-volume-chain 1\n`);
    const vc = new Volchain(parseStorageConfig(await readFile(s.cfg, 'utf8'), s.cfg));
    api = await makeApi({ vc });
    // SRC: s1 <- s2 <- current, 1 MiB of its own pattern in each layer, made through the API.
    const made = await runTask(api, 'POST', '/api/storages/aa/volumes', { vmid: '100', size: '8M' });
    assert.deepEqual(made.result, { volid: SRC });
    const top = view('aa', 100, 'current');
    await writePattern(top, 0xa1, 0, MiB);
    await runTask(api, 'POST', `/api/volumes/${enc(SRC)}/snapshots`, { name: 's1' });
    await writePattern(top, 0xb2, MiB, MiB);
    await runTask(api, 'POST', `/api/volumes/${enc(SRC)}/snapshots`, { name: 's2' });
    await writePattern(top, 0xc3, 2 * MiB, MiB);
    await holdsSource('aa', 100, ['s1', 's2', 'current']);
  });
  after(async () => {
    await api.close();
    // template sets chattr +i on the base file (as PVE does), where the file system allows it.
    await clearImmutableFlags([file('aa', 300, 'base-300-disk-0.qcow2')]).catch(() => undefined);
    await s.cleanup();
  });

  it('clone: dryRun gives the plan and changes nothing; a task copies the current state to bb, another copies snapshot s1', async () => {
    const before = await images();
    const dry = await api.call('POST', `/api/volumes/${enc(SRC)}/clone`, { body: { storage: 'bb', vmid: '200', dryRun: true } });
    assert.equal(dry.status, 200, dry.text);
    const doc = dry.body as { dryRun: boolean; plans: { operation: string }[]; volid: string };
    assert.equal(doc.dryRun, true);
    assert.equal(doc.plans[0]?.operation, 'clone');
    assert.equal(doc.volid, 'bb:200/vm-200-disk-0.qcow2');
    assert.deepEqual(await images(), before, 'a dry run changes nothing');

    const task = await runTask(api, 'POST', `/api/volumes/${enc(SRC)}/clone`, { storage: 'bb', vmid: '200' });
    assert.equal(task.operation, 'clone');
    assert.equal((task.result as { volid: string }).volid, 'bb:200/vm-200-disk-0.qcow2');
    await compare(view('aa', 100, 'current'), view('bb', 200, 'current'));
    await holdsSource('bb', 200, ['current']);
    assert.deepEqual(await filesOf('bb', 200), ['vm-200-disk-0.qcow2'], 'a clone has no snapshots');

    const snap = await runTask(api, 'POST', `/api/volumes/${enc(SRC)}/clone`, { storage: 'aa', vmid: '201', snapshot: 's1', name: 'vm-201-old.qcow2' });
    assert.equal((snap.result as { volid: string }).volid, 'aa:201/vm-201-old.qcow2');
    await compare(view('aa', 100, 's1'), file('aa', 201, 'vm-201-old.qcow2'));
    await assertPattern(file('aa', 201, 'vm-201-old.qcow2'), 0, MiB, MiB);

    errorOf(
      await api.call('POST', `/api/volumes/${enc(SRC)}/clone`, { body: { storage: 'bb', vmid: '202', bogus: 1 } }),
      400,
      'INVALID_INPUT',
      'unknown field',
    );
    errorOf(
      await api.call('POST', `/api/volumes/${enc(SRC)}/clone`, { body: { storage: 'bb', vmid: '202', snapshot: 'nope' } }),
      404,
      'NOT_FOUND',
      'no such snapshot',
    );
    assert.deepEqual(await filesOf('bb', 202), [], 'a refused clone leaves nothing');
  });

  it('convert of a raw volume, template of it, and a linked clone of that base: patterns read back from each', async () => {
    const raw = (await runTask(api, 'POST', '/api/storages/aa/volumes', { vmid: '300', size: '4M', format: 'raw' })).result as { volid: string };
    assert.equal(raw.volid, 'aa:300/vm-300-disk-0.raw');
    await writePattern(file('aa', 300, 'vm-300-disk-0.raw'), 0xd4, MiB, MiB, 'raw');
    const converted = await runTask(api, 'POST', `/api/volumes/${enc(raw.volid)}/convert`, {});
    const qcow = (converted.result as { volid: string }).volid;
    assert.equal(qcow, 'aa:300/vm-300-disk-0.qcow2');
    await assertPattern(file('aa', 300, 'vm-300-disk-0.qcow2'), 0xd4, MiB, MiB);
    await checkClean(file('aa', 300, 'vm-300-disk-0.qcow2'));
    assert.deepEqual(await filesOf('aa', 300), ['vm-300-disk-0.qcow2']);
    errorOf(await api.call('POST', `/api/volumes/${enc(qcow)}/convert`, { body: {} }), 400, 'INVALID_INPUT', 'already qcow2');

    const templated = await runTask(api, 'POST', `/api/volumes/${enc(qcow)}/template`, {});
    const base = (templated.result as { volid: string }).volid;
    assert.equal(base, 'aa:300/base-300-disk-0.qcow2');
    await assertPattern(file('aa', 300, 'base-300-disk-0.qcow2'), 0xd4, MiB, MiB);

    errorOf(
      await api.call('POST', `/api/volumes/${enc(base)}/clone`, { body: { storage: 'aa', vmid: '301', linked: true, snapshot: 's1' } }),
      400,
      'INVALID_INPUT',
      'linked with snapshot',
    );
    const linked = await runTask(api, 'POST', `/api/volumes/${enc(base)}/clone`, { storage: 'aa', vmid: '301', linked: true });
    assert.equal(linked.operation, 'linked-clone');
    assert.equal((linked.result as { volid: string }).volid, 'aa:300/base-300-disk-0.qcow2/301/vm-301-disk-0.qcow2');
    const clone = file('aa', 301, 'vm-301-disk-0.qcow2');
    await assertPattern(clone, 0xd4, MiB, MiB);
    const info = await runCommand('qemu-img', ['info', '--output=json', '-f', 'qcow2', clone]);
    assert.equal((JSON.parse(info.stdout) as { 'backing-filename'?: string })['backing-filename'], '../300/base-300-disk-0.qcow2');
  });

  it('export → import through the API: every snapshot view equals the source (qemu-img compare), the tree is kept', async () => {
    const dry = await api.call('GET', `/api/volumes/${enc(SRC)}/export?dryRun=true`);
    assert.equal(dry.status, 200, dry.text);
    const streamBytes = (dry.body as { streamBytes: number }).streamBytes;
    const r = await api.app.inject({ method: 'GET', url: `/api/volumes/${enc(SRC)}/export`, headers: { authorization: `Bearer ${api.admin}` } });
    assert.equal(r.statusCode, 200, r.body);
    assert.equal(r.headers['content-type'], 'application/octet-stream');
    assert.equal(Number(r.headers['content-length']), streamBytes);
    const stream = r.rawPayload;
    assert.equal(stream.length, streamBytes, 'the whole stream');

    const dryImport = await importBody('/api/storages/bb/import?vmid=400&dryRun=true', stream);
    assert.equal(dryImport.status, 200, dryImport.text);
    assert.deepEqual(await filesOf('bb', 400), [], 'a dry import makes nothing');
    const made = await importBody('/api/storages/bb/import?vmid=400', stream);
    assert.equal(made.status, 201, made.text);
    assert.equal((made.body as { volid: string }).volid, 'bb:400/vm-400-disk-0.qcow2');
    for (const v of Object.keys(VIEWS)) await compare(view('aa', 100, v), view('bb', 400, v));
    await holdsSource('bb', 400, Object.keys(VIEWS));
    const tree = (await api.call('GET', `/api/volumes/${enc('bb:400/vm-400-disk-0.qcow2')}/snapshots`)).body as {
      snapshots: { name: string; parent: string | null }[];
    };
    assert.deepEqual(
      tree.snapshots.map((x) => [x.name, x.parent]),
      [
        ['s1', null],
        ['s2', 's1'],
      ],
    );

    // The same stream again under a name: the name is the request's, the data the same.
    const named = await importBody('/api/storages/bb/import?vmid=401&name=vm-401-copy.qcow2', stream);
    assert.equal(named.status, 201, named.text);
    await compare(view('aa', 100, 'current'), file('bb', 401, 'vm-401-copy.qcow2'));
  });

  it('a client that goes away mid-export: the export stops and the VM is free again (lock and reservation released)', async () => {
    const big = (await runTask(api, 'POST', '/api/storages/aa/volumes', { vmid: '700', size: '96M' })).result as { volid: string };
    await writePattern(file('aa', 700, 'vm-700-disk-0.qcow2'), 0xe5, 0, 64 * MiB);
    await api.app.listen({ port: 0, host: '127.0.0.1' });
    const address = api.app.server.address();
    assert.ok(address !== null && typeof address === 'object');
    const url = `http://127.0.0.1:${address.port}/api/volumes/${enc(big.volid)}/export`;
    const firstChunk = await new Promise<number>((done, fail) => {
      const req = httpGet(url, { headers: { authorization: `Bearer ${api.admin}` } }, (res) => {
        assert.equal(res.statusCode, 200);
        res.once('data', (chunk: Buffer) => {
          req.destroy();
          done(chunk.length);
        });
      });
      req.once('error', (err) => {
        if (!req.destroyed) fail(err);
      });
    });
    assert.ok(firstChunk > 0);
    // The export's end (a failed write) releases the lock; a mutation on the VM is then accepted.
    let status = 0;
    for (let i = 0; i < 50 && status !== 202; i++) {
      await new Promise((r) => setTimeout(r, 100));
      status = (await api.call('DELETE', `/api/volumes/${enc(big.volid)}`)).status;
    }
    assert.equal(status, 202, 'the VM is free once the client is gone');
    for (let i = 0; i < 50 && (await filesOf('aa', 700)).length > 0; i++) await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(await filesOf('aa', 700), [], 'freed');
  });

  it('a truncated, a hostile or a non-stream import body is refused with nothing left', async () => {
    const r = await api.app.inject({ method: 'GET', url: `/api/volumes/${enc(SRC)}/export`, headers: { authorization: `Bearer ${api.admin}` } });
    const stream = r.rawPayload;
    const hostile = Buffer.from(stream);
    // Flip bytes in the middle of the data: the record's checksum no longer matches.
    for (let i = Math.floor(hostile.length / 2); i < Math.floor(hostile.length / 2) + 64; i++) hostile[i] = (hostile[i] ?? 0) ^ 0xff;
    for (const [what, body] of [
      ['truncated', stream.subarray(0, Math.floor(stream.length * 0.7))],
      ['hostile', hostile],
      ['garbage', Buffer.from('not a chain stream at all\n'.repeat(100))],
      ['empty', Buffer.alloc(0)],
    ] as const) {
      const res = await importBody('/api/storages/bb/import?vmid=450', body);
      assert.ok(res.status >= 400 && res.status < 500, `${what}: a 4xx, got ${res.status}: ${res.text}`);
      assert.ok((res.body as { error?: { message: string } }).error?.message, `${what}: an error document`);
      assert.deepEqual(await filesOf('bb', 450), [], `${what}: nothing left in bb/images/450`);
    }
    const status = (await api.call('GET', '/api/status')).body as StatusJson;
    assert.deepEqual(status.pending, [], 'no unfinished operation');
    // The import's own limit (here 64 KiB): a larger stream is 413 with nothing left; JSON routes keep 64 KiB.
    const small = await makeApi({ vc: new Volchain(parseStorageConfig(await readFile(s.cfg, 'utf8'), s.cfg)) }, { importLimitBytes: 64 * 1024 });
    try {
      const r2 = await small.app.inject({
        method: 'POST',
        url: '/api/storages/bb/import?vmid=450',
        headers: { authorization: `Bearer ${small.admin}`, 'content-type': 'application/octet-stream' },
        payload: stream,
      });
      assert.equal(r2.statusCode, 413, r2.body);
      assert.deepEqual(await filesOf('bb', 450), [], 'over the limit: nothing left');
    } finally {
      await small.close();
    }
    const big = await api.call('POST', `/api/volumes/${enc(SRC)}/clone`, {
      payload: JSON.stringify({ storage: 'bb', vmid: '450', name: 'x'.repeat(70 * 1024) }),
    });
    assert.equal(big.status, 413, `a JSON body over 64 KiB: ${big.text.slice(0, 200)}`);
    const json = await api.call('POST', '/api/storages/bb/import?vmid=450', { body: { stream: 'x' } });
    errorOf(json, 415, 'INVALID_INPUT', 'a JSON body');
  });

  it('move to the second storage with every snapshot, then a reassign there to another VM: every view read back', async () => {
    const volid = 'aa:100/vm-100-disk-0.qcow2';
    const dry = await api.call('POST', `/api/volumes/${enc(volid)}/move`, { body: { storage: 'bb', dryRun: true } });
    assert.equal(dry.status, 200, dry.text);
    assert.deepEqual(await filesOf('bb', 100), [], 'a dry move copies nothing');
    const moved = await runTask(api, 'POST', `/api/volumes/${enc(volid)}/move`, { storage: 'bb' });
    assert.equal((moved.result as { volid: string }).volid, 'bb:100/vm-100-disk-0.qcow2');
    assert.deepEqual(await filesOf('aa', 100), [], 'the source is gone');
    await holdsSource('bb', 100, Object.keys(VIEWS));
    for (const v of Object.keys(VIEWS)) await compare(view('bb', 400, v), view('bb', 100, v));

    const reassigned = await runTask(api, 'POST', `/api/volumes/${enc('bb:100/vm-100-disk-0.qcow2')}/move`, { storage: 'bb', vmid: '150' });
    assert.equal((reassigned.result as { volid: string }).volid, 'bb:150/vm-150-disk-0.qcow2');
    assert.deepEqual(await filesOf('bb', 100), []);
    await holdsSource('bb', 150, Object.keys(VIEWS));
    errorOf(
      await api.call('POST', `/api/volumes/${enc('bb:150/vm-150-disk-0.qcow2')}/move`, { body: { storage: 'bb' } }),
      400,
      'INVALID_INPUT',
      'same storage, same VM',
    );
  });

  it('a read-only token is refused on every portable route (403), nothing changed', async () => {
    const before = await images();
    const v = enc('bb:150/vm-150-disk-0.qcow2');
    for (const [url, body] of [
      [`/api/volumes/${v}/clone`, { storage: 'aa', vmid: '500' }],
      [`/api/volumes/${v}/convert`, {}],
      [`/api/volumes/${v}/template`, {}],
      [`/api/volumes/${v}/move`, { storage: 'aa' }],
    ] as const) {
      const e = errorOf(await api.call('POST', url, { body, token: api.reader }), 403, 'INVALID_INPUT', url);
      assert.equal(e.fields.auth, 'read-only');
    }
    const exp = await api.call('GET', `/api/volumes/${v}/export`, { token: api.reader });
    assert.equal(errorOf(exp, 403, 'INVALID_INPUT', 'export').fields.auth, 'read-only');
    const imp = await importBody('/api/storages/aa/import?vmid=500', Buffer.from('x'), api.reader);
    assert.equal(imp.status, 403, imp.text);
    assert.deepEqual(await images(), before);
  });

  it('409 while another process holds the lock of the source VM or of the target VM, on each route; nothing changed', async () => {
    const holders: ChildProcess[] = [];
    const hold = async (storagePath: string, vmid: number): Promise<ChildProcess> => {
      const lockFile = join(storagePath, '.volchain', 'locks', `${vmid}.lock`);
      const holder = spawn(process.execPath, [resolve(ROOT, 'dist/test/fixtures/hold-vm-lock.js'), lockFile, 'snapshot-delete'], {
        stdio: ['pipe', 'pipe', 'inherit'],
      });
      holders.push(holder);
      const lines = createInterface({ input: holder.stdout });
      assert.equal((await lines[Symbol.asyncIterator]().next()).value, 'held');
      return holder;
    };
    const src = enc('bb:150/vm-150-disk-0.qcow2');
    try {
      await hold(bbPath, 150); // the source VM
      await hold(s.path, 600); // a target VM on aa
      const before = await images();
      const exported = (
        await api.app.inject({
          method: 'GET',
          url: `/api/volumes/${enc('bb:400/vm-400-disk-0.qcow2')}/export`,
          headers: { authorization: `Bearer ${api.admin}` },
        })
      ).rawPayload;
      for (const [what, url, body] of [
        ['clone, source locked', `/api/volumes/${src}/clone`, { storage: 'aa', vmid: '601' }],
        ['clone, target locked', `/api/volumes/${enc('bb:400/vm-400-disk-0.qcow2')}/clone`, { storage: 'aa', vmid: '600' }],
        ['move, source locked', `/api/volumes/${src}/move`, { storage: 'aa' }],
        ['move, target locked', `/api/volumes/${enc('bb:400/vm-400-disk-0.qcow2')}/move`, { storage: 'aa', vmid: '600' }],
        ['convert', `/api/volumes/${src}/convert`, {}],
        ['template', `/api/volumes/${src}/template`, {}],
      ] as const) {
        const e = errorOf(await api.call('POST', url, { body }), 409, 'LOCKED', what);
        assert.match(e.message, /is busy/, what);
      }
      errorOf(await api.call('GET', `/api/volumes/${src}/export`), 409, 'LOCKED', 'export');
      const imp = await importBody('/api/storages/aa/import?vmid=600', exported);
      errorOf({ ...imp, headers: imp.headers }, 409, 'LOCKED', 'import');
      assert.deepEqual(await images(), before, 'nothing changed');
    } finally {
      for (const h of holders) h.stdin?.end();
      await Promise.all(holders.map((h) => new Promise((r) => h.once('exit', r))));
    }
  });
});
