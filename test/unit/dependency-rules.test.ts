/**
 * The import rules (.dependency-cruiser.cjs, run by `npm run check:deps` before the tests) catch what they
 * are for: run on small fixture trees laid out like src/, the real config must reject a type-only cycle, an
 * upward import and a run-time import of model/, and accept the same tree without them (so the failures
 * come from the rules, not from the set-up).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

// dist/test/unit/ -> repository root.
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const CRUISER = join(ROOT, 'node_modules', 'dependency-cruiser', 'bin', 'dependency-cruise.mjs');
const CONFIG = join(ROOT, '.dependency-cruiser.cjs');

async function fixture(files: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'volchain-deps-'));
  const all = {
    'tsconfig.json': JSON.stringify({ compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext', strict: true }, include: ['src'] }),
    ...files,
  };
  for (const [path, text] of Object.entries(all)) {
    await mkdir(dirname(join(dir, path)), { recursive: true });
    await writeFile(join(dir, path), text);
  }
  return dir;
}

function cruise(dir: string): { status: number | null; output: string } {
  const r = spawnSync(process.execPath, [CRUISER, 'src', '--config', CONFIG, '--output-type', 'err'], { cwd: dir, encoding: 'utf8' });
  return { status: r.status, output: `${r.stdout}${r.stderr}` };
}

/** A tree that follows the rules: engine uses naming and model (type-only); naming uses errors; index uses all. */
const CLEAN = {
  'src/errors.ts': 'export class VolchainError extends Error {}\n',
  'src/model/plan.ts': 'export interface Plan { volid: string }\n',
  'src/naming/a.ts': "import { VolchainError } from '../errors.js';\nexport const a = (): Error => new VolchainError('a');\n",
  'src/naming/b.ts': "import { a } from './a.js';\nexport const b = (): Error => a();\n",
  'src/engine/run.ts':
    "import type { Plan } from '../model/plan.js';\nimport { b } from '../naming/b.js';\nexport const run = (p: Plan): string => p.volid + String(b());\n",
  // The package entry, on top, may import every layer.
  'src/index.ts': "export { run } from './engine/run.js';\nexport { b } from './naming/b.js';\nexport type * from './model/plan.js';\n",
};

test('dependency rules: a tree that follows them passes', async (t) => {
  const dir = await fixture(CLEAN);
  t.after(() => rm(dir, { recursive: true, force: true }));
  const r = cruise(dir);
  assert.equal(r.status, 0, r.output);
});

test('dependency rules: a type-only cycle, an upward import and a run-time import of model/ each fail the check', async (t) => {
  const dir = await fixture({
    ...CLEAN,
    // a.ts -> b.ts -> a.ts, the way back through `import type` only.
    'src/naming/a.ts':
      "import type { B } from './b.js';\nimport { VolchainError } from '../errors.js';\nexport type A = { b?: B };\nexport const a = (): Error => new VolchainError('a');\n",
    'src/naming/b.ts': "import { a, type A } from './a.js';\nexport type B = { a?: A };\nexport const b = (): Error => a();\n",
    // A lower layer reaching up into the engine.
    'src/qcow2/read.ts': "import { run } from '../engine/run.js';\nexport const read = (): string => run({ volid: 'x' });\n",
    // model/ imported for its value rather than with `import type`.
    'src/engine/late.ts': "import { Plan } from '../model/plan.js';\nexport const late = (p: Plan): string => p.volid;\n",
  });
  t.after(() => rm(dir, { recursive: true, force: true }));
  const r = cruise(dir);
  assert.notEqual(r.status, 0, `the check passed a tree that breaks its rules:\n${r.output}`);
  assert.match(r.output, /no-circular: src\/naming\/(a|b)\.ts/, r.output);
  assert.match(r.output, /layer-qcow2: src\/qcow2\/read\.ts → src\/engine\/run\.ts/, r.output);
  assert.match(r.output, /model-types-only: src\/engine\/late\.ts → src\/model\/plan\.ts/, r.output);
});
