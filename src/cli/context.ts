/**
 * What every command module of the CLI shares: opening the library with the CLI's options, running a
 * mutating command (progress, warnings, Ctrl-C, the plan or a one-line result), and printing to stdout.
 * Commands parse their arguments, call the library through this, and render (README: "thin front-ends").
 */
import type { Volchain, CallOptions } from '../engine/volchain.js';
import type { PlansJson } from '../results.js';
import type { Plan } from '../model/plan.js';
import { totalPlanSpace } from '../engine/plan/space.js';
import { progressReporter } from './progress.js';
import { renderPlan, renderSpace } from './render.js';
import { writeOut } from './output.js';

export interface CliContext {
  /** The library, opened with the global options (--config) and the CLI's background wiper. */
  open(): Promise<Volchain>;
  /** Mutating commands: run with progress, print what happened (or the plan with --dry-run). */
  mutating(
    opts: MutatingOptions,
    action: (vc: Volchain, call: CallOptions) => Promise<Plan | Plan[]>,
    done: string | ((plans: Plan[]) => string),
  ): Promise<void>;
}

export interface MutatingOptions {
  json?: boolean;
  dryRun?: boolean;
  qmp?: string;
}

/** The `storage` option of a library call, when the command was given one. */
export function onlyStorage(storage: string | undefined): { storage?: string } {
  return storage !== undefined ? { storage } : {};
}

/** The `vmConfig` option of a VM-wide library call, when the command was given `--vm-config`. */
export function vmConfigOf(vmConfig: string | undefined): { vmConfig?: string } {
  return vmConfig !== undefined ? { vmConfig } : {};
}

export function print(text: string): void {
  writeOut(text.endsWith('\n') ? text : `${text}\n`);
}

export function printJson(value: unknown): void {
  print(JSON.stringify(value, null, 2));
}

/**
 * The context of one CLI run. `open` is the program's way to the library; `liveByDefault` says whether a
 * command without --qmp may still act live (a QMP socket directory is configured), so Ctrl-C is caught.
 */
export function cliContext(open: () => Promise<Volchain>, liveByDefault: () => boolean): CliContext {
  const mutating = async (
    opts: MutatingOptions,
    action: (vc: Volchain, call: CallOptions) => Promise<Plan | Plan[]>,
    done: string | ((plans: Plan[]) => string),
  ): Promise<void> => {
    const vc = await open();
    const progress = progressReporter(!opts.json && !opts.dryRun);
    // A live operation's block job is cancelled cleanly on the first Ctrl-C (the second one kills volchain).
    const cancel = new AbortController();
    const onSignal = (): void => cancel.abort();
    const live = opts.qmp !== undefined || liveByDefault();
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
      // A one-line result, or one made from the plans (convert and template print the new volid).
      print(typeof done === 'string' ? done : done(plans));
    }
  };
  return { open, mutating };
}
