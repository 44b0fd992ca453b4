#!/usr/bin/env node
// Entry point of the CLI; the code lives in the compiled library (npm run build). The one-file bundle
// (scripts/bundle-cli.mjs) starts faster; a bundle older than the compiled code (a `tsc` run without the
// bundle step) is never used, so what runs is always what was last compiled. A bare `--version` is answered
// from a one-line module without loading the CLI at all (commander prints the same text).
import { statSync } from 'node:fs';

const dir = new URL('../dist/src/cli/', import.meta.url);
const args = process.argv.slice(2);
if (args.length === 1 && (args[0] === '--version' || args[0] === '-V')) {
  const { VERSION } = await import(new URL('version.js', dir).href);
  process.stdout.write(`${VERSION}\n`);
} else {
  const mtime = (name) => statSync(new URL(name, dir), { throwIfNoEntry: false })?.mtimeMs ?? -1;
  const entry = mtime('main.bundle.js') >= mtime('main.js') ? 'main.bundle.js' : 'main.js';
  const { main } = await import(new URL(entry, dir).href);
  process.exitCode = await main(args);
}
