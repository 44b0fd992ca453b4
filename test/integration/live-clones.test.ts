/**
 * Issue 14 follow-up: live operations on linked clones (VMs PVE made from a template). Template 101 and its
 * linked clones 102 and 103 are made with PVE's own command lines (test/fixtures/pve-dir-fixture.ts). QEMU runs
 * each clone (a) as `volchain qemu-args` opens it (the base an explicit read-only node) and (b) with PVE 9's
 * exact -blockdev layout for a linked clone (qemu-server Blockdev.pm: throttle node, f/e hashed names, the
 * bottom layer without `backing`, so QEMU opens the base from its header as PVE leaves it). Then
 * `vm snapshot --qmp` and live deletes of a middle and of the oldest snapshot (whose parent is the base) while
 * the guest writes; every layer's data is read back through its chain, the base's sha256, mtime and mode are
 * unchanged, and QEMU's graph is checked after each operation.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { BLOCK, MiB, checkAllLayers, cli, cliFails, cliJson, cliOk, runCommand, writePattern, type Blocks, type TestStorage } from './helpers.js';
import { clearImmutableFlags, fileFingerprint, makePveTemplateWithClones, pveCloneImage, type PveTemplateFixture } from '../fixtures/pve-dir-fixture.js';
import { pveName } from './pve-qemu.js';
import { GuestWriter, assertImages, snapshotInstants, spawnCli, type Window } from './live-helpers.js';
import { startPveVm, startQmpVm, startVm, useLiveStorage, type LiveVm } from './live-vm.js';

const SIZE = 16 * MiB;
const TOTAL_BLOCKS = SIZE / BLOCK;
const BASE_BYTE = 0xa1;
/** The template's data: the first 32 blocks (2 MiB); the guest writes into blocks [0, 64), over and past it. */
const BASE_BLOCKS = 32;
const TEST_TIMEOUT = { timeout: 300_000 };
const BASE_REF = '../101/base-101-disk-0.qcow2';

let s: TestStorage;
let fx: PveTemplateFixture;
let baseFingerprint: string;
useLiveStorage((storage) => (s = storage), {
  prepare: async () => {
    fx = await makePveTemplateWithClones(s.path, { sizeBytes: SIZE, basePattern: BASE_BYTE, patternBytes: BASE_BLOCKS * BLOCK });
    baseFingerprint = await fileFingerprint(fx.basePath);
  },
  beforeCleanup: () => clearImmutableFlags([fx.basePath]),
});

const cloneVolid = (vmid: number): string => `${s.id}:101/base-101-disk-0.qcow2/${vmid}/vm-${vmid}-disk-0.qcow2`;
const baseVolid = (): string => `${s.id}:101/base-101-disk-0.qcow2`;
const dirOf = (vmid: number): string => join(s.path, 'images', String(vmid));
const initial = (): Blocks => new Map(Array.from({ length: BASE_BLOCKS }, (_, b) => [b, BASE_BYTE]));

/** A clone's chain on disk by its headers, top first, down to (and including) the base reference. */
async function cloneChain(vmid: number): Promise<string[]> {
  const chain = [`vm-${vmid}-disk-0.qcow2`];
  for (;;) {
    const r = await runCommand('qemu-img', ['info', '--output=json', '-U', join(dirOf(vmid), chain[chain.length - 1] as string)]);
    assert.equal(r.code, 0, r.stderr);
    const backing = (JSON.parse(r.stdout) as { 'backing-filename'?: string })['backing-filename'];
    if (backing === undefined) return chain;
    chain.push(backing);
    if (backing.startsWith('../')) return chain;
  }
}

interface AttachDisk {
  volid: string;
  open: boolean;
  devices: string[];
  layers: { layer: string; snapshot: string | null; node: string; readOnly: boolean }[];
  base: { volid: string; ref: string; node: string; openedAs: string | null; readOnly: boolean } | null;
  problems: string[];
}

/** attach-info agrees with the headers: the clone's layers, then its base at the bottom, read-only. */
async function checkAttach(vmid: number, socket: string, context: string, otherChains = 0): Promise<AttachDisk> {
  const info = await cliJson<{ disks: AttachDisk[]; others: unknown[] }>(s, ['vm', 'attach-info', String(vmid), '--qmp', socket]);
  const d = info.disks.find((x) => x.volid === cloneVolid(vmid));
  assert.ok(d?.open, `${context}: the clone is open (${JSON.stringify(info.disks)})`);
  assert.deepEqual(d.problems, [], `${context}: QEMU and the headers agree`);
  assert.equal(info.others.length, otherChains, `${context}: chains of other VMs' volumes (${JSON.stringify(info.others)})`);
  const chain = await cloneChain(vmid);
  assert.equal(chain[chain.length - 1], BASE_REF, `${context}: the chain on disk ends in the base`);
  assert.deepEqual(
    d.layers.map((l) => l.layer),
    chain.slice(0, -1),
    `${context}: the clone's layers`,
  );
  assert.deepEqual([d.base?.volid, d.base?.ref, d.base?.readOnly], [baseVolid(), BASE_REF, true], `${context}: the base at the bottom, read-only`);
  assert.equal(await fileFingerprint(fx.basePath), baseFingerprint, `${context}: the base was not written`);
  return d;
}

/**
 * Snapshot s1 and s2 live under guest writes, delete s1 (middle) and s0 (the oldest, backed by the base) live,
 * with `check` after each operation. Returns the writer and the s2 window for the data checks.
 */
async function runOps(vmid: number, live: LiveVm, check: (context: string) => Promise<void>): Promise<{ writer: GuestWriter; w2: Window }> {
  const socket = live.socket;
  const writer = new GuestWriter(live, [initial()], { blocks: 64, seed: vmid });
  await check('at start');
  for (let i = 0; i < 6; i++) await writer.writeOne();
  writer.start();
  await writer.window(() => cliOk(s, ['vm', 'snapshot', String(vmid), 's1', '--qmp', socket]));
  await check('after snapshot s1');
  const { window: w2 } = await writer.window(() => cliOk(s, ['vm', 'snapshot', String(vmid), 's2', '--qmp', socket]));
  await check('after snapshot s2');
  await cliOk(s, ['vm', 'delsnapshot', String(vmid), 's1', '--qmp', socket]);
  writer.check();
  await check('after deleting s1 (middle)');
  assert.deepEqual(await cloneChain(vmid), [`vm-${vmid}-disk-0.qcow2`, `snap-s2-vm-${vmid}-disk-0.qcow2`, `snap-s0-vm-${vmid}-disk-0.qcow2`, BASE_REF]);
  await cliOk(s, ['vm', 'delsnapshot', String(vmid), 's0', '--qmp', socket]);
  writer.check();
  await writer.stop();
  await check('after deleting s0 (oldest, on the base)');
  assert.deepEqual(await cloneChain(vmid), [`vm-${vmid}-disk-0.qcow2`, `snap-s2-vm-${vmid}-disk-0.qcow2`, BASE_REF], 's2 is backed by the base now');
  assert.ok(writer.writes.length >= 15, `the guest wrote throughout (${writer.writes.length} writes)`);
  return { writer, w2 };
}

/** After QEMU stopped: s2 is the disk at one instant of its snapshot, the current layer the guest's last state. */
async function checkData(vmid: number, writer: GuestWriter, w2: Window): Promise<void> {
  const s2 = join(dirOf(vmid), `snap-s2-vm-${vmid}-disk-0.qcow2`);
  const fits = await snapshotInstants(writer, 0, s2, w2, TOTAL_BLOCKS, s.root);
  assert.ok(fits.length > 0, 's2 holds the disk (base data included) as it was at one instant of its snapshot');
  await assertImages([
    {
      path: join(dirOf(vmid), `vm-${vmid}-disk-0.qcow2`),
      blocks: writer.stateAfter(0, writer.writes.length),
      totalBlocks: TOTAL_BLOCKS,
      context: 'current layer',
    },
  ]);
  await assertImages([{ path: fx.basePath, blocks: initial(), totalBlocks: TOTAL_BLOCKS, context: 'base volume' }]);
  assert.equal(await fileFingerprint(fx.basePath), baseFingerprint, 'the base was never written');
  assert.ok((await checkAllLayers(s.path, vmid)) >= 2, 'qemu-img check of every layer');
}

describe('live operations on linked clones', () => {
  it("qemu-args opens a clone down to its base, read-only, with volchain's and with PVE's node names", TEST_TIMEOUT, async () => {
    interface ArgsJson {
      volumes: {
        volid: string;
        top: string;
        layers: { layer: string }[];
        base?: { volid: string; ref: string; node: string; protocolNode: string; readOnly: boolean };
        nodes: Record<string, unknown>[];
      }[];
    }
    for (const extra of [[], ['--drive-id', 'scsi0']]) {
      const args = await cliJson<ArgsJson>(s, ['qemu-args', cloneVolid(103), ...extra]);
      const v = args.volumes[0];
      assert.equal(v?.volid, cloneVolid(103));
      assert.deepEqual(
        v.layers.map((l) => l.layer),
        ['vm-103-disk-0.qcow2'],
      );
      assert.deepEqual([v.base?.volid, v.base?.ref, v.base?.readOnly], [baseVolid(), BASE_REF, true]);
      const baseNodes = v.nodes.filter((n) => n['node-name'] === v.base?.node || n['node-name'] === v.base?.protocolNode);
      assert.equal(baseNodes.length, 2, 'a format and a protocol node for the base');
      for (const n of baseNodes) assert.equal(n['read-only'], true, `${String(n['node-name'])} is read-only (the base is never written)`);
      const fmt = baseNodes.find((n) => n['driver'] === 'qcow2');
      assert.equal(fmt?.['file'], v.base?.protocolNode);
      assert.equal(baseNodes.find((n) => n['driver'] === 'file')?.['filename'], fx.basePath);
      const bottom = v.nodes.find((n) => n['backing'] === v.base?.node);
      assert.ok(bottom, "the clone's bottom layer has the base node as its explicit backing");
      if (extra.length > 0) {
        assert.equal(bottom['node-name'], pveName('f', 'scsi0', cloneVolid(103)), "PVE's name for the clone's current layer");
        assert.equal(v.base?.node, pveName('f', 'scsi0', baseVolid()), 'the base named by the hash of its own volid');
      }
    }
  });

  it("qemu-args of two clones of one base defines the base's nodes once; QEMU runs both on it", TEST_TIMEOUT, async () => {
    const args = await cliJson<{ volumes: { top: string; base?: { node: string } }[]; argv: string[] }>(s, ['qemu-args', cloneVolid(102), cloneVolid(103)]);
    const baseNode = args.volumes[0]?.base?.node ?? '';
    assert.equal(args.volumes[1]?.base?.node, baseNode, 'one base, one node name');
    assert.equal(args.argv.filter((a) => a.includes(`"node-name":"${baseNode}"`)).length, 1, 'the base format node is defined once');
    const vm = await startQmpVm(s, 'two', {
      extraArgs: [
        ...args.argv,
        '-device',
        'virtio-scsi-pci,id=scsihw0',
        ...args.volumes.flatMap((v, i) => ['-device', `scsi-hd,bus=scsihw0.0,drive=${v.top},id=disk${i}`]),
      ],
    });
    try {
      // VM 103's clone in the same QEMU is another VM's disk: attach-info of 102 lists it under `others`.
      await checkAttach(102, vm.socket, 'two clones on one base node', 1);
    } finally {
      await vm.stop();
    }
  });

  it('(a) QEMU started by qemu-args: live snapshots, live delete of a middle and of the oldest snapshot, base untouched', TEST_TIMEOUT, async () => {
    const vmid = 102;
    await cliOk(s, ['vm', 'snapshot', String(vmid), 's0']);
    const live = await startVm(s, [cloneVolid(vmid)]);
    let result: { writer: GuestWriter; w2: Window } | undefined;
    try {
      result = await runOps(vmid, live, async (context) => {
        await checkAttach(vmid, live.socket, context);
      });
      const text = await cliOk(s, ['vm', 'attach-info', String(vmid), '--qmp', live.socket]);
      assert.match(text, /base volume tst:101\/base-101-disk-0\.qcow2: node fmt-[0-9a-f]+, ro/, 'the text output names the base');
      // A rollback still needs the VM stopped (exit 6), clone or not.
      await cliFails(s, ['snapshot', 'rollback', cloneVolid(vmid), 's2', '--qmp', live.socket], { code: 6, match: /needs the VM stopped/ });
    } finally {
      await live.stop();
    }
    await checkData(vmid, result.writer, result.w2);
  });

  it("(b) QEMU started with PVE 9's -blockdev layout for a linked clone: the same, and the graph keeps PVE's node names", TEST_TIMEOUT, async () => {
    const vmid = 103;
    const volid = cloneVolid(vmid);
    await cliOk(s, ['vm', 'snapshot', String(vmid), 's0']);
    // generate_drive_blockdev: the clone's layers nested as `backing`; the bottom one (s0, whose parent PVE's
    // volume_snapshot_info does not know: the base is no snapshot) has no `backing`, QEMU opens the base itself.
    const live = await startPveVm(s, [
      {
        drive: 'scsi0',
        volid,
        layers: [
          [undefined, join(dirOf(vmid), 'vm-103-disk-0.qcow2')],
          ['s0', join(dirOf(vmid), 'snap-s0-vm-103-disk-0.qcow2')],
        ],
      },
    ]);
    const { vm, socket } = live;
    const check = async (context: string): Promise<void> => {
      const d = await checkAttach(vmid, socket, context);
      // PVE's names on every layer of the clone (the snapshot's name hashed with the clone's volid).
      assert.deepEqual(
        d.layers.map((l) => l.node),
        d.layers.map((l) => pveName('f', 'scsi0', volid, l.snapshot ?? undefined)),
        `${context}: PVE's node names`,
      );
      assert.ok(d.base?.openedAs?.endsWith('/101/base-101-disk-0.qcow2'), `${context}: QEMU has the base open (${String(d.base?.openedAs)})`);
      const blocks = await vm.client.execute<{ qdev?: string; inserted?: { 'node-name': string; drv: string } }[]>('query-block');
      const top = blocks.find((b) => b.qdev === 'scsi0')?.inserted;
      assert.deepEqual([top?.['node-name'], top?.drv], ['drive-scsi0', 'throttle'], `${context}: the throttle node is still the device's node`);
    };
    let result: { writer: GuestWriter; w2: Window } | undefined;
    try {
      result = await runOps(vmid, live, check);
    } catch (err) {
      if (!vm.isAlive()) console.error(`QEMU died: ${vm.stderr()}`);
      throw err;
    } finally {
      await vm.stop();
    }
    await checkData(vmid, result.writer, result.w2);
  });

  it('(c) block-stream of the oldest snapshot onto the base: base-node = the base node, backing-file the base reference', TEST_TIMEOUT, async () => {
    const vmid = 104;
    const volid = cloneVolid(vmid);
    const top = await pveCloneImage(s.path, 101, 'base-101-disk-0.qcow2', vmid, `vm-${vmid}-disk-0.qcow2`);
    // The clone's own data before its first snapshot: blocks 40..47 (the base holds 0..31).
    await writePattern(top, 0xc0, 40 * BLOCK, 8 * BLOCK);
    await cliOk(s, ['vm', 'snapshot', String(vmid), 's0']);
    // More in the current layer than in s0 (blocks 100..163): streaming s0 is the cheaper delete.
    await writePattern(top, 0xd0, 100 * BLOCK, 64 * BLOCK);
    const state: Blocks = initial();
    for (let b = 40; b < 48; b++) state.set(b, 0xc0);
    for (let b = 100; b < 164; b++) state.set(b, 0xd0);
    const live = await startVm(s, [volid]);
    // Whole clusters only: QEMU 7.2's copy-on-read aborts on half-written clusters with subclusters (live.ts).
    const writer = new GuestWriter(live, [state], { blocks: 64, seed: 104, span: 2, pauseMs: 25 });
    const env = { VOLCHAIN_LIVE_STREAM: 'always' };
    try {
      const d = await checkAttach(vmid, live.socket, 'at start');
      writer.start();
      const dry = spawnCli(s, ['vm', 'delsnapshot', String(vmid), 's0', '--qmp', live.socket, '--json', '--dry-run'], env);
      const out = await dry.done;
      assert.equal(out.code, 0, out.stderr);
      const plan = JSON.parse(out.stdout) as { plans: { steps: { kind: string; onto?: string | null; ontoFormat?: string; baseNode?: string | null }[] }[] };
      const stream = plan.plans[0]?.steps.find((st) => st.kind === 'qmp-stream');
      assert.deepEqual(
        [stream?.onto, stream?.ontoFormat, stream?.baseNode],
        [BASE_REF, 'qcow2', d.base?.node],
        "a stream onto the base, through QEMU's base node",
      );
      assert.ok(
        plan.plans[0]?.steps.every((st) => st.kind !== 'qmp-commit'),
        'nothing is committed',
      );
      await cliOk(s, ['vm', 'delsnapshot', String(vmid), 's0', '--qmp', live.socket], { env });
      writer.check();
      await writer.stop();
      await checkAttach(vmid, live.socket, 'after streaming s0 into the current layer');
      assert.deepEqual(await cloneChain(vmid), [`vm-${vmid}-disk-0.qcow2`, BASE_REF]);
    } finally {
      await writer.stop().catch(() => undefined);
      await live.stop();
    }
    await assertImages([{ path: top, blocks: writer.stateAfter(0, writer.writes.length), totalBlocks: TOTAL_BLOCKS, context: 'current layer' }]);
    // Only s0's data was copied: a base block the guest never wrote is still read from the base (depth 1).
    const written = new Set(writer.writes.flatMap((w) => [w.block, w.block + 1]));
    const untouched = Array.from({ length: BASE_BLOCKS }, (_, b) => b).filter((b) => !written.has(b));
    assert.ok(untouched.length > 0, 'some base block was left alone by the guest');
    const map = await runCommand('qemu-img', ['map', '--output=json', '-U', top]);
    const extents = JSON.parse(map.stdout) as { start: number; length: number; depth: number; data: boolean }[];
    const at = (untouched[0] as number) * BLOCK;
    const extent = extents.find((e) => e.start <= at && at < e.start + e.length);
    assert.deepEqual([extent?.depth, extent?.data], [1, true], "the block is the base's, not a copy in the clone");
    assert.equal(await fileFingerprint(fx.basePath), baseFingerprint, 'the base was never written');
    await checkAllLayers(s.path, vmid);
  });

  it('(d) killed while streaming onto the base, with QEMU gone afterwards: repair rebases offline onto the base', TEST_TIMEOUT, async () => {
    const vmid = 105;
    const volid = cloneVolid(vmid);
    const top = await pveCloneImage(s.path, 101, 'base-101-disk-0.qcow2', vmid, `vm-${vmid}-disk-0.qcow2`);
    await writePattern(top, 0xc5, 40 * BLOCK, 8 * BLOCK);
    await cliOk(s, ['vm', 'snapshot', String(vmid), 's0']);
    await writePattern(top, 0xd5, 100 * BLOCK, 64 * BLOCK);
    const state: Blocks = initial();
    for (let b = 40; b < 48; b++) state.set(b, 0xc5);
    for (let b = 100; b < 164; b++) state.set(b, 0xd5);
    const live = await startVm(s, [volid]);
    try {
      // Step 1 is the block-stream: volchain dies right after starting it.
      const r = await cli(s, ['vm', 'delsnapshot', String(vmid), 's0', '--qmp', live.socket], {
        env: { VOLCHAIN_LIVE_STREAM: 'always', VOLCHAIN_CRASH_AT: 'snapshot-delete:1:started', VOLCHAIN_JOB_SPEED: '1M' },
      });
      assert.equal(r.code, 128, `killed at the stream (exit ${r.code}: ${r.stderr})`);
    } finally {
      await live.stop();
    }
    assert.equal((await cliJson<{ pending: unknown[] }>(s, ['status'])).pending.length, 1, 'the delete is unfinished');
    assert.match(await cliOk(s, ['repair', volid]), /repaired/);
    assert.deepEqual(await cloneChain(vmid), [`vm-${vmid}-disk-0.qcow2`, BASE_REF], 'the current layer is backed by the base');
    const info = await runCommand('qemu-img', ['info', '--output=json', top]);
    assert.equal((JSON.parse(info.stdout) as { 'backing-filename-format'?: string })['backing-filename-format'], 'qcow2', "with the base's format");
    await assertImages([{ path: top, blocks: state, totalBlocks: TOTAL_BLOCKS, context: 'current layer after repair' }]);
    assert.equal(await fileFingerprint(fx.basePath), baseFingerprint, 'the base was never written');
    await checkAllLayers(s.path, vmid);
  });
});
