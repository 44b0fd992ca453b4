/**
 * The two steps of a full copy (clone) on the target storage: `copy` (a new empty qcow2 image under a
 * temporary name, filled with the source's view by `qemu-img convert`) and `verify-copy` (the copy read back
 * against the source, and its own structure checked). The source's chain was read and validated by the
 * operation (engine/operations/clone.ts) under its VM's lock, which it holds while these run, and made
 * usable on this host (LVM: activated) before the plan started.
 */
import type { Backend } from '../../backends/backend.js';
import { CorruptImageError } from '../../errors.js';
import type { CopySource, Step } from '../../model/plan.js';
import { readQcow2Header } from '../../qcow2/index.js';
import { checkImage } from '../../tools/qemu-img.js';
import { convertInto, sameContent } from '../../tools/qemu-img-copy.js';

type CopyStep = Extract<Step, { kind: 'copy' | 'verify-copy' }>;

export async function runCopyStep(
  backend: Backend,
  vmid: number,
  step: CopyStep,
  opts: { onProgress?: ((percent: number) => void) | undefined; redo: boolean },
): Promise<void> {
  const target = backend.layerPath(vmid, step.layer);
  const progress = opts.onProgress ? { onProgress: opts.onProgress } : {};
  if (step.kind === 'copy') {
    // A redo starts over: whatever an earlier attempt left under the temporary name is a partial copy.
    if (opts.redo) await backend.removeLayer(vmid, step.layer);
    // The backend sizes and checks the space (LVM: an LV for a fully written image of this virtual size).
    await backend.createImage(vmid, step.layer, 'qcow2', step.sizeBytes);
    // If we die from here to the end of the step, the target has a partial copy under its temporary name
    // only (the clone's name does not exist yet): repair walks the clone back, removing it.
    try {
      await convertInto(step.source.path, step.source.format, target, progress);
    } catch (err) {
      // Nothing half-made stays (a full storage, a source read error): the step failed as a whole.
      await backend.removeLayer(vmid, step.layer).catch(() => undefined);
      throw err;
    }
    await backend.layerChanged(vmid, step.layer);
    return;
  }
  // The copy is ours, but it is checked like any image before it becomes a volume: one layer, no backing.
  const header = await readQcow2Header(target, step.layer);
  if (header.backingFile !== undefined) throw new CorruptImageError(step.layer, 'the copy names a backing file; a full clone must have none');
  const check = await checkImage(target);
  if (!check.clean) {
    throw new CorruptImageError(step.layer, `the copy is not a clean qcow2 image (${check.corruptions} corruption(s), ${check.leaks} leak(s))`);
  }
  if (!(await sameContent(step.source.path, step.source.format, target, 'qcow2', progress))) {
    throw new CorruptImageError(step.layer, `the copy differs from ${sourceText(step.source)} (qemu-img compare): it is discarded`);
  }
}

function sourceText(source: CopySource): string {
  return source.snapshot !== undefined ? `snapshot '${source.snapshot}' of ${source.volid}` : source.volid;
}
