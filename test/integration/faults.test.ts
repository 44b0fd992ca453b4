/**
 * Failures that are not crashes: a storage that fills up in the middle of an operation (a small loop-mounted
 * file system), and a qemu-img that fails at a chosen call (a wrapper first on PATH). Each is reported with a
 * clear error, and afterwards every snapshot still holds its data: the operation either did not happen, or
 * is recorded and `repair` finishes it once the cause is gone.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { VMID, cli, makeEnv, sh, snap, verify, write, type Env, type Model } from './chain-model.js';

async function twoSnapshots(env: Env): Promise<{ volid: string; model: Model }> {
  const model: Model = new Map();
  const volid = await env.vc.alloc('crash', VMID, '16M');
  model.set(volid, { snapshots: new Map(), current: new Array<number>(8).fill(0) });
  for (const b of [0, 1, 2, 3]) await write(env, model, volid, b, 0xa1);
  await snap(env, model, volid, 's1');
  await write(env, model, volid, 4, 0xb2);
  await snap(env, model, volid, 's2');
  await write(env, model, volid, 0, 0xc3);
  return { volid, model };
}

test('a storage that fills up mid-operation: clear error, no snapshot loses data, repair finishes later', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'volchain-enospc-'));
  const mnt = join(dir, 'mnt');
  mkdirSync(mnt);
  const image = join(dir, 'fs.img');
  assert.equal(sh('truncate', ['-s', '24M', image]).status, 0);
  assert.equal(sh('mkfs.ext4', ['-q', '-F', image]).status, 0);
  const mount = sh('mount', ['-o', 'loop', image, mnt]);
  assert.equal(mount.status, 0, `mounting a loop file system needs root: ${mount.stderr}`);
  t.after(() => {
    sh('umount', [mnt]);
    rmSync(dir, { recursive: true, force: true });
  });
  const env = makeEnv(join(mnt, 'store'));
  const { volid, model } = await twoSnapshots(env);

  // Fill the file system to the last block.
  const filler = join(mnt, 'filler');
  sh('dd', ['if=/dev/zero', `of=${filler}`, 'bs=64k']);
  assert.match(sh('df', ['--output=avail', mnt]).stdout, /\s0\s*$/, 'the file system should be full');

  // A snapshot needs a new overlay: refused cleanly, nothing changed.
  const create = cli(env, ['snapshot', 'create', volid, 's3']);
  assert.notEqual(create.status, 0);
  assert.match(create.stderr, /no space|No space/);
  assert.equal(create.stderr.trim().split('\n').length, 1, 'one line of error');
  await verify(env, model, 'create on a full storage');

  // Deleting s1 must copy data (commit of s2 into s1, or a rebase of s2): fails for lack of space.
  const del = cli(env, ['snapshot', 'delete', volid, 's1']);
  assert.equal(del.status, 9, `exit status 9 (no space) expected: ${del.stderr}`);
  assert.match(del.stderr, /no space left/);
  const pending = (JSON.parse(cli(env, ['status', '--json']).stdout) as { pending: unknown[] }).pending;
  if (pending.length > 0) {
    // The failed step left s1 half-merged (commit): it is recorded, other writers are refused, s2 and the
    // current layer are intact, and repair finishes the delete once there is room.
    assert.match(del.stderr, /volchain repair/);
    assert.equal(cli(env, ['snapshot', 'create', volid, 's3']).status, 7);
    rmSync(filler);
    const repair = cli(env, ['repair', volid]);
    assert.equal(repair.status, 0, repair.stderr);
    (model.get(volid)?.snapshots as Map<string, number[]>).delete('s1');
    await verify(env, model, 'after repair with space freed');
  } else {
    // The failed step was undone: everything is as before.
    await verify(env, model, 'delete on a full storage');
    rmSync(filler);
    assert.equal(cli(env, ['snapshot', 'delete', volid, 's1']).status, 0);
    (model.get(volid)?.snapshots as Map<string, number[]>).delete('s1');
    await verify(env, model, 'delete with space freed');
  }
});

test('a qemu-img that fails at any call: clear error, data intact, operation done or finished by repair', async () => {
  const wrapperDir = mkdtempSync(join(tmpdir(), 'volchain-wrap-'));
  const counter = join(wrapperDir, 'count');
  const real = sh('sh', ['-c', 'command -v qemu-img']).stdout.trim();
  writeFileSync(
    join(wrapperDir, 'qemu-img'),
    `#!/bin/sh\nn=$(cat "${counter}" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "${counter}"\n` +
      `if [ "$n" = "$FAIL_CALL" ]; then echo "qemu-img: injected failure at call $n" >&2; exit 1; fi\nexec ${real} "$@"\n`,
  );
  chmodSync(join(wrapperDir, 'qemu-img'), 0o755);
  const operations: { args: (volid: string) => string[]; apply: (m: Model, volid: string) => void }[] = [
    { args: (v) => ['snapshot', 'create', v, 's3'], apply: (m, v) => void m.get(v)?.snapshots.set('s3', [...(m.get(v)?.current ?? [])]) },
    { args: (v) => ['snapshot', 'delete', v, 's1'], apply: (m, v) => void m.get(v)?.snapshots.delete('s1') },
    { args: (v) => ['snapshot', 'delete', v, 's2'], apply: (m, v) => void m.get(v)?.snapshots.delete('s2') },
    {
      args: (v) => ['snapshot', 'rollback', v, 's1'],
      apply: (m, v) => {
        const d = m.get(v);
        if (d) d.current = [...(d.snapshots.get('s1') ?? [])];
      },
    },
    { args: (v) => ['resize', v, '32M'], apply: () => undefined },
  ];
  let failuresSeen = 0;
  try {
    for (const op of operations) {
      for (let call = 1; call <= 8; call++) {
        const env = makeEnv();
        try {
          const { volid, model } = await twoSnapshots(env);
          rmSync(counter, { force: true });
          const label = `${op.args(volid).slice(0, 2).join(' ')} with qemu-img failing at call ${call}`;
          const r = cli(env, op.args(volid), { PATH: `${wrapperDir}:${process.env.PATH ?? ''}`, FAIL_CALL: String(call) });
          if (r.status === 0) {
            op.apply(model, volid);
            await verify(env, model, label);
            break; // the operation makes fewer qemu-img calls than `call`: every failure point was covered
          }
          failuresSeen++;
          assert.equal(r.status, 10, `${label}: exit status 10 (command failed) expected: ${r.stderr}`);
          assert.match(r.stderr, /injected failure/, `${label}: the error names qemu-img's message`);
          const pending = (JSON.parse(cli(env, ['status', '--json']).stdout) as { pending: unknown[] }).pending;
          if (pending.length > 0) {
            assert.equal(cli(env, ['repair', volid]).status, 0, `${label}: repair`);
            op.apply(model, volid);
          }
          await verify(env, model, label);
        } finally {
          rmSync(env.dir, { recursive: true, force: true });
        }
      }
    }
  } finally {
    rmSync(wrapperDir, { recursive: true, force: true });
  }
  console.log(`# qemu-img failure points covered: ${failuresSeen}`);
  assert.ok(failuresSeen >= operations.length, 'every operation should have met at least one failing call');
});
