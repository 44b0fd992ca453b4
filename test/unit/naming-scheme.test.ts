/**
 * Per-storage naming rules sit behind one NamingScheme per kind, chosen in one place (naming/schemes.ts): the
 * shared functions build every name from the scheme, and nothing else in naming/ compares storage kinds.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { NotSupportedError } from '../../src/errors.js';
import {
  formatVolid,
  isStorageKind,
  isVolchainTemporaryName,
  namingScheme,
  nextFreeDiskName,
  snapshotLayerName,
  temporaryLayerName,
  type StorageKind,
} from '../../src/naming/index.js';
import { ROOT } from '../integration/helpers.js';

const KINDS: StorageKind[] = ['dir', 'lvm'];

test('the registry gives each storage kind its scheme and refuses any other kind (exit 5)', () => {
  for (const kind of KINDS) {
    assert.equal(namingScheme(kind).kind, kind);
    assert.ok(isStorageKind(kind));
  }
  assert.equal(isStorageKind('zfs'), false);
  assert.throws(
    () => namingScheme('zfs' as StorageKind),
    (err: unknown) => err instanceof NotSupportedError && err.exitStatus === 5 && err.message.includes(`"zfs" is not supported: expected 'dir' or 'lvm'`),
  );
});

test("names are built from the kind's scheme: snapshot layers, temporaries, new disks, volids", () => {
  const cases: { kind: StorageKind; volume: string; snap: string; tmp: string; raw: string; volid: string }[] = [
    {
      kind: 'dir',
      volume: 'vm-100-disk-0.qcow2',
      snap: 'snap-s1-vm-100-disk-0.qcow2',
      tmp: '.volchain-tmp-create-vm-100-disk-0.qcow2',
      raw: 'vm-100-disk-0.raw',
      volid: 'st:100/vm-100-disk-0.qcow2',
    },
    {
      kind: 'lvm',
      volume: 'vm-100-disk-0.qcow2',
      snap: 'snap_vm-100-disk-0_s1.qcow2',
      tmp: 'volchain-tmp-create-vm-100-disk-0.qcow2',
      raw: 'vm-100-disk-0',
      volid: 'st:vm-100-disk-0.qcow2',
    },
  ];
  for (const c of cases) {
    const scheme = namingScheme(c.kind);
    const { prefix, suffix } = scheme.snapshotAffixes(c.volume);
    assert.equal(snapshotLayerName(c.kind, c.volume, 's1'), `${prefix}s1${suffix}`, c.kind);
    assert.equal(snapshotLayerName(c.kind, c.volume, 's1'), c.snap, c.kind);
    assert.equal(temporaryLayerName(c.kind, c.volume, 'create'), c.tmp, c.kind);
    assert.ok(c.tmp.startsWith(`${scheme.temporaryPrefix}volchain-tmp-`), c.kind);
    assert.deepEqual(isVolchainTemporaryName(c.tmp, c.kind), { purpose: 'create', volumeName: c.volume });
    assert.equal(isVolchainTemporaryName(c.tmp, c.kind === 'dir' ? 'lvm' : 'dir'), undefined, `${c.kind}: the other kind's form`);
    assert.equal(nextFreeDiskName(c.kind, 100, 'raw', []), c.raw);
    assert.equal(nextFreeDiskName(c.kind, 100, 'raw', []), scheme.diskName('vm-100-disk-0', 'raw'));
    assert.equal(formatVolid({ storage: 'st', kind: c.kind, vmid: 100, name: c.volume }), c.volid);
  }
});

test('naming/ compares storage kinds only in its registry and scheme files', () => {
  const dir = join(ROOT, 'src', 'naming');
  const allowed = new Set(['schemes.ts', 'scheme.ts', 'dir-scheme.ts', 'lvm-scheme.ts', 'types.ts']);
  const offenders: string[] = [];
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.ts') && !allowed.has(f))) {
    const text = readFileSync(join(dir, file), 'utf8');
    for (const m of text.matchAll(/kind\s*[!=]==\s*'[a-z]+'|'[a-z]+'\s*[!=]==\s*kind/g)) offenders.push(`${file}: ${m[0]}`);
  }
  assert.deepEqual(offenders, []);
});
