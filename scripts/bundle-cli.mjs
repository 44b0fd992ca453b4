#!/usr/bin/env node
// Bundles the compiled CLI (dist/src/cli/main.js and everything it imports, commander included) into one
// file, dist/src/cli/main.bundle.js, which bin/volchain.js loads: resolving and reading ~110 modules is most
// of a short command's start-up time (issue 16; bench/cli-start.ts measures it). The bundle sits beside
// main.js so that paths built from import.meta.url (cli/wipe-runner.ts) mean the same in both.
// cli-progress stays outside: it is required lazily, only when a progress bar is drawn.
// The HTTP API (src/api/, fastify and its plugins) is loaded by `serve` and `token` only, through a dynamic
// import(): code splitting puts it in chunk files beside the bundle that a short command never reads (one
// copy of every module still, so the error classes the CLI checks with instanceof are the API's too).
import { readdirSync, rmSync } from 'node:fs';
import { build } from 'esbuild';

const outdir = 'dist/src/cli';
// Chunks of an earlier build (their names carry a hash): a stale one must not be shipped.
for (const name of readdirSync(outdir)) if (/^chunk-[A-Z0-9]+\.js$/.test(name)) rmSync(`${outdir}/${name}`);

await build({
  entryPoints: ['dist/src/cli/main.js'],
  outdir,
  entryNames: '[name].bundle',
  chunkNames: 'chunk-[hash]',
  splitting: true,
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  // The API's packages load from node_modules, as they are (@fastify/swagger-ui serves files of its own
  // package directory, which a bundle would lose).
  external: ['cli-progress', 'fastify', '@fastify/*', 'fastify-type-provider-zod', 'pino', 'zod'],
  // commander is CommonJS and requires node's built-ins; an ESM bundle needs a real `require` for that
  banner: { js: "import { createRequire as volchainCreateRequire } from 'node:module';\nconst require = volchainCreateRequire(import.meta.url);" },
  minifyWhitespace: true,
  minifySyntax: true,
  keepNames: true,
  logLevel: 'warning',
});
