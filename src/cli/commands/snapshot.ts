/**
 * `volchain snapshot …`: snapshots of one volume (create, list, rollback, delete).
 */
import type { Command } from '@commander-js/extra-typings';
import { renderSnapshotTree } from '../render.js';
import { print, printJson, type CliContext } from '../context.js';

/** `snapshot create|list|rollback|delete`. */
export function addSnapshotCommands(program: Command, ctx: CliContext): void {
  const snapshot = program.command('snapshot').description('snapshots of one volume');
  snapshot
    .command('create')
    .description('take a snapshot')
    .argument('<volid>')
    .argument('<snap>', 'snapshot name: a letter, then 1-39 letters, digits or _')
    .option('--qmp <socket>', "the VM runs: act live through QEMU's QMP socket")
    .option('--dry-run', 'print the plan, change nothing')
    .option('--json', 'machine-readable output')
    .action(async (volid, snap, opts) => ctx.mutating(opts, (vc, call) => vc.snapshotCreate(volid, snap, call), `created snapshot '${snap}' of ${volid}`));
  snapshot
    .command('list')
    .description('show the snapshot tree')
    .argument('<volid>')
    .option('--json', 'machine-readable output')
    .action(async (volid, opts) => {
      const listing = await (await ctx.open()).snapshotList(volid);
      if (opts.json) printJson(listing);
      else print(renderSnapshotTree(listing));
    });
  snapshot
    .command('rollback')
    .description('return to any snapshot (newer snapshots stay as a branch)')
    .argument('<volid>')
    .argument('<snap>')
    .option('--purge-newer', 'delete the snapshots newer than <snap> as well')
    .option('--qmp <socket>', "the VM runs: act live through QEMU's QMP socket")
    .option('--dry-run', 'print the plan, change nothing')
    .option('--json', 'machine-readable output')
    .action(async (volid, snap, opts) =>
      ctx.mutating(
        opts,
        (vc, call) => vc.snapshotRollback(volid, snap, { ...call, purgeNewer: opts.purgeNewer ?? false }),
        `rolled ${volid} back to '${snap}'`,
      ),
    );
  snapshot
    .command('delete')
    .description('delete any snapshot, keeping the data every other snapshot needs')
    .argument('<volid>')
    .argument('<snap>')
    .option('--qmp <socket>', "the VM runs: act live through QEMU's QMP socket")
    .option('--dry-run', 'print the plan, change nothing')
    .option('--json', 'machine-readable output')
    .action(async (volid, snap, opts) => ctx.mutating(opts, (vc, call) => vc.snapshotDelete(volid, snap, call), `deleted snapshot '${snap}' of ${volid}`));
}
