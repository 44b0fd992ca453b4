// Loads the one-file CLI bundle (dist/src/cli/main.bundle.cjs, scripts/bundle-cli.mjs) with the V8 code cache
// written beside it at build time (main.bundle.cjs.cache): compiling the bundle, and then each function a
// command runs, is a large part of a short command's time (issue 16), and Node 20 keeps no compile cache of its
// own. V8 checks the cache against this source, its own version and its flags and ignores one that does not
// match (then the bundle is compiled as without one), so a missing, stale or foreign cache only costs time.
// The bundle is CommonJS for this: Node 20 has no code cache for ES modules. The build (scripts/bundle-cli.mjs)
// uses this same loader to warm the CLI up and write the cache, so the wrapped source is the same byte for byte.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { Script } from 'node:vm';

/** Runs the bundle at `file` as a CommonJS module; its exports, and the compiled script (for a new cache). */
export function loadBundle(file) {
  const source = readFileSync(file, 'utf8');
  let cachedData;
  try {
    cachedData = readFileSync(`${file}.cache`);
  } catch {
    cachedData = undefined;
  }
  const script = new Script(`(function (exports, require, module, __filename, __dirname) {${source}\n})`, { filename: file, cachedData });
  const module = { exports: {} };
  script.runInThisContext()(module.exports, createRequire(file), module, file, dirname(file));
  return { exports: module.exports, script };
}
