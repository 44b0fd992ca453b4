/**
 * One header validator (issue 15): the chain walker (walkChain) and the per-layer reader the volume tree uses
 * (readQcow2Layer with a policy) judge every header through validateLayerHeader, so a hostile header is
 * refused by both with the same error class and message. Before, the tree reader took a free-form check and
 * the base-volume rule lived only there: walkChain followed a backing reference out of a base volume.
 *
 * Header-only files written by the crafting helper (no qemu-img needed): each is a whole 512-byte cluster.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UnsafeImageError } from '../../src/errors.js';
import { EXT_BACKING_FORMAT, EXT_DATA_FILE, INCOMPAT_DATA_FILE } from '../../src/qcow2/header-format.js';
import { readQcow2Header } from '../../src/qcow2/header.js';
import { readQcow2Layer, validateLayerHeader, walkChain, type BackingPolicy } from '../../src/qcow2/index.js';
import { encodeQcow2Header, stringExtension, type HeaderSpec } from '../fixtures/qcow2-craft.js';

const TOP = 'vm-100-disk-0.qcow2';
const SNAP = 'snap-s1-vm-100-disk-0.qcow2';
const volume: BackingPolicy = { isExpectedLayerName: (ref) => ref === SNAP };
const base: BackingPolicy = { base: true, isExpectedLayerName: () => false };

let dir = '';
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'volchain-header-validator-'));
  // The parent every well-formed case names: a header without backing.
  await writeFile(join(dir, SNAP), header({}));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

function header(spec: HeaderSpec): Buffer {
  return encodeQcow2Header({ clusterBits: 9, totalBytes: 512, ...spec });
}

function backed(backingFile: string, format: string | null = 'qcow2', spec: HeaderSpec = {}): Buffer {
  return header({ ...spec, backingFile, extensions: format === null ? [] : [stringExtension(EXT_BACKING_FORMAT, format)] });
}

/** What a call threw, as class name and message; 'accepted' when it did not throw. */
async function outcome(call: () => Promise<unknown>): Promise<string> {
  try {
    await call();
    return 'accepted';
  } catch (err) {
    return `${(err as Error).constructor.name}: ${(err as Error).message}`;
  }
}

const hostile: { description: string; bytes: () => Buffer; policy?: BackingPolicy; message: RegExp }[] = [
  { description: 'an absolute backing path', bytes: () => backed('/etc/shadow'), message: /absolute path/ },
  { description: "another VM's disk by relative path", bytes: () => backed('../101/vm-101-disk-0.qcow2'), message: /contains '\/'/ },
  { description: "another VM's disk by bare name", bytes: () => backed('vm-101-disk-0.qcow2'), message: /not an expected layer name/ },
  { description: 'a json: pseudo-protocol', bytes: () => backed('json:{"file":{"filename":"/etc/shadow"}}'), message: /json: pseudo-protocol/ },
  { description: 'an nbd: URL', bytes: () => backed('nbd:localhost:10809'), message: /protocol prefix/ },
  { description: 'no backing format', bytes: () => backed(SNAP, null), message: /no backing format/ },
  { description: 'a raw backing format', bytes: () => backed(SNAP, 'raw'), message: /backing format is "raw"/ },
  { description: 'version 2', bytes: () => header({ version: 2 }), message: /version 2 \(compat=0\.10\) is not accepted/ },
  {
    description: 'an unknown incompatible feature',
    bytes: () => header({ incompatibleFeatures: 1n << 20n }),
    message: /unknown incompatible features: bit 20/,
  },
  { description: 'the external data file bit', bytes: () => header({ incompatibleFeatures: INCOMPAT_DATA_FILE }), message: /external data file/ },
  {
    description: 'an external data file extension',
    bytes: () => header({ extensions: [stringExtension(EXT_DATA_FILE, '/dev/sda')] }),
    message: /external data file.*"\/dev\/sda"/,
  },
  { description: 'LUKS encryption', bytes: () => header({ cryptMethod: 2 }), message: /encrypted \(LUKS\)/ },
  {
    description: 'a base volume with a backing file of its own',
    bytes: () => backed(SNAP),
    policy: base,
    message: /is a base volume with a backing file of its own/,
  },
];

describe('walkChain and readQcow2Layer refuse the same hostile headers through one validator', () => {
  for (const [index, c] of hostile.entries()) {
    it(`both refuse ${c.description}, with the same error`, async () => {
      const path = join(dir, `case-${index}`);
      await writeFile(path, c.bytes());
      const policy = c.policy ?? volume;
      const walked = await outcome(() => walkChain(path, TOP, policy));
      const read = await outcome(() => readQcow2Layer(path, TOP, { allocation: true, policy }));
      assert.match(walked, /^UnsafeImageError: /);
      assert.match(walked, c.message);
      assert.equal(read, walked);
      // And the validator itself, on the parsed header, says exactly the same.
      const direct = await outcome(async () => validateLayerHeader(TOP, await readQcow2Header(path, TOP), policy));
      assert.equal(direct, walked);
    });
  }

  it('both accept a well-formed layer backed by an expected snapshot layer, and a base without backing', async () => {
    const path = join(dir, 'good');
    await writeFile(path, backed(SNAP));
    assert.equal((await walkChain(path, TOP, volume)).length, 2);
    assert.equal((await readQcow2Layer(path, TOP, { policy: volume })).header.backingFile, SNAP);
    assert.equal((await walkChain(join(dir, SNAP), 'base-100-disk-0.qcow2', base)).length, 1);
    await assert.doesNotReject(readQcow2Layer(join(dir, SNAP), 'base-100-disk-0.qcow2', { policy: base }));
  });

  it('the base rule comes before every other rule, so a base is refused for its backing file whatever else is wrong', async () => {
    const path = join(dir, 'base-bad');
    await writeFile(path, backed('/etc/shadow', 'raw', { cryptMethod: 2 }));
    await assert.rejects(
      walkChain(path, TOP, base),
      (err: unknown) => err instanceof UnsafeImageError && err.message.includes('base volume with a backing file'),
    );
  });
});
