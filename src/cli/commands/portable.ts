/**
 * `volchain export` / `volchain import`: a volume with every snapshot as one chain stream
 * (docs/chain-stream.md), to a file or stdout, and back from a file or stdin, so that
 * `volchain export … | ssh other volchain import …` moves a disk with its snapshots between hosts.
 * Export writes nothing but the stream to stdout; progress goes to stderr, on a terminal only.
 */
import { createReadStream, rmSync } from 'node:fs';
import { access, open, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { Writable } from 'node:stream';
import type { Command } from '@commander-js/extra-typings';
import { AlreadyExistsError, InvalidInputError, NotFoundError } from '../../errors.js';
import type { Plan } from '../../model/plan.js';
import { formatSize } from '../../naming/index.js';
import type { PlansJson } from '../../results.js';
import { print, printJson, type CliContext } from '../context.js';
import { progressReporter } from '../progress.js';
import { renderPlan } from '../render.js';

export function addPortableCommands(program: Command, ctx: CliContext): void {
  program
    .command('export')
    .description('write a volume with all its snapshots as one stream (each layer a delta against its parent), for volchain import')
    .argument('<volid>', 'the volume to export')
    .option('-o, --output <file>', "where the stream goes: a new file, or '-' for stdout (the default when stdout is not a terminal)")
    .option('--qmp <socket>', "the VM's QMP socket: a running VM is refused (its guest writes the disk)")
    .option('--dry-run', 'print the manifest and the bytes the stream would take; write nothing')
    .option('--json', 'machine-readable output (with --dry-run, or with -o FILE)')
    .action(async (volid, opts) => {
      const vc = await ctx.open();
      const output = opts.output ?? '-';
      const call = { ...(opts.qmp !== undefined ? { qmp: opts.qmp } : {}) };
      if (opts.dryRun) {
        const r = await vc.exportChain(volid, undefined, { ...call, dryRun: true });
        if (opts.json) printJson({ dryRun: true, ...r });
        else
          print(
            [
              JSON.stringify(r.manifest, null, 2),
              `stream: ${formatSize(r.streamBytes)} (${r.streamBytes} bytes), ${r.dataBytes} bytes of data, ${r.zeroBytes} bytes of zeroes`,
            ].join('\n'),
          );
        return;
      }
      if (output === '-' && process.stdout.isTTY)
        throw new InvalidInputError('export writes a binary stream: give -o FILE, or pipe stdout (volchain export … | volchain import …)');
      const progress = progressReporter(!opts.json);
      try {
        if (output === '-') {
          await vc.exportChain(volid, process.stdout, { ...call, ...(progress.onEvent ? { onEvent: progress.onEvent } : {}) });
          await flush(process.stdout);
          return;
        }
        const r = await exportToFile(output, (out) => vc.exportChain(volid, out, { ...call, ...(progress.onEvent ? { onEvent: progress.onEvent } : {}) }));
        progress.stop();
        if (opts.json) printJson({ dryRun: false, ...r, file: output });
        else print(`exported ${volid} (${r.manifest.layers.length - 1} snapshot(s)) to ${output}: ${formatSize(r.streamBytes)} (${r.streamBytes} bytes)`);
      } finally {
        progress.stop();
      }
    });

  program
    .command('import')
    .description('make a new volume, with every snapshot, from a stream written by volchain export')
    .argument('<storage>', 'the storage the new volume goes to (dir or LVM)')
    .argument('<vmid>', 'the VM the new volume belongs to')
    .option('-i, --input <file>', "the stream: a file, or '-' for stdin (the default)")
    .option('--name <name>', 'the new volume name (default: the next free vm-<vmid>-disk-<n>.qcow2)')
    .option('--dry-run', "read the stream's manifest and print what would be created and the space needed; change nothing")
    .option('--json', 'machine-readable output')
    .action(async (storage, vmid, opts) => {
      const vc = await ctx.open();
      const input = opts.input ?? '-';
      if (input === '-' && process.stdin.isTTY)
        throw new InvalidInputError('import reads a binary stream: give -i FILE, or pipe one into stdin (volchain export … | volchain import …)');
      if (input !== '-' && !(await exists(input))) throw new NotFoundError(`stream file ${input} does not exist or cannot be read`);
      const stream = input === '-' ? process.stdin : createReadStream(input);
      const progress = progressReporter(!opts.json && !opts.dryRun);
      let plan: Plan;
      try {
        plan = await vc.importChain(storage, vmid, stream, {
          dryRun: opts.dryRun ?? false,
          ...(opts.name !== undefined ? { name: opts.name } : {}),
          ...(progress.onEvent ? { onEvent: progress.onEvent } : {}),
        });
      } finally {
        progress.stop();
        // A dry run reads the manifest only, a refusal stops reading: the rest of the input is not waited
        // for (an exporter writing into the pipe then stops with EPIPE instead of waiting forever).
        stream.destroy();
      }
      if (opts.json) printJson({ dryRun: opts.dryRun ?? false, plans: [plan] } satisfies PlansJson);
      else if (opts.dryRun) print([renderPlan(plan), ...renderImport(plan)].join('\n'));
      else print(`imported ${plan.import?.sourceName ?? 'the stream'} as ${plan.volid} with ${plan.import?.snapshots.length ?? 0} snapshot(s)`);
    });
}

function renderImport(plan: Plan): string[] {
  const i = plan.import;
  if (!i) return [];
  return [
    `space needed on the target: ${formatSize(i.spaceNeededBytes)} (${i.spaceNeededBytes} bytes) of ${formatSize(i.freeBytes)} free`,
    `new volume: ${plan.volid} (qcow2, ${i.virtualSize} bytes virtual), snapshots: ${i.snapshots.length > 0 ? i.snapshots.join(', ') : '(none)'}`,
  ];
}

/**
 * Writes the stream into a hidden partial file beside `file`, renamed to `file` only when whole: a failed or
 * interrupted export leaves no file that looks like an export (a SIGKILL can leave the hidden partial one).
 */
async function exportToFile<T>(file: string, write: (out: Writable) => Promise<T>): Promise<T> {
  if (await exists(file)) throw new AlreadyExistsError(`${file} already exists: export writes a new file`);
  const partial = join(dirname(file), `.${basename(file)}.volchain-partial-${process.pid}`);
  // Ctrl-C or a kill (not -9) mid-export: the partial file goes with the process (exit 128 + signal). Set
  // before the file exists, so no signal finds the file without its handler.
  const onSignal = (signal: NodeJS.Signals): void => {
    rmSync(partial, { force: true });
    process.exit(128 + (signal === 'SIGINT' ? 2 : 15));
  };
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, onSignal);
  const handle = await open(partial, 'wx').catch((err: unknown) => {
    for (const sig of ['SIGINT', 'SIGTERM'] as const) process.removeListener(sig, onSignal);
    throw err;
  });
  const out = handle.createWriteStream();
  try {
    const result = await write(out);
    await new Promise<void>((resolve, reject) => {
      out.once('error', reject);
      out.end(() => resolve());
    });
    await rename(partial, file);
    return result;
  } catch (err) {
    out.destroy();
    await rm(partial, { force: true });
    throw err;
  } finally {
    for (const sig of ['SIGINT', 'SIGTERM'] as const) process.removeListener(sig, onSignal);
  }
}

/** Resolves once everything written to `out` so far was handed to the OS (stdout to a pipe is asynchronous). */
function flush(out: Writable): Promise<void> {
  return new Promise((resolve, reject) => {
    out.write('', (err) => {
      if (err) reject(err);
      else resolve();
    });
  });
}

function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}
