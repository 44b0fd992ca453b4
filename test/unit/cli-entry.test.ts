/**
 * bin/volchain.js loads the one-file bundle (scripts/bundle-cli.mjs) only when it is at least as new as the
 * compiled main.js, so a `tsc` run without the bundle step never leaves users running stale code. Proven on a
 * copy of the entry script beside two stub modules that say which one ran.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { existsSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '..', '..', '..');

test('bin/volchain.js runs the bundle when it is as new as main.js, else main.js', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'volchain-entry-'));
  try {
    await mkdir(join(dir, 'bin'));
    await mkdir(join(dir, 'dist', 'src', 'cli'), { recursive: true });
    await copyFile(join(ROOT, 'bin', 'volchain.js'), join(dir, 'bin', 'volchain.js'));
    await copyFile(join(ROOT, 'bin', 'load-bundle.js'), join(dir, 'bin', 'load-bundle.js'));
    await writeFile(join(dir, 'package.json'), '{"type":"module"}\n');
    const body = (which: string) => `async function main(args) { console.log('${which}', args.join(' ')); return 3; }\n`;
    const mainJs = join(dir, 'dist', 'src', 'cli', 'main.js');
    // The bundle is CommonJS (bin/load-bundle.js loads it with V8's code cache); main.js an ES module.
    const bundle = join(dir, 'dist', 'src', 'cli', 'main.bundle.cjs');
    await writeFile(mainJs, `export ${body('modules')}`);
    const runEntry = () => spawnSync(process.execPath, [join(dir, 'bin', 'volchain.js'), 'a', 'b'], { encoding: 'utf8' });

    let r = runEntry();
    assert.equal(r.stdout, 'modules a b\n', 'no bundle: the compiled modules run');
    assert.equal(r.status, 3, 'the exit status is main()’s');

    await writeFile(bundle, `${body('bundle')}exports.main = main;\n`);
    await utimes(mainJs, new Date(1_000_000_000_000), new Date(1_000_000_000_000));
    r = runEntry();
    assert.equal(r.stdout, 'bundle a b\n', 'a bundle newer than main.js runs');

    await utimes(bundle, new Date(900_000_000_000), new Date(900_000_000_000));
    r = runEntry();
    assert.equal(r.stdout, 'modules a b\n', 'a bundle older than main.js (tsc ran without the bundle step) is not used');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('npm run build made a bundle of the CLI, no older than the compiled main.js, and a code cache V8 accepts for it', async () => {
  const cli = join(ROOT, 'dist', 'src', 'cli');
  const bundle = join(cli, 'main.bundle.cjs');
  assert.ok(existsSync(bundle), 'dist/src/cli/main.bundle.cjs missing: npm run build bundles the CLI');
  assert.ok(statSync(bundle).mtimeMs >= statSync(join(cli, 'main.js')).mtimeMs, 'the bundle is older than main.js');
  assert.ok(existsSync(`${bundle}.cache`), 'main.bundle.cjs.cache missing: npm run build writes the code cache');
  // The cache is only worth having if this node (same binary, default flags, as the CLI runs) takes it.
  const probe =
    `const { loadBundle } = await import(${JSON.stringify(join(ROOT, 'bin', 'load-bundle.js'))}); ` +
    `const { exports, script } = loadBundle(${JSON.stringify(bundle)}); ` +
    `console.log(script.cachedDataRejected, typeof exports.main);`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', probe], { encoding: 'utf8' });
  assert.equal(r.stdout, 'false function\n', r.stderr);
});

test('a bare --version is answered without loading the CLI, with the same text commander prints; it is package.json’s version', async () => {
  const bin = join(ROOT, 'bin', 'volchain.js');
  const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { version: string };
  for (const flag of ['--version', '-V']) {
    const fast = spawnSync(process.execPath, [bin, flag], { encoding: 'utf8' });
    assert.equal(fast.status, 0);
    assert.equal(fast.stdout, `${pkg.version}\n`);
  }
  // With another option the full CLI parses the line, and commander's --version prints the same.
  const full = spawnSync(process.execPath, [bin, '--config', '/nonexistent/storage.cfg', '--version'], { encoding: 'utf8' });
  assert.equal(full.status, 0, full.stderr);
  assert.equal(full.stdout, `${pkg.version}\n`);
  // The fast path must not load the CLI: a copy of the entry beside a main.js that would fail proves it.
  const dir = await mkdtemp(join(tmpdir(), 'volchain-entry-version-'));
  try {
    await mkdir(join(dir, 'bin'));
    await mkdir(join(dir, 'dist', 'src', 'cli'), { recursive: true });
    await copyFile(bin, join(dir, 'bin', 'volchain.js'));
    await writeFile(join(dir, 'package.json'), '{"type":"module"}\n');
    await writeFile(join(dir, 'dist', 'src', 'cli', 'main.js'), "throw new Error('the CLI was loaded');\n");
    await writeFile(join(dir, 'dist', 'src', 'cli', 'version.js'), "export const VERSION = '9.9.9';\n");
    const r = spawnSync(process.execPath, [join(dir, 'bin', 'volchain.js'), '--version'], { encoding: 'utf8' });
    assert.equal(r.stdout, '9.9.9\n', r.stderr);
    assert.equal(r.status, 0);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
