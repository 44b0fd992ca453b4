/**
 * The steps of `move` and of reassign (engine/planners/move.ts, reassign.ts):
 * - `copy-layer` (target storage): a new qcow2 layer whose header names its already-copied parent, filled with
 *   what the source layer defines over its own parent; `verify-layer`: the copy's header, `qemu-img check`
 *   and `qemu-img compare` of its view against the source layer's view. The source's chain was read and
 *   validated under its VM's lock, which the operation holds while these run.
 * - `reassign-layer` and `relink` (one storage): a layer given to another VM under a new name, and a header's
 *   backing name rewritten to its parent's new name. No data moves.
 * Every step here may be run again after a crash (`redo`): it checks what the first attempt left.
 */
import type { Backend } from '../../backends/backend.js';
import { CorruptImageError } from '../../errors.js';
import type { Step } from '../../model/plan.js';
import { readQcow2Header } from '../../qcow2/index.js';
import { checkImage } from '../../tools/qemu-img.js';
import { convertDeltaInto, relinkBacking, sameContent } from '../../tools/qemu-img-copy.js';
import { copyIntoNewLayer } from './copy-step.js';
import { isVolumeName } from './step-rules.js';

type MoveStep = Extract<Step, { kind: 'copy-layer' | 'verify-layer' | 'reassign-layer' | 'relink' }>;

export async function runMoveStep(
  backend: Backend,
  vmid: number,
  step: MoveStep,
  opts: { onProgress?: ((percent: number) => void) | undefined; redo: boolean },
): Promise<void> {
  const progress = opts.onProgress ? { onProgress: opts.onProgress } : {};
  switch (step.kind) {
    case 'copy-layer':
      return copyLayer(backend, vmid, step, { ...progress, redo: opts.redo });
    case 'verify-layer':
      return verifyLayer(backend, vmid, step, progress);
    case 'reassign-layer':
      // If we die in here, the layer carries one of its two names (dir: both, one file: the redo drops the
      // old link); the journal says which layers are still to go.
      await backend.reassignLayer(step.vmid, step.name, step.newVmid, step.newName, step.volume);
      return;
    case 'relink': {
      // A header write of a few bytes (qemu-img rebase -u): before it the layer names its parent's old name,
      // after it the new one; the redo reads which. No activation here: the operation activated the chain
      // before the renames (LVM keeps a renamed LV active), and activating now would judge a header that
      // names its parent's old name, which is what this step corrects. After a reboot in the middle of a
      // reassign on LVM the LVs are inactive: `lvchange -ay` them, then run repair.
      const path = backend.layerPath(step.vmid, step.name);
      const header = await readQcow2Header(path, step.name);
      if (header.backingFile !== step.parent) await relinkBacking(path, step.parent);
      await backend.layerChanged(step.vmid, step.name);
      return;
    }
  }
}

/**
 * Crash state: a partial copy under the layer's name on the target (the source untouched); repair walks the
 * move back, removing every copy the journal names. A failure removes the partial copy before it is reported.
 */
async function copyLayer(
  backend: Backend,
  vmid: number,
  step: Extract<Step, { kind: 'copy-layer' }>,
  opts: { onProgress?: (percent: number) => void; redo: boolean },
): Promise<void> {
  if (step.backing === null) {
    // The bottom layer (or a linked clone's bottom, whose view includes its base): the whole view.
    await copyIntoNewLayer(backend, vmid, step.layer, step.sizeBytes, step.source, { ...opts, volume: step.volume });
  } else {
    if (opts.redo) await backend.removeLayer(vmid, step.layer);
    await backend.createOverlay(vmid, step.layer, step.backing, step.sizeBytes, step.volume);
    try {
      await convertDeltaInto(step.source.path, backend.layerPath(vmid, step.layer), step.backing, opts.onProgress ? { onProgress: opts.onProgress } : {});
    } catch (err) {
      await backend.removeLayer(vmid, step.layer).catch(() => undefined);
      throw err;
    }
  }
  await backend.layerChanged(vmid, step.layer);
  // A snapshot layer is never written again: LVM gives back what the copy did not use.
  if (!isVolumeName(backend, step.layer)) await backend.settleFrozen(vmid, step.layer);
}

/** The copy is ours, but it is judged like any image before the source goes: header, structure, content. */
async function verifyLayer(
  backend: Backend,
  vmid: number,
  step: Extract<Step, { kind: 'verify-layer' }>,
  progress: { onProgress?: (percent: number) => void },
): Promise<void> {
  const path = backend.layerPath(vmid, step.layer);
  const header = await readQcow2Header(path, step.layer);
  if ((header.backingFile ?? null) !== step.backing || (step.backing !== null && header.backingFormat !== 'qcow2')) {
    throw new CorruptImageError(step.layer, `the copy names backing '${header.backingFile ?? '(none)'}' instead of '${step.backing ?? '(none)'}'`);
  }
  const check = await checkImage(path);
  if (!check.clean) {
    throw new CorruptImageError(step.layer, `the copy is not a clean qcow2 image (${check.corruptions} corruption(s), ${check.leaks} leak(s))`);
  }
  if (!(await sameContent(step.source.path, step.source.format, path, 'qcow2', progress))) {
    throw new CorruptImageError(
      step.layer,
      `the copy's view differs from ${step.source.layer} of ${step.source.volid} (qemu-img compare): the move is walked back`,
    );
  }
}
