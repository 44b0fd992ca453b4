/**
 * Issue 14: after volchain's live snapshot and live delete on a VM that PVE 9 started, QEMU's graph is what PVE
 * would leave after the same operation, so PVE's own later live operations (which compute node names, never
 * look them up) still work: the throttle node `drive-scsi0` on top, and for every layer of the chain a format
 * node f<hash> on a file node e<hash> (qemu-server get_node_name, with `snap=<name>` for snapshot layers and
 * none for the current layer), each file node opened under the layer's file name today, no other node left.
 * QEMU is started with PVE's exact -blockdev layout (pve-qemu.ts), the guest writes throughout (HMP qemu-io
 * through the device), and every layer's data is proven after QEMU stops.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { BLOCK, MiB, checkAllLayers, cli, cliJson, cliOk, writePatterns, type Blocks, type TestStorage } from './helpers.js';
import { GuestWriter, assertImages, diskChain, snapshotInstants, type Window } from './live-helpers.js';
import { pveName } from './pve-qemu.js';
import { startPveVm, useLiveStorage, type LiveVm } from './live-vm.js';
import * as pve from '../fixtures/pve-dir-commands.js';

const VMID = 100;
const DRIVE = 'scsi0';
const SIZE = 16 * MiB;
const TOTAL_BLOCKS = SIZE / BLOCK;
const TEST_TIMEOUT = { timeout: 400_000 };

let s: TestStorage;
useLiveStorage((storage) => (s = storage));

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

interface PveDisk {
  volid: string;
  drive: string;
}

const nameOf = (volid: string): string => volid.split('/').pop() ?? '';

/** A VM started as PVE 9 starts it, with each disk's current layer and the given snapshots (top first). */
function startPveVmDisks(vmid: number, disks: readonly (PveDisk & { snaps: readonly string[] })[]): Promise<LiveVm> {
  const dir = join(s.path, 'images', String(vmid));
  return startPveVm(
    s,
    disks.map((d) => ({
      ...d,
      layers: [[undefined, join(dir, nameOf(d.volid))], ...d.snaps.map((sn): [string, string] => [sn, join(dir, `snap-${sn}-${nameOf(d.volid)}`)])],
    })),
  );
}

/** A VM with one disk `volid` on DRIVE. */
async function startPveVmDisk(vmid: number, volid: string, snaps: readonly string[]): Promise<{ live: LiveVm; dir: string; name: string }> {
  const live = await startPveVmDisks(vmid, [{ volid, drive: DRIVE, snaps }]);
  return { live, dir: join(s.path, 'images', String(vmid)), name: nameOf(volid) };
}

/**
 * QEMU's graph against what PVE computes for the chains on disk: exactly each drive's throttle node and PVE's
 * f/e nodes of its chain, each file node on the layer's current file, in chain order. Returns each disk's
 * snapshots, top first.
 */
async function checkPveGraphDisks(live: LiveVm, vmid: number, disks: readonly PveDisk[], context: string): Promise<(string | undefined)[][]> {
  const dir = join(s.path, 'images', String(vmid));
  const want = new Set<string>();
  const perDisk: { disk: PveDisk; chain: string[]; expected: { layer: string; snap: string | undefined; path: string }[] }[] = [];
  for (const disk of disks) {
    const name = nameOf(disk.volid);
    const snapOf = (layer: string): string | undefined => (layer === name ? undefined : layer.slice('snap-'.length, -(name.length + 1)));
    const chain = await diskChain(dir, name);
    const expected = chain.map((layer) => ({ layer, snap: snapOf(layer), path: join(dir, layer) }));
    want.add(`drive-${disk.drive}`);
    for (const l of expected) for (const t of ['f', 'e'] as const) want.add(pveName(t, disk.drive, disk.volid, l.snap));
    perDisk.push({ disk, chain, expected });
  }
  const nodes = await live.vm.client.execute<NodeInfo[]>('query-named-block-nodes', { flat: true });
  assert.deepEqual(
    new Set(nodes.map((n) => n['node-name'])),
    want,
    `${context}: QEMU has exactly the throttle nodes and PVE's f/e nodes of ${perDisk.map((p) => p.chain.join(' -> ')).join('; ')}`,
  );
  const blocks = await live.vm.client.execute<{ qdev?: string; inserted?: { 'node-name': string; drv: string } }[]>('query-block');
  // The order: volchain's own reading of QEMU's chain (by backing links) against the chain on disk.
  const info = await cliJson<{ disks: { volid: string; open: boolean; layers: AttachLayer[]; detached: unknown[]; problems: string[] }[] }>(s, [
    'vm',
    'attach-info',
    String(vmid),
    '--qmp',
    live.socket,
  ]);
  const files = new Set<string>();
  for (const { disk, chain, expected } of perDisk) {
    for (const l of expected) {
      const file = nodes.find((n) => n['node-name'] === pveName('e', disk.drive, disk.volid, l.snap));
      assert.deepEqual([file?.drv, file?.file], ['file', l.path], `${context}: the file node of ${l.layer} is opened under its name today`);
    }
    const top = blocks.find((b) => b.qdev === disk.drive)?.inserted;
    assert.deepEqual([top?.['node-name'], top?.drv], [`drive-${disk.drive}`, 'throttle'], `${context}: the guest device ${disk.drive} is on its throttle node`);
    const d = info.disks.find((x) => x.volid === disk.volid);
    assert.deepEqual(d?.problems, [], `${context}: QEMU and the headers agree`);
    assert.deepEqual(d?.detached, [], `${context}: no leftover nodes`);
    assert.deepEqual(
      d?.layers.map((l) => [l.layer, l.node, l.protocolNode, l.openedAs]),
      expected.map((l) => [l.layer, pveName('f', disk.drive, disk.volid, l.snap), pveName('e', disk.drive, disk.volid, l.snap), l.path]),
      `${context}: layer by layer, QEMU's chain of ${disk.volid} is PVE's`,
    );
    for (const f of chain) files.add(f);
  }
  assert.deepEqual((await readdir(dir)).sort(), [...files].sort(), `${context}: no temporary layer or link is left`);
  return perDisk.map((p) => p.expected.map((l) => l.snap));
}

async function checkPveGraph(live: LiveVm, vmid: number, volid: string, _dir: string, _name: string, context: string): Promise<(string | undefined)[]> {
  return (await checkPveGraphDisks(live, vmid, [{ volid, drive: DRIVE }], context))[0] ?? [];
}

describe('live operations leave the graph PVE 9 would leave', () => {
  it(
    "after vm snapshot --qmp and live deletes of the newest, a middle and the oldest snapshot under guest writes, every node has PVE's name and file name",
    TEST_TIMEOUT,
    async () => {
      const volid = (await cliOk(s, ['alloc', s.id, String(VMID), String(SIZE)])).trim();
      const name = volid.split('/').pop() ?? '';
      const dir = join(s.path, 'images', String(VMID));
      await writePatterns(s.layer(VMID, name), [{ byte: 0xa0, offset: 0, len: 16 * BLOCK }]);
      const initial: Blocks = new Map(Array.from({ length: 16 }, (_, b) => [b, 0xa0]));
      await cliOk(s, ['vm', 'snapshot', String(VMID), 'base0']);
      const pathOf = (snap: string): string => join(dir, `snap-${snap}-${name}`);

      const { live } = await startPveVmDisk(VMID, volid, ['base0']);
      const vm = live.vm;
      const writer = new GuestWriter(live, [initial], { blocks: 64, seed: 1414 });
      const windows = new Map<string, Window>();
      const checkGraph = (context: string): Promise<(string | undefined)[]> => checkPveGraph(live, VMID, volid, dir, name, context);

      try {
        assert.deepEqual(await checkGraph('as PVE started it'), [undefined, 'base0']);
        for (let i = 0; i < 6; i++) await writer.writeOne();
        writer.start();
        for (const snap of ['s1', 's2', 's3', 's4']) {
          const { window } = await writer.window(() => cliOk(s, ['vm', 'snapshot', String(VMID), snap, '--qmp', live.socket]));
          windows.set(snap, window);
          await checkGraph(`after snapshot ${snap}`);
        }
        writer.check();
        // The newest (the current layer's backing: on QEMU 7.2 an active commit, then the guest moved onto f/e(current)).
        await cliOk(s, ['vm', 'delsnapshot', String(VMID), 's4', '--qmp', live.socket]);
        assert.deepEqual(await checkGraph('after deleting the newest, s4'), [undefined, 's3', 's2', 's1', 'base0']);
        // A middle one: its child s3 is committed into it, which then takes s3's names.
        await cliOk(s, ['vm', 'delsnapshot', String(VMID), 's2', '--qmp', live.socket]);
        assert.deepEqual(await checkGraph('after deleting a middle one, s2'), [undefined, 's3', 's1', 'base0']);
        // The oldest (PVE's own way: commit the child into it, rename it to the child).
        await cliOk(s, ['vm', 'delsnapshot', String(VMID), 'base0', '--qmp', live.socket]);
        assert.deepEqual(await checkGraph('after deleting the oldest, base0'), [undefined, 's3', 's1']);
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
      await assertImages([
        { path: s.layer(VMID, name), blocks: writer.stateAfter(0, writer.writes.length), totalBlocks: TOTAL_BLOCKS, context: 'current layer' },
      ]);
      assert.equal(await checkAllLayers(s.path, VMID), 3, 'qemu-img check of every layer');
    },
  );

  it(
    "the only snapshot, made by PVE's own commands, deleted live under guest writes: the active commit into the layer PVE opened read-write leaves PVE's graph and every byte",
    TEST_TIMEOUT,
    async () => {
      const vmid = 110;
      // Allocated and snapshotted with PVE's bare commands (Plugin.pm alloc_image, volume_snapshot), never volchain.
      const ps: pve.PveDirStorage = { id: s.id, path: s.path, chain: true };
      const vol: pve.PveVolume = { vmid, name: `vm-${vmid}-disk-0.qcow2` };
      const volid = await pve.allocImage(ps, vmid, 'qcow2', vol.name, SIZE / 1024);
      await writePatterns(s.layer(vmid, vol.name), [{ byte: 0xa0, offset: 0, len: 16 * BLOCK }]);
      await pve.volumeSnapshot(ps, vol, 'pve-1');
      const initial: Blocks = new Map(Array.from({ length: 16 }, (_, b) => [b, 0xa0]));

      const { live, dir, name } = await startPveVmDisk(vmid, volid, ['pve-1']);
      const writer = new GuestWriter(live, [initial], { blocks: 64, seed: 110 });
      const checkGraph = (context: string): Promise<(string | undefined)[]> => checkPveGraph(live, vmid, volid, dir, name, context);
      try {
        assert.deepEqual(await checkGraph('as PVE started it'), [undefined, 'pve-1']);
        for (let i = 0; i < 6; i++) await writer.writeOne();
        writer.start();
        // The current layer is committed into PVE's read-write f/e(pve-1) (active commit), then the guest is moved
        // onto f/e(current) again over the merged file.
        const plan = await cliJson<{ plans: { steps: { kind: string }[] }[] }>(s, ['snapshot', 'delete', volid, 'pve-1', '--qmp', live.socket, '--dry-run']);
        assert.deepEqual(
          plan.plans[0]?.steps.slice(0, 2).map((st) => st.kind),
          ['qmp-commit', 'qmp-pivot'],
          'an active commit',
        );
        await writer.window(() => cliOk(s, ['snapshot', 'delete', volid, 'pve-1', '--qmp', live.socket]));
        assert.deepEqual(await checkGraph('after deleting the only snapshot, made by PVE'), [undefined]);
        writer.check();
        await writer.stop();
        // The guest still writes through PVE's nodes afterwards.
        await writer.writeOne();
      } catch (err) {
        if (!live.vm.isAlive()) console.error(`QEMU died: ${live.vm.stderr()}`);
        throw err;
      } finally {
        await writer.stop().catch(() => undefined);
        await live.vm.stop();
      }
      assert.ok(writer.writes.length >= 8, `the guest wrote throughout (${writer.writes.length} writes)`);
      assert.deepEqual(await diskChain(dir, name), [name]);
      assert.deepEqual(await readdir(dir), [name], 'no snapshot layer or temporary file left');
      await assertImages([
        { path: s.layer(vmid, name), blocks: writer.stateAfter(0, writer.writes.length), totalBlocks: TOTAL_BLOCKS, context: 'current layer' },
      ]);
      assert.equal(await checkAllLayers(s.path, vmid), 1, 'qemu-img check of the layer');
    },
  );

  it(
    "volchain killed at every step that keeps PVE's names: repair finishes the operation live, leaving PVE's graph and every snapshot's data",
    TEST_TIMEOUT,
    async () => {
      const vmid = 120;
      const volid = (await cliOk(s, ['alloc', s.id, String(vmid), String(SIZE)])).trim();
      const name = volid.split('/').pop() ?? '';
      await writePatterns(s.layer(vmid, name), [{ byte: 0xa0, offset: 0, len: 16 * BLOCK }]);
      const initial: Blocks = new Map(Array.from({ length: 16 }, (_, b) => [b, 0xa0]));
      const { live, dir } = await startPveVmDisk(vmid, volid, []);
      const writer = new GuestWriter(live, [initial], { blocks: 64, seed: 120, pauseMs: 20 });
      const windows = new Map<string, Window>();
      const snapshots: string[] = [];
      const steps = async (args: string[]): Promise<string[]> =>
        (await cliJson<{ plans: { steps: { kind: string }[] }[] }>(s, [...args, '--qmp', live.socket, '--dry-run'])).plans[0]?.steps.map((st) => st.kind) ?? [];
      const crashAndRepair = async (args: string[], crashAt: string): Promise<Window> => {
        const { window } = await writer.window(async () => {
          const r = await cli(s, [...args, '--qmp', live.socket], { env: { VOLCHAIN_CRASH_AT: crashAt } });
          assert.equal(r.code, 128, `${args.join(' ')} with VOLCHAIN_CRASH_AT=${crashAt} was killed (exit ${r.code}: ${r.stderr})`);
          assert.match(await cliOk(s, ['repair', volid]), /repaired/);
        });
        writer.check();
        await checkPveGraph(live, vmid, volid, dir, name, `after repairing ${args.join(' ')} killed at ${crashAt}`);
        return window;
      };
      try {
        await checkPveGraph(live, vmid, volid, dir, name, 'as PVE started it');
        writer.start();
        const createSteps = await steps(['snapshot', 'create', volid, 'probe']);
        assert.deepEqual(createSteps, [
          'create-overlay',
          'rename',
          'rename',
          'qmp-open',
          'qmp-snapshot',
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
        // From the first switch on (step 5), every step, and right after the second switch and the pivot.
        const cases = [...createSteps.map((_, i) => `${i + 1}:started`).slice(4), '9:after', '12:after'];
        for (const [i, c] of cases.entries()) {
          const snap = `c${i}`;
          windows.set(snap, await crashAndRepair(['snapshot', 'create', volid, snap], `snapshot-create:${c}`));
          snapshots.push(snap);
        }
        // Deleting the newest: an active commit and pivot, then the guest moved onto f/e(current).
        const newest = await steps(['snapshot', 'delete', volid, snapshots[snapshots.length - 1] as string]);
        assert.deepEqual(newest, [
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
        for (const c of ['5:started', '8:started', '9:started', '9:after', '10:started', '11:started']) {
          const snap = snapshots.pop() as string;
          await crashAndRepair(['snapshot', 'delete', volid, snap], `snapshot-delete:${c}`);
          windows.delete(snap);
        }
        // Deleting the oldest (its child a snapshot): the merged layer reopened under the child's names.
        const oldest = await steps(['snapshot', 'delete', volid, snapshots[0] as string]);
        assert.deepEqual(oldest, ['qmp-commit', 'qmp-close', 'replace', 'qmp-rename']);
        for (const c of ['4:started', '3:after']) {
          const snap = snapshots.shift() as string;
          await crashAndRepair(['snapshot', 'delete', volid, snap], `snapshot-delete:${c}`);
          windows.delete(snap);
        }
        writer.check();
        await writer.stop();
      } catch (err) {
        if (!live.vm.isAlive()) console.error(`QEMU died: ${live.vm.stderr()}`);
        throw err;
      } finally {
        await writer.stop().catch(() => undefined);
        await live.vm.stop();
      }
      assert.ok(snapshots.length >= 2, `snapshots left to check: ${snapshots.join(', ')}`);
      for (const snap of snapshots) {
        const fits = await snapshotInstants(writer, 0, join(dir, `snap-${snap}-${name}`), windows.get(snap) as Window, TOTAL_BLOCKS, s.root);
        assert.ok(fits.length > 0, `${snap} holds the disk as it was at one instant of its snapshot`);
      }
      await assertImages([
        { path: s.layer(vmid, name), blocks: writer.stateAfter(0, writer.writes.length), totalBlocks: TOTAL_BLOCKS, context: 'current layer' },
      ]);
    },
  );

  it(
    'QEMU gone in the middle of moving the guest off the old top: offline repair commits the overlay into the current layer and removes it',
    TEST_TIMEOUT,
    async () => {
      const vmid = 130;
      const volid = (await cliOk(s, ['alloc', s.id, String(vmid), String(SIZE)])).trim();
      const name = volid.split('/').pop() ?? '';
      const initial: Blocks = new Map();
      const { live, dir } = await startPveVmDisk(vmid, volid, []);
      const writer = new GuestWriter(live, [initial], { blocks: 64, seed: 130 });
      try {
        for (let i = 0; i < 6; i++) await writer.writeOne();
        // Killed when the commit of the overlay back is about to start: the guest writes into the overlay.
        const r = await cli(s, ['vm', 'snapshot', String(vmid), 's1', '--qmp', live.socket], { env: { VOLCHAIN_CRASH_AT: 'snapshot-create:11:started' } });
        assert.equal(r.code, 128, `killed (exit ${r.code}: ${r.stderr})`);
        const swap = (await readdir(dir)).filter((f) => f.startsWith('.volchain-tmp-swap-'));
        assert.equal(swap.length, 1, 'the overlay exists');
        for (let i = 0; i < 4; i++) await writer.writeOne();
      } finally {
        await live.vm.stop();
      }
      assert.match(await cliOk(s, ['repair', volid]), /repaired/);
      assert.deepEqual(await diskChain(dir, name), [name, `snap-s1-${name}`]);
      assert.deepEqual((await readdir(dir)).sort(), [name, `snap-s1-${name}`].sort(), 'the overlay is gone');
      await assertImages([
        { path: join(dir, `snap-s1-${name}`), blocks: writer.stateAfter(0, 6), totalBlocks: TOTAL_BLOCKS, context: 's1' },
        {
          path: s.layer(vmid, name),
          blocks: writer.stateAfter(0, writer.writes.length),
          totalBlocks: TOTAL_BLOCKS,
          context: 'current layer, with what the guest wrote into the overlay',
        },
      ]);
      assert.equal(await checkAllLayers(s.path, vmid), 2, 'qemu-img check of every layer');
      // Nothing is left unfinished: the VM can be started again.
      await cliOk(s, ['qemu-args', volid, '--drive-id', DRIVE]);
    },
  );

  it("a VM-wide snapshot and delete of a VM with two PVE drives: both switched at one instant, both graphs PVE's", TEST_TIMEOUT, async () => {
    const vmid = 140;
    const disks: PveDisk[] = [];
    for (const drive of ['scsi0', 'scsi1']) disks.push({ volid: (await cliOk(s, ['alloc', s.id, String(vmid), String(SIZE)])).trim(), drive });
    const live = await startPveVmDisks(
      vmid,
      disks.map((d) => ({ ...d, snaps: [] })),
    );
    const writer = new GuestWriter(live, [new Map(), new Map()], { blocks: 32, seed: 140 });
    const windows = new Map<string, Window>();
    try {
      writer.start();
      for (const snap of ['t1', 't2', 't3']) {
        windows.set(snap, (await writer.window(() => cliOk(s, ['vm', 'snapshot', String(vmid), snap, '--qmp', live.socket]))).window);
        await checkPveGraphDisks(live, vmid, disks, `after vm snapshot ${snap}`);
      }
      await cliOk(s, ['vm', 'delsnapshot', String(vmid), 't2', '--qmp', live.socket]);
      assert.deepEqual(await checkPveGraphDisks(live, vmid, disks, 'after vm delsnapshot t2'), [
        [undefined, 't3', 't1'],
        [undefined, 't3', 't1'],
      ]);
      writer.check();
      await writer.stop();
    } finally {
      await writer.stop().catch(() => undefined);
      await live.vm.stop();
    }
    const dir = join(s.path, 'images', String(vmid));
    for (const snap of ['t1', 't3']) {
      const perDisk = await Promise.all(
        disks.map((d, i) => snapshotInstants(writer, i, join(dir, `snap-${snap}-${nameOf(d.volid)}`), windows.get(snap) as Window, TOTAL_BLOCKS, s.root)),
      );
      // One transaction: some instant fits every disk at once.
      assert.ok(
        (perDisk[0] ?? []).some((j) => (perDisk[1] ?? []).includes(j)),
        `${snap}: both disks hold the VM's state at one common instant`,
      );
    }
    for (const [i, d] of disks.entries()) {
      await assertImages([
        {
          path: join(dir, nameOf(d.volid)),
          blocks: writer.stateAfter(i, writer.writes.length),
          totalBlocks: TOTAL_BLOCKS,
          context: `current layer of ${d.drive}`,
        },
      ]);
    }
  });
});
