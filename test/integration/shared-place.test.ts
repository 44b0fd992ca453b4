/**
 * Two storage ids naming one directory (as two ids can name one VG): they list the same disks, so VM-wide
 * operations must take each disk once and the ids must share the VM's lock.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseStorageConfig } from '../../src/config/index.js';
import { DEFAULT_LOCK_TIMEOUT_MS, acquireLock } from '../../src/engine/session/lock.js';
import { Volchain } from '../../src/engine/volchain.js';
import { LockedError } from '../../src/errors.js';
import { readSettings } from '../../src/settings.js';
import { BLOCK, MiB, assertPatterns, checkClean, writePattern } from './helpers.js';

test('storage ids sharing a directory: a VM-wide snapshot takes each disk once; a lock held through one id holds the other', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'volchain-shared-place-'));
  try {
    const section = (id: string): string => `dir: ${id}\n\tpath ${dir}/store\n\tcontent images\n\tsnapshot-as-volume-chain 1\n`;
    const text = `${section('place-a')}\n${section('place-b')}`;
    await writeFile(join(dir, 'storage.cfg'), text);
    const config = parseStorageConfig(text, join(dir, 'storage.cfg'));
    const vc = new Volchain(config);
    await vc.alloc('place-a', 100, 8 * MiB);
    await vc.alloc('place-b', 100, 8 * MiB);
    const images = join(dir, 'store', 'images', '100');
    await writePattern(join(images, 'vm-100-disk-0.qcow2'), 0xd0, 0, BLOCK);
    await writePattern(join(images, 'vm-100-disk-1.qcow2'), 0xd1, 0, BLOCK);

    const plans = await vc.vmSnapshot(100, 'both');
    assert.deepEqual(
      plans.map((p) => p.volid),
      ['place-a:100/vm-100-disk-0.qcow2', 'place-a:100/vm-100-disk-1.qcow2'],
      'each disk once, through the first id',
    );
    assert.deepEqual((await readdir(images)).sort(), [
      'snap-both-vm-100-disk-0.qcow2',
      'snap-both-vm-100-disk-1.qcow2',
      'vm-100-disk-0.qcow2',
      'vm-100-disk-1.qcow2',
    ]);
    for (const disk of [0, 1]) {
      await writePattern(join(images, `vm-100-disk-${disk}.qcow2`), 0xe0 + disk, 0, BLOCK);
      await assertPatterns(join(images, `snap-both-vm-100-disk-${disk}.qcow2`), [{ byte: 0xd0 + disk, offset: 0, len: BLOCK }], `disk ${disk} at 'both'`);
      await checkClean(join(images, `vm-100-disk-${disk}.qcow2`));
    }

    const held = await acquireLock(join(dir, 'store', '.volchain', 'locks', '100.lock'), 'snapshot-delete', DEFAULT_LOCK_TIMEOUT_MS);
    // A Volchain that waits 0.3 s for a lock: settings given, not process.env changed.
    const impatient = new Volchain(config, { settings: readSettings({ ...process.env, VOLCHAIN_LOCK_TIMEOUT: '0.3' }) });
    try {
      await assert.rejects(impatient.vmDeleteSnapshot(100, 'both', { storage: 'place-b' }), LockedError);
      await assert.rejects(impatient.snapshotCreate('place-b:100/vm-100-disk-1.qcow2', 'other'), LockedError);
    } finally {
      await held.release();
    }
    await vc.vmDeleteSnapshot(100, 'both');
    assert.deepEqual((await readdir(images)).sort(), ['vm-100-disk-0.qcow2', 'vm-100-disk-1.qcow2']);
    await assertPatterns(join(images, 'vm-100-disk-1.qcow2'), [{ byte: 0xe1, offset: 0, len: BLOCK }], 'disk 1 after the delete');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
