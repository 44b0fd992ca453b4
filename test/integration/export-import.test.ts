/**
 * `volchain export` / `volchain import` on dir storages, with real qemu-img/qemu-io on real files: a branched
 * snapshot tree (a zero in one snapshot hiding its parent's data) goes through a real pipe between two
 * volchain processes to a second storage, and through a file to another VM id; every view is compared with
 * its source (`qemu-img compare`), read back by pattern, checked clean, and the tree, names and current
 * position are the same. Hostile or broken streams are refused with nothing left behind; a SIGKILL at every
 * step of an import followed by `repair` leaves no volume or a whole one.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { appendFile, mkdir, readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import {
  BIN,
  MiB,
  assertPatterns,
  checkClean,
  cli,
  cliFails,
  cliJson,
  cliOk,
  makeStorage,
  runCommand,
  writePattern,
  type Expect,
  type TestStorage,
} from './helpers.js';
import type { PlansJson, StatusJson } from '../../src/results.js';
import { ChainStreamWriter } from '../../src/engine/run/chain-stream.js';
import { startVm } from './live-vm.js';
import { clearImmutableFlags, fileFingerprint } from '../fixtures/pve-dir-fixture.js';

const SIZE = 64 * MiB;
const SRC = 'aa:100/vm-100-disk-0.qcow2';

let s: TestStorage;
let bbPath: string;
/** A whole export of SRC, made once. */
let stream: Buffer;
let workDir: string;

/** What each view of the source holds, 1 MiB ranges; s2 zeroes the first 64 KiB of s1's data. */
const VIEWS: Record<string, Expect[]> = {
  s1: [pat(0xa1, 0, MiB), pat(0, MiB, 3 * MiB)],
  s2: [pat(0, 0, 64 * 1024), pat(0xa1, 64 * 1024, MiB - 64 * 1024), pat(0xb2, MiB, MiB), pat(0, 2 * MiB, 2 * MiB)],
  s3: [pat(0xa1, 0, MiB), pat(0, MiB, MiB), pat(0xc3, 2 * MiB, MiB), pat(0, 3 * MiB, MiB)],
  current: [pat(0xa1, 0, MiB), pat(0, MiB, MiB), pat(0xc3, 2 * MiB, MiB), pat(0xd4, 3 * MiB, MiB)],
};

function pat(byte: number, offset: number, len: number): Expect {
  return { byte, offset, len };
}

function file(storage: 'aa' | 'bb', vmid: number, name: string): string {
  return join(storage === 'aa' ? s.path : bbPath, 'images', String(vmid), name);
}

function viewLayer(storage: 'aa' | 'bb', vmid: number, view: string, disk = `vm-${vmid}-disk-0.qcow2`): string {
  return file(storage, vmid, view === 'current' ? disk : `snap-${view}-${disk}`);
}

async function compare(a: string, b: string): Promise<void> {
  const r = await runCommand('qemu-img', ['compare', '-f', 'qcow2', '-F', 'qcow2', a, b]);
  assert.equal(r.code, 0, `qemu-img compare ${a} ${b}: ${r.stdout}${r.stderr}`);
}

interface SnapshotListJson {
  current: { parent: string | null; virtualSize: number; definedBytes: number };
  snapshots: { name: string; parent: string | null; children: string[]; inCurrentChain: boolean; virtualSize: number; definedBytes: number }[];
}

/** The tree as `snapshot list` shows it, without names of files or paths. */
async function treeShape(volid: string): Promise<unknown> {
  const j = await cliJson<SnapshotListJson>(s, ['snapshot', 'list', volid]);
  return {
    current: { parent: j.current.parent, virtualSize: j.current.virtualSize, definedBytes: j.current.definedBytes },
    snapshots: j.snapshots.map((x) => ({
      name: x.name,
      parent: x.parent,
      children: x.children,
      inCurrentChain: x.inCurrentChain,
      definedBytes: x.definedBytes,
    })),
  };
}

/** Every view of the imported volume equals the source's, by compare and by pattern; every layer checks clean. */
async function sameAsSource(storage: 'aa' | 'bb', vmid: number, disk = `vm-${vmid}-disk-0.qcow2`): Promise<void> {
  for (const [view, expects] of Object.entries(VIEWS)) {
    const layer = viewLayer(storage, vmid, view, disk);
    await compare(viewLayer('aa', 100, view), layer);
    await assertPatterns(layer, expects, `imported view ${view}`);
    await checkClean(layer);
  }
  assert.deepEqual(await treeShape(`${storage}:${vmid}/${disk}`), await treeShape(SRC), 'the same tree, names and current position');
}

/** Files under images/<vmid> of a storage (hidden temporaries included); [] when the directory does not exist. */
async function filesOf(storage: 'aa' | 'bb', vmid: number): Promise<string[]> {
  return readdir(join(storage === 'aa' ? s.path : bbPath, 'images', String(vmid))).catch(() => []);
}

async function nothingLeft(vmid: number, context: string): Promise<void> {
  assert.deepEqual(await filesOf('bb', vmid), [], `${context}: nothing left in bb/images/${vmid}`);
  assert.deepEqual((await cliJson<StatusJson>(s, ['status'])).pending, [], `${context}: no unfinished operation`);
  const listed = await cliJson<{ volumes: { volid: string }[] }>(s, ['list', 'bb', '--vmid', String(vmid)]);
  assert.deepEqual(listed.volumes, [], `${context}: no volume listed`);
}

/** `volchain import bb <vmid>` with `input` on its stdin. */
function importFrom(
  input: Buffer,
  vmid: number,
  extra: string[] = [],
  env: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, '--config', s.cfg, 'import', 'bb', String(vmid), ...extra], {
      env: { ...process.env, LC_ALL: 'C', ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.stdin.on('error', () => undefined); // the importer may refuse before reading everything
    child.on('error', reject);
    child.on('close', (code, signal) =>
      resolve({ code: code ?? (signal ? 128 : 1), stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() }),
    );
    child.stdin.end(input);
  });
}

async function refused(input: Buffer, vmid: number, code: number, match: RegExp, context: string): Promise<void> {
  const r = await importFrom(input, vmid);
  assert.equal(r.code, code, `${context}: exit status (stderr: ${r.stderr})`);
  assert.match(r.stderr, match, context);
  assert.equal(r.stderr.trim().split('\n').length, 1, `${context}: one line on stderr`);
  assert.equal(r.stdout, '', `${context}: nothing on stdout`);
  await nothingLeft(vmid, context);
}

/** A stream written by the library's writer from a manifest object and per-layer records. */
async function craft(manifest: unknown, layers: { data?: [number, Buffer][]; zero?: [number, number][] }[]): Promise<Buffer> {
  const sink = new PassThrough();
  const chunks: Buffer[] = [];
  sink.on('data', (c: Buffer) => chunks.push(c));
  const w = new ChainStreamWriter(sink);
  await w.begin(JSON.stringify(manifest));
  for (const [i, l] of layers.entries()) {
    await w.layerStart(i);
    for (const [offset, data] of l.data ?? []) await w.data(offset, data);
    for (const [offset, length] of l.zero ?? []) await w.zero(offset, length);
    await w.layerEnd();
  }
  await w.end();
  sink.end();
  return Buffer.concat(chunks);
}

function oneLayer(over: Record<string, unknown> = {}, layer: Record<string, unknown> = {}): unknown {
  return {
    format: 'volchain-chain',
    version: 1,
    volume: 'vm-100-disk-0.qcow2',
    virtualSize: MiB,
    current: 0,
    layers: [{ snapshot: null, parent: null, virtualSize: MiB, dataBytes: 4096, zeroBytes: 0, extents: 1, ...layer }],
    ...over,
  };
}

before(async () => {
  s = await makeStorage({ id: 'aa' });
  bbPath = join(s.root, 'store2');
  workDir = join(s.root, 'work');
  await mkdir(bbPath);
  await mkdir(workDir);
  await appendFile(s.cfg, `\ndir: bb\n\tpath ${bbPath}\n\tcontent images\n\tsnapshot-as-volume-chain 1\n`);
  // s1 <- s2 (which zeroes 64 KiB of s1's data), s1 <- s3 <- current.
  await cliOk(s, ['alloc', 'aa', '100', String(SIZE)]);
  const top = viewLayer('aa', 100, 'current');
  await writePattern(top, 0xa1, 0, MiB);
  await cliOk(s, ['snapshot', 'create', SRC, 's1']);
  await writePattern(top, 0xb2, MiB, MiB);
  const z = await runCommand('qemu-io', ['-f', 'qcow2', '-c', `write -z 0 ${64 * 1024}`, top]);
  assert.equal(z.code, 0, z.stderr);
  await cliOk(s, ['snapshot', 'create', SRC, 's2']);
  await cliOk(s, ['snapshot', 'rollback', SRC, 's1']);
  await writePattern(top, 0xc3, 2 * MiB, MiB);
  await cliOk(s, ['snapshot', 'create', SRC, 's3']);
  await writePattern(top, 0xd4, 3 * MiB, MiB);
  for (const [view, expects] of Object.entries(VIEWS)) await assertPatterns(viewLayer('aa', 100, view), expects, `source ${view}`);
  await cliOk(s, ['export', SRC, '-o', join(workDir, 'full.vcx')]);
  stream = await readFile(join(workDir, 'full.vcx'));
});

after(async () => {
  // `template` sets chattr +i on the base file (as PVE does), where the file system allows it.
  await clearImmutableFlags([file('aa', 400, 'base-400-disk-0.qcow2')]).catch(() => undefined);
  await s.cleanup();
});

test('export | import through a real pipe between two processes keeps every view, the tree and the zero that hides parent data', async () => {
  const exporter = spawn(process.execPath, [BIN, '--config', s.cfg, 'export', SRC], { stdio: ['ignore', 'pipe', 'pipe'] });
  const importer = spawn(process.execPath, [BIN, '--config', s.cfg, 'import', 'bb', '200'], { stdio: ['pipe', 'pipe', 'pipe'] });
  exporter.stdout.pipe(importer.stdin);
  const errs: string[] = [];
  exporter.stderr.on('data', (c: Buffer) => errs.push(`export: ${c.toString()}`));
  importer.stderr.on('data', (c: Buffer) => errs.push(`import: ${c.toString()}`));
  let out = '';
  importer.stdout.on('data', (c: Buffer) => (out += c.toString()));
  const codes = await Promise.all([exporter, importer].map((p) => new Promise<number | null>((r) => p.on('close', r))));
  assert.deepEqual(codes, [0, 0], errs.join(''));
  assert.equal(out.trim(), 'imported vm-100-disk-0.qcow2 as bb:200/vm-200-disk-0.qcow2 with 3 snapshot(s)');
  await sameAsSource('bb', 200);
  // The zero s2 defines over s1's data is a zero of s2's own layer after the import, as before it.
  const map = await runCommand('qemu-img', ['map', '--output=json', '-f', 'qcow2', viewLayer('bb', 200, 's2')]);
  const first = (JSON.parse(map.stdout) as { start: number; depth: number; zero: boolean; data: boolean }[])[0];
  assert.deepEqual(first && { start: first.start, depth: first.depth, zero: first.zero, data: first.data }, { start: 0, depth: 0, zero: true, data: false });
  assert.deepEqual(await filesOf('bb', 200), [
    'snap-s1-vm-200-disk-0.qcow2',
    'snap-s2-vm-200-disk-0.qcow2',
    'snap-s3-vm-200-disk-0.qcow2',
    'vm-200-disk-0.qcow2',
  ]);
});

test('export -o FILE then import -i FILE into another VM id of the same storage, with --name', async () => {
  const out = await cliOk(s, ['import', 'aa', '300', '-i', join(workDir, 'full.vcx'), '--name', 'vm-300-moved.qcow2']);
  assert.equal(out.trim(), 'imported vm-100-disk-0.qcow2 as aa:300/vm-300-moved.qcow2 with 3 snapshot(s)');
  for (const [view, expects] of Object.entries(VIEWS)) {
    const layer = join(s.path, 'images', '300', view === 'current' ? 'vm-300-moved.qcow2' : `snap-${view}-vm-300-moved.qcow2`);
    await compare(viewLayer('aa', 100, view), layer);
    await assertPatterns(layer, expects, `aa:300 view ${view}`);
    await checkClean(layer);
  }
  assert.deepEqual(await treeShape('aa:300/vm-300-moved.qcow2'), await treeShape(SRC));
  // The imported volume is a volume like any other: a new snapshot and a rollback work on it.
  await cliOk(s, ['snapshot', 'create', 'aa:300/vm-300-moved.qcow2', 'after']);
  await cliOk(s, ['snapshot', 'rollback', 'aa:300/vm-300-moved.qcow2', 's2']);
  await assertPatterns(join(s.path, 'images', '300', 'vm-300-moved.qcow2'), VIEWS.s2 as Expect[], 'rolled back to imported s2');
});

test("a linked clone exports with its base's data in its bottom layer and imports as a volume of its own", async () => {
  await cliOk(s, ['alloc', 'aa', '400', '4M']);
  await writePattern(file('aa', 400, 'vm-400-disk-0.qcow2'), 0x5a, 0, 2 * MiB);
  await cliOk(s, ['template', 'aa:400/vm-400-disk-0.qcow2']);
  const base = file('aa', 400, 'base-400-disk-0.qcow2');
  const baseBefore = await fileFingerprint(base);
  const clone = (await cliOk(s, ['clone', '--linked', 'aa:400/base-400-disk-0.qcow2', 'aa', '401'])).trim().split(' ').pop() ?? '';
  assert.equal(clone, 'aa:400/base-400-disk-0.qcow2/401/vm-401-disk-0.qcow2');
  const top = file('aa', 401, 'vm-401-disk-0.qcow2');
  await writePattern(top, 0x6b, MiB, MiB); // over half of the base's data
  await cliOk(s, ['snapshot', 'create', clone, 's1']);
  await writePattern(top, 0x7c, 3 * MiB, MiB);

  const exported = join(s.root, 'linked.vcx'); // not in workDir: later tests assert what is there
  await cliOk(s, ['export', clone, '-o', exported]);
  assert.equal(
    (await cliOk(s, ['import', 'bb', '402', '-i', exported])).trim(),
    'imported vm-401-disk-0.qcow2 as bb:402/vm-402-disk-0.qcow2 with 1 snapshot(s)',
  );
  const views: Record<string, Expect[]> = {
    s1: [pat(0x5a, 0, MiB), pat(0x6b, MiB, MiB), pat(0, 2 * MiB, 2 * MiB)],
    current: [pat(0x5a, 0, MiB), pat(0x6b, MiB, MiB), pat(0, 2 * MiB, MiB), pat(0x7c, 3 * MiB, MiB)],
  };
  for (const [view, expects] of Object.entries(views)) {
    const imported = viewLayer('bb', 402, view);
    await compare(viewLayer('aa', 401, view), imported);
    await assertPatterns(imported, expects, `imported linked clone, view ${view}`);
    await checkClean(imported);
  }
  // The imported bottom layer stands alone: no backing file, so no reference to a base on another storage.
  const info = JSON.parse((await runCommand('qemu-img', ['info', '--output=json', '-f', 'qcow2', viewLayer('bb', 402, 's1')])).stdout) as {
    'backing-filename'?: string;
  };
  assert.equal(info['backing-filename'], undefined, 'the bottom layer has no backing file');
  assert.deepEqual(await fileFingerprint(base), baseBefore, 'the base was only read');
});

test('export --dry-run prints the manifest and the exact stream size; import --dry-run prints what it would create and changes nothing', async () => {
  const dry = await cliJson<{ streamBytes: number; manifest: { layers: { snapshot: string | null; parent: number | null }[]; current: number } }>(s, [
    'export',
    SRC,
    '--dry-run',
  ]);
  assert.equal(dry.streamBytes, stream.length, 'the dry run predicts the stream size exactly');
  assert.deepEqual(
    dry.manifest.layers.map((l) => [l.snapshot, l.parent]),
    [
      ['s1', null],
      ['s2', 0],
      ['s3', 0],
      [null, 2],
    ],
  );
  const text = await cliOk(s, ['export', SRC, '--dry-run']);
  assert.match(text, /"format": "volchain-chain"/);
  assert.match(text, new RegExp(`^stream: .* \\(${stream.length} bytes\\), 4194304 bytes of data, 65536 bytes of zeroes$`, 'm'));
  const plan = await importFrom(stream, 400, ['--dry-run']);
  assert.equal(plan.code, 0, plan.stderr);
  assert.match(
    plan.stdout,
    /^plan: import vm-100-disk-0\.qcow2 \(67108864 bytes virtual, 3 snapshot\(s\): s1, s2, s3\) as the new volume bb:400\/vm-400-disk-0\.qcow2/m,
  );
  assert.match(plan.stdout, /^space needed on the target: .* \(\d+ bytes\) of .* free$/m);
  assert.match(plan.stdout, /import layer 0 of the stream into new \.volchain-tmp-impa-vm-400-disk-0\.qcow2/);
  const json = await cliJson<PlansJson>(s, ['import', 'bb', '400', '-i', join(workDir, 'full.vcx'), '--dry-run']);
  assert.equal(json.plans[0]?.operation, 'import');
  assert.equal(json.plans[0].bytesMoved, 4 * MiB);
  await nothingLeft(400, 'import --dry-run');
  // Too little space is said first, with exit 9: a manifest announcing more data than the storage has.
  const huge = await craft(oneLayer({ virtualSize: 2 ** 50 }, { virtualSize: 2 ** 50, dataBytes: 2 ** 49 }), [{}]);
  await refused(huge, 401, 9, /storage 'bb' has .* free, but the import of 1 layer\(s\) needs/, 'no space');
});

test('hostile and broken streams are refused (exit 8 or 2) and leave nothing behind', async () => {
  let vmid = 500;
  const data = Buffer.alloc(4096, 0x5a);
  const cases: [string, Buffer, number, RegExp][] = [
    ['a flipped data byte', flip(stream, stream.length - 200), 8, /checksum of a layer does not match/],
    ['a flipped manifest byte', flipInManifest(stream), 2, /the manifest/],
    ['a truncated stream', stream.subarray(0, Math.floor(stream.length / 2)), 8, /ends early.*truncated/],
    ['no trailer', stream.subarray(0, stream.length - 33), 8, /ends early/],
    ['bytes after the trailer', Buffer.concat([stream, Buffer.from('x')]), 8, /bytes after its trailer/],
    ['not a chain stream', Buffer.from('QFI\xfb\x00\x00\x00\x03 not a chain stream at all', 'latin1'), 8, /wrong magic/],
    ['a traversal volume name', await craft(oneLayer({ volume: '../../../etc/vm-1-x.qcow2' }), [{ data: [[0, data]] }]), 2, /not a volume name/],
    ['a traversal snapshot name', await craft(twoLayers('../../x'), [{ data: [[0, data]] }, { data: [[0, data]] }]), 2, /snapshot name .* is not valid/],
    ['a reserved snapshot name', await craft(twoLayers('current'), [{ data: [[0, data]] }, { data: [[0, data]] }]), 2, /snapshot name/],
    ['a backing reference smuggled in', await craft(oneLayer({}, { backing: '/etc/passwd' }), [{ data: [[0, data]] }]), 2, /unknown key\(s\) .*backing/],
    ['an external data file smuggled in', await craft(oneLayer({}, { dataFile: '/dev/sda' }), [{ data: [[0, data]] }]), 2, /unknown key\(s\) .*dataFile/],
    ['an extent beyond the disk', await craft(oneLayer(), [{ data: [[MiB, data]] }]), 8, /beyond the disk/],
    [
      'more data than announced',
      await craft(oneLayer(), [
        {
          data: [
            [0, data],
            [8192, data],
          ],
        },
      ]),
      8,
      /more than its manifest says/,
    ],
    ['less data than announced', await craft(oneLayer({}, { dataBytes: 8192, extents: 2 }), [{ data: [[0, data]] }]), 8, /less than its manifest says/],
    ['a parent after its child', await craft(badOrder(), [{ data: [[0, data]] }, { data: [[0, data]] }]), 2, /only the first layer has no parent/],
    ['a size that is no size', await craft(oneLayer({ virtualSize: -1 }), [{}]), 2, /virtualSize .*-1.* is not a size/],
  ];
  for (const [what, input, code, match] of cases) await refused(input, ++vmid, code, match, what);
  assert.equal(vmid, 500 + cases.length);
});

test('a truncated stdin (the exporter dies mid-stream) is refused, and nothing is left', async () => {
  // A real pipe from a process that stops after 3 MiB: the importer sees the end of its input mid-layer.
  const cut = spawn('head', ['-c', String(3 * MiB), join(workDir, 'full.vcx')], { stdio: ['ignore', 'pipe', 'ignore'] });
  const importer = spawn(process.execPath, [BIN, '--config', s.cfg, 'import', 'bb', '600'], { stdio: ['pipe', 'ignore', 'pipe'] });
  cut.stdout.pipe(importer.stdin);
  let err = '';
  importer.stderr.on('data', (c: Buffer) => (err += c.toString()));
  const code = await new Promise<number | null>((r) => importer.on('close', r));
  assert.equal(code, 8, err);
  assert.match(err, /ends early.*nothing was changed/);
  await nothingLeft(600, 'truncated stdin');
});

test('export refuses bad input and leaves no file', async () => {
  await cliFails(s, ['export', 'aa:100/vm-100-disk-9.qcow2', '-o', join(workDir, 'none.vcx')], { code: 3, match: /does not exist/ });
  await cliFails(s, ['export', SRC, '-o', join(workDir, 'full.vcx')], { code: 4, match: /already exists/ });
  await cliFails(s, ['import', 'bb', '12', '-i', join(workDir, 'full.vcx')], { code: 2, match: /VM id/ });
  await cliFails(s, ['import', 'bb', '700', '-i', join(workDir, 'nothing.vcx')], { code: 3, match: /nothing\.vcx does not exist/ });
  await cliFails(s, ['import', 'bb', '700', '-i', join(workDir, 'full.vcx'), '--name', 'vm-701-x.qcow2'], { code: 2 });
  assert.deepEqual(
    (await readdir(workDir)).filter((f) => f !== 'full.vcx'),
    [],
    'no output file, partial or whole, after a refused export',
  );
  // An existing volume's name is taken (exit 4).
  await cliOk(s, ['alloc', 'bb', '710', '1M']);
  await cliFails(s, ['import', 'bb', '710', '-i', join(workDir, 'full.vcx'), '--name', 'vm-710-disk-0.qcow2'], { code: 4, match: /already exists/ });
});

test('an export to a file stopped by SIGTERM or SIGINT leaves no file, partial or whole', async () => {
  // A volume with enough data that the export is still running when the signal comes.
  await cliOk(s, ['alloc', 'aa', '150', String(256 * MiB)]);
  await writePattern(file('aa', 150, 'vm-150-disk-0.qcow2'), 0x15, 0, 128 * MiB);
  for (const [signal, code] of [
    ['SIGTERM', 143],
    ['SIGINT', 130],
  ] as const) {
    const target = join(workDir, `stopped-${signal}.vcx`);
    const child = spawn(process.execPath, [BIN, '--config', s.cfg, 'export', 'aa:150/vm-150-disk-0.qcow2', '-o', target], { stdio: 'ignore' });
    const closed = new Promise<number | null>((r) => child.on('close', r));
    // Signalled as soon as its hidden partial file exists: the export has begun.
    for (let i = 0; i < 500 && !(await readdir(workDir)).some((f) => f.includes('volchain-partial')); i++) await new Promise((r) => setTimeout(r, 10));
    child.kill(signal);
    assert.equal(await closed, code, `${signal}: exit status`);
    assert.deepEqual(
      (await readdir(workDir)).filter((f) => f !== 'full.vcx'),
      [],
      `${signal}: no file left`,
    );
  }
});

test('a running VM is refused (exit 6): its guest writes the disk while it would be read', async () => {
  await cliOk(s, ['alloc', 'aa', '160', String(SIZE)]);
  const volid = 'aa:160/vm-160-disk-0.qcow2';
  const vm = await startVm(s, [volid]);
  try {
    await cliFails(s, ['export', volid, '-o', join(workDir, 'running.vcx'), '--qmp', vm.socket], {
      code: 6,
      match: /VM 160 is running .*: export of .* needs the VM stopped: .*stop the VM/,
    });
  } finally {
    await vm.stop();
  }
  assert.deepEqual(
    (await readdir(workDir)).filter((f) => f !== 'full.vcx'),
    [],
    'no file',
  );
});

test('SIGKILL at every step of an import, then repair: no volume before the renames, a whole one from them on', async () => {
  const plan = await cliJson<PlansJson>(s, ['import', 'bb', '800', '-i', join(workDir, 'full.vcx'), '--dry-run']);
  const steps = plan.plans[0]?.steps ?? [];
  const firstRename = steps.findIndex((st) => st.kind === 'rename') + 1;
  assert.equal(steps.length, 12, 'four layers, the check, four renames, three freezes');
  assert.equal(firstRename, 6);
  let vmid = 800;
  let covered = 0;
  const lastRename = firstRename + 3;
  // Every step killed while it runs, and the moments around the two boundaries (the check, the last rename).
  const extra: Record<number, string[]> = { [firstRename - 1]: ['after'], [firstRename]: ['before'], [lastRename]: ['after'], [steps.length]: ['after'] };
  for (let step = 1; step <= steps.length; step++) {
    for (const moment of ['started', ...(extra[step] ?? [])]) {
      vmid++;
      const label = `crash at import:${step}:${moment}`;
      const run = await cli(s, ['import', 'bb', String(vmid), '-i', join(workDir, 'full.vcx')], { env: { VOLCHAIN_CRASH_AT: `import:${step}:${moment}` } });
      assert.equal(run.code, 128, `${label}: the process was expected to die (${run.stderr})`);
      // Even before repair, a listing shows no usable half volume: at most the unfinished import, as a problem.
      const listed = await cliJson<{ volumes: { volid: string; problem: { message: string } | null }[] }>(s, ['list', 'bb', '--vmid', String(vmid)]);
      for (const v of listed.volumes) {
        if (v.problem !== null) assert.match(v.problem.message, /in the middle of a import/, label);
        else assert.ok(step > lastRename || (step === lastRename && moment === 'after'), `${label}: ${v.volid} listed as usable before its last rename`);
      }
      await cliFails(s, ['import', 'bb', String(vmid), '-i', join(workDir, 'full.vcx')], { code: 7, match: /unfinished import/ });
      await cliOk(s, ['repair', `bb:${vmid}/vm-${vmid}-disk-0.qcow2`]);
      // Walked back while a step reading the stream was left; from the first rename on, finished.
      if (step < firstRename) {
        await nothingLeft(vmid, label);
      } else {
        await sameAsSource('bb', vmid);
        assert.deepEqual((await cliJson<StatusJson>(s, ['status'])).pending, [], `${label}: nothing pending`);
        assert.equal((await filesOf('bb', vmid)).filter((f) => f.includes('volchain-tmp')).length, 0, `${label}: no temporary left`);
      }
      covered++;
    }
  }
  assert.equal(covered, steps.length + 4);
});

test('a failed import step is undone at once: no temporary, no journal', async () => {
  const r = await cli(s, ['import', 'bb', '900', '-i', join(workDir, 'full.vcx')], { env: { VOLCHAIN_FAIL_AT: 'import:3' } });
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /injected failure at import step 3 .*nothing was changed/);
  await nothingLeft(900, 'failed step');
});

function flip(buf: Buffer, at: number): Buffer {
  const out = Buffer.from(buf);
  out[at] = (out[at] ?? 0) ^ 0xff;
  return out;
}

/** Changes a digit of the manifest's virtualSize so that it is no longer a multiple of 512. */
function flipInManifest(buf: Buffer): Buffer {
  const out = Buffer.from(buf);
  const at = out.indexOf('"virtualSize":67108864');
  assert.ok(at > 0);
  out.write('67108865', at + '"virtualSize":'.length, 'latin1');
  return out;
}

function twoLayers(snapshot: string): unknown {
  const layer = { virtualSize: MiB, dataBytes: 4096, zeroBytes: 0, extents: 1 };
  return {
    ...(oneLayer() as object),
    current: 1,
    layers: [
      { snapshot, parent: null, ...layer },
      { snapshot: null, parent: 0, ...layer },
    ],
  };
}

function badOrder(): unknown {
  const layer = { virtualSize: MiB, dataBytes: 4096, zeroBytes: 0, extents: 1 };
  return {
    ...(oneLayer() as object),
    current: 0,
    layers: [
      { snapshot: null, parent: 1, ...layer },
      { snapshot: 'base', parent: null, ...layer },
    ],
  };
}
