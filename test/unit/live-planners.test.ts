/**
 * The live planners, live step semantics (undo, offline equivalents) and the stream-safety rule: pure, table
 * cases over hand-made trees and QEMU node maps.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { planLiveSnapshotCreate, planLiveSnapshotDelete, liveTopNodeNames, type LiveDisk } from '../../src/engine/planners/live.js';
import { isLiveStep, liveDamagesWhenInterrupted, liveUndoOf, offlineEquivalent } from '../../src/engine/plan/live-steps.js';
import type { LiveStep } from '../../src/model/plan.js';
import { streamSafe } from '../../src/engine/live/live-state.js';
import { describeStep } from '../../src/engine/plan/describe-step.js';
import type { Step } from '../../src/model/plan.js';
import { planSnapshotDelete } from '../../src/engine/planners/snapshot-delete.js';
import { type PlanContext } from '../../src/engine/planners/rules.js';
import type { VolumeTree } from '../../src/engine/read/volume-tree.js';
import { volumeTree } from '../fixtures/volume-tree.js';
import { NotSupportedError } from '../../src/errors.js';
import { pveLayerNodeNames } from '../../src/qmp/pve-names.js';

const VOL = 'vm-100-disk-0.qcow2';
const ctx: PlanContext = { kind: 'dir', volumeChain: true };
const snapLayer = (s: string): string => `snap-${s}-${VOL}`;

const tree = (parents: Record<string, string | null>, currentParent: string | null, defined: Record<string, number> = {}): VolumeTree =>
  volumeTree(parents, currentParent, { defined });

/** QEMU has the current chain open: current, then the given snapshots' layers, top first. */
function disk(chain: string[], opts: { streamSafe?: boolean; running?: boolean; pveDrive?: string } = {}): LiveDisk {
  const names = [VOL, ...chain.map(snapLayer)];
  return {
    ...(opts.pveDrive !== undefined ? { pveDrive: opts.pveDrive, rootFilter: `drive-${opts.pveDrive}` } : {}),
    storage: 'local',
    socket: '/run/qmp.sock',
    guestRunning: opts.running ?? true,
    streamSafe: opts.streamSafe ?? false,
    nodes: new Map(names.map((n, i) => [n, { node: `fmt-${i}`, protocolNode: `file-${i}` }])),
  };
}

const kinds = (steps: readonly Step[]): string[] => steps.map((s) => s.kind);

describe('live snapshot create', () => {
  it('renames as offline, then opens the new top in QEMU under its final name and switches onto it', () => {
    const plan = planLiveSnapshotCreate(tree({ sa: null }, 'sa'), ctx, 'sb', disk(['sa']), 'n1');
    assert.deepEqual(kinds(plan.steps), ['create-overlay', 'rename', 'rename', 'qmp-open', 'qmp-snapshot', 'freeze']);
    const [create, renameTop, renameTmp, open, snap] = plan.steps as [Step, Step, Step, LiveStep, LiveStep];
    assert.ok(create.kind === 'create-overlay' && create.backing === snapLayer('sb'));
    assert.ok(renameTop.kind === 'rename' && renameTop.from === VOL && renameTop.to === snapLayer('sb'));
    assert.ok(renameTmp.kind === 'rename' && renameTmp.to === VOL);
    assert.ok(open.kind === 'qmp-open' && open.layer === VOL && open.node === liveTopNodeNames('local', VOL, 'n1').format);
    assert.ok(snap.kind === 'qmp-snapshot' && snap.node === 'fmt-0' && snap.overlay === open.node);
    assert.deepEqual(plan.live, { socket: '/run/qmp.sock' });
  });

  it('gives every new top a node name of its own (the old top keeps its node)', () => {
    const a = liveTopNodeNames('local', VOL, 'n1');
    const b = liveTopNodeNames('local', VOL, 'n2');
    assert.notEqual(a.format, b.format);
    assert.match(a.format, /^fmt-[0-9a-f]{20}$/);
    assert.equal(a.protocol, `file-${a.format.slice(4)}`);
  });

  it('refuses internal snapshots live', () => {
    assert.throws(() => planLiveSnapshotCreate(tree({}, null), { kind: 'dir', volumeChain: false }, 'sb', disk([]), 'n'), NotSupportedError);
  });
});

describe('live snapshot delete', () => {
  it('commits the active layer into the newest snapshot with a pivot while the guest is paused, then renames', () => {
    const t = tree({ a: null, b: 'a' }, 'b', { a: 100, b: 100, current: 10 });
    const plan = planLiveSnapshotDelete(t, ctx, 'b', disk(['b', 'a']));
    assert.deepEqual(kinds(plan.steps), ['grow', 'qmp-commit', 'qmp-pivot', 'qmp-resume', 'qmp-close', 'replace']);
    const commit = plan.steps[1] as LiveStep;
    assert.ok(commit.kind === 'qmp-commit' && commit.active && commit.topNode === 'fmt-0' && commit.baseNode === 'fmt-1' && commit.rootNode === 'fmt-0');
    const close = plan.steps[4] as LiveStep;
    assert.ok(close.kind === 'qmp-close' && close.layer === VOL && close.nodes.join() === 'fmt-0,file-0');
    const replace = plan.steps[5] as Step;
    assert.ok(replace.kind === 'replace' && replace.from === snapLayer('b') && replace.to === VOL);
    assert.equal(plan.bytesMoved, 10);
  });

  it('does not resume a guest that was paused before', () => {
    const plan = planLiveSnapshotDelete(tree({ a: null }, 'a'), ctx, 'a', disk(['a'], { running: false }));
    const pivot = plan.steps.find((s) => s.kind === 'qmp-pivot');
    assert.ok(pivot?.kind === 'qmp-pivot' && !pivot.resume);
    assert.match(describeStep(plan.steps.find((s) => s.kind === 'qmp-resume') as Step), /leave it paused/);
  });

  it('commits a snapshot child into an older snapshot without a pivot, and freezes the merged layer', () => {
    const t = tree({ a: null, b: 'a' }, 'b', { a: 100, b: 5, current: 10 });
    const plan = planLiveSnapshotDelete(t, ctx, 'a', disk(['b', 'a']));
    assert.deepEqual(kinds(plan.steps), ['grow', 'qmp-commit', 'qmp-close', 'replace', 'freeze']);
    const commit = plan.steps[1] as LiveStep;
    assert.ok(commit.kind === 'qmp-commit' && !commit.active && commit.top === snapLayer('b') && commit.rootNode === 'fmt-0');
  });

  it('streams into the child when that moves fewer bytes and block-stream is safe', () => {
    const t = tree({ a: null, b: 'a' }, 'b', { a: 100, b: 5, current: 1000 });
    const plan = planLiveSnapshotDelete(t, ctx, 'b', disk(['b', 'a'], { streamSafe: true }));
    assert.deepEqual(kinds(plan.steps), ['qmp-stream', 'qmp-close', 'remove']);
    const stream = plan.steps[0] as LiveStep;
    assert.ok(stream.kind === 'qmp-stream' && stream.node === 'fmt-0' && stream.onto === snapLayer('a') && stream.baseNode === 'fmt-2');
    assert.equal(plan.bytesMoved, 5);
  });

  it('streams everything when the snapshot has no parent', () => {
    const t = tree({ a: null }, 'a', { a: 5, current: 1000 });
    const stream = planLiveSnapshotDelete(t, ctx, 'a', disk(['a'], { streamSafe: true })).steps[0] as LiveStep;
    assert.ok(stream.kind === 'qmp-stream' && stream.onto === null && stream.baseNode === null);
  });

  it('on a QEMU where block-stream is unsafe: rebases branch children offline, then commits the child on the chain', () => {
    // b has two children: c (a branch QEMU does not have open) and the current layer.
    const t = tree({ a: null, b: 'a', c: 'b' }, 'b', { a: 1, b: 5, c: 1, current: 1000 });
    const offline = planSnapshotDelete(t, ctx, 'b');
    assert.deepEqual(kinds(offline.steps), ['rebase', 'rebase', 'remove'], 'offline, two children: rebases');
    const plan = planLiveSnapshotDelete(t, ctx, 'b', disk(['b', 'a']));
    assert.deepEqual(kinds(plan.steps), ['rebase', 'grow', 'qmp-commit', 'qmp-pivot', 'qmp-resume', 'qmp-close', 'replace']);
    const rebase = plan.steps[0] as Step;
    assert.ok(rebase.kind === 'rebase' && rebase.layer === snapLayer('c') && rebase.onto === snapLayer('a'));
    assert.equal(plan.bytesMoved, 5 + 1000);
    assert.ok(plan.strategies?.some((o) => o.strategy === 'rebase-branches-commit-child' && o.reason.includes('8.2')));
    // With a safe stream, the branch is rebased offline and the chain child streamed.
    const safe = planLiveSnapshotDelete(t, ctx, 'b', disk(['b', 'a'], { streamSafe: true }));
    assert.deepEqual(kinds(safe.steps), ['qmp-stream', 'rebase', 'qmp-close', 'remove']);
  });

  it('plans offline when the snapshot is not on the chain QEMU has open (a branch)', () => {
    // After a rollback to a: b is a branch; current continues from a.
    const t = tree({ a: null, b: 'a' }, 'a', { a: 1, b: 5 });
    const plan = planLiveSnapshotDelete(t, ctx, 'b', disk(['a']));
    assert.ok(plan.steps.every((s) => !isLiveStep(s)));
    assert.equal(plan.live, undefined);
  });
});

describe("on a graph PVE 9 started (throttle node drive-<id> on top): PVE's node names after the operation", () => {
  const volid = `local:100/${VOL}`;
  const renames = (steps: readonly Step[]): Extract<LiveStep, { kind: 'qmp-rename' }>[] =>
    steps.filter((s): s is Extract<LiveStep, { kind: 'qmp-rename' }> => s.kind === 'qmp-rename');

  it("snapshot: the old top is reopened as the snapshot's f/e nodes, and the guest moves onto f/e(current) through an overlay", () => {
    const plan = planLiveSnapshotCreate(tree({ sa: null }, 'sa'), ctx, 'sb', disk(['sa'], { pveDrive: 'scsi0' }), 'n1');
    assert.deepEqual(kinds(plan.steps), [
      'create-overlay',
      'rename',
      'rename',
      'qmp-open',
      'qmp-snapshot',
      'freeze',
      'qmp-rename',
      'create-overlay',
      'qmp-open',
      'qmp-snapshot',
      'qmp-rename',
      'qmp-commit',
      'qmp-pivot',
      'qmp-resume',
      'qmp-close',
      'remove',
    ]);
    const [old, writer] = renames(plan.steps);
    assert.deepEqual([old?.layer, old?.node, old?.to, old?.openedAs], [snapLayer('sb'), 'fmt-0', pveLayerNodeNames('scsi0', volid, 'sb'), undefined]);
    const open = plan.steps[3] as LiveStep;
    assert.ok(open.kind === 'qmp-open');
    assert.deepEqual([writer?.layer, writer?.node, writer?.to], [VOL, open.node, pveLayerNodeNames('scsi0', volid)]);
    const x = plan.steps[7] as Step;
    assert.ok(x.kind === 'create-overlay' && x.backing === VOL && x.layer.startsWith('.volchain-tmp-swap-'));
    const commit = plan.steps[11] as LiveStep;
    assert.ok(
      commit.kind === 'qmp-commit' &&
        commit.active &&
        commit.top === x.layer &&
        commit.base === VOL &&
        commit.baseNode === writer?.to.format &&
        commit.rootNode === 'drive-scsi0',
    );
    const remove = plan.steps[15] as Step;
    assert.ok(remove.kind === 'remove' && remove.layer === x.layer);
  });

  it("delete of an older snapshot: the merged layer is reopened under the child's names, its old name linked meanwhile", () => {
    const t = tree({ a: null, b: 'a' }, 'b', { a: 100, b: 5, current: 10 });
    const plan = planLiveSnapshotDelete(t, ctx, 'a', disk(['b', 'a'], { pveDrive: 'virtio1' }));
    assert.deepEqual(kinds(plan.steps), ['grow', 'qmp-commit', 'qmp-close', 'replace', 'freeze', 'qmp-rename']);
    const [r] = renames(plan.steps);
    assert.deepEqual(
      [r?.layer, r?.node, r?.protocolNode, r?.to, r?.openedAs],
      [snapLayer('b'), 'fmt-2', 'file-2', pveLayerNodeNames('virtio1', volid, 'b'), snapLayer('a')],
    );
  });

  it("delete of the newest: after the active commit, the guest moves off the snapshot's nodes onto f/e(current)", () => {
    const t = tree({ a: null, b: 'a' }, 'b', { a: 100, b: 100, current: 10 });
    const plan = planLiveSnapshotDelete(t, ctx, 'b', disk(['b', 'a'], { pveDrive: 'scsi0' }));
    assert.deepEqual(kinds(plan.steps), [
      'grow',
      'qmp-commit',
      'qmp-pivot',
      'qmp-resume',
      'qmp-close',
      'replace',
      'create-overlay',
      'qmp-open',
      'qmp-snapshot',
      'qmp-rename',
      'qmp-commit',
      'qmp-pivot',
      'qmp-resume',
      'qmp-close',
      'remove',
    ]);
    const [r] = renames(plan.steps);
    assert.deepEqual([r?.layer, r?.node, r?.to, r?.openedAs], [VOL, 'fmt-1', pveLayerNodeNames('scsi0', volid), snapLayer('b')]);
  });

  it("a stream renames nothing (every remaining node keeps its name and file), and a graph without PVE's throttle node gets no renames", () => {
    const t = tree({ a: null, b: 'a' }, 'b', { a: 100, b: 5, current: 1000 });
    assert.deepEqual(renames(planLiveSnapshotDelete(t, ctx, 'b', disk(['b', 'a'], { streamSafe: true, pveDrive: 'scsi0' })).steps), []);
    assert.deepEqual(renames(planLiveSnapshotDelete(t, ctx, 'a', disk(['b', 'a'])).steps), []);
    assert.deepEqual(renames(planLiveSnapshotCreate(t, ctx, 'cc', disk(['b', 'a']), 'n').steps), []);
  });
});

describe('live steps', () => {
  const stream: LiveStep = { kind: 'qmp-stream', layer: VOL, node: 'n', from: 'S', onto: 'P', baseNode: 'p', bytes: 1, jobId: 'j' };
  const active: LiveStep = { kind: 'qmp-commit', top: VOL, topNode: 't', base: 'S', baseNode: 's', rootNode: 't', active: true, bytes: 1, jobId: 'j' };
  const inter: LiveStep = { ...active, top: 'C', active: false };
  const pivot: LiveStep = { kind: 'qmp-pivot', top: VOL, topNode: 't', base: 'S', baseNode: 's', jobId: 'j', resume: true };
  const cases: { step: LiveStep; undo: string; offline: Step | null; damages: boolean }[] = [
    { step: { kind: 'qmp-open', layer: VOL, node: 'f', protocolNode: 'p' }, undo: 'qmp-close', offline: null, damages: false },
    { step: { kind: 'qmp-snapshot', layer: 'S', node: 'a', overlay: 'b' }, undo: 'impossible', offline: null, damages: false },
    { step: stream, undo: 'nothing', offline: { kind: 'rebase', layer: VOL, from: 'S', onto: 'P', bytes: 1 }, damages: false },
    { step: active, undo: 'impossible', offline: null, damages: true },
    { step: inter, undo: 'impossible', offline: { kind: 'commit', top: 'C', base: 'S', bytes: 1 }, damages: true },
    { step: pivot, undo: 'impossible', offline: { kind: 'commit', top: VOL, base: 'S', bytes: 0 }, damages: true },
    { step: { kind: 'qmp-resume', resume: true }, undo: 'nothing', offline: null, damages: false },
    { step: { kind: 'qmp-close', layer: 'S', nodes: ['a'] }, undo: 'impossible', offline: null, damages: false },
    {
      step: { kind: 'qmp-rename', layer: 'S', node: 'a', protocolNode: 'b', to: { format: 'f1', protocol: 'e1' } },
      undo: 'nothing',
      offline: null,
      damages: false,
    },
    // Offline, a rename whose old name was linked to the layer only drops that link (a redo of the rename).
    {
      step: { kind: 'qmp-rename', layer: 'C', node: 'a', protocolNode: 'b', to: { format: 'f1', protocol: 'e1' }, openedAs: 'S' },
      undo: 'nothing',
      offline: { kind: 'rename', from: 'S', to: 'C' },
      damages: false,
    },
  ];
  for (const c of cases) {
    it(`${c.step.kind}${c.step.kind === 'qmp-commit' ? (c.step.active ? ' (active)' : ' (intermediate)') : ''}: undo ${c.undo}, offline ${c.offline?.kind ?? 'nothing'}`, () => {
      const undo = liveUndoOf(c.step);
      assert.equal(typeof undo === 'string' ? undo : undo.kind, c.undo);
      assert.deepEqual(offlineEquivalent(c.step), c.offline);
      assert.equal(liveDamagesWhenInterrupted(c.step), c.damages);
      assert.ok(isLiveStep(c.step));
      assert.ok(describeStep(c.step).startsWith('QEMU'));
    });
  }
  it('offline steps are not live steps', () => {
    assert.ok(!isLiveStep({ kind: 'rename' }));
  });
});

describe('block-stream safety', () => {
  const table: { version: [number, number]; extendedL2: boolean; safe: boolean }[] = [
    { version: [7, 2], extendedL2: true, safe: false },
    { version: [8, 1], extendedL2: true, safe: false },
    { version: [8, 2], extendedL2: true, safe: true },
    { version: [10, 0], extendedL2: true, safe: true },
    { version: [7, 2], extendedL2: false, safe: true },
  ];
  for (const c of table) {
    it(`QEMU ${c.version.join('.')} ${c.extendedL2 ? 'with' : 'without'} subclusters: ${c.safe ? 'safe' : 'unsafe'}`, () => {
      assert.equal(streamSafe({ major: c.version[0], minor: c.version[1] }, c.extendedL2), c.safe);
    });
  }
});
