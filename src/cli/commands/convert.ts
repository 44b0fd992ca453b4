/**
 * Commands that give a volume another form and so another volid: `convert` (raw -> qcow2, so it can take
 * snapshots) and `template` (a template's base volume, as PVE's create_base). Each prints the new volid; the
 * VM's config is not edited (README says how to point it at the new volid).
 */
import type { Command } from '@commander-js/extra-typings';
import { Option } from '@commander-js/extra-typings';
import type { Plan } from '../../model/plan.js';
import type { CliContext } from '../context.js';

/** The new volid the (single) plan gives its volume. */
function newVolid(plans: readonly Plan[]): string {
  return plans[0]?.newVolid ?? '';
}

export function addConvertCommands(program: Command, ctx: CliContext): void {
  program
    .command('convert')
    .description('turn a raw volume into a qcow2 volume with the same data (so it can take snapshots); prints the new volid')
    .argument('<volid>', 'a raw volume (dir: vm-<vmid>-….raw, LVM: an LV without .qcow2)')
    .addOption(new Option('--format <format>', 'the format to convert to').choices(['qcow2'] as const).makeOptionMandatory())
    .option('--qmp <socket>', "the VM's QMP socket: refused when the VM runs")
    .option('--dry-run', 'print the plan, change nothing')
    .option('--json', 'machine-readable output')
    .action(async (volid, opts) => ctx.mutating(opts, (vc, call) => vc.convert(volid, { ...call, format: opts.format }), newVolid));

  program
    .command('template')
    .description("turn a volume into a template's read-only base volume (base-<vmid>-…), as Proxmox VE does; prints the new volid")
    .argument('<volid>', 'a volume without snapshots, on a storage with base volumes (dir)')
    .option('--qmp <socket>', "the VM's QMP socket: refused when the VM runs")
    .option('--dry-run', 'print the plan, change nothing')
    .option('--json', 'machine-readable output')
    .action(async (volid, opts) => ctx.mutating(opts, (vc, call) => vc.template(volid, call), newVolid));
}
