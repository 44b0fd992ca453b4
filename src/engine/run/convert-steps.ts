/**
 * The two steps of `volchain convert` that run qemu-img on a raw volume (engine/planners/convert.ts): the copy
 * into a new qcow2 layer under a temporary name, and the comparison that must pass before any name changes.
 */
import type { Backend } from '../../backends/backend.js';
import { UnsafeImageError } from '../../errors.js';
import type { Step } from '../../model/plan.js';
import { readQcow2Header, validateLayerHeader } from '../../qcow2/index.js';
import { sameContent } from '../../tools/qemu-img-copy.js';
import { copyIntoNewLayer } from './copy-step.js';

type ConvertStep = Extract<Step, { kind: 'convert' }>;
type VerifyStep = Extract<Step, { kind: 'verify' }>;

/**
 * Creates `step.layer` (qcow2, the raw volume's size; on LVM an LV sized for a fully written image) and copies
 * the raw volume into it. Crash state: a partial copy under the temporary name, which no volume name shows;
 * the redo (repair) removes it and copies again. A failure removes the partial copy before it is reported, so
 * the executor's "nothing was changed" holds (the copy is the plan's first step).
 */
export async function convertStep(
  backend: Backend,
  vmid: number,
  step: ConvertStep,
  opts: { onProgress?: (percent: number) => void; redo: boolean },
): Promise<void> {
  await copyIntoNewLayer(backend, vmid, step.layer, step.sizeBytes, { path: backend.layerPath(vmid, step.from), format: 'raw' }, opts);
}

/**
 * Proves the copy: its header is one volchain accepts (version 3, no backing file, no data file) and
 * `qemu-img compare` finds no difference from the raw volume. Reads only; a failure
 * stops the plan before any rename, the raw volume untouched.
 */
export async function verifyStep(backend: Backend, vmid: number, step: VerifyStep, opts: { onProgress?: (percent: number) => void }): Promise<void> {
  const path = backend.layerPath(vmid, step.layer);
  const header = await readQcow2Header(path, step.layer);
  // As a base volume is judged: a backing file of its own is refused too (the copy was made without one).
  validateLayerHeader(step.layer, header, { base: true, isExpectedLayerName: () => false });
  const rawPath = backend.layerPath(vmid, step.against);
  if (!(await sameContent(path, 'qcow2', rawPath, 'raw', opts.onProgress ? { onProgress: opts.onProgress } : {}))) {
    throw new UnsafeImageError(step.layer, `the qcow2 copy does not read the same as ${step.against} (qemu-img compare): the raw volume was left as it was`);
  }
}
