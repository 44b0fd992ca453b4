/**
 * Entry points around the engine: `npm run bench` (bench/run.ts) and the progress bars, whose library is
 * loaded only when a bar is drawn (src/cli/progress.ts).
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const DIST = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

it('npm run bench lists benchmarks that all exist, and refuses an unknown name with exit 2', () => {
  const list = spawnSync(process.execPath, [join(DIST, 'bench', 'run.js')], { encoding: 'utf8' });
  assert.equal(list.status, 0, list.stderr);
  const names = [...list.stdout.matchAll(/^ {2}([a-z0-9-]+) {2,}/gm)].map((m) => m[1] as string);
  assert.ok(names.length >= 6, list.stdout);
  for (const name of names) assert.ok(existsSync(join(DIST, 'bench', `${name}.js`)), `bench/${name}.ts is listed but not built`);
  const bad = spawnSync(process.execPath, [join(DIST, 'bench', 'run.js'), 'nope'], { encoding: 'utf8' });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /no benchmark named 'nope'/);
});

it('a long step draws a progress bar on a terminal, the bar library loaded on first use', () => {
  const script = `
    Object.defineProperty(process.stderr, 'isTTY', { value: true });
    const { createRequire } = await import('node:module');
    const cache = createRequire(import.meta.url).cache;
    const m = await import(${JSON.stringify(join(DIST, 'src', 'cli', 'progress.js'))});
    const r = m.progressReporter(true);
    const before = Object.keys(cache).some((k) => k.includes('cli-progress'));
    r.onEvent({ type: 'step', long: true, description: 'commit layer' });
    r.onEvent({ type: 'progress', percent: 40 });
    r.onEvent({ type: 'step-done' });
    r.stop();
    process.stdout.write(JSON.stringify({ before, after: Object.keys(cache).some((k) => k.includes('cli-progress')) }));
  `;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), { before: false, after: true });
  assert.match(r.stderr, /commit layer \[.*\] 100%/);
});
