/**
 * Randomized acceptance test: long seeded sequences of write / snapshot create / rollback (sometimes with
 * --purge-newer) / delete, plus refused requests, against an in-memory model of which pattern byte every
 * 64 KiB block holds in the current disk and in each snapshot, and of the snapshot tree. After every
 * operation the tree the library lists, the files on disk, the content of every layer (read through its
 * chain with qemu-io) and qemu-img check of every changed file are compared with the model.
 *
 * Replay a failure with VOLCHAIN_IT_SEEDS=<seed> (and VOLCHAIN_IT_OPS=<n>); the seed is printed.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { VolchainError } from '../../src/errors.js';
import { BLOCK, ChainModel, MiB, checkAllLayers, makeStorage, prng, verifyVolume, writePatterns, type TestStorage } from './helpers.js';

const SIZE = 4 * MiB;
const BLOCKS = SIZE / BLOCK;
const MAX_SNAPSHOTS = 9;

const seeds = (process.env.VOLCHAIN_IT_SEEDS ?? '20240601,7,31337').split(',').map((x) => Number(x.trim()));
const opsPerSeed = Number(process.env.VOLCHAIN_IT_OPS ?? '80');
if (!seeds.every(Number.isSafeInteger) || !Number.isSafeInteger(opsPerSeed) || opsPerSeed < 1) {
  throw new Error(`VOLCHAIN_IT_SEEDS must be whole numbers separated by ',' and VOLCHAIN_IT_OPS a positive whole number`);
}

describe('random sequences of snapshot operations match the model', () => {
  let s: TestStorage;
  before(async () => {
    s = await makeStorage();
  });
  after(async () => {
    await s.cleanup();
  });

  for (const [index, seed] of seeds.entries()) {
    it(`seed ${seed}: ${opsPerSeed} operations`, async (t) => {
      t.diagnostic(`seed ${seed} (replay: VOLCHAIN_IT_SEEDS=${seed} VOLCHAIN_IT_OPS=${opsPerSeed})`);
      const rnd = prng(seed);
      const vmid = 600 + index;
      const volid = await s.vc.alloc(s.id, vmid, SIZE);
      const name = volid.slice(volid.indexOf('/') + 1);
      const model = new ChainModel();
      const history: string[] = [];
      const counts: Record<string, number> = {};
      let serial = 0;

      const expectRefusal = async (what: string, code: string, fn: () => Promise<unknown>): Promise<void> => {
        await assert.rejects(fn, (err: unknown) => {
          assert.ok(err instanceof VolchainError, `${what}: a VolchainError`);
          assert.equal(err.code, code, `${what}: ${err.message}`);
          return true;
        });
      };

      for (let op = 0; op < opsPerSeed; op++) {
        const names = model.names();
        const weights: [string, number][] = [
          ['write', 30],
          ['create', names.length < MAX_SNAPSHOTS ? 22 : 0],
          ['rollback', names.length > 0 ? 16 : 0],
          ['delete', names.length > 0 ? 20 : 0],
          ['refuse', 5],
        ];
        let ticket = rnd.int(weights.reduce((sum, [, w]) => sum + w, 0));
        const kind = weights.find(([, w]) => (ticket -= w) < 0)?.[0] ?? 'write';
        let label: string;
        if (kind === 'write') {
          // One to three writes, sometimes of zeroes (which must hide older data), sometimes overlapping.
          const writes: [number, number, number][] = [];
          for (let n = 1 + rnd.int(3); n > 0; n--) {
            const count = 1 + rnd.int(4);
            writes.push([rnd.int(BLOCKS - count + 1), rnd.next() < 0.12 ? 0 : 1 + rnd.int(255), count]);
          }
          await writePatterns(
            s.layer(vmid, name),
            writes.map(([b, byte, c]) => ({ byte, offset: b * BLOCK, len: c * BLOCK })),
          );
          for (const [b, byte, c] of writes) model.write(b, byte, c);
          label = `write ${writes.map(([b, byte, c]) => `${c}@${b}=0x${byte.toString(16)}`).join(' ')}`;
        } else if (kind === 'create') {
          const snap = `${rnd.pick(['s', 'Snap', 'x', 'before_'])}${++serial}`;
          await s.vc.snapshotCreate(volid, snap);
          model.create(snap);
          label = `create ${snap}`;
        } else if (kind === 'rollback') {
          const snap = rnd.pick(names);
          const purge = rnd.next() < 0.15;
          await s.vc.snapshotRollback(volid, snap, { purgeNewer: purge });
          model.rollback(snap, purge);
          label = `rollback ${snap}${purge ? ' --purge-newer' : ''}`;
        } else if (kind === 'delete') {
          const snap = rnd.pick(names);
          const plan = await s.vc.snapshotDelete(volid, snap);
          model.delete(snap);
          label = `delete ${snap} (${plan.summary.replace(/.* by /, '')}, ${plan.bytesMoved} bytes)`;
        } else {
          // Requests that must be refused without changing anything.
          const existing = names.length > 0 ? rnd.pick(names) : undefined;
          const choice = rnd.int(3);
          if (choice === 0 && existing !== undefined) {
            const other = existing === existing.toUpperCase() ? existing.toLowerCase() : existing.toUpperCase();
            await expectRefusal(`create ${other}`, 'ALREADY_EXISTS', () => s.vc.snapshotCreate(volid, other));
            label = `refused create ${other}`;
          } else if (choice === 1) {
            await expectRefusal('delete nosuch', 'NOT_FOUND', () => s.vc.snapshotDelete(volid, 'nosuch'));
            label = 'refused delete nosuch';
          } else {
            await expectRefusal('rollback to 9bad', 'INVALID_INPUT', () => s.vc.snapshotRollback(volid, '9bad'));
            label = 'refused rollback 9bad';
          }
        }
        history.push(label);
        counts[kind] = (counts[kind] ?? 0) + 1;
        try {
          await verifyVolume(s, vmid, name, model, BLOCKS, `op ${op + 1} (${label})`);
        } catch (err) {
          const recent = history
            .slice(-12)
            .map((h, i) => `  ${history.length - Math.min(12, history.length) + i + 1}. ${h}`)
            .join('\n');
          throw new Error(`seed ${seed}, after op ${op + 1}: ${(err as Error).message}\nlast operations:\n${recent}`, { cause: err });
        }
      }
      // Once more without any shortcut: every layer read in full, every layer checked.
      await verifyVolume(s, vmid, name, model, BLOCKS, `seed ${seed}: final`, { full: true });
      assert.ok((await checkAllLayers(s.path, vmid)) >= 1);
      t.diagnostic(`seed ${seed}: ${JSON.stringify(counts)}; ${model.names().length} snapshots at the end`);
      // Every kind of operation ran (a sequence without deletes or rollbacks would prove little).
      for (const kind of ['write', 'create', 'rollback', 'delete']) assert.ok((counts[kind] ?? 0) > 0, `seed ${seed}: no ${kind} ran`);
    });
  }
});
