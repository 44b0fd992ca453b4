import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InvalidInputError } from '../../src/errors.js';
import { isValidSnapshotName, sameSnapshotName, validateSnapshotName } from '../../src/naming/index.js';

const valid: { description: string; input: string }[] = [
  { description: 'a typical PVE snapshot name (pve-configid)', input: 'before_upgrade' },
  { description: 'two characters, the minimum of pve-configid [a-z][a-z0-9_-]+', input: 'ab' },
  { description: 'upper case (pve-configid is case-insensitive)', input: 'Weekly2024' },
  { description: '40 characters, the maxLength of pve-snapshot-name', input: `s${'x'.repeat(39)}` },
  { description: "'currentX' only starts like the reserved 'current'", input: 'currentX' },
  { description: "'pendingfoo' only starts like the reserved 'pending'", input: 'pendingfoo' },
  { description: 'letters, digits and underscores mixed', input: 'a_1_B_2' },
  { description: "a hyphen, as pve-configid allows (issue 14: PVE's 'pre-up')", input: 'pre-up' },
  { description: 'hyphens and underscores anywhere after the first letter', input: 'a-_-b--' },
  { description: "'Current': qemu-server reserves 'current' in exact case only", input: 'Current' },
  { description: "'CURRENT' is not the reserved 'current' either", input: 'CURRENT' },
];

for (const c of valid) {
  test(`snapshot name ${JSON.stringify(c.input)} is accepted: ${c.description}`, () => {
    validateSnapshotName(c.input);
    assert.equal(isValidSnapshotName(c.input), true);
  });
}

const invalid: { description: string; input: string; message: RegExp }[] = [
  { description: 'empty', input: '', message: /must not be empty/ },
  { description: 'one character (pve-configid needs two)', input: 'a', message: /too short/ },
  { description: '41 characters, beyond pve-snapshot-name maxLength 40', input: `s${'x'.repeat(40)}`, message: /41 characters long: at most 40/ },
  { description: 'starting with a digit (pve-configid starts with a letter)', input: '1st', message: /must start with a letter/ },
  { description: 'starting with an underscore', input: '_snap', message: /must start with a letter/ },
  { description: 'starting with a hyphen (pve-configid starts with a letter)', input: '-ab', message: /must start with a letter/ },
  { description: 'a dot', input: 'v1.0', message: /contains "\."/ },
  { description: 'a slash (path traversal attempt)', input: 'a/../b', message: /contains "\/"/ },
  { description: 'whitespace', input: 'my snap', message: /contains " "/ },
  { description: 'a NUL character', input: 'ab\0', message: /contains "\\u0000"/ },
  { description: 'non-ASCII letters', input: 'snäp', message: /contains "ä"/ },
  { description: "'current' is reserved (qemu-server: \"unable to use snapshot name 'current' (reserved name)\")", input: 'current', message: /reserved/ },
  { description: "'Pending' is reserved in any case too", input: 'Pending', message: /reserved/ },
  { description: "'pending' is reserved in any case (qemu-server compares lc($snapname))", input: 'PENDING', message: /reserved/ },
];

for (const c of invalid) {
  test(`snapshot name ${JSON.stringify(c.input)} is rejected: ${c.description}`, () => {
    assert.throws(
      () => validateSnapshotName(c.input),
      (err: unknown) => err instanceof InvalidInputError && c.message.test(err.message),
    );
    assert.equal(isValidSnapshotName(c.input), false);
  });
}

test('snapshot name errors quote the name', () => {
  assert.throws(() => validateSnapshotName('9lives'), /"9lives"/);
});

test('the error for a bad character names the rule with the hyphen in it', () => {
  assert.throws(() => validateSnapshotName('v1.0'), /letters, digits, '_' or '-'/);
});

const comparisons: { description: string; input: [string, string]; expected: boolean }[] = [
  { description: 'identical names', input: ['daily', 'daily'], expected: true },
  { description: 'names differing only in case are one snapshot', input: ['Daily', 'dAILY'], expected: true },
  { description: 'different names', input: ['daily', 'weekly'], expected: false },
  { description: 'a prefix is not the same name', input: ['day', 'daily'], expected: false },
  { description: 'Unicode case folding is not applied (KELVIN SIGN is not k)', input: ['\u212Aa', 'ka'], expected: false },
];

for (const c of comparisons) {
  test(`sameSnapshotName(${JSON.stringify(c.input[0])}, ${JSON.stringify(c.input[1])}) is ${String(c.expected)}: ${c.description}`, () => {
    assert.equal(sameSnapshotName(...c.input), c.expected);
  });
}
