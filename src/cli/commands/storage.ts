/**
 * `volchain storage …`: the storage definitions volchain reads.
 */
import type { Command } from '@commander-js/extra-typings';
import type { StorageListJson } from '../../results.js';
import { renderStorages } from '../render.js';
import { print, printJson, type CliContext } from '../context.js';

/** `storage list`. */
export function addStorageCommands(program: Command, ctx: CliContext): void {
  program
    .command('storage')
    .description('storage definitions')
    .command('list')
    .description('list configured storages')
    .option('--json', 'machine-readable output')
    .action(async (opts) => {
      const vc = await ctx.open();
      if (opts.json) printJson({ source: vc.config.source, storages: vc.storages() } satisfies StorageListJson);
      else print(`# ${vc.config.source}\n${renderStorages(vc.storages())}`);
    });
}
