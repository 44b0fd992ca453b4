/**
 * The volchain command line: parse, call the library, render. Errors print one line on stderr and exit
 * with the status of their code (see src/errors.ts); --json output is stable and documented in README.md.
 */
import { Command, CommanderError, Option } from '@commander-js/extra-typings';
import { asVolchainError, InvalidInputError, type VolchainError } from '../errors.js';
import type { Volchain, CallOptions } from '../engine/volchain.js';
import { createVolchain } from '../create.js';
import type { PlansJson, RepairJson, StatusJson, StorageListJson, WipeJson } from '../results.js';
import type { Plan } from '../model/plan.js';
import { parseVmid } from '../naming/index.js';
import { progressReporter, renderRemoval, wipeReporter } from './progress.js';
import { spawnCliWiper } from './wipe-runner.js';
import { totalPlanSpace } from '../engine/plan/space.js';
import { renderActivation, renderInfo, renderJournalLeftover, renderPlan, renderSnapshotTree, renderSpace, renderStorages, renderVolumes } from './render.js';
import { renderAttachInfo, renderQemuArgs } from './live-render.js';
import { escapeUnsafe } from '../quote.js';
import { argvWantsJson, finalStatus, guardOutput, PARSER_OUTPUT, reportError, usageError, writeOut } from './output.js';

/** The `storage` option of a library call, when the command was given one. */
function onlyStorage(storage: string | undefined): { storage?: string } {
  return storage !== undefined ? { storage } : {};
}

/** The `vmConfig` option of a VM-wide library call, when the command was given `--vm-config`. */
function vmConfigOf(vmConfig: string | undefined): { vmConfig?: string } {
  return vmConfig !== undefined ? { vmConfig } : {};
}

function print(text: string): void {
  writeOut(text.endsWith('\n') ? text : `${text}\n`);
}

function printJson(value: unknown): void {
  print(JSON.stringify(value, null, 2));
}

export function buildProgram() {
  const program = new Command()
    .name('volchain')
    .description('Snapshots as qcow2 volume chains for QEMU/KVM disks on directory and LVM storage (Proxmox VE 9 compatible)')
    .version('0.1.0')
    .option('--config <file>', 'storage.cfg to use (default: $VOLCHAIN_CONFIG, /etc/pve/storage.cfg, embedded default)')
    .configureOutput(PARSER_OUTPUT)
    .exitOverride();

  const open = async (): Promise<Volchain> => {
    const { config } = program.opts();
    // The library's one way in (src/create.ts); a background wipe (LVM saferemove) is this CLI started again,
    // detached, as `volchain wipe`; the rest of the settings come from the environment there.
    return createVolchain({ ...(config !== undefined && config !== '' ? { config } : {}), backgroundWipe: spawnCliWiper });
  };

  /** Mutating commands: run with progress, print what happened (or the plan with --dry-run). */
  const mutating = async (
    opts: { json?: boolean; dryRun?: boolean; qmp?: string },
    action: (vc: Volchain, call: CallOptions) => Promise<Plan | Plan[]>,
    done: string,
  ): Promise<void> => {
    const vc = await open();
    const progress = progressReporter(!opts.json && !opts.dryRun);
    // A live operation's block job is cancelled cleanly on the first Ctrl-C (the second one kills volchain).
    const cancel = new AbortController();
    const onSignal = (): void => cancel.abort();
    const live = opts.qmp !== undefined || (process.env.VOLCHAIN_QMP_DIR ?? '') !== '';
    if (live) for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, onSignal);
    let result: Plan | Plan[];
    // Warnings go to stderr as they come (stdout stays the result) and, with --json, into `warnings` too.
    const warnings: string[] = [];
    const onWarning = (message: string): void => {
      // The live attempt and the offline operation after it both look for the VM's disks: say it once.
      if (warnings.includes(message)) return;
      warnings.push(message);
      process.stderr.write(`warning: ${message}\n`);
    };
    try {
      result = await action(vc, {
        dryRun: opts.dryRun ?? false,
        onWarning,
        ...(progress.onEvent ? { onEvent: progress.onEvent } : {}),
        ...(opts.qmp !== undefined ? { qmp: opts.qmp } : {}),
        ...(live ? { signal: cancel.signal } : {}),
      });
    } finally {
      progress.stop();
      if (live) for (const sig of ['SIGINT', 'SIGTERM'] as const) process.removeListener(sig, onSignal);
    }
    const plans = Array.isArray(result) ? result : [result];
    if (opts.json) {
      printJson({ dryRun: opts.dryRun ?? false, plans, ...(warnings.length > 0 ? { warnings } : {}) } satisfies PlansJson);
    } else if (opts.dryRun) {
      const total = plans.length > 1 ? totalPlanSpace(plans.map((p) => p.space)) : undefined;
      print([...plans.map(renderPlan), ...(total ? [renderSpace(total, `total for ${plans.length} disks`).join('\n')] : [])].join('\n\n'));
    } else {
      print(done);
    }
  };

  program
    .command('storage')
    .description('storage definitions')
    .command('list')
    .description('list configured storages')
    .option('--json', 'machine-readable output')
    .action(async (opts) => {
      const vc = await open();
      if (opts.json) printJson({ source: vc.config.source, storages: vc.storages() } satisfies StorageListJson);
      else print(`# ${vc.config.source}\n${renderStorages(vc.storages())}`);
    });

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
      const vc = await open();
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
    .action(async (volid, opts) => mutating(opts, (vc, call) => vc.free(volid, call), `removed ${volid}`));

  program
    .command('list')
    .description('list the volumes of a storage')
    .argument('<storage>')
    .option('--vmid <vmid>', 'only volumes of this VM')
    .option('--json', 'machine-readable output')
    .action(async (storage, opts) => {
      const vc = await open();
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
      const vc = await open();
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
      const info = await (await open()).info(volid, { deep: opts.deep ?? false });
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
        const vc = await open();
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
    .action(async (volid, size, opts) => mutating(opts, (vc, call) => vc.resize(volid, size, call), `resized ${volid}`));

  const snapshot = program.command('snapshot').description('snapshots of one volume');
  snapshot
    .command('create')
    .description('take a snapshot')
    .argument('<volid>')
    .argument('<snap>', 'snapshot name: a letter, then 1-39 letters, digits or _')
    .option('--qmp <socket>', "the VM runs: act live through QEMU's QMP socket")
    .option('--dry-run', 'print the plan, change nothing')
    .option('--json', 'machine-readable output')
    .action(async (volid, snap, opts) => mutating(opts, (vc, call) => vc.snapshotCreate(volid, snap, call), `created snapshot '${snap}' of ${volid}`));
  snapshot
    .command('list')
    .description('show the snapshot tree')
    .argument('<volid>')
    .option('--json', 'machine-readable output')
    .action(async (volid, opts) => {
      const listing = await (await open()).snapshotList(volid);
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
      mutating(opts, (vc, call) => vc.snapshotRollback(volid, snap, { ...call, purgeNewer: opts.purgeNewer ?? false }), `rolled ${volid} back to '${snap}'`),
    );
  snapshot
    .command('delete')
    .description('delete any snapshot, keeping the data every other snapshot needs')
    .argument('<volid>')
    .argument('<snap>')
    .option('--qmp <socket>', "the VM runs: act live through QEMU's QMP socket")
    .option('--dry-run', 'print the plan, change nothing')
    .option('--json', 'machine-readable output')
    .action(async (volid, snap, opts) => mutating(opts, (vc, call) => vc.snapshotDelete(volid, snap, call), `deleted snapshot '${snap}' of ${volid}`));

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
    mutating(
      opts,
      (vc, call) => vc.vmSnapshot(vmid, snap, { ...call, ...onlyStorage(opts.storage), ...vmConfigOf(opts.vmConfig) }),
      `created snapshot '${snap}' of every disk of VM ${vmid}`,
    ),
  );
  vmSnapshotCommand('rollback', 'roll every disk of a VM back to a snapshot')
    .option('--purge-newer', 'delete the snapshots newer than <snap> as well')
    .action(async (vmid, snap, opts) =>
      mutating(
        opts,
        (vc, call) => vc.vmRollback(vmid, snap, { ...call, purgeNewer: opts.purgeNewer ?? false, ...onlyStorage(opts.storage), ...vmConfigOf(opts.vmConfig) }),
        `rolled every disk of VM ${vmid} back to '${snap}'`,
      ),
    );
  vmSnapshotCommand('delsnapshot', 'delete a snapshot from every disk of a VM').action(async (vmid, snap, opts) =>
    mutating(
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
      const info = await (await open()).attachInfo(vmid, opts.qmp);
      if (opts.json) printJson(info);
      else print(renderAttachInfo(info));
    });

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
      const args = await (await open()).qemuArgs(volids, { driveIds: opts.driveId });
      if (opts.json) printJson(args);
      else print(renderQemuArgs(args));
    });

  program
    .command('status')
    .description('show unfinished operations, and removed LVs still being wiped (saferemove)')
    .option('--json', 'machine-readable output')
    .action(async (opts) => {
      const vc = await open();
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
      const vc = await open();
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
        await open()
      ).repair(volid !== undefined ? { volid } : {}, {
        dryRun: opts.dryRun ?? false,
        ...(opts.qmp !== undefined ? { qmp: opts.qmp } : {}),
      });
      if (opts.json) printJson({ dryRun: opts.dryRun ?? false, repaired: results } satisfies RepairJson);
      else if (results.length === 0) print('nothing to repair');
      else for (const r of results) print(`${opts.dryRun ? 'would repair' : 'repaired'} ${r.volid}:\n${r.actions.map((a) => `  - ${a}`).join('\n')}`);
    });

  return program;
}

export async function main(argv: string[]): Promise<number> {
  guardOutput();
  const program = buildProgram();
  // Whether the command that runs has --json, as parsed; before parsing is done, what the arguments say.
  let json: boolean | undefined;
  program.hook('preAction', (_program, command) => {
    json = command.opts().json === true;
  });
  try {
    await program.parseAsync(argv, { from: 'user' });
    return finalStatus(0);
  } catch (err) {
    let error: VolchainError;
    if (err instanceof CommanderError) {
      // --help and --version end by "throwing" with exit code 0; usage errors get status 2.
      if (err.exitCode === 0) return finalStatus(0);
      error = usageError(err, program, argv);
    } else {
      error = asVolchainError(err);
    }
    reportError(error, json ?? argvWantsJson(argv));
    if (process.env.VOLCHAIN_DEBUG) process.stderr.write(`${String((err as Error).stack)}\n`);
    return error.exitStatus;
  }
}
