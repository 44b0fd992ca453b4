/**
 * Linked clones in live operations (engine/live/clone.ts, engine/planners/live.ts, qmp/blockdev.ts): the base volume at the
 * bottom of QEMU's chain is recognised and checked, opened read-only down to its file, and a live delete of
 * the clone's oldest snapshot streams onto the base node (never commits into the base).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { cloneBaseSpec, splitCloneBase } from '../../src/engine/live/clone.js';
import { planLiveSnapshotDelete, type LiveDisk } from '../../src/engine/planners/live.js';
import { offlineEquivalent } from '../../src/engine/plan/live-steps.js';
import type { LiveStep } from '../../src/model/plan.js';
import type { PlanContext } from '../../src/engine/planners/rules.js';
import type { VolumeTree } from '../../src/engine/read/volume-tree.js';
import { volumeTree } from '../fixtures/volume-tree.js';
import { NotFoundError } from '../../src/errors.js';
import { chainBlockdevs } from '../../src/qmp/blockdev.js';
import type { QemuChain, QemuLayer } from '../../src/qmp/live-view.js';

const VOL = 'vm-102-disk-0.qcow2';
const S0 = `snap-s0-${VOL}`;
const ctx: PlanContext = { kind: 'dir', volumeChain: true, fixedSizeLayers: false };
const GiB = 1 << 30;

/** Clone 102 of template 101: current -> s0 -> base (`format`), s0 holding `s0Bytes`, the current layer more. */
function cloneTree(format: 'qcow2' | 'raw' = 'qcow2', s0Bytes = 1 << 20): VolumeTree {
  const bytes = { s0: s0Bytes, current: 64 << 20 };
  return volumeTree({ s0: null }, 's0', { base: format, defined: bytes, used: bytes });
}

function liveDisk(opts: { streamSafe: boolean; baseNode?: string }): LiveDisk {
  return {
    storage: 'local',
    socket: '/run/qmp.sock',
    guestRunning: true,
    streamSafe: opts.streamSafe,
    nodes: new Map([
      [VOL, { node: 'fmt-top', protocolNode: 'file-top' }],
      [S0, { node: 'fmt-s0', protocolNode: 'file-s0' }],
    ]),
    ...(opts.baseNode !== undefined ? { baseNode: opts.baseNode } : {}),
  };
}

const qemuLayer = (node: string, path: string, o: Partial<QemuLayer> = {}): QemuLayer => ({
  node,
  protocolNode: undefined,
  protocolDriver: 'file',
  driver: 'qcow2',
  path,
  readOnly: true,
  virtualSize: GiB,
  actualSize: undefined,
  ...o,
});

describe("live delete of a clone's oldest snapshot", () => {
  for (const format of ['qcow2', 'raw'] as const) {
    it(`streams s0 into its child onto the ${format} base node, with the base's reference and format`, () => {
      const plan = planLiveSnapshotDelete(cloneTree(format), ctx, 's0', liveDisk({ streamSafe: true, baseNode: '#block7' }));
      const stream = plan.steps.find((s): s is Extract<LiveStep, { kind: 'qmp-stream' }> => s.kind === 'qmp-stream');
      assert.deepEqual(
        [stream?.layer, stream?.from, stream?.onto, stream?.ontoFormat, stream?.baseNode],
        [VOL, S0, `../101/base-101-disk-0.${format}`, format, '#block7'],
      );
      // Without QEMU (repair), the same state on disk: an offline rebase onto the base, format included.
      assert.deepEqual(offlineEquivalent(stream as LiveStep), {
        kind: 'rebase',
        layer: VOL,
        from: S0,
        onto: `../101/base-101-disk-0.${format}`,
        bytes: 1 << 20,
        ontoFormat: format,
      });
      assert.ok(
        plan.steps.every((s) => s.kind !== 'qmp-commit' && s.kind !== 'commit'),
        'nothing is committed',
      );
    });
  }

  it('refuses a stream onto the base when QEMU shows no base node (it would copy the base into the clone)', () => {
    assert.throws(() => planLiveSnapshotDelete(cloneTree(), ctx, 's0', liveDisk({ streamSafe: true })), NotFoundError);
  });

  it('commits the child into s0 where streams are unsafe: the base is never a commit target', () => {
    const plan = planLiveSnapshotDelete(cloneTree(), ctx, 's0', liveDisk({ streamSafe: false, baseNode: '#block7' }));
    const commit = plan.steps.find((s): s is Extract<LiveStep, { kind: 'qmp-commit' }> => s.kind === 'qmp-commit');
    assert.deepEqual([commit?.top, commit?.base, commit?.baseNode], [VOL, S0, 'fmt-s0']);
    assert.ok(!JSON.stringify(plan.steps).includes('base-101'), 'no step names the base');
  });
});

describe("the base at the bottom of QEMU's chain", () => {
  const tree = cloneTree();
  const own = [qemuLayer('f-top', '/s/images/102/vm-102-disk-0.qcow2', { readOnly: false }), qemuLayer('f-s0', `/s/images/102/${S0}`)];
  const chain = (base: QemuLayer | undefined): QemuChain => ({ layers: base ? [...own, base] : own, devices: ['scsi0'], filters: [] });

  it('is split off and accepted as PVE opens it (from the header, through `<vmid>/../`)', () => {
    const r = splitCloneBase(tree, chain(qemuLayer('#block12', '/s/images/102/../101/base-101-disk-0.qcow2')));
    assert.deepEqual(r.problems, []);
    assert.deepEqual(
      r.chain.layers.map((l) => l.node),
      ['f-top', 'f-s0'],
    );
    assert.deepEqual([r.base?.volid, r.base?.ref, r.base?.qemu.node], ['local:101/base-101-disk-0.qcow2', '../101/base-101-disk-0.qcow2', '#block12']);
  });

  it('is a problem when writable, of another format or size, or missing', () => {
    const path = '/s/images/101/base-101-disk-0.qcow2';
    assert.match(splitCloneBase(tree, chain(qemuLayer('b', path, { readOnly: false }))).problems.join(), /writable/);
    assert.match(splitCloneBase(tree, chain(qemuLayer('b', path, { driver: 'raw' }))).problems.join(), /as raw, it is qcow2/);
    assert.match(splitCloneBase(tree, chain(qemuLayer('b', path, { virtualSize: 1 }))).problems.join(), /sees 1 bytes/);
    const missing = splitCloneBase(tree, chain(undefined));
    assert.match(missing.problems.join(), /does not end in its base volume/);
    assert.equal(missing.base, undefined);
  });

  it("is opened read-only down to its file, below the clone's bottom layer", () => {
    const spec = cloneBaseSpec(tree);
    assert.ok(spec);
    const built = chainBlockdevs('local', [{ name: VOL, path: `/s/images/102/${VOL}`, format: 'qcow2' }, spec]);
    const names = built.byLayer.get(spec.name);
    const base = built.nodes.filter((n) => n['node-name'] === names?.format || n['node-name'] === names?.protocol);
    assert.deepEqual(
      base.map((n) => [n.driver, n['read-only']]),
      [
        ['file', true],
        ['qcow2', true],
      ],
    );
    const top = built.nodes.find((n) => n['node-name'] === built.top) as { backing?: unknown; 'read-only'?: boolean };
    assert.deepEqual([top.backing, top['read-only']], [names?.format, false]);
    assert.equal(cloneBaseSpec({ base: undefined }), undefined);
  });
});
