#!/usr/bin/env node
// Bundles the compiled CLI (dist/src/cli/main.js and everything it imports, commander included) into one
// file, dist/src/cli/main.bundle.cjs, which bin/volchain.js loads: resolving and reading ~110 modules is most
// of a short command's start-up time (issue 16; bench/cli-start.ts measures it). The bundle sits beside
// main.js so that paths built from import.meta.url (cli/wipe-runner.ts, cli/progress.ts) mean the same in both:
// it is CommonJS (so that V8's code cache can serve it, bin/load-bundle.js), with import.meta.url defined as
// the bundle's own file URL. cli-progress stays outside: it is required lazily, only when a progress bar is drawn.
// The HTTP API's packages (fastify and its plugins, pino, zod) stay outside too and load from node_modules as
// they are (@fastify/swagger-ui serves files of its own package directory): src/api is reached only through
// serve's dynamic import(), which esbuild turns into a lazily run module, so no other command requires them.
//
// Then the code cache: the bundle is loaded through bin/load-bundle.js in this process, a few commands run on
// a scratch dir storage (so the functions they use are compiled too), and V8's cache of the script is written
// to main.bundle.cjs.cache. Best effort: a warm-up command that fails (no qemu-img here) leaves a cache of
// what did run; a cache V8 does not accept later is ignored.
import { build } from 'esbuild';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { loadBundle } from '../bin/load-bundle.js';

const bundle = resolve('dist/src/cli/main.bundle.cjs');

await build({
  entryPoints: ['dist/src/cli/main.js'],
  outfile: bundle,
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  external: ['cli-progress', 'fastify', '@fastify/*', 'fastify-type-provider-zod', 'pino', 'zod'],
  define: { 'import.meta.url': 'volchainBundleUrl' },
  banner: { js: "const volchainBundleUrl = require('node:url').pathToFileURL(__filename).href;" },
  minifyWhitespace: true,
  minifySyntax: true,
  keepNames: true,
  logLevel: 'warning',
});
// The ES-module bundle of earlier builds is no longer loaded: don't leave it to confuse anyone.
await rm(resolve('dist/src/cli/main.bundle.js'), { force: true });
// So are the split chunk files of the ES-module bundle.
for (const name of await readdir(resolve('dist/src/cli'))) if (/^chunk-[A-Z0-9]+\.js$/.test(name)) await rm(resolve('dist/src/cli', name));
await rm(`${bundle}.cache`, { force: true });

const { exports, script } = loadBundle(bundle);
const scratch = await mkdtemp(join(tmpdir(), 'volchain-build-warmup-'));
const cfg = join(scratch, 'storage.cfg');
await writeFile(cfg, `dir: warm\n\tpath ${join(scratch, 'store')}\n\tcontent images\n\tsnapshot-as-volume-chain 1\n`);
const stateDir = process.env.VOLCHAIN_STATE_DIR;
process.env.VOLCHAIN_STATE_DIR = join(scratch, 'state');
const write = { out: process.stdout.write, err: process.stderr.write };
process.stdout.write = process.stderr.write = () => true;
const failed = [];
try {
  const volid = 'warm:100/vm-100-disk-0.qcow2';
  for (const argv of [
    ['--help'],
    ['storage', 'list', '--json'],
    ['alloc', 'warm', '100', '64M'],
    ['snapshot', 'create', volid, 's1'],
    ['snapshot', 'create', volid, 's2', '--dry-run'],
    ['info', volid],
    ['info', '--json', volid],
    ['snapshot', 'list', volid],
    ['snapshot', 'list', '--json', volid],
    ['list', 'warm'],
    ['list', 'warm', '--json'],
    ['path', volid],
    ['free', volid],
  ]) {
    const status = await exports.main(['--config', cfg, ...argv]);
    if (status !== 0) failed.push(`${argv.join(' ')} (exit ${status})`);
  }
} finally {
  process.stdout.write = write.out;
  process.stderr.write = write.err;
  if (stateDir === undefined) delete process.env.VOLCHAIN_STATE_DIR;
  else process.env.VOLCHAIN_STATE_DIR = stateDir;
  process.exitCode = 0;
  await rm(scratch, { recursive: true, force: true });
}
if (failed.length > 0) console.warn(`bundle-cli: code cache warm-up commands failed (the cache covers less): ${failed.join('; ')}`);
await writeFile(`${bundle}.cache`, script.createCachedData());
