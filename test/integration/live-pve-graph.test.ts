/**
 * Issue 14: after volchain's live snapshot and live delete on a VM that PVE 9 started, QEMU's graph is what PVE
 * would leave after the same operation, so PVE's own later live operations (which compute node names, never
 * look them up) still work: the throttle node `drive-scsi0` on top, and for every layer of the chain a format
 * node f<hash> on a file node e<hash> (qemu-server get_node_name, with `snap=<name>` for snapshot layers and
 * none for the current layer), each file node opened under the layer's file name today, no other node left.
 * QEMU is started with PVE's exact -blockdev layout (pve-qemu.ts), the guest writes throughout (HMP qemu-io
 * through the device), and every layer's data is proven after QEMU stops.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { BLOCK, MiB, checkAllLayers, cliJson, cliOk, makeStorage, writePatterns, type Blocks, type TestStorage } from './helpers.js';
import { runningQemuPids, startQemu } from './qemu-harness.js';
import { GuestWriter, assertImages, diskChain, snapshotInstants, type LiveVm, type Window } from './live-helpers.js';
import { pveDriveBlockdev, pveName, pveThrottleGroup, qemuHasDiscardNoUnref } from './pve-qemu.js';

const VMID = 100;
const DRIVE = 'scsi0';
const SIZE = 16 * MiB;
const TOTAL_BLOCKS = SIZE / BLOCK;
const TEST_TIMEOUT = { timeout: 400_000 };

let s: TestStorage;
before(async () => {
  s = await makeStorage();
});
after(async () => {
  await s.cleanup();
  assert.deepEqual(runningQemuPids(), [], 'every QEMU started by these tests has exited');
});

interface NodeInfo {
  'node-name': string;
  drv: string;
  file: string;
  ro: boolean;
}

interface AttachLayer {
  layer: string;
  snapshot: string | null;
  node: string;
  protocolNode: string | null;
  openedAs: string | null;
}

describe('live operations leave the graph PVE 9 would leave', () => {
  it('after vm snapshot --qmp and live deletes of the newest, a middle and the oldest snapshot under guest writes, every node has PVE\'s name and file name', TEST_TIMEOUT, async () => {
    const volid = (await cliOk(s, ['alloc', s.id, String(VMID), String(SIZE)])).trim();
    const name = volid.split('/').pop() ?? '';
    const dir = join(s.path, 'images', String(VMID));
    await writePatterns(s.layer(VMID, name), [{ byte: 0xa0, offset: 0, len: 16 * BLOCK }]);
    const initial: Blocks = new Map(Array.from({ length: 16 }, (_, b) => [b, 0xa0]));
    await cliOk(s, ['vm', 'snapshot', String(VMID), 'base0']);
    const snapOf = (layer: string): string | undefined => (layer === name ? undefined : layer.slice('snap-'.length, -(name.length + 1)));
    const pathOf = (snap: string): string => join(dir, `snap-${snap}-${name}`);

    const socket = join(s.root, `qmp-pve-graph-${Date.now()}.sock`);
    const vm = await startQemu({
      machine: 'q35',
      extraArgs: [
        '-object', JSON.stringify(pveThrottleGroup(DRIVE)),
        '-blockdev', JSON.stringify(pveDriveBlockdev(DRIVE, volid, [[undefined, s.layer(VMID, name)], ['base0', pathOf('base0')]], await qemuHasDiscardNoUnref())),
        '-device', 'virtio-scsi-pci,id=scsihw0',
        '-device', `scsi-hd,bus=scsihw0.0,drive=drive-${DRIVE},id=${DRIVE}`,
        '-qmp', `unix:${socket},server=on,wait=off`,
      ],
    });
    const live: LiveVm = { vm, socket, disks: [DRIVE], volids: [volid], stop: () => vm.stop() };
    const writer = new GuestWriter(live, [initial], { blocks: 64, seed: 1414 });
    const windows = new Map<string, Window>();

    /** QEMU's graph against what PVE computes for the chain on disk; returns the chain's snapshots, top first. */
    const checkPveGraph = async (context: string): Promise<(string | undefined)[]> => {
      const chain = await diskChain(dir, name);
      const expected = chain.map((layer) => ({ layer, snap: snapOf(layer), path: join(dir, layer) }));
      const nodes = await vm.client.execute<NodeInfo[]>('query-named-block-nodes', { flat: true });
      const want = new Set(['drive-scsi0', ...expected.flatMap((l) => [pveName('f', DRIVE, volid, l.snap), pveName('e', DRIVE, volid, l.snap)])]);
      assert.deepEqual(new Set(nodes.map((n) => n['node-name'])), want, `${context}: QEMU has exactly the throttle node and PVE's f/e nodes of ${chain.join(' -> ')}`);
      for (const l of expected) {
        const file = nodes.find((n) => n['node-name'] === pveName('e', DRIVE, volid, l.snap));
        assert.deepEqual([file?.drv, file?.file], ['file', l.path], `${context}: the file node of ${l.layer} is opened under its name today`);
      }
      const blocks = await vm.client.execute<{ qdev?: string; inserted?: { 'node-name': string; drv: string } }[]>('query-block');
      const top = blocks.find((b) => b.qdev === DRIVE)?.inserted;
      assert.deepEqual([top?.['node-name'], top?.drv], ['drive-scsi0', 'throttle'], `${context}: the guest device is on the throttle node`);
      // The order: volchain's own reading of QEMU's chain (by backing links) against the chain on disk.
      const info = await cliJson<{ disks: { volid: string; open: boolean; layers: AttachLayer[]; detached: unknown[]; problems: string[] }[] }>(s, ['vm', 'attach-info', String(VMID), '--qmp', socket]);
      const d = info.disks.find((x) => x.volid === volid);
      assert.deepEqual(d?.problems, [], `${context}: QEMU and the headers agree`);
      assert.deepEqual(d?.detached, [], `${context}: no leftover nodes`);
      assert.deepEqual(
        d?.layers.map((l) => [l.layer, l.node, l.protocolNode, l.openedAs]),
        expected.map((l) => [l.layer, pveName('f', DRIVE, volid, l.snap), pveName('e', DRIVE, volid, l.snap), l.path]),
        `${context}: layer by layer, QEMU's chain is PVE's`,
      );
      const files = (await readdir(dir)).sort();
      assert.deepEqual(files, [...chain].sort(), `${context}: no temporary layer is left`);
      return expected.map((l) => l.snap);
    };

    try {
      assert.deepEqual(await checkPveGraph('as PVE started it'), [undefined, 'base0']);
      for (let i = 0; i < 6; i++) await writer.writeOne();
      writer.start();
      for (const snap of ['s1', 's2', 's3', 's4']) {
        const { window } = await writer.window(() => cliOk(s, ['vm', 'snapshot', String(VMID), snap, '--qmp', socket]));
        windows.set(snap, window);
        await checkPveGraph(`after snapshot ${snap}`);
      }
      writer.check();
      // The newest (the current layer's backing: on QEMU 7.2 an active commit, then the guest moved onto f/e(current)).
      await cliOk(s, ['vm', 'delsnapshot', String(VMID), 's4', '--qmp', socket]);
      assert.deepEqual(await checkPveGraph('after deleting the newest, s4'), [undefined, 's3', 's2', 's1', 'base0']);
      // A middle one: its child s3 is committed into it, which then takes s3's names.
      await cliOk(s, ['vm', 'delsnapshot', String(VMID), 's2', '--qmp', socket]);
      assert.deepEqual(await checkPveGraph('after deleting a middle one, s2'), [undefined, 's3', 's1', 'base0']);
      // The oldest (PVE's own way: commit the child into it, rename it to the child).
      await cliOk(s, ['vm', 'delsnapshot', String(VMID), 'base0', '--qmp', socket]);
      assert.deepEqual(await checkPveGraph('after deleting the oldest, base0'), [undefined, 's3', 's1']);
      writer.check();
      await writer.stop();
      assert.ok(writer.writes.length >= 20, `the guest wrote throughout (${writer.writes.length} writes)`);
      // The guest still writes through PVE's nodes after everything.
      await writer.writeOne();
    } catch (err) {
      if (!vm.isAlive()) console.error(`QEMU died: ${vm.stderr()}`);
      throw err;
    } finally {
      await writer.stop().catch(() => undefined);
      await vm.stop();
    }

    assert.deepEqual(await diskChain(dir, name), [name, `snap-s3-${name}`, `snap-s1-${name}`]);
    // s1 now holds base0's data merged under it, s3 holds s2's: each still reads as the disk at its instant.
    for (const snap of ['s1', 's3']) {
      const fits = await snapshotInstants(writer, 0, pathOf(snap), windows.get(snap) as Window, TOTAL_BLOCKS, s.root);
      assert.ok(fits.length > 0, `${snap} holds the disk as it was at one instant of its snapshot`);
    }
    await assertImages([{ path: s.layer(VMID, name), blocks: writer.stateAfter(0, writer.writes.length), totalBlocks: TOTAL_BLOCKS, context: 'current layer' }]);
    assert.equal(await checkAllLayers(s.path, VMID), 3, 'qemu-img check of every layer');
  });
});
