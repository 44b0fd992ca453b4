/**
 * Issue 17, pure parts of linked clones: the plan of `clone --linked` (planners/clone-linked.ts), the names
 * and backing references of LVM template bases (naming/), and the VOLCHAIN_LVM_TEMPLATES opt-in (settings.ts).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { AlreadyExistsError, InvalidInputError } from '../../src/errors.js';
import { planLinkedClone, type LinkedCloneRequest } from '../../src/engine/planners/clone-linked.js';
import { undoOf } from '../../src/engine/run/step-rules.js';
import { baseBackingRef, formatVolid, parseBaseBackingRef, parseLvmBaseName, parseVolname } from '../../src/naming/index.js';
import { lvmTemplatesAllowed, readSettings } from '../../src/settings.js';

const dirBase: LinkedCloneRequest['base'] = {
  vmid: 7531,
  name: 'base-7531-disk-0.qcow2',
  format: 'qcow2',
  volid: 'loc:7531/base-7531-disk-0.qcow2',
  virtualSize: 8 << 20,
};
const target = (over: Partial<LinkedCloneRequest['target']> = {}): LinkedCloneRequest['target'] => ({
  storage: 'loc',
  kind: 'dir',
  vmid: 7532,
  existingNames: [],
  ...over,
});

describe('planLinkedClone', () => {
  it('creates the clone under a temporary name backed by the base, then renames it; the volid is PVE’s', () => {
    const plan = planLinkedClone({ base: dirBase, target: target({ existingNames: ['vm-7532-disk-0.qcow2'] }) });
    assert.equal(plan.operation, 'linked-clone');
    assert.equal(plan.newVolid, 'loc:7531/base-7531-disk-0.qcow2/7532/vm-7532-disk-1.qcow2');
    assert.equal(plan.volid, plan.newVolid);
    assert.equal(plan.vmid, 7532);
    assert.deepEqual(plan.steps, [
      { kind: 'create-linked', layer: '.volchain-tmp-linked-vm-7532-disk-1.qcow2', baseVmid: 7531, baseName: 'base-7531-disk-0.qcow2', sizeBytes: 8 << 20 },
      { kind: 'rename', from: '.volchain-tmp-linked-vm-7532-disk-1.qcow2', to: 'vm-7532-disk-1.qcow2' },
    ]);
    assert.deepEqual(undoOf(plan.steps[0]!), { kind: 'remove', layer: '.volchain-tmp-linked-vm-7532-disk-1.qcow2' }, 'the temporary is removed on undo');
  });

  it('on LVM the volid is the LV name and the base is named bare', () => {
    const base = { ...dirBase, volid: 'san:base-7531-disk-0.qcow2' };
    const plan = planLinkedClone({ base, target: target({ storage: 'san', kind: 'lvm', name: 'vm-7532-web.qcow2' }) });
    assert.equal(plan.newVolid, 'san:vm-7532-web.qcow2');
    assert.equal(plan.steps[0]?.kind === 'create-linked' ? plan.steps[0].layer : '', 'volchain-tmp-linked-vm-7532-web.qcow2');
  });

  it('refuses the template’s own VM, a taken or non-qcow2 name, and a leftover temporary', () => {
    assert.throws(() => planLinkedClone({ base: dirBase, target: target({ vmid: 7531 }) }), InvalidInputError);
    assert.throws(
      () => planLinkedClone({ base: dirBase, target: target({ name: 'vm-7532-a.qcow2', existingNames: ['vm-7532-a.qcow2'] }) }),
      AlreadyExistsError,
    );
    assert.throws(() => planLinkedClone({ base: dirBase, target: target({ name: 'vm-7532-a.raw' }) }), /not a qcow2 volume name/);
    assert.throws(
      () => planLinkedClone({ base: dirBase, target: target({ name: 'vm-7532-disk-0.qcow2', existingNames: ['.volchain-tmp-linked-vm-7532-disk-0.qcow2'] }) }),
      /interrupted linked clone/,
    );
  });
});

describe('LVM template base names and references', () => {
  const cases: { name: string; vmid?: number; ok: boolean }[] = [
    { name: 'base-7531-disk-0.qcow2', ok: true },
    { name: 'base-7531-disk-0.qcow2', vmid: 7531, ok: true },
    { name: 'base-7531-disk-0.qcow2', vmid: 7532, ok: false },
    { name: 'base-7531-disk-0', ok: false }, // raw LVs get no LVM templates
    { name: '../7531/base-7531-disk-0.qcow2', ok: false },
    { name: 'vm-7531-disk-0.qcow2', ok: false },
    { name: 'base-07531-disk-0.qcow2', ok: false },
    { name: 'base-7531-a+b.qcow2', ok: false },
    { name: 'base-7531-.qcow2', ok: false },
  ];
  for (const c of cases) {
    it(`${c.name}${c.vmid !== undefined ? ` of VM ${c.vmid}` : ''}: ${c.ok ? 'a base LV' : 'refused'}`, () => {
      assert.equal(parseLvmBaseName(c.name, c.vmid) !== undefined, c.ok);
    });
  }

  it('the base reference is the bare LV name on LVM, PVE’s ../<vmid>/<name> on dir, and each kind reads only its own', () => {
    const base = { vmid: 7531, name: 'base-7531-disk-0.qcow2' };
    assert.equal(baseBackingRef(base, 'lvm'), 'base-7531-disk-0.qcow2');
    assert.equal(baseBackingRef(base), '../7531/base-7531-disk-0.qcow2');
    assert.deepEqual(parseBaseBackingRef('base-7531-disk-0.qcow2', 'lvm'), { vmid: 7531, name: 'base-7531-disk-0.qcow2', format: 'qcow2' });
    assert.equal(
      parseBaseBackingRef('base-7531-disk-0.qcow2'),
      undefined,
      'a bare base name is no dir reference (it would resolve in the clone’s own directory)',
    );
    assert.equal(parseBaseBackingRef('../7531/base-7531-disk-0.qcow2', 'lvm'), undefined);
  });

  it('an LVM base LV is a template volume with its own volid', () => {
    const ref = parseVolname('lvm', 'san', 'base-7531-disk-0.qcow2');
    assert.equal(ref.template, true);
    assert.equal(ref.vmid, 7531);
    assert.equal(formatVolid(ref), 'san:base-7531-disk-0.qcow2');
  });
});

describe('VOLCHAIN_LVM_TEMPLATES', () => {
  it('names the opted-in storages (comma or space separated, * for all); unset or empty: none', () => {
    const allowed = (value: string | undefined, id: string): boolean =>
      lvmTemplatesAllowed(readSettings(value === undefined ? {} : { VOLCHAIN_LVM_TEMPLATES: value }), id);
    assert.equal(allowed(undefined, 'san'), false);
    assert.equal(allowed('', 'san'), false);
    assert.equal(allowed('san', 'san'), true);
    assert.equal(allowed('other, san', 'san'), true);
    assert.equal(allowed('other san2', 'san'), false);
    assert.equal(allowed('*', 'san'), true);
    assert.equal(allowed('sa', 'san'), false, 'whole ids only');
  });
});
