#!/usr/bin/env node
// Bundles the compiled CLI (dist/src/cli/main.js and everything it imports, commander included) into one
// file, dist/src/cli/main.bundle.js, which bin/volchain.js loads: resolving and reading ~110 modules is most
// of a short command's start-up time (issue 16; bench/cli-start.ts measures it). The bundle sits beside
// main.js so that paths built from import.meta.url (cli/wipe-runner.ts) mean the same in both.
// cli-progress stays outside: it is required lazily, only when a progress bar is drawn.
import { build } from 'esbuild';

await build({
  entryPoints: ['dist/src/cli/main.js'],
  outfile: 'dist/src/cli/main.bundle.js',
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  external: ['cli-progress'],
  // commander is CommonJS and requires node's built-ins; an ESM bundle needs a real `require` for that
  banner: { js: "import { createRequire as volchainCreateRequire } from 'node:module';\nconst require = volchainCreateRequire(import.meta.url);" },
  minifyWhitespace: true,
  minifySyntax: true,
  keepNames: true,
  logLevel: 'warning',
});
