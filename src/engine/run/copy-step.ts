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
    // If we die in here, the target has a partial copy under its temporary name only (the clone's name does
    // not exist yet): repair walks the clone back, removing it.
    await copyIntoNewLayer(backend, vmid, step.layer, step.sizeBytes, step.source, { ...progress, redo: opts.redo });
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

/**
 * Creates qcow2 layer `layer` of `sizeBytes` virtual (the backend sizes it and checks the space: on LVM an LV
 * for a fully written image) and fills it with the view of `source` (clone: a chain on any storage; convert:
 * the raw volume). A redo starts over: what an earlier attempt left under the name is a partial copy. A
 * failure (a full storage, a read error) removes the partial copy before it is reported: the step failed whole.
 */
export async function copyIntoNewLayer(
  backend: Backend,
  vmid: number,
  layer: string,
  sizeBytes: number,
  source: { path: string; format: 'qcow2' | 'raw' },
  opts: { onProgress?: (percent: number) => void; redo: boolean; volume?: string },
): Promise<void> {
  if (opts.redo) await backend.removeLayer(vmid, layer);
  await backend.createImage(vmid, layer, 'qcow2', sizeBytes, opts.volume);
  try {
    await convertInto(source.path, source.format, backend.layerPath(vmid, layer), opts.onProgress ? { onProgress: opts.onProgress } : {});
  } catch (err) {
    await backend.removeLayer(vmid, layer).catch(() => undefined);
    throw err;
  }
}

function sourceText(source: CopySource): string {
  return source.snapshot !== undefined ? `snapshot '${source.snapshot}' of ${source.volid}` : source.volid;
}
