/**
 * Template base volumes and linked clones on dir storage (issue 14): their volids as PVE's parse_volname reads
 * them (pve-storage test/parse_volname_test.pm cases "base-<vmid>-disk-0" and "linked, qcow2"), and the one
 * backing reference allowed to leave a VM's directory.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InvalidInputError, type NotSupportedError } from '../../src/errors.js';
import { baseBackingRef, formatVolid, parseBaseBackingRef, parseBaseName, parseVolname } from '../../src/naming/index.js';

test('parseVolname reads a template base volume <vmid>/base-<vmid>-disk-<n>.<fmt> (parse_volname_test: isBase)', () => {
  const ref = parseVolname('dir', 'local', '1234/base-1234-disk-0.qcow2');
  assert.deepEqual(ref, {
    storage: 'local',
    kind: 'dir',
    vmid: 1234,
    name: 'base-1234-disk-0.qcow2',
    format: 'qcow2',
    volname: '1234/base-1234-disk-0.qcow2',
    template: true,
  });
  assert.equal(parseVolname('dir', 'local', '1234/base-1234-disk-1.raw').format, 'raw');
});

test('parseVolname reads a linked clone <basevmid>/<basename>/<vmid>/<name> (parse_volname_test: linked, qcow2)', () => {
  const ref = parseVolname('dir', 'local', '1234/base-1234-disk-0.qcow2/1235/vm-1235-disk-0.qcow2');
  assert.equal(ref.vmid, 1235);
  assert.equal(ref.name, 'vm-1235-disk-0.qcow2');
  assert.equal(ref.format, 'qcow2');
  assert.equal(ref.template, undefined);
  assert.deepEqual(ref.base, { vmid: 1234, name: 'base-1234-disk-0.qcow2', format: 'qcow2' });
  assert.equal(formatVolid(ref), 'local:1234/base-1234-disk-0.qcow2/1235/vm-1235-disk-0.qcow2');
  assert.equal(formatVolid({ storage: 'local', kind: 'dir', vmid: 1234, name: 'base-1234-disk-0.qcow2' }), 'local:1234/base-1234-disk-0.qcow2');
});

const badVolnames: { description: string; volname: string; error: typeof InvalidInputError | typeof NotSupportedError; message: RegExp }[] = [
  {
    description: 'base vmid and directory differ',
    volname: '100/base-101-disk-0.qcow2',
    error: InvalidInputError,
    message: /belongs to VM 101, not to VM 100/,
  },
  {
    description: 'clone base part names another VM than its directory',
    volname: '100/base-101-disk-0.qcow2/102/vm-102-disk-0.qcow2',
    error: InvalidInputError,
    message: /belongs to VM 101/,
  },
  {
    description: 'clone whose own name is a base name',
    volname: '100/base-100-disk-0.qcow2/102/base-102-disk-0.qcow2',
    error: InvalidInputError,
    message: /starts with 'vm-'/,
  },
  {
    description: 'clone that is raw (PVE clones are qcow2)',
    volname: '100/base-100-disk-0.raw/102/vm-102-disk-0.raw',
    error: InvalidInputError,
    message: /qcow2 volume/,
  },
  {
    description: 'clone whose base part is a vm- volume',
    volname: '100/vm-100-disk-0.qcow2/102/vm-102-disk-0.qcow2',
    error: InvalidInputError,
    message: /not a base volume name/,
  },
  {
    description: 'clone with traversal in the base part',
    volname: '100/base-100-..qcow2/102/vm-102-disk-0.qcow2',
    error: InvalidInputError,
    message: /'\.\.'/,
  },
  { description: 'base vmdk', volname: '100/base-100-disk-0.vmdk', error: InvalidInputError, message: /raw and qcow2/ },
  { description: 'base with a ":"', volname: '100/base-100-nbd:x.qcow2', error: InvalidInputError, message: /":"/ },
];
for (const c of badVolnames) {
  test(`parseVolname dir rejects ${JSON.stringify(c.volname)}: ${c.description}`, () => {
    assert.throws(
      () => parseVolname('dir', 'local', c.volname),
      (err: unknown) => err instanceof c.error && c.message.test((err as Error).message),
    );
  });
}

test('parseBaseName follows the volume name rules with base- for vm-', () => {
  assert.deepEqual(parseBaseName('base-100-disk-0.qcow2'), { vmid: 100, name: 'base-100-disk-0.qcow2', format: 'qcow2' });
  assert.throws(() => parseBaseName('base-100-disk-0.qcow2', 101), /belongs to VM 100, not to VM 101/);
  assert.throws(() => parseBaseName('vm-100-disk-0.qcow2'), /not a base volume name/);
});

const refs: { ref: string; expected: ReturnType<typeof parseBaseBackingRef> }[] = [
  { ref: '../101/base-101-disk-0.qcow2', expected: { vmid: 101, name: 'base-101-disk-0.qcow2', format: 'qcow2' } },
  { ref: '../101/base-101-disk-3.raw', expected: { vmid: 101, name: 'base-101-disk-3.raw', format: 'raw' } },
  { ref: '../103/vm-103-disk-0.qcow2', expected: undefined },
  { ref: '../102/snap-a-vm-102-disk-0.qcow2', expected: undefined },
  { ref: '../101/base-102-disk-0.qcow2', expected: undefined },
  { ref: '../0101/base-101-disk-0.qcow2', expected: undefined },
  { ref: '../../101/base-101-disk-0.qcow2', expected: undefined },
  { ref: '/var/lib/vz/images/101/base-101-disk-0.qcow2', expected: undefined },
  { ref: '../101/x/base-101-disk-0.qcow2', expected: undefined },
  { ref: 'base-101-disk-0.qcow2', expected: undefined },
  { ref: '../101/base-101-disk-0.vmdk', expected: undefined },
  { ref: 'json:{"file":"../101/base-101-disk-0.qcow2"}', expected: undefined },
];
for (const c of refs) {
  test(`parseBaseBackingRef ${JSON.stringify(c.ref)}: ${c.expected ? 'a base reference' : 'refused'}`, () => {
    assert.deepEqual(parseBaseBackingRef(c.ref), c.expected);
    if (c.expected) assert.equal(baseBackingRef(c.expected), c.ref);
  });
}
