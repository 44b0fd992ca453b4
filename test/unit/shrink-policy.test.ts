import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isPveConfig, resolveShrinkFrozen } from '../../src/engine/plan/shrink-policy.js';
import { InvalidInputError } from '../../src/errors.js';

test('shrink policy: auto keeps full-size layers only where PVE reads the same storage.cfg', () => {
  assert.equal(isPveConfig('/etc/pve/storage.cfg'), true);
  assert.equal(isPveConfig('/tmp/volchain-test.cfg'), false);
  assert.equal(resolveShrinkFrozen(undefined, '/etc/pve/storage.cfg', {}), false, "PVE's config: PVE commits into snapshot LVs");
  assert.equal(resolveShrinkFrozen(undefined, '/srv/storage.cfg', {}), true);
  assert.equal(resolveShrinkFrozen('auto', '/srv/storage.cfg', {}), true);
});

test('shrink policy: the option wins over VOLCHAIN_LVM_SHRINK, which wins over auto; a bad value is refused', () => {
  assert.equal(resolveShrinkFrozen('yes', '/etc/pve/storage.cfg', { VOLCHAIN_LVM_SHRINK: 'no' }), true);
  assert.equal(resolveShrinkFrozen(undefined, '/etc/pve/storage.cfg', { VOLCHAIN_LVM_SHRINK: 'yes' }), true);
  assert.equal(resolveShrinkFrozen(undefined, '/srv/storage.cfg', { VOLCHAIN_LVM_SHRINK: 'no' }), false);
  assert.equal(resolveShrinkFrozen(undefined, '/srv/storage.cfg', { VOLCHAIN_LVM_SHRINK: '' }), true);
  assert.throws(
    () => resolveShrinkFrozen(undefined, '/srv/storage.cfg', { VOLCHAIN_LVM_SHRINK: 'maybe' }),
    (e: unknown) => {
      assert.ok(e instanceof InvalidInputError);
      assert.match(e.message, /VOLCHAIN_LVM_SHRINK must be auto, yes, no, got 'maybe'/);
      return true;
    },
  );
});
