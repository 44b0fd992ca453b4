/**
 * Chain membership of layers whose names fit two volumes (issue 14): readVolumeTree over real qcow2 images made
 * with PVE's command lines, named as on LVM (`snap_<volume without .qcow2>_<S>.qcow2`, untagged as PVE leaves
 * them). The only fake is the backend's listing, which maps LV names to files in a temporary directory: what is
 * under test is which layers the headers join to which volume.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Backend, LayerStat } from '../../src/backends/backend.js';
import { findSnapshot, readVolumeTree, snapshotLayers } from '../../src/engine/read/volume-tree.js';
import { parseVolname, type VolumeRef } from '../../src/naming/index.js';
import { runCommand } from '../integration/helpers.js';

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'volchain-tree-names-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function qemuImg(args: string[]): Promise<void> {
  const r = await runCommand('qemu-img', args, { cwd: dir });
  assert.equal(r.code, 0, `qemu-img ${args.join(' ')}: ${r.stderr}`);
}

/** A base image, or (PVE's qemu_img_create_qcow2_backed) an overlay naming its parent relatively. */
async function image(name: string, backing?: string): Promise<void> {
  const opts = ['-o', 'extended_l2=on,cluster_size=128k'];
  if (backing === undefined) await qemuImg(['create', '-f', 'qcow2', ...opts, join(dir, name), '1M']);
  else await qemuImg(['create', '-F', 'qcow2', '-b', backing, '-f', 'qcow2', ...opts, join(dir, name)]);
}

function fakeLvmListing(names: readonly string[]): Backend {
  return {
    kind: 'lvm',
    capabilities: { baseVolumes: false },
    listLayerNames: async () => [...names],
    layerPath: (_vmid: number, name: string) => join(dir, name),
    statLayer: async (_vmid: number, name: string): Promise<LayerStat | undefined> => {
      if (!names.includes(name)) return undefined;
      const st = await stat(join(dir, name));
      return { usedBytes: st.size, identity: String(st.ino) };
    },
  } as unknown as Backend;
}

const ref = (name: string): VolumeRef => parseVolname('lvm', 'san', name);

test("lvm: snap_vm-120-a_b_cd.qcow2 is vm-120-a's snapshot b_cd when the headers say so, not vm-120-a_b's cd", async () => {
  // vm-120-a.qcow2 with snapshot 'b_cd'; vm-120-a_b.qcow2 with snapshot 'x-y' (hyphen, as PVE allows).
  await image('snap_vm-120-a_b_cd.qcow2');
  await image('vm-120-a.qcow2', 'snap_vm-120-a_b_cd.qcow2');
  await image('snap_vm-120-a_b_x-y.qcow2');
  await image('vm-120-a_b.qcow2', 'snap_vm-120-a_b_x-y.qcow2');
  const backend = fakeLvmListing(['vm-120-a.qcow2', 'snap_vm-120-a_b_cd.qcow2', 'vm-120-a_b.qcow2', 'snap_vm-120-a_b_x-y.qcow2']);

  const a = await readVolumeTree(backend, ref('vm-120-a.qcow2'), { allocation: false });
  assert.deepEqual(
    snapshotLayers(a).map((l) => [l.snapshot, l.name]),
    [['b_cd', 'snap_vm-120-a_b_cd.qcow2']],
  );
  // snap_vm-120-a_b_x-y.qcow2 would be vm-120-a's 'b_x-y' by name; its headers put it in vm-120-a_b's chain.
  assert.deepEqual(a.foreignLayers, ['snap_vm-120-a_b_x-y.qcow2']);

  const ab = await readVolumeTree(backend, ref('vm-120-a_b.qcow2'), { allocation: false });
  assert.deepEqual(
    snapshotLayers(ab).map((l) => [l.snapshot, l.name]),
    [['x-y', 'snap_vm-120-a_b_x-y.qcow2']],
  );
  assert.deepEqual(ab.foreignLayers, ['snap_vm-120-a_b_cd.qcow2']);
  assert.equal(findSnapshot(ab, 'cd'), undefined, "vm-120-a's layer is not vm-120-a_b's snapshot 'cd'");
});

test('an ambiguous layer that cannot be read fails only the volume whose chain needs it', async () => {
  // vm-121-p_q.qcow2 is backed by snap_vm-121-p_q_r-s.qcow2 (its snapshot 'r-s'), which is also what vm-121-p's
  // snapshot 'q_r-s' would be called. That layer is a version 2 image, which volchain refuses.
  await qemuImg(['create', '-f', 'qcow2', '-o', 'compat=0.10', join(dir, 'snap_vm-121-p_q_r-s.qcow2'), '1M']);
  await image('vm-121-p_q.qcow2', 'snap_vm-121-p_q_r-s.qcow2');
  await image('vm-121-p.qcow2');
  const backend = fakeLvmListing(['vm-121-p.qcow2', 'vm-121-p_q.qcow2', 'snap_vm-121-p_q_r-s.qcow2']);
  const p = await readVolumeTree(backend, ref('vm-121-p.qcow2'), { allocation: false });
  assert.deepEqual(snapshotLayers(p), [], 'vm-121-p reads fine: the bad layer is not in its chain');
  await assert.rejects(readVolumeTree(backend, ref('vm-121-p_q.qcow2'), { allocation: false }), /snap_vm-121-p_q_r-s\.qcow2: qcow2 version 2/);
});
