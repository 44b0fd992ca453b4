/**
 * `import`: a chain stream (engine/run/chain-stream.ts, made by `volchain export`) becomes a new volume of VM
 * `vmid` on a storage, with every snapshot of the stream. Read the manifest → judge it and plan (pure,
 * engine/planners/import.ts) → execute under the target VM's lock with a journal on the target, the stream
 * registered for the plan's import steps (engine/run/import-step.ts).
 *
 * The manifest is read and judged before any lock or file: a hostile or malformed one, a name taken or too
 * little space leave no trace. Every layer is written under a temporary name and checked (checksums, the
 * trailer, headers, `qemu-img check`) before any takes a name a listing would show.
 */
import { randomUUID } from 'node:crypto';
import { NotSupportedError, PendingOperationError } from '../../errors.js';
import type { Plan } from '../../model/plan.js';
import { parseVmid } from '../../naming/index.js';
import { planImport, parseManifest, type ChainManifest } from '../planners/import.js';
import { ChainStreamReader } from '../run/chain-stream.js';
import { executePlan } from '../run/executor.js';
import { registerFeed } from '../run/import-step.js';
import { refusePending } from '../session/refusals.js';
import type { Session } from '../session/session.js';
import { withVmLocked } from '../session/vm-lock.js';
import { measureCopyTarget } from './copy-target.js';
import type { CallOptions } from './types.js';

export interface ImportOptions extends CallOptions {
  /** The new volume's name; default: the next free `vm-<vmid>-disk-<n>.qcow2` on the target. */
  name?: string;
}

export async function importChain(
  session: Session,
  targetStorage: string,
  vmidText: string | number,
  input: AsyncIterable<Buffer | string>,
  opts: ImportOptions = {},
): Promise<Plan> {
  const vmid = typeof vmidText === 'number' ? vmidText : parseVmid(vmidText);
  const target = session.backend(targetStorage);
  if (!target.capabilities.formats.includes('qcow2')) {
    throw new NotSupportedError(`storage '${targetStorage}' cannot hold qcow2 volumes (LVM needs 'snapshot-as-volume-chain 1'): an imported chain is qcow2`);
  }
  const reader = new ChainStreamReader(input);
  const manifest = parseManifest(await reader.begin());
  const feed = randomUUID();
  const plan = async (): Promise<Plan> =>
    planImport({
      manifest,
      feed,
      target: await measureCopyTarget(
        target,
        vmid,
        manifest.layers.map((l) => l.virtualSize),
        opts.name,
      ),
    });

  if (opts.dryRun) {
    await refusePending(target, vmid);
    return plan();
  }
  // Refused for bad input (a name taken, too little space) before the lock: no trace, not even a lock file.
  // An unfinished operation of the VM (an interrupted import's layers) is said as such (exit 7), not as names taken.
  await refusePending(target, vmid);
  await plan().catch((err: unknown) => {
    if (!(err instanceof PendingOperationError)) throw err;
  });
  return withVmLocked(session.locks, [target], vmid, 'import', async () => {
    const p = await plan();
    const unregister = registerFeed(feed, { reader, manifest, temps: temporariesOf(p, manifest) });
    try {
      // If we die in here, the journal on the target says what repair does: before the first rename it
      // removes every temporary (no volume), from it on it finishes the renames (the layers were verified).
      await executePlan(target, p, { hooks: session.settings.hooks, ...(opts.onEvent ? { onEvent: opts.onEvent } : {}) });
    } finally {
      unregister();
    }
    return p;
  });
}

/** The temporary of each manifest layer, as the plan's import-layer steps name them. */
function temporariesOf(plan: Plan, manifest: ChainManifest): string[] {
  const temps = manifest.layers.map(() => '');
  for (const step of plan.steps) if (step.kind === 'import-layer') temps[step.index] = step.layer;
  return temps;
}
