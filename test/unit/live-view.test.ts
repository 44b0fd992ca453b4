/**
 * QEMU's block graph as chains (live-view.ts) and its match against the chains on disk (engine/live/match.ts), from
 * query results shaped exactly as QEMU 7.2 reports them (json: filenames for nodes with an explicit backing,
 * backing_file = the backing node's own filename).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Backend } from '../../src/backends/backend.js';
import { matchVm, type DiskInput } from '../../src/engine/live/match.js';
import type { LayerNode, VolumeTree } from '../../src/engine/read/volume-tree.js';
import { buildBlockView, type BlockDeviceInfo, type BlockInfo } from '../../src/qmp/index.js';
import { blockNodeInfo } from '../fixtures/qmp-nodes.js';

const DIR = '/s/images/100';
const VOL = 'vm-100-disk-0.qcow2';
const snapLayer = (s: string, vol = VOL): string => `snap-${s}-${vol}`;
const SIZE = 1 << 30;

interface QLayer {
  /** Node suffix: nodes are fmt-<id> and file-<id>. */
  id: string;
  /** The path QEMU opened. */
  path: string;
  ro?: boolean;
  size?: number;
  actual?: number;
}

const info = blockNodeInfo;

/** The nodes QEMU reports for a chain opened with explicit backing links, top first. */
function chainNodes(layers: readonly QLayer[]): BlockDeviceInfo[] {
  const options = (i: number): Record<string, unknown> => {
    const l = layers[i] as QLayer;
    const file = { driver: 'file', filename: l.path };
    return i === layers.length - 1 ? { driver: 'qcow2', file } : { backing: options(i + 1), driver: 'qcow2', file };
  };
  const fileOf = (i: number): string => (i === layers.length - 1 ? (layers[i] as QLayer).path : `json:${JSON.stringify(options(i))}`);
  return layers.flatMap((l, i) => [
    info(`fmt-${l.id}`, 'qcow2', fileOf(i), l.ro ?? i > 0, l.size ?? SIZE, l.actual ?? 1000 + i, i < layers.length - 1 ? fileOf(i + 1) : undefined),
    info(`file-${l.id}`, 'file', l.path, false, l.size ?? SIZE, l.actual ?? 1000 + i),
  ]);
}

const device = (qdev: string, node: string): BlockInfo => ({
  device: '',
  qdev,
  type: 'unknown',
  removable: false,
  locked: false,
  inserted: info(node, 'qcow2', '', false, SIZE, 0),
});

describe('buildBlockView', () => {
  it('follows backing links top-down and pairs format and protocol nodes', () => {
    const nodes = chainNodes([
      { id: 'top', path: `${DIR}/${VOL}` },
      { id: 'mid', path: `${DIR}/${snapLayer('sb')}` },
      { id: 'base', path: `${DIR}/${snapLayer('sa')}` },
    ]);
    const view = buildBlockView(nodes, [device('disk0', 'fmt-top')]);
    assert.equal(view.chains.length, 1);
    const [chain] = view.chains;
    assert.deepEqual(
      chain?.layers.map((l) => [l.node, l.protocolNode, l.protocolDriver, l.path, l.readOnly]),
      [
        ['fmt-top', 'file-top', 'file', `${DIR}/${VOL}`, false],
        ['fmt-mid', 'file-mid', 'file', `${DIR}/${snapLayer('sb')}`, true],
        ['fmt-base', 'file-base', 'file', `${DIR}/${snapLayer('sa')}`, true],
      ],
    );
    assert.deepEqual(chain?.devices, ['disk0']);
    assert.equal(chain?.broken, undefined);
  });

  it('after an active commit, before blockdev-del: the device chain starts at the base, the old top dangles above it', () => {
    const nodes = chainNodes([
      { id: 'top', path: `${DIR}/${VOL}` },
      { id: 'base', path: `${DIR}/${snapLayer('sa')}`, ro: false },
    ]);
    const view = buildBlockView(nodes, [device('disk0', 'fmt-base')]);
    const withDevice = view.chains.find((c) => c.devices.length > 0);
    assert.deepEqual(
      withDevice?.layers.map((l) => l.node),
      ['fmt-base'],
    );
    assert.deepEqual(
      view.chains.find((c) => c.devices.length === 0)?.layers.map((l) => l.node),
      ['fmt-top', 'fmt-base'],
    );
  });

  it('reports an ambiguous backing link instead of guessing', () => {
    const a = chainNodes([
      { id: 'x', path: `${DIR}/${VOL}` },
      { id: 'y', path: `${DIR}/${snapLayer('sa')}` },
    ]);
    const twin = info('fmt-twin', 'qcow2', `${DIR}/${snapLayer('sa')}`, true, SIZE, 1);
    const view = buildBlockView([...a, twin], []);
    const top = view.chains.find((c) => c.layers[0]?.node === 'fmt-x');
    assert.match(top?.broken ?? '', /could be any of fmt-y, fmt-twin/);
  });

  it('reports a backing that is no named node', () => {
    const nodes = chainNodes([
      { id: 'x', path: `${DIR}/${VOL}` },
      { id: 'y', path: `${DIR}/${snapLayer('sa')}` },
    ]).filter((n) => n['node-name'] !== 'fmt-y');
    const view = buildBlockView(nodes, []);
    assert.match(view.chains[0]?.broken ?? '', /is no named node/);
  });

  it('lists devices whose medium is no layer node (a filter) as stray', () => {
    const nodes = [...chainNodes([{ id: 'x', path: `${DIR}/${VOL}` }]), info('throttle0', 'throttle', 'json:{}', false, SIZE, 0)];
    const view = buildBlockView(nodes, [device('disk0', 'throttle0')]);
    assert.deepEqual(view.strayDevices, [{ device: 'disk0', node: 'throttle0' }]);
  });
});

// ---- matching -------------------------------------------------------------------------------------------------

const backend = { id: 'local', kind: 'dir', layerPath: (vmid: number, name: string) => `/s/images/${vmid}/${name}` } as unknown as Backend;

/** A volume whose current chain is VOL over the snapshots given (newest first), with used bytes per layer. */
function disk(vol: string, snaps: readonly string[], used: Record<string, number> = {}): DiskInput {
  const names = [vol, ...snaps.map((s) => snapLayer(s, vol))];
  const layers = new Map<string, LayerNode>();
  names.forEach((name, i) => {
    layers.set(name, {
      name,
      snapshot: i === 0 ? undefined : snaps[i - 1],
      parent: names[i + 1],
      children: i === 0 ? [] : [names[i - 1] as string],
      path: `${DIR}/${name}`,
      virtualSize: SIZE,
      definedBytes: 0,
      usedBytes: used[name] ?? 1000 + i,
      header: undefined,
    });
  });
  const tree: VolumeTree = {
    volume: { storage: 'local', kind: 'dir', vmid: 100, name: vol, format: 'qcow2', volname: `100/${vol}` },
    volid: `local:100/${vol}`,
    current: vol,
    layers,
    leftovers: [],
  };
  return { backend, volume: tree.volume, tree };
}

describe('matchVm', () => {
  it('maps nodes to layers by position, whatever path a node was opened with (a live snapshot renamed the old top)', () => {
    // Disk: VOL -> snap-b -> snap-a. QEMU opened the old top as VOL (now snap-b), the new top as VOL too.
    const nodes = chainNodes([
      { id: 'new', path: `${DIR}/${VOL}` },
      { id: 'old', path: `${DIR}/${VOL}` },
      { id: 'a', path: `${DIR}/${snapLayer('sa')}` },
    ]);
    const m = matchVm(buildBlockView(nodes, [device('disk0', 'fmt-new')]), [disk(VOL, ['sb', 'sa'])]);
    const [d] = m.disks;
    assert.deepEqual(d?.problems, []);
    assert.deepEqual(
      d?.layers.map((l) => [l.layer, l.snapshot, l.qemu.node]),
      [
        [VOL, undefined, 'fmt-new'],
        [snapLayer('sb'), 'sb', 'fmt-old'],
        [snapLayer('sa'), 'sa', 'fmt-a'],
      ],
    );
    assert.deepEqual(m.unmatched, []);
  });

  const disagreements: { description: string; qemu: QLayer[]; snaps: string[]; used?: Record<string, number>; problem: RegExp }[] = [
    {
      description: 'a chain changed without QEMU (offline snapshot of a running VM)',
      qemu: [{ id: 't', path: `${DIR}/${VOL}` }],
      snaps: ['sa'],
      problem: /has 1 layer\(s\) but the headers on disk chain 2/,
    },
    { description: 'a read-only top', qemu: [{ id: 't', path: `${DIR}/${VOL}`, ro: true }], snaps: [], problem: /current layer .* read-only/ },
    {
      description: 'a writable snapshot layer',
      qemu: [
        { id: 't', path: `${DIR}/${VOL}` },
        { id: 'a', path: `${DIR}/${snapLayer('sa')}`, ro: false },
      ],
      snaps: ['sa'],
      problem: /snapshot layer .* writable/,
    },
    { description: 'another virtual size', qemu: [{ id: 't', path: `${DIR}/${VOL}`, size: 1 << 20 }], snaps: [], problem: /QEMU sees 1048576 bytes/ },
    {
      description: 'a snapshot layer replaced under QEMU (another file behind the name)',
      qemu: [
        { id: 't', path: `${DIR}/${VOL}` },
        { id: 'a', path: `${DIR}/${snapLayer('sa')}`, actual: 4096 },
      ],
      snaps: ['sa'],
      problem: /not the same file/,
    },
  ];
  for (const c of disagreements) {
    it(`reports ${c.description}`, () => {
      const m = matchVm(buildBlockView(chainNodes(c.qemu), [device('disk0', 'fmt-t')]), [disk(VOL, c.snaps, c.used)]);
      assert.ok(
        m.disks[0]?.problems.some((p) => c.problem.test(p)),
        m.disks[0]?.problems.join('; ') || '(no problem reported)',
      );
    });
  }

  it('a volume QEMU does not have open: no chain, no problem', () => {
    const nodes = chainNodes([{ id: 't', path: `${DIR}/${VOL}` }]);
    const other = 'vm-100-disk-1.qcow2';
    const m = matchVm(buildBlockView(nodes, [device('disk0', 'fmt-t')]), [disk(VOL, []), disk(other, [])]);
    const d1 = m.disks.find((d) => d.volume.name === other);
    assert.equal(d1?.chain, undefined);
    assert.deepEqual(d1?.problems, []);
  });

  it('keeps leftover nodes of a volume apart from its chain (detached)', () => {
    const nodes = [
      ...chainNodes([
        { id: 't', path: `${DIR}/${VOL}` },
        { id: 'a', path: `${DIR}/${snapLayer('sa')}` },
      ]),
      ...chainNodes([{ id: 'stray', path: `${DIR}/.volchain-tmp-create-${VOL}` }]),
    ];
    const m = matchVm(buildBlockView(nodes, [device('disk0', 'fmt-t')]), [disk(VOL, ['sa'])]);
    assert.deepEqual(m.disks[0]?.problems, []);
    assert.deepEqual(
      m.disks[0]?.detached.map((c) => c.layers.map((l) => l.node)),
      [['fmt-stray']],
    );
  });

  it("sets apart a chain that mixes this VM's layers with other files", () => {
    const nodes = chainNodes([
      { id: 't', path: `${DIR}/${VOL}` },
      { id: 'x', path: '/elsewhere/base.qcow2' },
    ]);
    const m = matchVm(buildBlockView(nodes, [device('disk0', 'fmt-t')]), [disk(VOL, [])]);
    assert.equal(m.disks[0]?.chain, undefined);
    assert.match(m.unmatched[0]?.reason ?? '', /mixes/);
  });

  it('ignores chains of files that belong to none of the volumes', () => {
    const nodes = chainNodes([{ id: 'x', path: '/elsewhere/cdrom.qcow2' }]);
    const m = matchVm(buildBlockView(nodes, []), [disk(VOL, [])]);
    assert.deepEqual(m.unmatched, []);
    assert.equal(m.disks[0]?.chain, undefined);
  });
});
