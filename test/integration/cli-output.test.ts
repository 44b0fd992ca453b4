/**
 * What the CLI prints must not break or leak (issue 13, part 3): every error is one `volchain:` line with the
 * right status (the argument parser's usage errors too) and, under --json, a JSON error object on stdout;
 * names read from an image cannot fake lines of a listing; nothing of a foreign file's content is echoed; a
 * reader that closes the pipe early ends the command quietly. The CLI runs as a subprocess on real images.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { rewriteQcow2Header } from '../fixtures/qcow2-craft.js';
import { BIN, assertSameTree, cli, cliFails, cliJson, cliOk, makeStorage, runCommand, snapshotOf, type TestStorage } from './helpers.js';

/** Anything a terminal would act on or that breaks a line: C0/C1 controls other than the newlines between lines, bidi controls. */
// eslint-disable-next-line no-control-regex
const RAW_CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u2028-\u202e\u2066-\u2069]/u;

interface ErrorJson {
  error: { code: string; message: string; exitStatus: number };
}

describe('every CLI error is one volchain line with its exit status', () => {
  let s: TestStorage;
  let pristine: Awaited<ReturnType<typeof snapshotOf>>;
  before(async () => {
    s = await makeStorage();
    await cliOk(s, ['alloc', s.id, '100', '1M']);
    pristine = await snapshotOf(s.path);
  });
  after(async () => s.cleanup());

  it('usage errors of the argument parser: one line, exit 2, the command to ask for help, nothing changed', async () => {
    const cases: { args: string[]; match: RegExp }[] = [
      { args: ['alloc', s.id], match: /^volchain: missing required argument 'vmid' \(run 'volchain alloc --help' for usage\)$/ },
      { args: ['lisst'], match: /^volchain: unknown command 'lisst' \(Did you mean list\?\) \(run 'volchain --help' for usage\)$/ },
      { args: ['list', s.id, '--jsn'], match: /^volchain: unknown option '--jsn' \(Did you mean --json\?\) \(run 'volchain list --help' for usage\)$/ },
      {
        args: ['alloc', s.id, '100', '1M', '--format', 'vmdk'],
        match: /^volchain: option '--format <format>' argument 'vmdk' is invalid\. Allowed choices are qcow2, raw\. \(run 'volchain alloc --help'/,
      },
      { args: ['list', s.id, 'extra'], match: /^volchain: too many arguments for 'list'.* \(run 'volchain list --help' for usage\)$/ },
      {
        args: ['snapshot', 'create', `${s.id}:100/vm-100-disk-0.qcow2`],
        match: /^volchain: missing required argument 'snap' \(run 'volchain snapshot create --help' for usage\)$/,
      },
      {
        args: ['snapshot'],
        match: /^volchain: 'volchain snapshot' needs a command: create, list, rollback, delete \(run 'volchain snapshot --help' for usage\)$/,
      },
      { args: ['vm'], match: /^volchain: 'volchain vm' needs a command: snapshot, rollback, delsnapshot, attach-info / },
      {
        args: ['help', 'nosuch'],
        match: /^volchain: unknown command 'nosuch'; 'volchain' has storage, alloc, .*repair, serve, token \(run 'volchain --help' for usage\)$/,
      },
      { args: [], match: /^volchain: 'volchain' needs a command: storage, alloc, free, list, .*repair, serve, token \(run 'volchain --help' for usage\)$/ },
    ];
    for (const { args, match } of cases) await cliFails(s, args, { code: 2, match });
    assertSameTree(pristine, await snapshotOf(s.path), 'usage errors');
  });

  it('with --json an error is also a JSON object on stdout, with the same message as the stderr line', async () => {
    const cases: { args: string[]; code: string; status: number; match: RegExp }[] = [
      { args: ['list', '--json'], code: 'INVALID_INPUT', status: 2, match: /^missing required argument 'storage'/ },
      { args: ['alloc', s.id, '100', '1M', '--format', 'vmdk', '--json'], code: 'INVALID_INPUT', status: 2, match: /argument 'vmdk' is invalid/ },
      { args: ['info', `${s.id}:100/vm-100-disk-7.qcow2`, '--json'], code: 'NOT_FOUND', status: 3, match: /does not exist/ },
      { args: ['snapshot', 'create', `${s.id}:100/vm-100-disk-0.qcow2`, 'current', '--json'], code: 'INVALID_INPUT', status: 2, match: /reserved/ },
      { args: ['alloc', s.id, '100', '1M', '--name', 'vm-100-disk-0.qcow2', '--json'], code: 'ALREADY_EXISTS', status: 4, match: /exists/ },
    ];
    for (const { args, code, status, match } of cases) {
      const what = `volchain ${args.join(' ')}`;
      const r = await cli(s, args);
      assert.equal(r.code, status, `${what}: ${r.stderr}`);
      const line = /^volchain: ([^\n]+)\n$/.exec(r.stderr);
      assert.ok(line, `${what}: one volchain line on stderr, got ${JSON.stringify(r.stderr)}`);
      let doc: ErrorJson;
      try {
        doc = JSON.parse(r.stdout) as ErrorJson;
      } catch (err) {
        assert.fail(`${what}: stdout is not JSON (${String(err)}): ${r.stdout}`);
      }
      assert.deepEqual(Object.keys(doc), ['error'], what);
      // Issue 15 added outcome and fields (test/integration/cli-error-fields.test.ts checks those).
      assert.deepEqual(
        { code: doc.error.code, message: doc.error.message, exitStatus: doc.error.exitStatus },
        { code, message: line[1], exitStatus: status },
        what,
      );
      assert.match(doc.error.message, match, what);
    }
    assertSameTree(pristine, await snapshotOf(s.path), '--json errors');
  });

  it('--help and --version still succeed, on stdout', async () => {
    assert.equal((await cliOk(s, ['--version'])).trim(), '0.1.0');
    assert.match(await cliOk(s, ['snapshot', '--help']), /^Usage: volchain snapshot /);
  });
});

describe('internal snapshot names are shown escaped, so they cannot fake the tree', () => {
  let s: TestStorage;
  const volid = (): string => s.volid(100, 'vm-100-disk-0.qcow2');
  const long = `L${'o'.repeat(98)}ng`;
  // Made by QEMU itself: a storage without volume chains keeps snapshots inside the image.
  const names = ['a\nb', 'current', '\u001b[31mred\u001b[0m', '|-- fake  (1 MiB data)', 'x\u202eevil', 'ok_1', long];
  before(async () => {
    s = await makeStorage({ chain: false });
    await cliOk(s, ['alloc', s.id, '100', '1M']);
    for (const name of names) {
      const r = await runCommand('qemu-img', ['snapshot', '-c', name, s.layer(100, 'vm-100-disk-0.qcow2')]);
      assert.equal(r.code, 0, `qemu-img snapshot -c ${JSON.stringify(name)}: ${r.stderr}`);
    }
  });
  after(async () => s.cleanup());

  it('snapshot list: one line per snapshot, odd names quoted and escaped, a snapshot called current quoted', async () => {
    const out = await cliOk(s, ['snapshot', 'list', volid()]);
    assert.doesNotMatch(out, RAW_CONTROL, 'no control or bidi character reaches the terminal');
    const lines = out.trimEnd().split('\n');
    assert.deepEqual(lines.slice(0, -1), [
      `${volid()} (internal snapshots)`,
      '* "a\\nb"',
      '* "current"',
      '* "\\u001b[31mred\\u001b[0m"',
      '* "|-- fake  (1 MiB data)"',
      '* "x\\u202eevil"',
      '* ok_1',
      `* "L${'o'.repeat(63)}"… (101 characters)`,
    ]);
    assert.match(lines.at(-1) ?? '', /^\* current {2}\(.* written since creation\) {2}<- you are here$/);
    assert.equal(out.match(/you are here/g)?.length, 1, 'one current layer');
  });

  it('info lists the same names escaped; --json keeps them exact', async () => {
    const out = await cliOk(s, ['info', volid()]);
    assert.doesNotMatch(out, RAW_CONTROL);
    assert.match(
      out,
      /^snapshots +"a\\nb", "current", "\\u001b\[31mred\\u001b\[0m", "\|-- fake {2}\(1 MiB data\)", "x\\u202eevil", ok_1, "Lo+"… \(101 characters\)$/m,
    );
    const listing = await cliJson<{ snapshots: { name: string }[] }>(s, ['snapshot', 'list', volid()]);
    assert.deepEqual(
      listing.snapshots.map((x) => x.name),
      names,
    );
  });
});

describe('errors about a file echo nothing of its content', () => {
  let s: TestStorage;
  before(async () => {
    s = await makeStorage();
    await cliOk(s, ['alloc', s.id, '100', '1M']);
    await cliOk(s, ['alloc', s.id, '101', '1M']);
  });
  after(async () => s.cleanup());

  it('a layer that is not qcow2 (here /etc/shadow-like text) is called that, with the expected magic only', async () => {
    const layer = s.layer(100, 'vm-100-disk-0.qcow2');
    const secret = 'root:$6$Zq8saltsalt$hashhashhashhash:19700:0:99999:7:::\n';
    await writeFile(layer, Buffer.concat([Buffer.from(secret), Buffer.alloc(65536 - secret.length)]));
    for (const args of [
      ['info', s.volid(100, 'vm-100-disk-0.qcow2')],
      ['snapshot', 'list', s.volid(100, 'vm-100-disk-0.qcow2')],
    ]) {
      const line = await cliFails(s, args, { code: 8, match: /not a qcow2 image: it does not start with the qcow2 magic 0x514649fb/ });
      for (const leak of ['root', '726f6f74', '$6$', 'hash']) assert.ok(!line.includes(leak), `${args[0] ?? ''}: ${line} quotes ${leak}`);
    }
  });

  it('a name from a header (an external data file) is quoted, escaped and cut', async () => {
    const layer = s.layer(101, 'vm-101-disk-0.qcow2');
    const hostile = `\u001b]0;owned\u0007\u001b[2J${'A'.repeat(600)}`;
    await writeFile(layer, rewriteQcow2Header(await readFile(layer), { dataFile: hostile }));
    const line = await cliFails(s, ['info', s.volid(101, 'vm-101-disk-0.qcow2')], { code: 8, match: /uses an external data file/ });
    assert.doesNotMatch(line, RAW_CONTROL);
    assert.ok(line.includes('"\\u001b]0;owned\\u0007\\u001b[2JAAA'), line);
    assert.match(line, /A"… \(614 characters\)\)$/);
    assert.ok(line.length < 300, `bounded: ${line.length} characters`);
  });
});

describe('a reader that closes the pipe early', () => {
  let s: TestStorage;
  const VOLUMES = 800;
  before(async () => {
    s = await makeStorage();
    await cliOk(s, ['alloc', s.id, '100', '1M']);
    const first = s.layer(100, 'vm-100-disk-0.qcow2');
    for (let i = 1; i < VOLUMES; i++) await copyFile(first, s.layer(100, `vm-100-disk-${i}.qcow2`));
  });
  after(async () => s.cleanup());

  /** `volchain ... | head -1` in bash: what head printed, volchain's exit status and its stderr. */
  async function throughHead(args: readonly string[]): Promise<{ first: string; status: number; stderr: string }> {
    const err = join(s.root, 'stderr.txt');
    const script = 'node "$0" --config "$1" "${@:3}" 2>"$2" | head -1; echo "status ${PIPESTATUS[0]}"';
    const r = await runCommand('bash', ['-c', script, BIN, s.cfg, err, ...args], { env: { ...process.env, LC_ALL: 'C' } });
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trimEnd().split('\n');
    const status = /^status (\d+)$/.exec(lines.at(-1) ?? '');
    assert.ok(status, r.stdout);
    return { first: lines[0] ?? '', status: Number(status[1]), stderr: await readFile(err, 'utf8') };
  }

  it('volchain list | head -1 ends quietly with status 0 (text and --json)', async () => {
    // More than a pipe holds (64 KiB): the write is still going when head exits.
    const full = await cliOk(s, ['list', s.id]);
    assert.ok(full.length > 65536, `the listing is ${full.length} bytes`);
    const text = await throughHead(['list', s.id]);
    assert.deepEqual(text, { first: full.split('\n')[0], status: 0, stderr: '' });
    const json = await throughHead(['list', s.id, '--json']);
    assert.deepEqual(json, { first: '{', status: 0, stderr: '' });
  });

  it('output that cannot be written for another reason (a full disk) is an error: one line, exit 9', async () => {
    const script = 'node "$0" --config "$1" storage list >/dev/full';
    const r = await runCommand('bash', ['-c', script, BIN, s.cfg], { env: { ...process.env, LC_ALL: 'C' } });
    assert.equal(r.code, 9, r.stderr);
    assert.match(r.stderr, /^volchain: cannot write standard output: ENOSPC[^\n]*\n$/);
  });
});
