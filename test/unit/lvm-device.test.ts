/**
 * The /dev/<vg>/<lv> check of backends/lvm/device.ts where no LVM runs: the dm name LVM derives, and the refusals for
 * a path that leads to a file or to a block device that is not device-mapper (the real-LVM cases are in
 * test/lvm/device-check.test.ts).
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, statSync } from 'node:fs';
import { mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkLvDevice, dmNameOf } from '../../src/backends/lvm/device.js';
import { UnsafeImageError } from '../../src/errors.js';

/** A block device of this machine that is not device-mapper (the root disk of a VM, a loop device). */
function plainBlockDevice(): string | undefined {
  for (const p of ['/dev/vda', '/dev/sda', '/dev/nvme0n1', '/dev/loop0']) {
    if (existsSync(p) && statSync(p).isBlockDevice() && !existsSync(`/sys/dev/block/${majMin(p)}/dm`)) return p;
  }
  return undefined;
}
function majMin(p: string): string {
  const st = statSync(p, { bigint: true });
  const major = ((st.rdev >> 8n) & 0xfffn) | ((st.rdev >> 32n) & ~0xfffn);
  const minor = (st.rdev & 0xffn) | ((st.rdev >> 12n) & ~0xffn);
  return `${major}:${minor}`;
}

describe('LVM device check (issue 13)', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'volchain-lvdev-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('derives the dm name as LVM does: each "-" doubled, vg and lv joined by one "-"', () => {
    assert.equal(dmNameOf('pve', 'vm-100-disk-0.qcow2'), 'pve-vm--100--disk--0.qcow2');
    assert.equal(dmNameOf('my-vg', 'snap_vm-1-a_b.qcow2'), 'my--vg-snap_vm--1--a_b.qcow2');
  });

  it('refuses a path that leads to a regular file', async () => {
    await writeFile(join(dir, 'file'), 'x');
    await symlink(join(dir, 'file'), join(dir, 'lv-file'));
    assert.throws(
      () => checkLvDevice(join(dir, 'lv-file'), 'vg', 'vm-1-disk-0.qcow2', undefined),
      (err: unknown) => {
        assert.ok(err instanceof UnsafeImageError);
        assert.equal(err.exitStatus, 8);
        assert.match(err.message, /lv-file: is not a block device/);
        return true;
      },
    );
  });

  it('refuses a path that leads to a block device that is not the LV', async () => {
    const dev = plainBlockDevice();
    assert.ok(dev, 'this machine has a plain block device (/dev/vda, /dev/sda, /dev/nvme0n1 or /dev/loop0)');
    await symlink(dev, join(dir, 'lv-dev'));
    assert.throws(
      () => checkLvDevice(join(dir, 'lv-dev'), 'vg', 'vm-1-disk-0.qcow2', undefined),
      /not a device-mapper device.*not to LV vm-1-disk-0\.qcow2 of VG vg/,
    );
  });

  it('leaves an absent path (an inactive LV) to the caller', () => {
    assert.doesNotThrow(() => checkLvDevice(join(dir, 'absent'), 'vg', 'vm-1-disk-0.qcow2', undefined));
  });
});
