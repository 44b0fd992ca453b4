#!/usr/bin/env node
// Lists the compiled test files and hands them to node's test runner (Node 20's --test does not expand
// globs). Fails when the list is empty, so a broken build can never pass as "no tests".
// Usage: node scripts/run-tests.mjs [unit|integration|<substring>...]
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

function listTests(dir) {
  let files = [];
  for (const entry of readdirSync(dir)) {
    const full = join(dir, entry);
    if (statSync(full).isDirectory()) files = files.concat(listTests(full));
    else if (entry.endsWith('.test.js')) files.push(full);
  }
  return files;
}

const filters = process.argv.slice(2);
// dist/test/lvm/ needs a volume group on a kernel with device-mapper: test/integration/lvm-guest.test.ts
// runs those files (on a loop device here, or inside a QEMU guest), never this script directly.
let files = listTests('dist/test')
  .filter((f) => !f.startsWith(join('dist', 'test', 'lvm') + '/'))
  .sort();
if (filters.length > 0) files = files.filter((f) => filters.some((w) => f.includes(w)));
if (files.length === 0) {
  console.error(`no test files found under dist/test${filters.length ? ` matching ${filters.join(', ')}` : ''}`);
  process.exit(1);
}
const concurrency = process.env.VOLCHAIN_TEST_CONCURRENCY ?? '2';
const result = spawnSync(process.execPath, ['--test', `--test-concurrency=${concurrency}`, ...files], {
  stdio: 'inherit',
});
process.exit(result.status ?? 1);
