/** The snapshot tree as `volchain snapshot list` prints it: data sizes, or why one is not known here. */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { renderSnapshotTree } from '../../src/cli/render.js';
import type { SnapshotListing } from '../../src/engine/volchain.js';

const MiB = 1024 * 1024;

function listing(data: number | null): SnapshotListing {
  const flags = { corrupt: data === null ? null : false, internalSnapshots: data === null ? null : [] };
  const entry = (name: string, parent: string | null, children: string[]) => ({
    name,
    layer: `snap_vm-100-disk-0_${name}.qcow2`,
    path: `/dev/vg/snap_vm-100-disk-0_${name}.qcow2`,
    parent,
    children,
    inCurrentChain: true,
    virtualSize: 64 * MiB,
    definedBytes: data,
    usedBytes: 68 * MiB,
    ...flags,
  });
  return {
    volid: 'thick:vm-100-disk-0.qcow2',
    mode: 'volume-chain',
    current: {
      layer: 'vm-100-disk-0.qcow2',
      path: '/dev/vg/vm-100-disk-0.qcow2',
      parent: 'two',
      virtualSize: 64 * MiB,
      definedBytes: data,
      usedBytes: 68 * MiB,
      ...flags,
    },
    snapshots: [entry('one', null, ['two']), entry('two', 'one', ['current'])],
  };
}

it("shows each layer's data when its tables were read, and says so when they could not be", () => {
  const read = renderSnapshotTree(listing(3 * MiB));
  assert.match(read, /one {2}\(3(\.0)? MiB data\)/);
  assert.match(read, /current {2}\(3(\.0)? MiB written since 'two'\) {2}<- you are here/);
  const inactive = renderSnapshotTree(listing(null));
  assert.equal(inactive.match(/data size unknown: LV not active on this host/g)?.length, 3, inactive);
  assert.doesNotMatch(inactive, /68/, 'the LV size is not shown as data');
});
