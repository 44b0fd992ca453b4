/**
 * Backend capabilities are declared, not inferred from which methods exist: every backend has every method,
 * and `capabilities` says which of them do something on that storage. Shown on both backends: a declared
 * capability's methods act (dir reads a real base volume; LVM reaches for its volume group, which does not
 * exist here, so its methods fail naming the VG), and a missing capability's methods do nothing (nothing
 * changes on disk) or refuse with NotSupportedError, exit status 5.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Backend, BackendCapabilities } from '../../src/backends/backend.js';
import { CAPABILITY_METHODS, type SwitchCapability } from '../../src/backends/capabilities.js';
import { createBackend } from '../../src/backends/registry.js';
import { parseStorageConfig } from '../../src/config/index.js';
import { NotSupportedError } from '../../src/errors.js';
import { readSettings } from '../../src/settings.js';
import { snapshotOf } from '../integration/helpers.js';

const MiB = 1024 * 1024;
const VOLUME = 'vm-100-disk-0.qcow2';

let root = '';
let dir: Backend;
let lvm: Backend;

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'volchain-caps-'));
  const text = [
    `dir: files\n\tpath ${root}/store\n\tcontent images\n\tsnapshot-as-volume-chain 1\n`,
    // A VG that does not exist on this machine: whatever the LVM backend does, it has to ask LVM first.
    `lvm: thick\n\tvgname vgcapsmissing\n\tcontent images\n\tsnapshot-as-volume-chain 1\n`,
  ].join('\n');
  const config = parseStorageConfig(text, join(root, 'storage.cfg'));
  const backendOf = (id: string): Backend => {
    const def = config.storages.find((s) => s.id === id);
    assert.ok(def, id);
    return createBackend(def, { settings: readSettings({ VOLCHAIN_STATE_DIR: join(root, 'state') }) });
  };
  dir = backendOf('files');
  lvm = backendOf('thick');
  // Real images for the dir backend to act on: a volume and a template's base volume.
  await dir.createImage(100, VOLUME, 'qcow2', MiB);
  await dir.createImage(100, 'base-100-disk-1.qcow2', 'qcow2', 2 * MiB);
});

after(async () => {
  // dir's protectBase set the immutable flag on the base volume where the file system has one.
  spawnSync('chattr', ['-i', join(root, 'store', 'images', '100', 'base-100-disk-1.qcow2')]);
  await rm(root, { recursive: true, force: true });
});

/** One call of each switched method, with arguments that name the images made above. */
const PROBES: Record<string, (b: Backend) => Promise<unknown>> = {
  activate: (b) => b.activate(100, [VOLUME]),
  deactivate: (b) => b.deactivate(100, [VOLUME]),
  layerChanged: (b) => b.layerChanged(100, VOLUME),
  deferredRemovals: (b) => b.deferredRemovals(),
  finishRemovals: (b) => b.finishRemovals({}),
  pendingRemovals: (b) => b.pendingRemovals(),
  removalLog: (b) => Promise.resolve().then(() => b.removalLog()),
  inspectBase: (b) => b.inspectBase({ vmid: 100, name: 'base-100-disk-1.qcow2', format: 'qcow2' }),
  protectBase: (b) => b.protectBase(100, 'base-100-disk-1.qcow2'),
  createLinkedClone: (b) => b.createLinkedClone(101, 'vm-101-disk-0.qcow2', { vmid: 100, name: 'base-100-disk-1.qcow2', format: 'qcow2' }, 2 * MiB),
  fullLayerBytes: (b) => b.fullLayerBytes(MiB),
  frozenLayerBytes: (b) => b.frozenLayerBytes(100, VOLUME),
};

type Outcome = { kind: 'nothing' } | { kind: 'refused'; exitStatus: number } | { kind: 'acted'; detail: unknown };

/** What one call did: returned nothing, refused as not supported, or acted (returned something or failed on the way). */
async function outcomeOf(b: Backend, method: string): Promise<Outcome> {
  const probe = PROBES[method];
  assert.ok(probe, `a probe for ${method}`);
  try {
    const value = await probe(b);
    const empty =
      value === undefined || (Array.isArray(value) && value.length === 0) || JSON.stringify(value) === JSON.stringify({ finished: [], busy: [], waited: [] });
    return empty ? { kind: 'nothing' } : { kind: 'acted', detail: value };
  } catch (err) {
    if (err instanceof NotSupportedError) return { kind: 'refused', exitStatus: err.exitStatus };
    return { kind: 'acted', detail: err };
  }
}

const capabilityNames = Object.keys(CAPABILITY_METHODS) as SwitchCapability[];

describe('backend capabilities', () => {
  it('each backend declares every capability as a flag, and has every method each one switches', () => {
    for (const b of [dir, lvm]) {
      for (const cap of capabilityNames) {
        assert.equal(typeof b.capabilities[cap], 'boolean', `${b.kind}: capabilities.${cap}`);
        for (const method of CAPABILITY_METHODS[cap]) assert.equal(typeof b[method], 'function', `${b.kind}.${method}`);
      }
    }
    const flags = (c: BackendCapabilities): Record<SwitchCapability, boolean> =>
      Object.fromEntries(capabilityNames.map((cap) => [cap, c[cap]])) as Record<SwitchCapability, boolean>;
    assert.deepEqual(flags(dir.capabilities), { activation: false, layerRecords: false, deferredRemoval: false, baseVolumes: true, layerSizing: false });
    assert.deepEqual(flags(lvm.capabilities), { activation: true, layerRecords: true, deferredRemoval: true, baseVolumes: false, layerSizing: true });
  });

  it('a capability a backend lacks: each of its methods does nothing or refuses with NotSupportedError (exit 5), changing nothing on disk', async () => {
    const before = await snapshotOf(join(root, 'store'));
    let checked = 0;
    for (const b of [dir, lvm]) {
      for (const cap of capabilityNames.filter((c) => !b.capabilities[c])) {
        for (const method of CAPABILITY_METHODS[cap]) {
          const outcome = await outcomeOf(b, method);
          assert.notEqual(outcome.kind, 'acted', `${b.kind}.${method} (capabilities.${cap} false) acted: ${JSON.stringify(outcome)}`);
          if (outcome.kind === 'refused') assert.equal(outcome.exitStatus, 5, `${b.kind}.${method}`);
          checked++;
        }
      }
    }
    assert.equal(checked, 2 + 1 + 4 + 2 + 3, 'dir: activation, layer records, deferred removal, layer sizing; LVM: base volumes');
    assert.deepEqual(await snapshotOf(join(root, 'store')), before, 'nothing changed in the dir storage');
  });

  it('a capability a backend declares: its methods act (dir reads the base volume; LVM asks its VG)', async () => {
    for (const b of [dir, lvm]) {
      for (const cap of capabilityNames.filter((c) => b.capabilities[c])) {
        const outcomes = await Promise.all(CAPABILITY_METHODS[cap].map(async (m) => [m, await outcomeOf(b, m)] as const));
        // Every method either acts or, where it works from state this process gathered earlier (LVM's
        // deferredRemovals and pendingRemovals with no VG to read), has nothing to report; at least one acts.
        assert.ok(
          outcomes.some(([, o]) => o.kind === 'acted'),
          `${b.kind}: capabilities.${cap} is declared but none of ${CAPABILITY_METHODS[cap].join(', ')} acted`,
        );
        for (const [method, o] of outcomes) assert.notEqual(o.kind, 'refused', `${b.kind}.${method} refused though capabilities.${cap} is true`);
      }
    }
    const base = await outcomeOf(dir, 'inspectBase');
    assert.equal(base.kind, 'acted');
    assert.equal((base as { detail: { virtualSize: number } }).detail.virtualSize, 2 * MiB, 'dir read the base volume header');
    for (const method of ['activate', 'layerChanged', 'fullLayerBytes']) {
      const o = await outcomeOf(lvm, method);
      assert.equal(o.kind, 'acted', method);
      assert.match(String((o as { detail: unknown }).detail), /vgcapsmissing/, `LVM's ${method} asked for its VG`);
    }
  });
});
