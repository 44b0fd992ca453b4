/**
 * Which operations exclude each other: a VM's lock belongs to the place its volumes live (directory, VG),
 * not to a storage id, since storage ids naming the same place share the VM's journal.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseStorageConfig } from '../../src/config/index.js';
import { createBackend } from '../../src/backends/registry.js';
import { DEFAULT_LOCK_TIMEOUT_MS, acquireLock } from '../../src/engine/session/lock.js';
import { Volchain } from '../../src/engine/volchain.js';
import { LockedError } from '../../src/errors.js';
import { readSettings } from '../../src/settings.js';

const root = mkdtempSync(join(tmpdir(), 'volchain-lockscope-'));
// The state directory (LVM's lock files) and the lock timeout are given as settings: process.env is left alone.
const env = { VOLCHAIN_STATE_DIR: join(root, 'state') };
after(() => {
  rmSync(root, { recursive: true, force: true });
});

const text = [
  `lvm: thick-a\n\tvgname vgone\n\tcontent images\n\tsnapshot-as-volume-chain 1\n`,
  `lvm: thick-b\n\tvgname vgone\n\tcontent images\n\tsnapshot-as-volume-chain 1\n`,
  `lvm: other\n\tvgname vgtwo\n\tcontent images\n\tsnapshot-as-volume-chain 1\n`,
  `dir: files-a\n\tpath ${root}/store\n\tcontent images\n\tsnapshot-as-volume-chain 1\n`,
  `dir: files-b\n\tpath ${root}/store\n\tcontent images\n\tsnapshot-as-volume-chain 1\n`,
  `dir: files-c\n\tpath ${root}/elsewhere\n\tcontent images\n\tsnapshot-as-volume-chain 1\n`,
].join('\n');
const config = parseStorageConfig(text, join(root, 'storage.cfg'));
const lockOf = (id: string, vmid: number): string => {
  const def = config.storages.find((s) => s.id === id);
  assert.ok(def, id);
  return createBackend(def, { settings: readSettings(env) }).lockFile(vmid);
};

describe('VM locks', () => {
  it('are shared by storage ids naming the same VG or directory, and by nothing else', () => {
    assert.equal(lockOf('thick-a', 100), lockOf('thick-b', 100));
    assert.notEqual(lockOf('thick-a', 100), lockOf('thick-a', 101), 'one lock per VM');
    assert.notEqual(lockOf('thick-a', 100), lockOf('other', 100), 'another VG');
    assert.equal(lockOf('files-a', 100), lockOf('files-b', 100));
    assert.notEqual(lockOf('files-a', 100), lockOf('files-c', 100), 'another directory');
    assert.notEqual(lockOf('files-a', 100), lockOf('thick-a', 100));
  });

  it('held through one storage id, make an operation through another id on the same VG wait and give up', async () => {
    const held = await acquireLock(lockOf('thick-a', 100), 'snapshot-delete', DEFAULT_LOCK_TIMEOUT_MS);
    try {
      const vc = new Volchain(config, { settings: readSettings({ ...env, VOLCHAIN_LOCK_TIMEOUT: '0.3' }) });
      await assert.rejects(vc.snapshotCreate('thick-b:vm-100-disk-0.qcow2', 'before'), (err: unknown) => {
        assert.ok(err instanceof LockedError, String(err));
        assert.match(err.message, /snapshot-delete/, 'the error names what holds the lock');
        return true;
      });
    } finally {
      await held.release();
    }
  });
});
