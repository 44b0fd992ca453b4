/**
 * PVE 9's node names (qemu-server Blockdev.pm get_node_name), the discard-no-unref gate, and QEMU's view of a
 * PVE drive: a throttle filter `drive-<id>` between the guest device and the chain's top.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { checkDriveId, parsePveTopNodeName, pveLayerNodeNames, pveThrottleGroupId, pveTopNodeName } from '../../src/qmp/pve-names.js';
import { schemaHasDiscardNoUnref } from '../../src/qmp/qemu-features.js';
import { parseQemuVersion, versionHasDiscardNoUnref } from '../../src/tools/qemu-system.js';
import { buildBlockView, type BlockDeviceInfo, type BlockInfo } from '../../src/qmp/index.js';
import { blockNodeInfo } from '../fixtures/qmp-nodes.js';

describe('PVE node names', () => {
  // Expected values computed with Perl's Digest::SHA::sha256_hex, as qemu-server does.
  it('hashes drive, snapshot and volid as qemu-server does', () => {
    assert.deepEqual(pveLayerNodeNames('scsi0', 'local:100/vm-100-disk-0.qcow2'), {
      format: 'f14746557d2a99c86b817f8f3ed7182',
      protocol: 'e14746557d2a99c86b817f8f3ed7182',
    });
    assert.equal(pveLayerNodeNames('scsi0', 'local:100/vm-100-disk-0.qcow2', 's1').format, 'f15fa30582b24ae07e48cd5d8b4e0e9');
    assert.equal(pveLayerNodeNames('scsi0', 'local:100/vm-100-disk-0.qcow2').format.length, 31);
  });
  it('names the throttle node and group, and parses the top name back', () => {
    assert.equal(pveTopNodeName('virtio1'), 'drive-virtio1');
    assert.equal(pveThrottleGroupId('virtio1'), 'throttle-drive-virtio1');
    assert.equal(parsePveTopNodeName('drive-scsi30'), 'scsi30');
    assert.equal(parsePveTopNodeName('drive-scsi31'), undefined);
    assert.equal(parsePveTopNodeName('fmt-abc'), undefined);
  });
  it('refuses drive ids PVE does not have, naming the value', () => {
    for (const bad of ['scsi31', 'virtio16', 'ide4', 'sata6', 'disk0', '', 'scsi0,x']) {
      assert.throws(
        () => checkDriveId(bad),
        (e: Error & { code?: string }) => e.code === 'INVALID_INPUT' && e.message.includes(JSON.stringify(bad)),
        bad,
      );
    }
    assert.equal(checkDriveId('efidisk0'), 'efidisk0');
  });
});

describe('discard-no-unref gate', () => {
  it('follows the QEMU version (8.1 and later) and the QMP schema', () => {
    assert.deepEqual(parseQemuVersion('QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18)'), [7, 2]);
    assert.equal(versionHasDiscardNoUnref([7, 2]), false);
    assert.equal(versionHasDiscardNoUnref([8, 0]), false);
    assert.equal(versionHasDiscardNoUnref([8, 1]), true);
    assert.equal(versionHasDiscardNoUnref([10, 0]), true);
    assert.equal(versionHasDiscardNoUnref(undefined), false);
    assert.equal(schemaHasDiscardNoUnref([{ name: '123', 'meta-type': 'object', members: [{ name: 'lazy-refcounts' }] }]), false);
    assert.equal(schemaHasDiscardNoUnref([{ name: '124', 'meta-type': 'object', members: [{ name: 'discard-no-unref' }] }]), true);
  });
});

function node(name: string, drv: string, file: string, ro: boolean, backing?: string): BlockDeviceInfo {
  return blockNodeInfo(name, drv, file, ro, 1 << 20, 4096, backing);
}

describe('QEMU view of a PVE drive', () => {
  // As QEMU 7.2 reports PVE's nested -blockdev: throttle drive-scsi0 -> fA (current) -> fB (snapshot s1).
  const base = '/s/images/100/snap-s1-vm-100-disk-0.qcow2';
  const top = '/s/images/100/vm-100-disk-0.qcow2';
  const topJson = `json:{"backing": {"driver": "qcow2", "file": {"driver": "file", "filename": "${base}"}}, "driver": "qcow2", "file": {"driver": "file", "filename": "${top}"}}`;
  const throttleJson = `json:{"throttle-group": "throttle-drive-scsi0", "driver": "throttle", "file": {"backing": {"driver": "qcow2", "file": {"driver": "file", "filename": "${base}"}}, "driver": "qcow2", "file": {"driver": "file", "filename": "${top}"}}}`;
  const nodes = [
    node('drive-scsi0', 'throttle', throttleJson, false),
    node('fA', 'qcow2', topJson, false, base),
    node('eA', 'file', top, false),
    node('fB', 'qcow2', base, false),
    node('eB', 'file', base, false),
  ];
  const blocks = [{ device: '', qdev: 'scsi0', inserted: { 'node-name': 'drive-scsi0' } }] as unknown as BlockInfo[];

  it('finds the chain below the throttle node and gives it the device', () => {
    const view = buildBlockView(nodes, blocks);
    assert.equal(view.chains.length, 1);
    const chain = view.chains[0];
    assert.deepEqual(
      chain?.layers.map((l) => [l.node, l.protocolNode, l.path]),
      [
        ['fA', 'eA', top],
        ['fB', 'eB', base],
      ],
    );
    assert.deepEqual(chain?.devices, ['scsi0']);
    assert.deepEqual(chain?.filters, ['drive-scsi0']);
    assert.deepEqual(view.strayDevices, []);
  });
  it('reports the device as stray when two nodes could be the throttle child', () => {
    const twin = node('fA2', 'qcow2', topJson, false, base);
    const view = buildBlockView([...nodes, twin], blocks);
    assert.deepEqual(view.strayDevices, [{ device: 'scsi0', node: 'drive-scsi0' }]);
  });
});
