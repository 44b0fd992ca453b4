/**
 * Failures whose undo is itself interrupted, and VM-wide operations that stop on one disk: the journal must
 * say what `repair` has to do, and after repair every layer holds its data (qemu-io patterns read back).
 *
 * - A step fails (VOLCHAIN_FAIL_AT) and the process is killed while the steps before it are being undone
 *   (VOLCHAIN_CRASH_AT=...:undo-before|undo-after): repair must finish the undo, not redo the plan forward
 *   (which met both names of a half-undone rename and stopped on "already exists").
 * - `vm delsnapshot` fails on the 2nd of 3 disks with that disk's steps fully undone: the message promises
 *   `repair --all` finishes the operation on every disk, and it must.
 * - `vm snapshot` fails on the 3rd of 3 disks and is killed while walking back the disks it had finished:
 *   repair must finish walking back every one of them (the walk-back was not journaled: the 1st disk kept
 *   the snapshot for good).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import { markCorrupt } from '../fixtures/qcow2-craft.js';
import { BLOCKS, VMID, cli, makeEnv, snap, verify, write, type Env, type Model } from './chain-model.js';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** `disks` volumes of VM 100, each with snapshots s1 <- s2 and its own data in every layer. */
async function prepare(disks: number): Promise<{ env: Env; volids: string[]; model: Model }> {
  const env = makeEnv();
  dirs.push(env.dir);
  const model: Model = new Map();
  const volids: string[] = [];
  for (let d = 0; d < disks; d++) {
    const volid = await env.vc.alloc('crash', VMID, '16M');
    volids.push(volid);
    model.set(volid, { snapshots: new Map(), current: new Array<number>(BLOCKS).fill(0) });
    for (const [i, name] of ['s1', 's2'].entries()) {
      await write(env, model, volid, 0, 0x10 * (d + 1) + i + 1);
      await write(env, model, volid, i + 1, 0x10 * (d + 1) + i + 1);
      await snap(env, model, volid, name);
    }
    await write(env, model, volid, 0, 0x10 * (d + 1) + 9);
    await write(env, model, volid, 3, 0x10 * (d + 1) + 9);
  }
  return { env, volids, model };
}

/** Volume name as VOLCHAIN_*_AT take it (the end of the volid). */
const nameOf = (volid: string): string => volid.split(':').at(-1) as string;

// snapshot create is: 1 create the new top under a temporary name, 2 rename the top to the snapshot's
// layer, 3 rename the temporary to the top, 4 freeze. Step 3 fails: steps 2 then 1 are undone.
for (const crash of ['2:undo-before', '2:undo-after', '1:undo-before', '1:undo-after']) {
  test(`snapshot create fails at step 3, killed at ${crash}: repair finishes the undo`, async () => {
    const { env, volids, model } = await prepare(1);
    const volid = volids[0] as string;
    const run = cli(env, ['snapshot', 'create', volid, 's9'], {
      VOLCHAIN_FAIL_AT: 'snapshot-create:3',
      VOLCHAIN_CRASH_AT: `snapshot-create:${crash}`,
    });
    assert.equal(run.signal, 'SIGKILL', `the process was expected to die during the undo (status ${String(run.status)}: ${run.stderr})`);
    const status = JSON.parse(cli(env, ['status', '--json']).stdout) as { pending: { undo?: { failedStep: number } }[] };
    assert.equal(status.pending.length, 1, 'the interrupted undo is pending');
    const dry = cli(env, ['repair', volid, '--dry-run']);
    assert.equal(dry.status, 0, dry.stderr);
    const repair = cli(env, ['repair', volid]);
    assert.equal(repair.status, 0, `repair failed: ${repair.stderr}`);
    // Undone: no s9, s1 and s2 and the current layer hold what they held.
    await verify(env, model, `undo interrupted at ${crash}`);
    assert.equal(status.pending[0]?.undo?.failedStep, 2, 'the journal said the undo of a failure at step 3 was running');
    assert.match(dry.stdout, /finish undoing snapshot-create/, 'repair said it would finish the undo');
  });
}

test('a failure whose undo completes leaves nothing pending and the chain as it was', async () => {
  const { env, volids, model } = await prepare(1);
  const run = cli(env, ['snapshot', 'create', volids[0] as string, 's9', '--json'], { VOLCHAIN_FAIL_AT: 'snapshot-create:3' });
  assert.equal(run.status, 1, run.stderr);
  const error = (JSON.parse(run.stdout) as { error: { outcome: string; fields: Record<string, unknown> } }).error;
  assert.equal(error.outcome, 'unchanged');
  assert.deepEqual(error.fields, { volid: volids[0], vmid: VMID, operation: 'snapshot-create', step: 3 });
  await verify(env, model, 'undo completed');
});

test('vm delsnapshot failing on the 2nd of 3 disks: the message says what is done, and repair --all finishes every disk', async () => {
  const { env, volids, model } = await prepare(3);
  // Deleting s1 rebases s2's layer (nothing to undo: the guest's view is unchanged), then removes s1's layer.
  // The removal fails on the 2nd disk: that disk's steps are fully undone.
  const run = cli(env, ['vm', 'delsnapshot', String(VMID), 's1', '--json'], { VOLCHAIN_FAIL_AT: `snapshot-delete:2:${nameOf(volids[1] as string)}` });
  assert.equal(run.status, 1, run.stderr);
  const [first, second, third] = volids as [string, string, string];
  assert.match(run.stderr, new RegExp(`stopped on ${second}.*done on ${first};.*not finished on ${second}, ${third}.*volchain repair --all`));
  const error = (JSON.parse(run.stdout) as { error: { outcome: string; fields: Record<string, unknown> } }).error;
  assert.equal(error.outcome, 'needs-repair');
  assert.deepEqual(error.fields.done, [first]);
  assert.deepEqual(error.fields.pending, [second, third]);
  // What the message says is what the journals hold: the 2nd and 3rd disks are pending.
  const status = JSON.parse(cli(env, ['status', '--json']).stdout) as { pending: { volid: string }[] };
  assert.deepEqual(status.pending.map((p) => p.volid).sort(), [second, third].sort());
  const repair = cli(env, ['repair', '--all']);
  assert.equal(repair.status, 0, `repair failed: ${repair.stderr}`);
  for (const disk of model.values()) disk.snapshots.delete('s1');
  await verify(env, model, 'vm delsnapshot finished by repair --all');
});

test('repair --all still refuses to write a layer QEMU marked corrupt on a disk the VM-wide operation had not reached', async () => {
  const { env, volids } = await prepare(3);
  const [, second, third] = volids as [string, string, string];
  const run = cli(env, ['vm', 'delsnapshot', String(VMID), 's1'], { VOLCHAIN_FAIL_AT: `snapshot-delete:2:${nameOf(second)}` });
  assert.equal(run.status, 1, run.stderr);
  // The 3rd disk's plan rebases its s2 layer; QEMU marks that layer corrupt meanwhile (corrupt bit, offset 72).
  const s2 = await env.vc.path(third, { snapshot: 's2' });
  await markCorrupt(s2);
  const before = readFileSync(s2);
  const repair = cli(env, ['repair', '--all']);
  assert.equal(repair.status, 8, `repair should refuse the corrupt layer: ${repair.stderr}`);
  assert.match(repair.stderr, /is marked corrupt/);
  assert.ok(readFileSync(s2).equals(before), 'the corrupt layer was not written');
  const status = JSON.parse(cli(env, ['status', '--json']).stdout) as { pending: { volid: string }[] };
  assert.ok(
    status.pending.some((p) => p.volid === third),
    "the 3rd disk's operation stays pending",
  );
});

test('vm snapshot failing on the 3rd of 3 disks, killed while walking back the 2nd: repair --all walks back the 1st and the 2nd', async () => {
  const { env, volids, model } = await prepare(3);
  const [first, second, third] = volids as [string, string, string];
  // Step 3 (rename the temporary to the top) fails on the 3rd disk, whose steps 2 and 1 are then undone;
  // the finished disks are walked back last first, and the process dies before the 2nd disk's undo of step 2.
  const run = cli(env, ['vm', 'snapshot', String(VMID), 's9'], {
    VOLCHAIN_FAIL_AT: `snapshot-create:3:${nameOf(third)}`,
    VOLCHAIN_CRASH_AT: `snapshot-create:2:undo-before:${nameOf(second)}`,
  });
  assert.equal(run.signal, 'SIGKILL', `the process was expected to die walking back the 2nd disk (status ${String(run.status)}: ${run.stderr})`);
  const status = JSON.parse(cli(env, ['status', '--json']).stdout) as { pending: { volid: string; undo?: { undone: number } }[] };
  assert.deepEqual(
    status.pending.map((p) => [p.volid, p.undo?.undone]).sort(),
    [
      [first, 0],
      [second, 1],
    ],
    'both finished disks are journaled as being walked back',
  );
  const dry = cli(env, ['repair', '--all', '--dry-run']);
  assert.equal(dry.status, 0, dry.stderr);
  assert.match(dry.stdout, /finish undoing snapshot-create \(it was done, then vm snapshot of VM 100 failed on /);
  const repair = cli(env, ['repair', '--all']);
  assert.equal(repair.status, 0, `repair failed: ${repair.stderr}`);
  // No disk has s9; every layer holds what it held.
  await verify(env, model, 'vm snapshot walked back by repair --all');
  assert.deepEqual((JSON.parse(cli(env, ['status', '--json']).stdout) as { pending: unknown[] }).pending, []);
});
