/**
 * blockdev.ts is pure: table cases for node names and for the definitions of a chain, plus properties
 * (names always valid for QEMU, deterministic, distinct).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { InvalidInputError } from '../../src/errors.js';
import {
  NODE_NAME_MAX,
  blockdevArgv,
  chainBlockdevs,
  isValidNodeName,
  layerNodeNames,
  nodeOwner,
  overlayBlockdevs,
  protocolDriver,
  reportedPath,
  type BlockdevOptionsQcow2,
  type ChainLayerSpec,
} from '../../src/qmp/index.js';

const dir = (name: string, readOnly?: boolean): ChainLayerSpec => ({
  name,
  path: `/var/lib/vz/images/100/${name}`,
  format: 'qcow2',
  ...(readOnly === undefined ? {} : { readOnly }),
});

describe('node names', () => {
  it('are fmt-/file- plus 20 hex digits of a hash of (storage, layer): 24 and 25 characters', () => {
    const n = layerNodeNames('local', 'vm-100-disk-0.qcow2');
    assert.match(n.format, /^fmt-[0-9a-f]{20}$/);
    assert.match(n.protocol, /^file-[0-9a-f]{20}$/);
    assert.equal(n.format.slice(4), n.protocol.slice(5), 'both nodes of a layer share the hash');
  });

  it('are pinned: the same in every process and release (attach-info relies on it)', () => {
    // If this changes, running VMs started by an older volchain can no longer be mapped by name.
    assert.deepEqual(layerNodeNames('local', 'a.qcow2'), { format: 'fmt-a648618b14e9688b4ced', protocol: 'file-a648618b14e9688b4ced' });
  });

  const distinct: { description: string; a: [string, string]; b: [string, string] }[] = [
    { description: 'same layer name on two storages', a: ['local', 'vm-100-disk-0.qcow2'], b: ['nfs', 'vm-100-disk-0.qcow2'] },
    { description: 'a volume and its snapshot layer', a: ['local', 'vm-100-disk-0.qcow2'], b: ['local', 'snap-s1-vm-100-disk-0.qcow2'] },
    { description: 'disk-1 and disk-11 (the seed bug)', a: ['local', 'vm-100-disk-1.qcow2'], b: ['local', 'vm-100-disk-11.qcow2'] },
    { description: 'no ambiguity from joining storage and layer', a: ['ab', 'c'], b: ['a', 'bc'] },
  ];
  for (const c of distinct) {
    it(`differ for ${c.description}`, () => {
      assert.notEqual(layerNodeNames(...c.a).format, layerNodeNames(...c.b).format);
    });
  }

  it('are always valid QEMU node names (property)', () => {
    fc.assert(
      fc.property(fc.string({ minLength: 1, maxLength: 60 }), fc.string({ minLength: 1, maxLength: 200 }), (storage, layer) => {
        const n = layerNodeNames(storage, layer);
        return isValidNodeName(n.format) && isValidNodeName(n.protocol) && n.protocol.length <= NODE_NAME_MAX;
      }),
    );
  });

  it('map back to their (storage, layer) among candidates', () => {
    const candidates = [
      { storage: 'local', layer: 'vm-100-disk-0.qcow2', volid: 'local:100/vm-100-disk-0.qcow2' },
      { storage: 'local', layer: 'snap-a-vm-100-disk-0.qcow2', volid: 'local:100/vm-100-disk-0.qcow2' },
    ];
    const names = layerNodeNames('local', 'snap-a-vm-100-disk-0.qcow2');
    assert.deepEqual(nodeOwner(names.format, candidates), { ...candidates[1], role: 'format' });
    assert.deepEqual(nodeOwner(names.protocol, candidates), { ...candidates[1], role: 'protocol' });
    assert.equal(nodeOwner('drive-scsi0', candidates), undefined);
  });

  it('are refused for an empty storage or layer', () => {
    assert.throws(() => layerNodeNames('', 'x'), InvalidInputError);
    assert.throws(() => layerNodeNames('local', ''), InvalidInputError);
  });

  const validity: [string, boolean][] = [
    ['fmt-0123456789abcdef0123', true],
    ['a', true],
    ['a'.repeat(31), true],
    ['a'.repeat(32), false],
    ['0abc', false],
    ['has space', false],
    ['', false],
  ];
  for (const [name, ok] of validity) {
    it(`isValidNodeName(${JSON.stringify(name.length > 20 ? `${name.slice(0, 8)}…(${name.length})` : name)}) is ${String(ok)}`, () => {
      assert.equal(isValidNodeName(name), ok);
    });
  }
});

describe('chain definitions', () => {
  const top = 'vm-100-disk-0.qcow2';
  const mid = 'snap-b-vm-100-disk-0.qcow2';
  const base = 'snap-a-vm-100-disk-0.qcow2';

  it('define every layer bottom-up, protocol before format, with explicit backing links and null at the base', () => {
    const c = chainBlockdevs('local', [dir(top), dir(mid), dir(base)]);
    const n = (l: string) => layerNodeNames('local', l);
    assert.deepEqual(
      c.nodes.map((x) => x['node-name']),
      [n(base).protocol, n(base).format, n(mid).protocol, n(mid).format, n(top).protocol, n(top).format],
    );
    const fmt = c.nodes.filter((x): x is BlockdevOptionsQcow2 => x.driver === 'qcow2');
    assert.deepEqual(
      fmt.map((x) => [x['node-name'], x.backing, x.file, x['read-only']]),
      [
        [n(base).format, null, n(base).protocol, true],
        [n(mid).format, n(base).format, n(mid).protocol, true],
        [n(top).format, n(mid).format, n(top).protocol, false],
      ],
    );
    assert.equal(c.top, n(top).format);
    assert.deepEqual(c.byLayer.get(mid), n(mid));
  });

  it('gives protocol nodes the path, read-write (never auto-read-only: no reopen by name) and discard; format nodes discard and detect-zeroes unmap', () => {
    const c = chainBlockdevs('local', [dir(top)]);
    assert.deepEqual(c.nodes, [
      {
        driver: 'file',
        'node-name': layerNodeNames('local', top).protocol,
        filename: `/var/lib/vz/images/100/${top}`,
        'read-only': false,
        discard: 'unmap',
      },
      {
        driver: 'qcow2',
        'node-name': layerNodeNames('local', top).format,
        'read-only': false,
        discard: 'unmap',
        'detect-zeroes': 'unmap',
        file: layerNodeNames('local', top).protocol,
        backing: null,
      },
    ]);
  });

  it('uses host_device for LVs under /dev', () => {
    const c = chainBlockdevs('san', [
      { name: 'vm-100-disk-0.qcow2', path: '/dev/vg_san/vm-100-disk-0.qcow2', format: 'qcow2' },
      { name: 'snap_vm-100-disk-0_a.qcow2', path: '/dev/vg_san/snap_vm-100-disk-0_a.qcow2', format: 'qcow2' },
    ]);
    assert.deepEqual(
      c.nodes.filter((x) => x.driver !== 'qcow2').map((x) => x.driver),
      ['host_device', 'host_device'],
    );
    assert.equal(protocolDriver('/var/lib/vz/images/1/x.qcow2'), 'file');
    assert.equal(protocolDriver('/dev/mapper/x'), 'host_device');
  });

  it('honours explicit read-only flags (a top opened read-only, a base reopened writable)', () => {
    const c = chainBlockdevs('local', [dir(top, true), dir(base, false)]);
    assert.deepEqual(
      c.nodes.filter((x) => x.driver === 'qcow2').map((x) => x['read-only']),
      [false, true],
    );
  });

  it('opens a raw base with the raw driver (no backing option)', () => {
    const c = chainBlockdevs('local', [dir(top), { name: 'base.raw', path: '/img/base.raw', format: 'raw' }]);
    const raw = c.nodes.find((x) => x.driver === 'raw');
    assert.ok(raw);
    assert.equal('backing' in raw, false);
  });

  it('refuses a raw layer above another layer, duplicate layers, relative paths and an empty chain', () => {
    assert.throws(() => chainBlockdevs('local', [{ name: 'x.raw', path: '/x.raw', format: 'raw' }, dir(base)]), /only a chain's base can be raw/);
    assert.throws(() => chainBlockdevs('local', [dir(top), dir(top)]), /appears twice/);
    assert.throws(() => chainBlockdevs('local', [{ name: 'x', path: 'images/x', format: 'qcow2' }]), /not absolute/);
    assert.throws(() => chainBlockdevs('local', []), InvalidInputError);
  });

  it('falls back to detect-zeroes on when discard is ignore (QEMU refuses unmap without discard unmap)', () => {
    const c = chainBlockdevs('local', [dir(top)], { discard: 'ignore' });
    const fmt = c.nodes[1];
    assert.ok(fmt);
    assert.equal(fmt['detect-zeroes'], 'on');
    assert.equal(fmt.discard, 'ignore');
  });

  it('sets cache.direct on every node when asked', () => {
    const c = chainBlockdevs('local', [dir(top)], { cacheDirect: true });
    assert.ok(c.nodes.every((x) => x.cache?.direct === true));
  });

  it('renders -blockdev pairs of compact JSON (commas in paths need no escaping)', () => {
    const c = chainBlockdevs('local', [{ name: 'a,b.qcow2', path: '/x/a,b.qcow2', format: 'qcow2' }]);
    const argv = blockdevArgv(c.nodes);
    assert.equal(argv.length, 4);
    assert.equal(argv[0], '-blockdev');
    assert.deepEqual(JSON.parse(argv[1] ?? ''), c.nodes[0]);
    assert.match(argv[1] ?? '', /"filename":"\/x\/a,b.qcow2"/);
  });

  it('defines a live-snapshot overlay read-write with backing null', () => {
    const o = overlayBlockdevs('local', { name: '.volchain-tmp-snap-vm-100-disk-0.qcow2', path: '/i/.volchain-tmp-snap-vm-100-disk-0.qcow2' });
    const [proto, fmt] = o.nodes;
    assert.equal(proto.driver, 'file');
    assert.equal(fmt.backing, null);
    assert.equal(fmt['read-only'], false);
    assert.equal(fmt.file, o.names.protocol);
  });
});

describe('reportedPath', () => {
  // The json: strings are the form QEMU 7.2 printed for nodes blockdev.ts defined (qmp-live.test.ts).
  const cases: [string, string, string | undefined][] = [
    ['a plain path stays as it is', '/i/100/vm-100-disk-0.qcow2', '/i/100/vm-100-disk-0.qcow2'],
    [
      "a format node with an explicit backing: the file child's filename",
      'json:{"backing": {"driver": "qcow2", "file": {"driver": "file", "filename": "/i/base.qcow2"}}, "driver": "qcow2", "file": {"driver": "file", "filename": "/i/top.qcow2"}}',
      '/i/top.qcow2',
    ],
    ['an LV', 'json:{"driver": "qcow2", "file": {"driver": "host_device", "filename": "/dev/vg/lv"}}', '/dev/vg/lv'],
    ['no file at all', 'json:{"driver": "null-co", "size": 1048576}', undefined],
    ['not JSON', 'json:{oops', undefined],
    ['empty', '', undefined],
  ];
  for (const [description, input, expected] of cases) {
    it(description, () => {
      assert.equal(reportedPath(input), expected);
    });
  }
});
