import { test } from 'node:test';
import assert from 'node:assert/strict';
import { resolveKeepBranches } from '../../src/engine/plan/branch-policy.js';
import { InvalidInputError } from '../../src/errors.js';

test('branch policy: auto keeps branches except where PVE reads the same storage.cfg; VOLCHAIN_BRANCHES wins', () => {
  assert.equal(resolveKeepBranches('/etc/pve/storage.cfg', {}), false, "PVE's config: PVE's delete would break a branch");
  assert.equal(resolveKeepBranches('/srv/storage.cfg', {}), true);
  assert.equal(resolveKeepBranches('/srv/storage.cfg', { VOLCHAIN_BRANCHES: '' }), true);
  assert.equal(resolveKeepBranches('/etc/pve/storage.cfg', { VOLCHAIN_BRANCHES: 'yes' }), true);
  assert.equal(resolveKeepBranches('/srv/storage.cfg', { VOLCHAIN_BRANCHES: 'no' }), false);
  assert.equal(resolveKeepBranches('/etc/pve/storage.cfg', { VOLCHAIN_BRANCHES: 'auto' }), false);
  assert.throws(
    () => resolveKeepBranches('/srv/storage.cfg', { VOLCHAIN_BRANCHES: 'YES' }),
    (e: unknown) => {
      assert.ok(e instanceof InvalidInputError);
      assert.match(e.message, /VOLCHAIN_BRANCHES must be auto, yes, no, got "YES"/);
      return true;
    },
  );
});
