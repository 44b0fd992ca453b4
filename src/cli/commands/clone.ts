/**
 * `volchain clone`: a full, independent copy of a volume (or of one snapshot's view) as a new qcow2 volume
 * on any storage. Parses, calls `Volchain.clone`, renders: a progress bar on a terminal while the copy runs,
 * the plan with the bytes to copy and the space needed for --dry-run, the new volid when done.
 */
import type { Command } from '@commander-js/extra-typings';
import { InvalidInputError } from '../../errors.js';
import type { Plan } from '../../model/plan.js';
import { formatSize } from '../../naming/index.js';
import type { PlansJson } from '../../results.js';
import { print, printJson, type CliContext } from '../context.js';
import { progressReporter } from '../progress.js';
import { renderPlan } from '../render.js';

export function addCloneCommand(program: Command, ctx: CliContext): void {
  program
    .command('clone')
    .description(
      'copy a volume (its current state, or one snapshot) into a new volume without snapshots, on any storage; ' +
        "with --linked, make a linked clone of a template's base volume instead (on the base's storage)",
    )
    .argument('<volid>', "the volume to copy (with --linked: a template's base volume)")
    .argument('<target-storage>', "the storage the new volume goes to (dir or LVM, the same or another; with --linked: the base's)")
    .argument('<vmid>', 'the VM the new volume belongs to')
    .option('--snapshot <snap>', "copy this snapshot's view instead of the current state")
    .option('--linked', "a linked clone: a new qcow2 volume backed by the template's base volume <volid>, which it only reads (as PVE's linked clones)")
    .option('--name <name>', 'the new volume name (default: the next free vm-<vmid>-disk-<n>.qcow2)')
    .option('--qmp <socket>', "the source VM's QMP socket: a running VM's current state is refused (clone a snapshot instead)")
    .option('--dry-run', 'print the plan, the bytes to copy and the space needed; change nothing')
    .option('--json', 'machine-readable output')
    .action(async (volid, targetStorage, vmid, opts) => {
      if (opts.linked && opts.snapshot !== undefined) {
        // PVE's clone_image: "this storage type does not support clone_image on snapshot"; a base has no snapshots.
        throw new InvalidInputError("--linked and --snapshot do not go together: a linked clone is backed by a template's base volume, which has no snapshots");
      }
      const vc = await ctx.open();
      const progress = progressReporter(!opts.json && !opts.dryRun);
      let plan: Plan;
      try {
        plan = opts.linked
          ? await vc.linkedClone(volid, targetStorage, vmid, {
              dryRun: opts.dryRun ?? false,
              ...(opts.name !== undefined ? { name: opts.name } : {}),
              ...(progress.onEvent ? { onEvent: progress.onEvent } : {}),
            })
          : await vc.clone(volid, targetStorage, vmid, {
              dryRun: opts.dryRun ?? false,
              ...(opts.snapshot !== undefined ? { snapshot: opts.snapshot } : {}),
              ...(opts.name !== undefined ? { name: opts.name } : {}),
              ...(opts.qmp !== undefined ? { qmp: opts.qmp } : {}),
              ...(progress.onEvent ? { onEvent: progress.onEvent } : {}),
            });
      } finally {
        progress.stop();
      }
      if (opts.json) printJson({ dryRun: opts.dryRun ?? false, plans: [plan] } satisfies PlansJson);
      else if (opts.dryRun) print([renderPlan(plan), ...renderCloneSpace(plan)].join('\n'));
      else if (opts.linked) print(`linked clone of ${volid}: ${plan.volid}`);
      else print(`cloned ${opts.snapshot !== undefined ? `snapshot '${opts.snapshot}' of ` : ''}${volid} to ${plan.volid}`);
    });
}

function renderCloneSpace(plan: Plan): string[] {
  const c = plan.clone;
  if (!c) return [];
  return [
    `space needed on the target: ${formatSize(c.spaceNeededBytes)} (${c.spaceNeededBytes} bytes) of ${formatSize(c.freeBytes)} free`,
    `new volume: ${plan.volid} (qcow2, ${c.virtualSize} bytes virtual)`,
  ];
}
