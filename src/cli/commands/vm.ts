/**
 * `volchain vm …`: snapshots of all disks of a VM at once, and what a running VM has attached.
 */
import type { Command } from '@commander-js/extra-typings';
import { renderAttachInfo } from '../live-render.js';
import { onlyStorage, print, printJson, vmConfigOf, type CliContext } from '../context.js';

/** `vm snapshot|rollback|delsnapshot|attach-info`. */
export function addVmCommands(program: Command, ctx: CliContext): void {
  const vm = program.command('vm').description('snapshots of all disks of a VM at once');
  /** What every VM-wide snapshot command takes. */
  const vmSnapshotCommand = (name: string, description: string) =>
    vm
      .command(name)
      .description(description)
      .argument('<vmid>')
      .argument('<snap>')
      .option('--storage <id>', 'only disks on this storage')
      .option('--vm-config <file>', "the VM's PVE config, whose drives are the disks (default: /etc/pve/qemu-server/<vmid>.conf if it exists)")
      .option('--qmp <socket>', "the VM runs: act live through QEMU's QMP socket")
      .option('--dry-run', 'print the plans, change nothing')
      .option('--json', 'machine-readable output');
  vmSnapshotCommand('snapshot', 'snapshot every disk of a VM: all disks or none').action(async (vmid, snap, opts) =>
    ctx.mutating(
      opts,
      (vc, call) => vc.vmSnapshot(vmid, snap, { ...call, ...onlyStorage(opts.storage), ...vmConfigOf(opts.vmConfig) }),
      `created snapshot '${snap}' of every disk of VM ${vmid}`,
    ),
  );
  vmSnapshotCommand('rollback', 'roll every disk of a VM back to a snapshot')
    .option('--purge-newer', 'delete the snapshots newer than <snap> as well')
    .action(async (vmid, snap, opts) =>
      ctx.mutating(
        opts,
        (vc, call) => vc.vmRollback(vmid, snap, { ...call, purgeNewer: opts.purgeNewer ?? false, ...onlyStorage(opts.storage), ...vmConfigOf(opts.vmConfig) }),
        `rolled every disk of VM ${vmid} back to '${snap}'`,
      ),
    );
  vmSnapshotCommand('delsnapshot', 'delete a snapshot from every disk of a VM').action(async (vmid, snap, opts) =>
    ctx.mutating(
      opts,
      (vc, call) => vc.vmDeleteSnapshot(vmid, snap, { ...call, ...onlyStorage(opts.storage), ...vmConfigOf(opts.vmConfig) }),
      `deleted snapshot '${snap}' of every disk of VM ${vmid}`,
    ),
  );

  vm.command('attach-info')
    .description('show which QEMU block node uses which volume and layer of a running VM')
    .argument('<vmid>')
    .option('--qmp <socket>', "QEMU's QMP socket (default: $VOLCHAIN_QMP_DIR/<vmid>.qmp)")
    .option('--json', 'machine-readable output')
    .action(async (vmid, opts) => {
      const info = await (await ctx.open()).attachInfo(vmid, opts.qmp);
      if (opts.json) printJson(info);
      else print(renderAttachInfo(info));
    });
}
