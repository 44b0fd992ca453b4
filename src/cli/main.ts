/**
 * The volchain command line: parse, call the library, render. Errors print one line on stderr and exit
 * with the status of their code (see src/errors.ts); --json output is stable and documented in README.md.
 */
import { Command, CommanderError } from '@commander-js/extra-typings';
import { asVolchainError, type VolchainError } from '../errors.js';
import type { Volchain } from '../engine/volchain.js';
import { createVolchain } from '../create.js';
import { currentSettings, type Settings } from '../settings.js';
import { VERSION } from './version.js';
import { spawnCliWiper } from './wipe-runner.js';
import { argvWantsJson, finalStatus, guardOutput, PARSER_OUTPUT, reportError, usageError } from './output.js';
import { cliContext } from './context.js';
import { addStorageCommands } from './commands/storage.js';
import { addVolumeCommands, addQemuArgsCommand } from './commands/volume.js';
import { addSnapshotCommands } from './commands/snapshot.js';
import { addVmCommands } from './commands/vm.js';
import { addMaintenanceCommands } from './commands/maintenance.js';
import { addCloneCommand } from './commands/clone.js';
import { addMoveCommand } from './commands/move.js';
import { addPortableCommands } from './commands/portable.js';
import { addConvertCommands } from './commands/convert.js';
import { addServeCommands } from './commands/serve.js';

/**
 * The whole program: global options, then the command groups in the order `--help` lists them (each group's
 * module in commands/ registers its commands on `program`). `settings` are the environment's, read once.
 */
export function buildProgram(settings: Settings = currentSettings()) {
  const program = new Command()
    .name('volchain')
    .description('Snapshots as qcow2 volume chains for QEMU/KVM disks on directory and LVM storage (Proxmox VE 9 compatible)')
    .version(VERSION)
    .option('--config <file>', 'storage.cfg to use (default: $VOLCHAIN_CONFIG, /etc/pve/storage.cfg, embedded default)')
    .configureOutput(PARSER_OUTPUT)
    .exitOverride();

  const open = async (): Promise<Volchain> => {
    const { config } = program.opts();
    // The library's one way in (src/create.ts); a background wipe (LVM saferemove) is this CLI started again,
    // detached, as `volchain wipe`; the rest of the settings are the environment's, read once by main().
    return createVolchain({ ...(config !== undefined && config !== '' ? { config } : {}), backgroundWipe: spawnCliWiper, settings });
  };

  const ctx = cliContext(open, () => (settings.qmpDir ?? '') !== '');
  addStorageCommands(program, ctx);
  addVolumeCommands(program, ctx);
  addSnapshotCommands(program, ctx);
  addCloneCommand(program, ctx);
  addMoveCommand(program, ctx);
  addPortableCommands(program, ctx);
  addVmCommands(program, ctx);
  addConvertCommands(program, ctx);
  addQemuArgsCommand(program, ctx);
  addMaintenanceCommands(program, ctx);
  addServeCommands(program, ctx, settings);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  guardOutput();
  const settings = currentSettings();
  const program = buildProgram(settings);
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
    if (settings.debug) process.stderr.write(`${String((err as Error).stack)}\n`);
    return error.exitStatus;
  }
}
