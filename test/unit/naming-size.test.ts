import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InvalidInputError } from '../../src/errors.js';
import { formatSize, parseSize } from '../../src/naming/index.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
const TiB = 1024 * GiB;

const accepted: { description: string; input: string; expected: number }[] = [
  { description: 'plain bytes, as PVE parse_size reads a number without unit', input: '1048576', expected: MiB },
  { description: 'K is 1024 bytes (PVE parse_size)', input: '4K', expected: 4 * KiB },
  { description: 'KiB is the same as K (PVE parse_size accepts the iB form)', input: '4KiB', expected: 4 * KiB },
  { description: 'M is 1024 K (PVE parse_size)', input: '512M', expected: 512 * MiB },
  { description: 'G is 1024 M (PVE parse_size)', input: '32G', expected: 32 * GiB },
  { description: 'GiB is the same as G (PVE parse_size)', input: '32GiB', expected: 32 * GiB },
  { description: 'T is 1024 G (PVE parse_size)', input: '2T', expected: 2 * TiB },
  { description: 'TiB (PVE parse_size)', input: '2TiB', expected: 2 * TiB },
  { description: 'a decimal with a whole result (PVE parse_size allows \\d+.\\d+)', input: '1.5G', expected: 1.5 * GiB },
  { description: 'a decimal below one unit with a whole result', input: '0.5K', expected: 512 },
  { description: 'lower-case unit: volchain extension of PVE parse_size', input: '10g', expected: 10 * GiB },
  { description: 'lower-case iB form: volchain extension', input: '10gib', expected: 10 * GiB },
  { description: 'a decimal of plain bytes that is whole', input: '512.0', expected: 512 },
  { description: 'leading zeros are digits like any other (PVE \\d+)', input: '007M', expected: 7 * MiB },
  { description: 'the largest safe integer', input: String(Number.MAX_SAFE_INTEGER), expected: Number.MAX_SAFE_INTEGER },
];

for (const c of accepted) {
  test(`parseSize accepts ${JSON.stringify(c.input)}: ${c.description}`, () => {
    assert.equal(parseSize(c.input), c.expected);
  });
}

const rejected: { description: string; input: string; message: RegExp }[] = [
  { description: 'empty text', input: '', message: /must not be empty/ },
  { description: 'zero bytes: a disk needs at least one byte', input: '0', message: /is zero/ },
  { description: 'zero with a unit', input: '0G', message: /is zero/ },
  { description: 'zero as a decimal', input: '0.0M', message: /is zero/ },
  { description: 'a negative size (PVE parse_size has no sign)', input: '-1G', message: /not valid/ },
  { description: 'an explicit plus sign', input: '+1G', message: /not valid/ },
  { description: 'fractional bytes, which PVE would silently truncate', input: '1.5', message: /whole number of bytes/ },
  { description: 'a decimal whose result is not a whole number of bytes', input: '1.0000000001G', message: /whole number of bytes/ },
  { description: 'leading whitespace', input: ' 1G', message: /not valid/ },
  { description: 'trailing whitespace', input: '1G ', message: /not valid/ },
  { description: 'whitespace between number and unit', input: '1 G', message: /not valid/ },
  { description: 'trailing newline (Perl $ would allow it, volchain not)', input: '1G\n', message: /not valid/ },
  { description: 'plain B is not a PVE unit', input: '512B', message: /not valid/ },
  { description: 'GB (SI style) is not a PVE unit', input: '1GB', message: /not valid/ },
  { description: 'P is beyond the units PVE knows', input: '1P', message: /not valid/ },
  { description: 'a unit without a number', input: 'G', message: /not valid/ },
  { description: 'a dot without decimals (PVE needs \\.\\d+)', input: '1.G', message: /not valid/ },
  { description: 'decimals without a whole part', input: '.5G', message: /not valid/ },
  { description: 'hexadecimal', input: '0x10', message: /not valid/ },
  { description: 'exponent notation', input: '1e9', message: /not valid/ },
  { description: 'garbage', input: 'lots', message: /not valid/ },
  { description: 'beyond Number.MAX_SAFE_INTEGER', input: '9007199254740992', message: /too large/ },
  { description: 'far beyond the safe range with a unit', input: '99999999T', message: /too large/ },
  { description: 'absurdly long input', input: '1'.repeat(100), message: /not valid/ },
];

for (const c of rejected) {
  test(`parseSize rejects ${JSON.stringify(c.input)}: ${c.description}`, () => {
    assert.throws(
      () => parseSize(c.input),
      (err: unknown) => err instanceof InvalidInputError && c.message.test(err.message),
    );
  });
}

test('parseSize error messages quote the value and say what is allowed', () => {
  assert.throws(
    () => parseSize('12X'),
    (err: unknown) => {
      assert.ok(err instanceof InvalidInputError);
      assert.match(err.message, /"12X"/);
      assert.match(err.message, /K, M, G or T/);
      return true;
    },
  );
});

const formatted: { description: string; input: number | bigint; expected: string }[] = [
  { description: 'bytes below one KiB stay bytes', input: 512, expected: '512 B' },
  { description: 'zero bytes', input: 0, expected: '0 B' },
  { description: 'an exact KiB', input: 1024, expected: '1 KiB' },
  { description: 'one and a half KiB', input: 1536, expected: '1.5 KiB' },
  { description: 'one and a half GiB', input: 1.5 * GiB, expected: '1.5 GiB' },
  { description: 'two decimals at most', input: GiB + 0.25 * GiB, expected: '1.25 GiB' },
  { description: 'rounded to two decimals', input: GiB + Math.round(0.333 * GiB), expected: '1.33 GiB' },
  { description: 'a value that rounds to 1024 of one unit shows as the next unit', input: MiB - 1, expected: '1 MiB' },
  { description: 'TiB', input: 3 * TiB, expected: '3 TiB' },
  { description: 'PiB beyond the PVE units', input: 4 * 1024 * TiB, expected: '4 PiB' },
  { description: 'bigint input, as qcow2 header fields are read', input: 1n << 40n, expected: '1 TiB' },
  { description: 'bigint beyond the safe integer range', input: 1n << 62n, expected: '4 EiB' },
];

for (const c of formatted) {
  test(`formatSize(${String(c.input)}) is ${JSON.stringify(c.expected)}: ${c.description}`, () => {
    assert.equal(formatSize(c.input), c.expected);
  });
}

test('formatSize refuses negative and fractional byte counts', () => {
  assert.throws(() => formatSize(-1), InvalidInputError);
  assert.throws(() => formatSize(-1n), InvalidInputError);
  assert.throws(() => formatSize(1.5), InvalidInputError);
  assert.throws(() => formatSize(Number.NaN), InvalidInputError);
});
