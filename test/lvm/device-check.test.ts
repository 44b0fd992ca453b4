/**
 * Issue 13: `/dev/<vg>/<lv>` is a symlink, and volchain opens and writes layers through it. When it leads
 * anywhere but the LV's own device-mapper device (another VM's LV, a plain file), every reader and writer
 * refuses with exit 8 and the target's bytes stay as they were.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, readlink, realpath, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { VolchainError } from '../../src/errors.js';
import { BLOCK, MiB, VG, cleanupState, lvmStorage, qemuIo, removeVmLvs, requireVg } from './helpers.js';

const VMIDS = [7901, 7902];
after(async () => {
  if (VG === '') return; // nothing was created without a VG
  await removeVmLvs(VMIDS);
  await cleanupState();
});

const sha = async (p: string): Promise<string> =>
  createHash('sha256')
    .update(await readFile(p))
    .digest('hex');

async function refused(p: Promise<unknown>, match: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof VolchainError, String(err));
    assert.equal(err.exitStatus, 8, err.message);
    assert.match(err.message, match);
    return true;
  });
}

test('a /dev/<vg>/<lv> symlink leading to another LV or to a file is refused (exit 8) and the target is unchanged', async () => {
  requireVg();
  const s = await lvmStorage();
  const a = await s.vc.alloc(s.id, 7901, 16 * MiB);
  await s.vc.alloc(s.id, 7902, 16 * MiB);
  const pathA = s.path('vm-7901-disk-0.qcow2');
  const pathB = s.path('vm-7902-disk-0.qcow2');
  await qemuIo(pathB, [], [{ byte: 0xb2, offset: 0, len: BLOCK }]);
  const original = await readlink(pathA);
  const deviceB = await realpath(pathB);
  const beforeB = await sha(deviceB);
  const scratch = await mkdtemp(join(tmpdir(), 'volchain-lvm-dev-'));
  const standIn = join(scratch, 'stand-in');
  await writeFile(standIn, Buffer.alloc(MiB, 0xee));
  const beforeStandIn = await sha(standIn);
  try {
    await rm(pathA);
    await symlink(deviceB, pathA);
    const fresh = await lvmStorage();
    await refused(fresh.vc.info(a), /vm-7901-disk-0\.qcow2.*not to LV vm-7901-disk-0\.qcow2/);
    await refused(fresh.vc.snapshotCreate(a, 'snap1'), /dm name/);
    await refused(fresh.vc.resize(a, 32 * MiB), /dm name/);
    assert.equal(await sha(deviceB), beforeB, "VM 7902's LV is unchanged");

    await rm(pathA);
    await symlink(standIn, pathA);
    await refused((await lvmStorage()).vc.snapshotCreate(a, 'snap1'), /not a block device/);
    assert.equal(await sha(standIn), beforeStandIn, 'the file behind the symlink is unchanged');
  } finally {
    await rm(pathA, { force: true });
    await symlink(original, pathA);
    await rm(scratch, { recursive: true, force: true });
  }
  // Restored: the same calls work again, so the refusals above were about the link alone.
  const restored = await lvmStorage();
  await restored.vc.snapshotCreate(a, 'snap1');
  assert.equal((await restored.vc.snapshotList(a)).snapshots.length, 1);
});
