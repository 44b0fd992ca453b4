#!/usr/bin/env node
// Entry point of the CLI; the code lives in the compiled library (npm run build). The one-file bundle
// (scripts/bundle-cli.mjs), loaded with its V8 code cache (load-bundle.js), starts faster; a bundle older than
// the compiled code (a `tsc` run without the bundle step) is never used, so what runs is always what was last
// compiled. A bare `--version` is answered from a one-line module without loading the CLI at all (commander
// prints the same text).
import { statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const dir = new URL('../dist/src/cli/', import.meta.url);
const args = process.argv.slice(2);
if (args.length === 1 && (args[0] === '--version' || args[0] === '-V')) {
  const { VERSION } = await import(new URL('version.js', dir).href);
  process.stdout.write(`${VERSION}\n`);
} else {
  const mtime = (name) => statSync(new URL(name, dir), { throwIfNoEntry: false })?.mtimeMs ?? -1;
  let main;
  if (mtime('main.bundle.cjs') >= mtime('main.js')) {
    const { loadBundle } = await import('./load-bundle.js');
    ({ main } = loadBundle(fileURLToPath(new URL('main.bundle.cjs', dir))).exports);
  } else {
    ({ main } = await import(new URL('main.js', dir).href));
  }
  process.exitCode = await main(args);
}
