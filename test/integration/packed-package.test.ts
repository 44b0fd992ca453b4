/**
 * The package as a user gets it (issue 15): `npm pack`, then `npm install <tarball>` into a fresh project,
 * then (a) a plain ESM script imports `volchain` and allocates, snapshots and lists a volume on a temporary
 * dir storage (real qemu-img underneath), and (b) TypeScript with moduleResolution NodeNext compiles a file
 * using the package's types with the repository's tsc, and reports a deliberate type error in another file
 * (so the types really resolve: were they `any`, the error would pass unnoticed).
 *
 * The install runs offline (--offline: the dependencies come from the npm cache, which installing this
 * repository filled); when the cache lacks one it retries with --prefer-offline, which may use the network.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT, runCommand, type RunResult } from './helpers.js';

const NPM_FLAGS = ['--no-audit', '--no-fund', '--no-update-notifier'];

function ok(r: RunResult, what: string): string {
  assert.equal(r.code, 0, `${what} failed (${r.code}): ${r.stderr}${r.stdout}`);
  return r.stdout;
}

describe('the packed package, installed into a new project', () => {
  let dir: string;
  let project: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'volchain-pack-'));
    ok(await runCommand('npm', ['pack', '--pack-destination', dir, ...NPM_FLAGS], { cwd: ROOT }), 'npm pack');
    const tarball = (await readdir(dir)).find((f) => f.endsWith('.tgz'));
    assert.ok(tarball, 'npm pack made a tarball');
    project = join(dir, 'project');
    await runCommand('mkdir', [project]);
    await writeFile(join(project, 'package.json'), JSON.stringify({ name: 'uses-volchain', version: '1.0.0', private: true, type: 'module' }));
    const install = (mode: string): Promise<RunResult> => runCommand('npm', ['install', mode, ...NPM_FLAGS, join(dir, tarball)], { cwd: project });
    let r = await install('--offline');
    if (r.code !== 0 && r.stderr.includes('ENOTCACHED')) r = await install('--prefer-offline');
    ok(r, 'npm install of the tarball');
  });
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('a plain ESM script imports createVolchain and allocates, snapshots and lists a volume', async () => {
    const store = join(dir, 'store');
    const cfg = join(dir, 'storage.cfg');
    await writeFile(cfg, `dir: tst\n\tpath ${store}\n\tcontent images\n\tsnapshot-as-volume-chain 1\n`);
    await writeFile(
      join(project, 'use.mjs'),
      [
        "import { createVolchain, NotFoundError } from 'volchain';",
        `const vc = await createVolchain({ config: ${JSON.stringify(cfg)}, lockTimeoutSeconds: 5 });`,
        "const volid = await vc.alloc('tst', 100, '4M');",
        "await vc.snapshotCreate(volid, 'first');",
        'const listing = await vc.snapshotList(volid);',
        'const volumes = await vc.list("tst");',
        'let missing;',
        "try { await vc.info('tst:100/vm-100-disk-9.qcow2'); } catch (err) { missing = { notFound: err instanceof NotFoundError, ...err.toJSON() }; }",
        'console.log(JSON.stringify({ volid, listing, volumes, missing }));',
      ].join('\n'),
    );
    const out = JSON.parse(ok(await runCommand(process.execPath, ['use.mjs'], { cwd: project }), 'node use.mjs')) as {
      volid: string;
      listing: { snapshots: { name: string; path: string }[]; current: { path: string; parent: string } };
      volumes: { volid: string; snapshots: string[] }[];
      missing: { notFound: boolean; code: string; outcome: string; fields: Record<string, unknown> };
    };
    assert.equal(out.volid, 'tst:100/vm-100-disk-0.qcow2');
    assert.deepEqual(
      out.listing.snapshots.map((s) => s.name),
      ['first'],
    );
    assert.equal(out.listing.current.parent, 'first');
    assert.deepEqual(
      out.volumes.map((v) => [v.volid, v.snapshots]),
      [[out.volid, ['first']]],
    );
    assert.deepEqual(out.missing, {
      notFound: true,
      code: 'NOT_FOUND',
      exitStatus: 3,
      message: 'volume tst:100/vm-100-disk-9.qcow2 does not exist',
      outcome: 'unchanged',
      fields: { volid: 'tst:100/vm-100-disk-9.qcow2', vmid: 100, storage: 'tst' },
    });
    // The chain on disk, as qemu-img sees it: the current layer is backed by the snapshot's layer.
    const info = JSON.parse(ok(await runCommand('qemu-img', ['info', '--output=json', '-U', out.listing.current.path]), 'qemu-img info')) as {
      'backing-filename'?: string;
    };
    assert.equal(info['backing-filename'], 'snap-first-vm-100-disk-0.qcow2');
  });

  it("TypeScript (NodeNext) compiles against the package's types, and reports a type error", async () => {
    await writeFile(
      join(project, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          target: 'ES2022',
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          strict: true,
          noEmit: true,
          // The package's declarations name node's types (NodeJS.ProcessEnv): take them from this repository.
          typeRoots: [join(ROOT, 'node_modules', '@types')],
          types: ['node'],
        },
      }),
    );
    await writeFile(
      join(project, 'good.ts'),
      [
        "import { createVolchain, VolchainError, type ErrorOutcome, type Plan, type PlansJson, type SnapshotListing, type Step, type VolumeListEntry } from 'volchain';",
        "const vc = await createVolchain({ config: '/nonexistent/storage.cfg', shrinkFrozen: 'auto' });",
        "const plan: Plan = await vc.snapshotCreate('tst:100/vm-100-disk-0.qcow2', 's1', { dryRun: true });",
        'const steps: Step[] = plan.steps;',
        'const doc: PlansJson = { dryRun: true, plans: [plan] };',
        "const listing: SnapshotListing = await vc.snapshotList('tst:100/vm-100-disk-0.qcow2');",
        "const volumes: VolumeListEntry[] = await vc.list('tst');",
        'function outcomeOf(err: unknown): ErrorOutcome | undefined { return err instanceof VolchainError ? err.outcome : undefined; }',
        'export { steps, doc, listing, volumes, outcomeOf };',
      ].join('\n'),
    );
    await writeFile(
      join(project, 'bad.ts'),
      [
        "import { createVolchain } from 'volchain';",
        'const vc = await createVolchain();',
        "const size: number = await vc.alloc('tst', 100, '4M');",
        'export { size };',
      ].join('\n'),
    );
    for (const name of ['good', 'bad']) {
      await writeFile(join(project, `tsconfig.${name}.json`), JSON.stringify({ extends: './tsconfig.json', files: [`${name}.ts`] }));
    }
    const tsc = (name: string): Promise<RunResult> =>
      runCommand(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', `tsconfig.${name}.json`], { cwd: project });
    ok(await tsc('good'), 'tsc of good.ts');
    const bad = await tsc('bad');
    assert.notEqual(bad.code, 0, `tsc accepted bad.ts: ${bad.stdout}`);
    assert.match(bad.stdout, /bad\.ts\(3,7\): error TS2322: Type 'string' is not assignable to type 'number'/);
    assert.equal(bad.stdout.trim().split('\n').length, 1, `one error only: ${bad.stdout}`);
  });
});
