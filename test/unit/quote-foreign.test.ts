/**
 * Text volchain did not write (names from image headers, other programs' stderr) is shown escaped and
 * bounded: in messages (quoteForeign, escapeUnsafe), in listings (showSnapshotName, the snapshot tree) and in
 * the qcow2 layer's own refusals.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { escapeUnsafe, quoteForeign } from '../../src/quote.js';
import { renderSnapshotTree, showSnapshotName } from '../../src/cli/render.js';
import type { SnapshotListing } from '../../src/engine/volchain.js';
import { UnsafeImageError } from '../../src/errors.js';
import { EXT_BACKING_FORMAT, EXT_FEATURE_TABLE } from '../../src/qcow2/header-format.js';
import { parseQcow2Header } from '../../src/qcow2/header.js';
import { encodeQcow2Header, stringExtension } from '../fixtures/qcow2-craft.js';
import { validateLayerHeader } from '../../src/qcow2/validate.js';

// eslint-disable-next-line no-control-regex
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]/u;

describe('quoteForeign', () => {
  const cases: { description: string; input: string; max?: number; expected: string }[] = [
    { description: 'a plain name', input: 'snap1', expected: '"snap1"' },
    { description: 'a newline', input: 'a\nb', expected: '"a\\nb"' },
    { description: 'an escape sequence', input: '\u001b[2J', expected: '"\\u001b[2J"' },
    { description: 'quotes and backslashes', input: 'a"b\\c', expected: '"a\\"b\\\\c"' },
    { description: 'DEL and a C1 CSI', input: 'x\u007fy\u009bz', expected: '"x\\u007fy\\u009bz"' },
    { description: 'bidi override and line separator', input: 'a\u202eb\u2028c', expected: '"a\\u202eb\\u2028c"' },
    { description: 'a long name is cut, with its length', input: 'x'.repeat(70), expected: `"${'x'.repeat(64)}"… (70 characters)` },
    { description: 'cut by code points, never inside a pair', input: '😀'.repeat(5), max: 3, expected: '"😀😀😀"… (5 characters)' },
    { description: 'exactly at the bound: not cut', input: 'y'.repeat(64), expected: `"${'y'.repeat(64)}"` },
  ];
  for (const c of cases) {
    it(c.description, () => assert.equal(quoteForeign(c.input, c.max), c.expected));
  }

  it('always one line without unsafe characters, and JSON that reads back as the name when not cut', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 80 }), (text) => {
        const quoted = quoteForeign(text, 100);
        assert.doesNotMatch(quoted, UNSAFE);
        assert.equal(JSON.parse(quoted), text);
      }),
    );
  });

  it('bounds what it shows however long the input', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', minLength: 65, maxLength: 3000 }), (text) => {
        const quoted = quoteForeign(text);
        // 64 characters, each escaped to at most 12 (a surrogate pair as two \uXXXX), quotes and the suffix.
        assert.ok(quoted.length <= 64 * 12 + 30, quoted);
        assert.match(quoted, new RegExp(`… \\(${Array.from(text).length} characters\\)$`));
      }),
    );
  });
});

describe('escapeUnsafe', () => {
  it('keeps a message on one line and its printable text as it is', () => {
    assert.equal(escapeUnsafe('qemu-img: failed\nat \u001b[31mred'), 'qemu-img: failed\\nat \\u001b[31mred');
    assert.equal(escapeUnsafe('snapshot "x" of tst:100/vm-100-disk-0.qcow2'), 'snapshot "x" of tst:100/vm-100-disk-0.qcow2');
    fc.assert(fc.property(fc.string({ unit: 'binary' }), (text) => assert.doesNotMatch(escapeUnsafe(text), UNSAFE)));
  });
});

describe('showSnapshotName', () => {
  const cases: [string, string][] = [
    ['snap1', 'snap1'],
    ['before_upgrade', 'before_upgrade'],
    ['pve-style-name', 'pve-style-name'],
    ['current', '"current"'],
    ['Current', '"Current"'],
    ['PENDING', '"PENDING"'],
    ['a b', '"a b"'],
    ['1abc', '"1abc"'],
    ['', '""'],
    ['`-- x', '"`-- x"'],
    ['a\nb', '"a\\nb"'],
  ];
  for (const [name, shown] of cases) it(`${JSON.stringify(name)} is shown as ${shown}`, () => assert.equal(showSnapshotName(name), shown));
});

describe('renderSnapshotTree with names no volchain command makes', () => {
  const MiB = 1024 * 1024;
  const entry = (name: string, parent: string | null, children: string[]) => ({
    name,
    layer: `l-${name}`,
    path: `/x/l-${name}`,
    parent,
    children,
    inCurrentChain: true,
    virtualSize: MiB,
    definedBytes: MiB,
    usedBytes: MiB,
    corrupt: false,
    internalSnapshots: [],
  });

  it('a chain whose snapshots are called "Current" and "x\\n`-- y" keeps one line per layer and one current', () => {
    const fake = 'x\n`-- y  (1 MiB data)';
    const listing: SnapshotListing = {
      volid: 'tst:100/vm-100-disk-0.qcow2',
      mode: 'volume-chain',
      current: {
        layer: 'vm-100-disk-0.qcow2',
        path: '/x/vm-100-disk-0.qcow2',
        parent: fake,
        virtualSize: MiB,
        definedBytes: 0,
        usedBytes: MiB,
        corrupt: false,
        internalSnapshots: [],
      },
      snapshots: [entry('Current', null, [fake]), entry(fake, 'Current', ['current'])],
    };
    const out = renderSnapshotTree(listing);
    assert.deepEqual(out.split('\n'), [
      'tst:100/vm-100-disk-0.qcow2',
      '"Current"  (1 MiB data)',
      '`-- "x\\n`-- y  (1 MiB data)"  (1 MiB data)',
      '    `-- current  (0 B written since "x\\n`-- y  (1 MiB data)")  <- you are here',
    ]);
  });
});

describe('qcow2 refusals quote header names escaped and bounded', () => {
  const policy = { isExpectedLayerName: () => true };
  const featureEntry = (bit: number, name: string): Buffer => {
    const b = Buffer.alloc(48);
    b.writeUInt8(0, 0); // incompatible
    b.writeUInt8(bit, 1);
    Buffer.from(name, 'utf8').copy(b, 2, 0, 46);
    return b;
  };

  it('an unknown incompatible feature named with an escape sequence', () => {
    const header = parseQcow2Header(
      encodeQcow2Header({ incompatibleFeatures: 1n << 40n, extensions: [{ type: EXT_FEATURE_TABLE, data: featureEntry(40, '\u001b]0;pwn\u0007') }] }),
      'vm-1-disk-0.qcow2',
    );
    assert.throws(
      () => validateLayerHeader('vm-1-disk-0.qcow2', header, policy),
      (err: unknown) => err instanceof UnsafeImageError && err.message === 'vm-1-disk-0.qcow2: unknown incompatible features: bit 40 ("\\u001b]0;pwn\\u0007")',
    );
  });

  it('a backing format with a newline and an escape sequence (QEMU allows 15 bytes)', () => {
    const header = parseQcow2Header(
      encodeQcow2Header({ backingFile: 'snap-a-vm-1-disk-0.qcow2', extensions: [stringExtension(EXT_BACKING_FORMAT, 'raw\n\u001b[31mabc')] }),
      'vm-1-disk-0.qcow2',
    );
    assert.throws(
      () => validateLayerHeader('vm-1-disk-0.qcow2', header, policy),
      (err: unknown) =>
        err instanceof UnsafeImageError &&
        err.message === 'vm-1-disk-0.qcow2: backing format is "raw\\n\\u001b[31mabc", only "qcow2" is accepted ("snap-a-vm-1-disk-0.qcow2")',
    );
  });

  it('a backing reference of 1000 characters is cut at 128 in the message, kept whole on the error', () => {
    const ref = `${'r'.repeat(999)}\u001b`;
    const header = parseQcow2Header(encodeQcow2Header({ backingFile: ref, clusterBits: 16 }), 'vm-1-disk-0.qcow2');
    assert.throws(
      () => validateLayerHeader('vm-1-disk-0.qcow2', header, policy),
      (err: unknown) =>
        err instanceof UnsafeImageError &&
        err.reference === ref &&
        err.message === `vm-1-disk-0.qcow2: backing reference contains a control character ("${'r'.repeat(128)}"… (1000 characters))`,
    );
  });
});
