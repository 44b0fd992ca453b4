/**
 * Commands on one volume as a whole: alloc, free, list, path, info, activate, deactivate, resize, and
 * qemu-args (how QEMU opens volumes).
 */
import type { Command } from '@commander-js/extra-typings';
import { Option } from '@commander-js/extra-typings';
import { parseVmid } from '../../naming/index.js';
import { renderActivation, renderInfo, renderVolumes } from '../render.js';
import { renderQemuArgs } from '../live-render.js';
import { print, printJson, type CliContext } from '../context.js';

/** alloc, free, list, path, info, activate, deactivate, resize (in the order `--help` lists them). */
export function addVolumeCommands(program: Command, ctx: CliContext): void {
  program
    .command('alloc')
    .description('allocate a new volume and print its volid')
    .argument('<storage>', 'storage id')
    .argument('<vmid>', 'VM id owning the volume')
    .argument('<size>', 'virtual size: bytes, or with K/M/G/T suffix (powers of 1024)')
    .option('--name <name>', 'volume name (default: next free vm-<vmid>-disk-<n>)')
    .addOption(new Option('--format <format>', 'image format').choices(['qcow2', 'raw'] as const))
    .option('--json', 'machine-readable output')
    .action(async (storage, vmid, size, opts) => {
      const vc = await ctx.open();
      const volid = await vc.alloc(storage, vmid, size, {
        ...(opts.name !== undefined ? { name: opts.name } : {}),
        ...(opts.format !== undefined ? { format: opts.format } : {}),
      });
      if (opts.json) printJson({ volid });
      else print(volid);
    });

  program
    .command('free')
    .description('remove a volume with all its snapshot layers')
    .argument('<volid>')
    .option('--dry-run', 'print the plan, change nothing')
    .option('--json', 'machine-readable output')
    .action(async (volid, opts) => ctx.mutating(opts, (vc, call) => vc.free(volid, call), `removed ${volid}`));

  program
    .command('list')
    .description('list the volumes of a storage')
    .argument('<storage>')
    .option('--vmid <vmid>', 'only volumes of this VM')
    .option('--json', 'machine-readable output')
    .action(async (storage, opts) => {
      const vc = await ctx.open();
      const volumes = await vc.list(storage, opts.vmid !== undefined ? { vmid: parseVmid(opts.vmid) } : {});
      if (opts.json) printJson({ volumes });
      else print(renderVolumes(volumes));
    });

  program
    .command('path')
    .description('print the path of a volume (or of one of its snapshot layers)')
    .argument('<volid>')
    .option('--snapshot <name>', "path of this snapshot's layer")
    .option('--json', 'machine-readable output')
    .action(async (volid, opts) => {
      const vc = await ctx.open();
      const path = await vc.path(volid, opts.snapshot !== undefined ? { snapshot: opts.snapshot } : {});
      if (opts.json) printJson({ volid, path });
      else print(path);
    });

  program
    .command('info')
    .description('show format, sizes and snapshots of a volume')
    .argument('<volid>')
    .option('--deep', 'also run qemu-img check on every layer')
    .option('--json', 'machine-readable output')
    .action(async (volid, opts) => {
      const info = await (await ctx.open()).info(volid, { deep: opts.deep ?? false });
      if (opts.json) printJson(info);
      else print(renderInfo(info));
    });

  const activation = (action: 'activate' | 'deactivate', description: string) =>
    program
      .command(action)
      .description(description)
      .argument('<volid>')
      .option('--json', 'machine-readable output')
      .action(async (volid, opts) => {
        const vc = await ctx.open();
        const result = action === 'activate' ? await vc.activate(volid) : await vc.deactivate(volid);
        if (opts.json) printJson(result);
        else print(renderActivation(result, action));
      });
  activation(
    'activate',
    "make every layer of a volume's chain usable on this host (LVM: lvchange -ay, exclusive -aey on a shared VG); " +
      'on dir storage there is nothing to activate: it succeeds doing nothing, as in Proxmox VE',
  );
  activation(
    'deactivate',
    "release every layer of a volume's chain on this host (LVM: lvchange -an; fails while a layer is open, e.g. by a " +
      'running VM); on dir storage it succeeds doing nothing, as in Proxmox VE',
  );

  program
    .command('resize')
    .description('grow a volume to a new virtual size (volumes never shrink)')
    .argument('<volid>')
    .argument('<size>', 'new virtual size')
    .option('--dry-run', 'print the plan, change nothing')
    .option('--json', 'machine-readable output')
    .action(async (volid, size, opts) => ctx.mutating(opts, (vc, call) => vc.resize(volid, size, call), `resized ${volid}`));
}

/** `qemu-args`: the -blockdev options for volumes, headers validated first. */
export function addQemuArgsCommand(program: Command, ctx: CliContext): void {
  program
    .command('qemu-args')
    .description('print the -blockdev options that open volumes the way volchain expects (headers validated first)')
    .argument('<volid...>')
    .option('--json', "machine-readable output (with each volume's top node for -device ...,drive=)")
    .option(
      '--drive-id <id>',
      "PVE drive id (scsi0, virtio1, ...) of the volid in the same position: PVE 9's node names and throttle node",
      (v: string, prev: string[]) => [...prev, v],
      [] as string[],
    )
    .action(async (volids, opts) => {
      const args = await (await ctx.open()).qemuArgs(volids, { driveIds: opts.driveId });
      if (opts.json) printJson(args);
      else print(renderQemuArgs(args));
    });
}
