/**
 * Issue 15, "settings read once and passed down": below the façade nothing reads the environment. The
 * Settings a Volchain is made with reach the executor's test hooks and each backend the registry opens, so
 * two Volchains (or backends) in one process may run with different settings, and process.env changed
 * after a Volchain was made does not change it.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createBackend } from '../../src/backends/registry.js';
import { parseStorageConfig } from '../../src/config/index.js';
import { createVolchain } from '../../src/create.js';
import { VolchainError } from '../../src/errors.js';
import { readSettings } from '../../src/settings.js';
import { assertPattern, writePattern } from '../integration/helpers.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const MiB = 1024 * 1024;

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((entry) => {
    const full = join(dir, entry);
    return statSync(full).isDirectory() ? sourceFiles(full) : full.endsWith('.ts') ? [full] : [];
  });
}

/** The files of src/ (as `a/b.ts`) whose code, comments left out, matches `pattern`. */
function filesWith(pattern: RegExp): string[] {
  return sourceFiles(join(ROOT, 'src'))
    .filter((file) => {
      const code = readFileSync(file, 'utf8')
        .replace(/\/\*[\s\S]*?\*\//g, '')
        .replace(/^\s*\/\/.*$/gm, '');
      return pattern.test(code);
    })
    .map((file) => relative(join(ROOT, 'src'), file).split(sep).join('/'))
    .sort();
}

describe('where the environment is read', () => {
  it('currentSettings() is called only in settings.ts, create.ts and cli/main.ts (the entry points)', () => {
    assert.deepEqual(filesWith(/\bcurrentSettings\(/), ['cli/main.ts', 'create.ts', 'settings.ts']);
  });

  it('process.env is read only by the entry points, the default of a Volchain made without settings, and the process runner', () => {
    assert.deepEqual(filesWith(/\bprocess\.env\b/), [
      'create.ts', // makes a given stateDir the process's, for the background wiper (a child) to see
      'engine/session/session.ts', // sessionSettings: `new Volchain(config)` without settings reads it once
      'settings.ts',
      'tools/lvm.ts', // PATH, extended by the sbin directories for LVM's commands
      'tools/runner.ts', // the environment children inherit
    ]);
  });
});

describe('a Volchain runs with the settings it was given, not with process.env', () => {
  let dir = '';
  let cfg = '';
  const id = 'passed';
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'volchain-passed-'));
    cfg = join(dir, 'storage.cfg');
    await writeFile(cfg, `dir: ${id}\n\tpath ${dir}/store\n\tcontent images\n\tsnapshot-as-volume-chain 1\n`);
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('VOLCHAIN_FAIL_AT in the given settings fails that step; a second Volchain without it succeeds', async () => {
    for (const variable of ['VOLCHAIN_FAIL_AT', 'VOLCHAIN_CRASH_AT', 'VOLCHAIN_TEST_OPLOG']) {
      assert.equal(process.env[variable], undefined, `this test runs without $${variable}`);
    }
    const oplog = join(dir, 'oplog.jsonl');
    const failing = await createVolchain({ config: cfg, settings: readSettings({ VOLCHAIN_FAIL_AT: 'snapshot-create:2' }) });
    const working = await createVolchain({ config: cfg, settings: readSettings({ VOLCHAIN_TEST_OPLOG: oplog }) });
    const volid = await working.alloc(id, 100, 4 * MiB);
    const top = join(dir, 'store', 'images', '100', 'vm-100-disk-0.qcow2');
    await writePattern(top, 0xa5, 0, MiB);
    const files = async (): Promise<string[]> => (await readdir(join(dir, 'store', 'images', '100'))).sort();
    const before = await files();

    await assert.rejects(
      failing.snapshotCreate(volid, 's1'),
      (err: unknown) =>
        err instanceof VolchainError && /injected failure at snapshot-create step 2 \(VOLCHAIN_FAIL_AT\).*nothing was changed/.test(err.message),
    );
    assert.deepEqual(await files(), before, 'step 1 was undone: nothing changed');
    assert.deepEqual(await working.status(), [], 'no journal left behind');

    await working.snapshotCreate(volid, 's1');
    assert.deepEqual(await files(), ['snap-s1-vm-100-disk-0.qcow2', 'vm-100-disk-0.qcow2']);
    await assertPattern(join(dir, 'store', 'images', '100', 'snap-s1-vm-100-disk-0.qcow2'), 0xa5, 0, MiB);
    // The other hook of the working Volchain's settings: its finished plan is in its operation log.
    const logged = (await readFile(oplog, 'utf8')).trim().split('\n');
    assert.deepEqual(
      logged.map((line) => (JSON.parse(line) as { operation: string }).operation),
      ['snapshot-create'],
      'one plan logged: the failed one never finished',
    );
  });

  it('a Volchain made without settings reads process.env once, when made: a later change does not reach it', async () => {
    const vc = await createVolchain({ config: cfg });
    const volid = await vc.alloc(id, 101, 4 * MiB);
    process.env.VOLCHAIN_FAIL_AT = 'snapshot-create:1';
    try {
      await vc.snapshotCreate(volid, 'kept');
    } finally {
      delete process.env.VOLCHAIN_FAIL_AT;
    }
    assert.deepEqual(
      (await vc.snapshotList(volid)).snapshots.map((s) => s.name),
      ['kept'],
      'the snapshot was made: the hook set afterwards was not seen',
    );
  });
});

describe('each backend runs with the settings the registry opened it with', () => {
  const config = parseStorageConfig(`lvm: thick\n\tvgname vgpassedmissing\n\tcontent images\n\tsnapshot-as-volume-chain 1\n`, '/srv/storage.cfg');
  const def = config.storages[0];

  it('LVM: the state directory (VM locks, journals) is the settings', () => {
    assert.ok(def);
    const a = createBackend(def, { settings: readSettings({ VOLCHAIN_STATE_DIR: '/state/a' }) });
    const b = createBackend(def, { settings: readSettings({ VOLCHAIN_STATE_DIR: '/state/b' }) });
    const unset = createBackend(def, { settings: readSettings({}) });
    assert.equal(a.lockFile(100), '/state/a/.locks/vgpassedmissing/100.lock');
    assert.equal(b.lockFile(100), '/state/b/.locks/vgpassedmissing/100.lock');
    assert.equal(unset.lockFile(100), '/var/lib/volchain/.locks/vgpassedmissing/100.lock');
    assert.equal(a.stateDir(), '/state/a/thick');
  });

  it('LVM: VOLCHAIN_LVM_TRACE of the settings traces that backend’s commands only', async () => {
    assert.ok(def);
    const traced = createBackend(def, { settings: readSettings({ VOLCHAIN_LVM_TRACE: '1' }) });
    const quiet = createBackend(def, { settings: readSettings({}) });
    const written: string[] = [];
    const write = process.stderr.write.bind(process.stderr);
    process.stderr.write = (chunk: string | Uint8Array): boolean => {
      written.push(String(chunk));
      return true;
    };
    try {
      // The VG does not exist here: each listing runs `lvs` once, and fails.
      await assert.rejects(quiet.listVolumes());
      assert.deepEqual(
        written.filter((w) => w.startsWith('[lvm ')),
        [],
        'no trace without the setting',
      );
      await assert.rejects(traced.listVolumes());
    } finally {
      process.stderr.write = write;
    }
    const traces = written.filter((w) => w.startsWith('[lvm '));
    assert.equal(traces.length, 1, written.join(''));
    assert.match(traces[0] ?? '', /^\[lvm \d+ ms\] lvs .*vgpassedmissing\n$/);
  });
});
