/**
 * The background wipe runs through a runner the host program injects (engine/run/wipe.ts): the engine hands the
 * removals to it, falls back to wiping in the foreground when there is none or it cannot start, and never
 * starts a process itself. The CLI's runner (cli/wipe-runner.ts) is the CLI started again as `volchain wipe`.
 * The engine side uses a fake backend (only the calls matter); the CLI runner starts the real program.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { Backend, FinishRemovalsOptions, FinishRemovalsResult } from '../../src/backends/backend.js';
import { spawnCliWiper } from '../../src/cli/wipe-runner.js';
import { finishDeferredRemovals, type BackgroundWipeRequest } from '../../src/engine/run/wipe.js';

/** A backend with removals left for later, recording the foreground wipes asked of it. */
function fakeBackend(log: string): { backend: Backend; foreground: FinishRemovalsOptions[] } {
  const foreground: FinishRemovalsOptions[] = [];
  const backend = {
    id: 'lv1',
    capabilities: { deferredRemoval: true },
    deferredRemovals: async () => ['del-vm-7-disk-0'],
    finishRemovals: async (opts: FinishRemovalsOptions): Promise<FinishRemovalsResult> => {
      foreground.push(opts);
      return { finished: [], waited: [], busy: [] };
    },
    removalLog: () => log,
  } as unknown as Backend;
  return { backend, foreground };
}

test('background wipe: the injected runner gets the storage, VM, config and log (its directory made); nothing wipes here', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'volchain-wiper-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const log = join(dir, 'state', '.wipe', 'wipe.log');
  const { backend, foreground } = fakeBackend(log);
  const asked: BackgroundWipeRequest[] = [];
  await finishDeferredRemovals(backend, 7, 'background', '/etc/x.cfg', (r) => {
    asked.push(r);
    return true;
  });
  assert.deepEqual(asked, [{ storage: 'lv1', vmid: 7, configPath: '/etc/x.cfg', log }]);
  assert.ok(existsSync(dirname(log)), 'the log directory exists for the wiper');
  assert.deepEqual(foreground, [], 'the runner started a wiper: nothing is wiped in the foreground');
});

test('background wipe: without a runner, or when it cannot start one, the removals are finished in the foreground', async () => {
  for (const runner of [undefined, () => false]) {
    const { backend, foreground } = fakeBackend('/nonexistent/wipe.log');
    await finishDeferredRemovals(backend, 7, 'background', '/etc/x.cfg', runner);
    assert.deepEqual(foreground, [{ layers: ['del-vm-7-disk-0'], wait: true, vmid: 7 }], String(runner));
  }
});

test('foreground wipe: the runner is not used', async () => {
  const { backend, foreground } = fakeBackend('/nonexistent/wipe.log');
  let called = false;
  await finishDeferredRemovals(backend, undefined, 'foreground', '/etc/x.cfg', () => (called = true));
  assert.equal(called, false);
  assert.deepEqual(foreground, [{ layers: ['del-vm-7-disk-0'], wait: true }]);
});

test("the CLI's runner starts `volchain wipe` detached with its output in the log; refuses without a config file", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'volchain-wiper-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const cfg = join(dir, 'storage.cfg');
  const log = join(dir, 'wipe.log');
  assert.equal(spawnCliWiper({ storage: 'tst', vmid: 700, configPath: cfg, log }), false, 'no config file: cannot start');
  assert.equal(existsSync(log), false);

  await writeFile(cfg, ['dir: tst', `\tpath ${join(dir, 'store')}`, '\tcontent images', '\tsnapshot-as-volume-chain 1', ''].join('\n'));
  assert.equal(spawnCliWiper({ storage: 'tst', vmid: 700, configPath: cfg, log }), true);
  // The wiper is the real CLI: on a dir storage it finds nothing to wipe and says so in the log.
  const deadline = Date.now() + 30_000;
  let text = '';
  while (!/nothing to wipe|volchain:/.test(text) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
    text = existsSync(log) ? await readFile(log, 'utf8') : '';
  }
  assert.match(text, /nothing to wipe/, text);
});
