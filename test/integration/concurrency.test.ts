/**
 * Several processes run random operations on the same VM for a bounded time. Afterwards the chain is
 * consistent, nothing is pending, every snapshot's data matches a model replayed from the true order of
 * events, and no operation failed with anything but a clean "locked"/validation error.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Volchain } from '../../src/engine/volchain.js';
import { parseStorageConfig } from '../../src/config/index.js';

const BLOCK = 64 * 1024;
const BLOCKS = 8;
const WORKERS = 3;
const DURATION_MS = Number(process.env.VOLCHAIN_CONCURRENCY_MS ?? 25_000);

function assertContent(path: string, expected: number[], what: string): void {
  const cmds = expected.flatMap((byte, i) => ['-c', `read -P ${byte} ${i * BLOCK} ${BLOCK}`]);
  const r = spawnSync('qemu-io', ['-r', '-f', 'qcow2', ...cmds, path], { encoding: 'utf8' });
  assert.equal(r.status, 0, `${what}: ${r.stderr}`);
  assert.doesNotMatch(r.stdout, /Pattern verification failed/, `${what} does not hold the data the model says`);
}

test('concurrent writers on one VM: consistent chain, data matches the replayed model, only clean errors', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'volchain-conc-'));
  try {
    const cfg = join(dir, 'storage.cfg');
    const text = `dir: conc\n\tpath ${dir}/store\n\tcontent images\n\tsnapshot-as-volume-chain 1\n`;
    writeFileSync(cfg, text);
    const vc = new Volchain(parseStorageConfig(text, cfg));
    const volid = await vc.alloc('conc', 100, '16M');
    const lockfile = join(dir, 'store', '.volchain', 'locks', '100.lock');
    const oplog = join(dir, 'oplog.jsonl');
    writeFileSync(oplog, '');
    const deadline = Date.now() + DURATION_MS;
    const workers = Array.from({ length: WORKERS }, (_, i) => {
      const seed = 1000 + i * 7919;
      const child = spawn(
        process.execPath,
        [resolve('dist/test/fixtures/concurrency-worker.js'), cfg, volid, lockfile, oplog, String(i), String(deadline), String(seed)],
        { stdio: ['ignore', 'ignore', 'pipe'] },
      );
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      return new Promise<void>((ok, fail) =>
        child.on('close', (code) => (code === 0 ? ok() : fail(new Error(`worker ${i} exited ${String(code)}: ${stderr}`)))),
      );
    });
    await Promise.all(workers);

    const unexpectedFile = `${oplog}.unexpected`;
    assert.equal(existsSync(unexpectedFile) ? readFileSync(unexpectedFile, 'utf8') : '', '', 'operations failed with unexpected errors');

    // Replay the true order of events.
    let current = new Array<number>(BLOCKS).fill(0);
    const snapshots = new Map<string, number[]>();
    const counts: Record<string, number> = {};
    for (const line of readFileSync(oplog, 'utf8').split('\n').filter(Boolean)) {
      const event = JSON.parse(line) as { write?: { block: number; byte: number }; operation?: string; snapshot?: string };
      const kind = event.write ? 'write' : (event.operation as string);
      counts[kind] = (counts[kind] ?? 0) + 1;
      if (event.write) current[event.write.block] = event.write.byte;
      else if (event.operation === 'snapshot-create') snapshots.set(event.snapshot as string, [...current]);
      else if (event.operation === 'snapshot-rollback') current = [...(snapshots.get(event.snapshot as string) as number[])];
      else if (event.operation === 'snapshot-delete') snapshots.delete(event.snapshot as string);
    }
    console.log(`# events replayed: ${JSON.stringify(counts)}`);
    assert.ok((counts['snapshot-create'] ?? 0) > 0 && (counts.write ?? 0) > 0, 'the workers did too little to prove anything');

    assert.deepEqual(await vc.status(), [], 'nothing may stay pending');
    const listing = await vc.snapshotList(volid);
    assert.deepEqual(listing.snapshots.map((s) => s.name).sort(), [...snapshots.keys()].sort());
    for (const [name, content] of snapshots) assertContent(await vc.path(volid, { snapshot: name }), content, `snapshot ${name}`);
    assertContent(await vc.path(volid), current, 'current layer');
    const images = join(dir, 'store', 'images', '100');
    for (const f of readdirSync(images)) {
      const check = spawnSync('qemu-img', ['check', '-f', 'qcow2', join(images, f)], { encoding: 'utf8' });
      assert.equal(check.status, 0, `qemu-img check ${f}: ${check.stdout}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
