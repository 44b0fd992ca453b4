/**
 * Commands that look after unfinished work: status, wipe (saferemove's removals), repair.
 */
import type { Command } from '@commander-js/extra-typings';
import { InvalidInputError } from '../../errors.js';
import type { RepairJson, StatusJson, WipeJson } from '../../results.js';
import { parseVmid } from '../../naming/index.js';
import { escapeUnsafe } from '../../quote.js';
import { renderRemoval, wipeReporter } from '../progress.js';
import { renderJournalLeftover } from '../render.js';
import { onlyStorage, print, printJson, type CliContext } from '../context.js';

/** `status`, `wipe`, `repair`. */
export function addMaintenanceCommands(program: Command, ctx: CliContext): void {
  program
    .command('status')
    .description('show unfinished operations, and removed LVs still being wiped (saferemove)')
    .option('--json', 'machine-readable output')
    .action(async (opts) => {
      const vc = await ctx.open();
      const pending = await vc.status();
      const wipes = await vc.pendingRemovals();
      const journalFiles = await vc.journalLeftovers();
      if (opts.json) printJson({ pending, wipes, journalFiles } satisfies StatusJson);
      else if (pending.length === 0 && wipes.length === 0 && journalFiles.length === 0) print('no unfinished operations');
      else {
        for (const p of pending)
          print(
            `${p.volid}: ${p.plan.operation} started ${p.startedAt} by pid ${p.pid} on ${p.host}, ${p.summaryOnly ? 'steps not readable here (its journal LV is not active on this host)' : `${p.completedSteps}/${p.plan.steps.length} steps done`}${p.error ? ` (stopped: ${escapeUnsafe(p.error)})` : ''}`,
          );
        for (const w of wipes) print(renderRemoval(w));
        for (const f of journalFiles) print(renderJournalLeftover(f));
      }
    });

  program
    .command('wipe')
    .description(
      "finish saferemove's removals now: zero and remove the del- LVs that no process is wiping (LVM), with a " +
        'progress bar on a terminal; operations start this in the background by themselves',
    )
    .option('--storage <id>', 'only this storage (default: every storage)')
    .option('--vmid <vmid>', 'only LVs of this VM')
    .option('--wait', 'also wait for wipes another process is running (and finish them if it dies)')
    .option('--json', 'machine-readable output')
    .action(async (opts) => {
      const vc = await ctx.open();
      const reporter = wipeReporter(!opts.json);
      let result;
      try {
        result = await vc.wipe({
          ...onlyStorage(opts.storage),
          ...(opts.vmid !== undefined ? { vmid: parseVmid(opts.vmid) } : {}),
          wait: opts.wait ?? false,
          ...(reporter.onProgress ? { onProgress: reporter.onProgress } : {}),
          ...(reporter.log ? { log: reporter.log } : {}),
        });
      } finally {
        reporter.stop();
      }
      if (opts.json) {
        printJson({ wiped: result.finished, waited: result.waited, busy: result.busy } satisfies WipeJson);
        return;
      }
      const lines = [
        ...result.finished.map(
          (f) => `wiped and removed ${f.storage}:${f.layer} (${f.bytes} bytes${f.resumedFromBytes > 0 ? `, continued at ${f.resumedFromBytes}` : ''})`,
        ),
        ...result.waited.map((w) => `${w.storage}:${w.layer} was wiped and removed by pid ${w.pid ?? '?'}`),
        ...result.busy.map((b) => `${renderRemoval(b)}: 'volchain wipe --wait' waits for it`),
      ];
      print(lines.length > 0 ? lines.join('\n') : 'nothing to wipe');
    });

  program
    .command('repair')
    .description('finish interrupted operations')
    .argument('[volid]', 'only this volume')
    .option('--all', 'every volume of every storage')
    .option('--qmp <socket>', "QEMU's QMP socket, if an interrupted live operation's VM moved to another one")
    .option('--dry-run', 'print what would be done')
    .option('--json', 'machine-readable output')
    .action(async (volid, opts) => {
      if (volid === undefined && !opts.all) throw new InvalidInputError('repair needs a <volid> or --all');
      const results = await (
        await ctx.open()
      ).repair(volid !== undefined ? { volid } : {}, {
        dryRun: opts.dryRun ?? false,
        ...(opts.qmp !== undefined ? { qmp: opts.qmp } : {}),
      });
      if (opts.json) printJson({ dryRun: opts.dryRun ?? false, repaired: results } satisfies RepairJson);
      else if (results.length === 0) print('nothing to repair');
      else for (const r of results) print(`${opts.dryRun ? 'would repair' : 'repaired'} ${r.volid}:\n${r.actions.map((a) => `  - ${a}`).join('\n')}`);
    });
}
