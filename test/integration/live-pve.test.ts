/**
 * Live operations on a VM started the way Proxmox VE 9 starts it (issue 14). The QEMU command line is built
 * here from qemu-server's code (src/PVE/QemuServer/Blockdev.pm: generate_drive_blockdev, generate_throttle_group,
 * get_node_name; not from volchain): one nested -blockdev per drive, a `throttle` node `drive-scsi0` in the
 * throttle group `throttle-drive-scsi0` on top, format nodes `f<hash>` on file nodes `e<hash>` (hash = first
 * 30 hex digits of sha256("drive=scsi0,[snap=<name>,]volid=<volid>")), the snapshot layers as the top's nested
 * backing, every node read-write as PVE opens them, `discard-no-unref` on qcow2 nodes where this QEMU has it.
 * Then `vm snapshot --qmp` and live deletes while the guest writes (HMP qemu-io through the device), QEMU's
 * graph checked after each operation, and every layer's data proven after QEMU stops.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { BLOCK, MiB, checkAllLayers, cliFails, cliJson, cliOk, writePatterns, type Blocks, type TestStorage } from './helpers.js';
import { pveName, qemuHasDiscardNoUnref } from './pve-qemu.js';
import { guestWrite } from './qemu-harness.js';
import { GuestWriter, assertImages, diskChain, snapshotInstants, type Window } from './live-helpers.js';
import { startPveVm, startQmpVm, useLiveStorage } from './live-vm.js';

const VMID = 100;
const SIZE = 16 * MiB;
const TOTAL_BLOCKS = SIZE / BLOCK;
const TEST_TIMEOUT = { timeout: 300_000 };

let s: TestStorage;
useLiveStorage((storage) => (s = storage));

const imagesDir = (): string => join(s.path, 'images', String(VMID));

interface NodeInfo {
  'node-name': string;
  drv: string;
  file: string;
  ro: boolean;
}

describe('live operations on a VM that PVE 9 started', () => {
  it('snapshots and deletes under guest writes below the throttle node; the throttle stays on top and every layer holds its data', TEST_TIMEOUT, async () => {
    const volid = (await cliOk(s, ['alloc', s.id, String(VMID), String(SIZE)])).trim();
    const name = volid.split('/').pop() ?? '';
    await writePatterns(s.layer(VMID, name), [{ byte: 0xa0, offset: 0, len: 16 * BLOCK }]);
    const initial: Blocks = new Map(Array.from({ length: 16 }, (_, b) => [b, 0xa0]));
    await cliOk(s, ['vm', 'snapshot', String(VMID), 'base0']);
    const base0Path = join(imagesDir(), (await diskChain(imagesDir(), name))[1] as string);

    const live = await startPveVm(s, [
      {
        drive: 'scsi0',
        volid,
        layers: [
          [undefined, s.layer(VMID, name)],
          ['base0', base0Path],
        ],
      },
    ]);
    const { vm, socket } = live;
    const writer = new GuestWriter(live, [initial], { blocks: 64, seed: 14 });
    const windows = new Map<string, Window>();

    /** QEMU's graph as PVE needs it: the device on drive-scsi0 (throttle, its group alive), a chain as long as the one on disk. */
    const checkGraph = async (context: string): Promise<NodeInfo[]> => {
      const info = await cliJson<{ disks: { volid: string; open: boolean; devices: string[]; layers: { layer: string }[]; problems: string[] }[] }>(s, [
        'vm',
        'attach-info',
        String(VMID),
        '--qmp',
        socket,
      ]);
      const d = info.disks.find((x) => x.volid === volid);
      assert.ok(d?.open, `${context}: volchain finds ${volid} below the throttle node`);
      assert.deepEqual(d.problems, [], `${context}: QEMU and the headers agree`);
      assert.deepEqual(d.devices, ['scsi0'], `${context}: the device`);
      assert.deepEqual(
        d.layers.map((l) => l.layer),
        await diskChain(imagesDir(), name),
        `${context}: the chain`,
      );
      const blocks = await vm.client.execute<{ qdev?: string; inserted?: { 'node-name': string; drv: string } }[]>('query-block');
      const top = blocks.find((b) => b.qdev === 'scsi0')?.inserted;
      assert.deepEqual([top?.['node-name'], top?.drv], ['drive-scsi0', 'throttle'], `${context}: the throttle node is still the device's node`);
      const group = await vm.client.execute<{ path: string }[]>('qom-list', { path: '/objects/throttle-drive-scsi0' });
      assert.ok(group.length > 0, `${context}: the throttle group object exists`);
      return vm.client.execute<NodeInfo[]>('query-named-block-nodes', { flat: true });
    };

    try {
      const start = await checkGraph('at start');
      assert.ok(
        start.some((n) => n['node-name'] === pveName('f', 'scsi0', volid, 'base0')),
        'PVE names the snapshot layer by its snapshot',
      );
      // Writes before any live operation, recorded by the writer (sequential).
      for (let i = 0; i < 8; i++) await writer.writeOne();

      const { window: w1 } = await writer.window(() => cliOk(s, ['vm', 'snapshot', String(VMID), 's1', '--qmp', socket]));
      windows.set('s1', w1);
      await checkGraph('after snapshot s1');
      // The guest's writes reach the new top through the throttle node (HMP qemu-io on the guest device, whose node is drive-scsi0).
      await guestWrite(vm, { qdev: 'scsi0' }, 0xb2, 0, BLOCK);
      await writer.writeOne();
      writer.start();
      const { window: w2 } = await writer.window(() => cliOk(s, ['vm', 'snapshot', String(VMID), 's2', '--qmp', socket]));
      windows.set('s2', w2);
      await checkGraph('after snapshot s2');
      await new Promise((r) => setTimeout(r, 300));
      // The newest snapshot (the current layer's backing), live.
      await cliOk(s, ['vm', 'delsnapshot', String(VMID), 's2', '--qmp', socket]);
      writer.check();
      await writer.stop();
      const end = await checkGraph('after deleting s2');
      // Nodes volchain opened carry discard-no-unref exactly where this QEMU has it (7.2 refuses the option).
      const schema = JSON.stringify(await vm.client.execute('query-qmp-schema'));
      assert.equal(schema.includes('"discard-no-unref"'), await qemuHasDiscardNoUnref(), 'the version gate matches the QMP schema');
      assert.ok(end.length >= 3, 'throttle + at least one layer');
      assert.ok(writer.writes.length >= 20, `the guest wrote throughout (${writer.writes.length} writes)`);
    } catch (err) {
      if (!vm.isAlive()) console.error(`QEMU died: ${vm.stderr()}`);
      else if (process.env['VOLCHAIN_IT_DEBUG'] === '1') {
        const nodes = await vm.client.execute<NodeInfo[]>('query-named-block-nodes', { flat: true });
        console.error(nodes.map((n) => `${n['node-name']} ${n.drv} ro=${String(n.ro)} ${n.file.slice(0, 400)}`).join('\n'));
        console.error(JSON.stringify(await vm.client.execute('query-jobs')));
      }
      throw err;
    } finally {
      await writer.stop().catch(() => undefined);
      await live.stop();
    }

    // The 0xb2 write went through HMP outside the writer: the writer's block 0 state is overwritten unless a
    // later writer write hit block 0. Check s1 (frozen before it) by the writer's windows, and the current
    // layer by the writer's final state with block 0 as the later of the two.
    const chain = await diskChain(imagesDir(), name);
    assert.equal(chain.length, 3, `current, s1, base0 remain: ${chain.join(' -> ')}`);
    await assertImages([{ path: base0Path, blocks: initial, totalBlocks: TOTAL_BLOCKS, context: 'base0 (written before the VM started)' }]);
    const s1Path = join(imagesDir(), chain[1] as string);
    const fits = await snapshotInstants(writer, 0, s1Path, windows.get('s1') as Window, TOTAL_BLOCKS, s.root);
    assert.ok(fits.length > 0, 's1 holds the disk as it was at one instant of its snapshot');
    const final = writer.stateAfter(0, writer.writes.length);
    const hmpSeq = 8; // the 0xb2 write came after the writer's first 8 writes
    if (!writer.writes.slice(hmpSeq).some((w) => w.block === 0)) final.set(0, 0xb2);
    await assertImages([{ path: s.layer(VMID, name), blocks: final, totalBlocks: TOTAL_BLOCKS, context: 'current layer' }]);
    assert.ok((await checkAllLayers(s.path, VMID)) >= 3, 'qemu-img check of every layer');
  });

  it("qemu-args --drive-id opens a chain with PVE 9's names, throttle node and group; bad drive ids are refused", TEST_TIMEOUT, async () => {
    const volid = (await cliOk(s, ['alloc', s.id, '102', String(SIZE)])).trim();
    await cliOk(s, ['snapshot', 'create', volid, 'p1']);
    interface ArgsJson {
      volumes: { top: string; layers: { snapshot: string | null; node: string; protocolNode: string }[]; nodes: Record<string, unknown>[] }[];
      objects: Record<string, unknown>[];
      argv: string[];
    }
    const args = await cliJson<ArgsJson>(s, ['qemu-args', volid, '--drive-id', 'virtio1']);
    const v = args.volumes[0];
    assert.equal(v?.top, 'drive-virtio1');
    assert.deepEqual(
      v?.layers.map((l) => [l.node, l.protocolNode]),
      [
        [pveName('f', 'virtio1', volid), pveName('e', 'virtio1', volid)],
        [pveName('f', 'virtio1', volid, 'p1'), pveName('e', 'virtio1', volid, 'p1')],
      ],
    );
    assert.deepEqual(args.objects, [{ 'qom-type': 'throttle-group', id: 'throttle-drive-virtio1', limits: {} }]);
    const throttle = v?.nodes.find((n) => n['driver'] === 'throttle');
    assert.deepEqual(
      [throttle?.['node-name'], throttle?.['throttle-group'], throttle?.['file']],
      ['drive-virtio1', 'throttle-drive-virtio1', pveName('f', 'virtio1', volid)],
    );
    const qcow2 = v?.nodes.filter((n) => n['driver'] === 'qcow2') ?? [];
    assert.equal(qcow2.length, 2);
    const hasOption = await qemuHasDiscardNoUnref();
    for (const n of qcow2) assert.equal(n['discard-no-unref'] === true, hasOption, `discard-no-unref on ${String(n['node-name'])} only where QEMU has it`);
    assert.deepEqual(args.argv.slice(0, 2), ['-object', JSON.stringify(args.objects[0])]);

    // The command line QEMU accepts: started from it, volchain recognises the disk under the throttle node.
    const vm = await startQmpVm(s, 'args', { extraArgs: [...args.argv, '-device', 'virtio-blk-pci,drive=drive-virtio1,id=virtio1'] });
    try {
      const info = await cliJson<{ disks: { volid: string; open: boolean; devices: string[]; problems: string[] }[] }>(s, [
        'vm',
        'attach-info',
        '102',
        '--qmp',
        vm.socket,
      ]);
      const d = info.disks.find((x) => x.volid === volid);
      // virtio-blk's qdev is its QOM path (/machine/peripheral/virtio1/virtio-backend).
      assert.deepEqual([d?.open, d?.devices.length, d?.problems], [true, 1, []]);
      assert.match(d?.devices[0] ?? '', /virtio1/);
    } finally {
      await vm.stop();
    }

    await cliFails(s, ['qemu-args', volid, '--drive-id', 'scsi31'], { code: 2, match: /drive id "scsi31" is not a PVE drive name/ });
    await cliFails(s, ['qemu-args', volid, '--drive-id', 'scsi0', '--drive-id', 'scsi1'], { code: 2, match: /--drive-id is given 2 time\(s\) for 1 volid/ });
  });
});
