/**
 * How big a thick LV must be to hold a qcow2 image written to its last byte (DESIGN.md section 4):
 * `qemu-img measure --size <virtual> -O qcow2 -o cluster_size=128k,extended_l2=on --output=json`, field
 * `fully-allocated` (header, L1/L2 tables, refcount structures and every data cluster). The seed's 4 KiB per
 * GiB is far too little: for 1 TiB the metadata alone is about 144.5 MiB.
 *
 * Results are cached per virtual size for the life of the process (the answer only depends on the size and
 * the fixed creation options).
 */
import { VolchainError } from '../errors.js';
import { QCOW2_CREATE_OPTIONS } from './qemu-img.js';
import { run } from './runner.js';

const cache = new Map<number, number>();

/** Parses `qemu-img measure --output=json`; returns the `fully-allocated` byte count. */
export function parseMeasure(json: string): { required: number; fullyAllocated: number } {
  let parsed: { required?: unknown; 'fully-allocated'?: unknown };
  try {
    parsed = JSON.parse(json) as typeof parsed;
  } catch (err) {
    throw new VolchainError('COMMAND_FAILED', `qemu-img measure printed no valid JSON: ${(err as Error).message}`);
  }
  const required = parsed.required;
  const full = parsed['fully-allocated'];
  if (typeof required !== 'number' || typeof full !== 'number' || !Number.isSafeInteger(full) || full <= 0) {
    throw new VolchainError('COMMAND_FAILED', `qemu-img measure printed ${json.trim()}: expected 'required' and 'fully-allocated' byte counts`);
  }
  return { required, fullyAllocated: full };
}

/** Bytes a fully written qcow2 image of `virtualSizeBytes` occupies with volchain's creation options. */
export async function measureFullyAllocated(virtualSizeBytes: number): Promise<number> {
  if (!Number.isSafeInteger(virtualSizeBytes) || virtualSizeBytes <= 0) {
    throw new VolchainError('INTERNAL', `cannot measure a qcow2 image of ${virtualSizeBytes} bytes`);
  }
  const cached = cache.get(virtualSizeBytes);
  if (cached !== undefined) return cached;
  const { stdout } = await run('qemu-img', ['measure', '--size', String(virtualSizeBytes), '-O', 'qcow2', '-o', QCOW2_CREATE_OPTIONS, '--output=json']);
  const { fullyAllocated } = parseMeasure(stdout);
  cache.set(virtualSizeBytes, fullyAllocated);
  return fullyAllocated;
}
