/**
 * A live VM-wide snapshot takes the disks of the VM's PVE config too (issue 14): a running QEMU has one disk
 * open, the VM has a second volume on the storage that its config lists as `unused0`; `vm snapshot --qmp
 * --vm-config` plans and snapshots the open disk only, and the layers hold the right data once QEMU is stopped.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MiB, assertPattern, checkClean, cliJson, cliOk, writePattern, type TestStorage } from './helpers.js';
import { startVm, useLiveStorage } from './live-vm.js';

const VMID = 150;

let s: TestStorage;
useLiveStorage((storage) => (s = storage));

describe('live vm snapshot with a VM config', () => {
  it('snapshots the config’s drive that QEMU has open, not the unused volume beside it', { timeout: 120_000 }, async () => {
    const disk = await s.vc.alloc(s.id, VMID, 8 * MiB, { name: `vm-${VMID}-disk-0.qcow2` });
    await s.vc.alloc(s.id, VMID, 8 * MiB, { name: `vm-${VMID}-disk-1.qcow2` });
    await writePattern(s.layer(VMID, `vm-${VMID}-disk-0.qcow2`), 0xd1, 0, MiB);
    const conf = join(s.root, `${VMID}.conf`);
    await writeFile(
      conf,
      [`scsi0: ${disk},iothread=1,size=8M`, 'scsihw: virtio-scsi-single', `unused0: ${s.id}:${VMID}/vm-${VMID}-disk-1.qcow2`, ''].join('\n'),
    );

    const live = await startVm(s, [disk]);
    try {
      // Without the config the unused volume counts as a disk of the VM; with it, only scsi0 does.
      const volidsOf = async (extra: string[]): Promise<string[]> =>
        (await cliJson<{ plans: { volid: string }[] }>(s, ['vm', 'snapshot', String(VMID), 'live1', '--qmp', live.socket, '--dry-run', ...extra])).plans.map(
          (p) => p.volid,
        );
      assert.deepEqual(await volidsOf([]), [disk, `${s.id}:${VMID}/vm-${VMID}-disk-1.qcow2`]);
      assert.deepEqual(await volidsOf(['--vm-config', conf]), [disk]);
      await cliOk(s, ['vm', 'snapshot', String(VMID), 'live1', '--qmp', live.socket, '--vm-config', conf]);
    } finally {
      await live.stop();
    }
    await assertPattern(s.layer(VMID, `vm-${VMID}-disk-0.qcow2`, 'live1'), 0xd1, 0, MiB);
    await assertPattern(s.layer(VMID, `vm-${VMID}-disk-0.qcow2`), 0xd1, 0, MiB);
    await checkClean(s.layer(VMID, `vm-${VMID}-disk-0.qcow2`));
    await assert.rejects(stat(s.layer(VMID, `vm-${VMID}-disk-1.qcow2`, 'live1')), 'the unused volume got a snapshot layer');
  });
});
