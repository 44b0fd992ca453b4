/**
 * `volchain move`: a volume with its whole snapshot tree to another storage, or reassigned to another VM on
 * the same storage (--vmid). Parses, calls `Volchain.move`, renders: a progress bar on a terminal while the
 * layers are copied and compared, the plan with the bytes to copy and the space needed for --dry-run, the new
 * volid when done (the VM configuration is not edited).
 */
import type { Command } from '@commander-js/extra-typings';
import type { Plan } from '../../model/plan.js';
import { formatSize } from '../../naming/index.js';
import type { PlansJson } from '../../results.js';
import { print, printJson, type CliContext } from '../context.js';
import { progressReporter } from '../progress.js';
import { renderPlan } from '../render.js';

export function addMoveCommand(program: Command, ctx: CliContext): void {
  program
    .command('move')
    .description('move a volume with all its snapshots to another storage, or (--vmid on the same storage) reassign it to another VM')
    .argument('<volid>', 'the volume to move')
    .argument('<target-storage>', 'where it goes (dir or LVM); its own storage with --vmid reassigns it in place')
    .option('--vmid <vmid>', 'the VM the volume belongs to afterwards (default: the same)')
    .option('--qmp <socket>', "the VM's QMP socket: a running VM is refused")
    .option('--dry-run', 'print the plan, the bytes to copy and the space needed; change nothing')
    .option('--json', 'machine-readable output')
    .action(async (volid, targetStorage, opts) => {
      const vc = await ctx.open();
      const progress = progressReporter(!opts.json && !opts.dryRun);
      let plan: Plan;
      try {
        plan = await vc.move(volid, targetStorage, {
          dryRun: opts.dryRun ?? false,
          ...(opts.vmid !== undefined ? { vmid: opts.vmid } : {}),
          ...(opts.qmp !== undefined ? { qmp: opts.qmp } : {}),
          ...(progress.onEvent ? { onEvent: progress.onEvent } : {}),
        });
      } finally {
        progress.stop();
      }
      if (opts.json) printJson({ dryRun: opts.dryRun ?? false, plans: [plan] } satisfies PlansJson);
      else if (opts.dryRun) print(renderMovePlan(plan).join('\n'));
      else print(`moved ${volid} to ${plan.newVolid ?? plan.volid} (update the VM configuration to the new volid)`);
    });
}

function renderMovePlan(plan: Plan): string[] {
  const m = plan.move;
  const out = [renderPlan(plan)];
  if (!m) return out;
  if (m.finish) out.push('then, on the source:', renderPlan(m.finish));
  if (plan.operation === 'move') {
    out.push(
      `bytes to copy: ${formatSize(m.bytesToCopy)} (${m.bytesToCopy} bytes) in ${m.layers} layer(s)`,
      `space needed on the target: ${formatSize(m.spaceNeededBytes)} (${m.spaceNeededBytes} bytes) of ${formatSize(m.freeBytes)} free`,
    );
  }
  out.push(`new volid: ${plan.newVolid ?? plan.volid}`);
  return out;
}
