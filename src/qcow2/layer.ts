/**
 * Everything the engine reads from one qcow2 layer, in one open: the header (validated against the caller's policy), the
 * fstat figures (space used, identity) and, when asked, the allocation counts from the L1/L2 tables.
 *
 * For a regular file this is open, fstat, one 4 KiB read (plus the snapshot table when there is one, and the
 * L1/L2 tables when allocation is asked for) and close, all synchronous: no promise round trip per layer.
 * Block devices are read asynchronously (see io.ts).
 */
import { basename } from 'node:path';
import { allocationSteps, type AllocationSummary } from './allocation.js';
import { headerSteps } from './header.js';
import type { Qcow2Header } from './header-format.js';
import { openLocalImage, runSteps, type ReadSteps } from './io.js';
import { validateLayerHeader, type BackingPolicy } from './validate.js';

export interface Qcow2LayerInfo {
  header: Qcow2Header;
  /** From the L1/L2 tables; undefined unless `allocation` was asked for. */
  allocation: AllocationSummary | undefined;
  type: 'file' | 'block';
  /** File size, or device size from sysfs (undefined when sysfs does not say). */
  sizeBytes: number | undefined;
  /** Regular files: st_blocks * 512, what `stat` reports as used; block devices: the device size. */
  usedBytes: number | undefined;
  /** `${st_dev}:${st_ino}` of the opened file (after symlinks), as the dir backend's statLayer reports it. */
  identity: string;
}

export interface ReadLayerOptions {
  /** Also count allocation from the L1/L2 tables (reads them; the header alone is one 4 KiB read). */
  allocation?: boolean;
  /**
   * Judged by validateLayerHeader (validate.ts, the one header validator) before any table is read, so a
   * refused layer is refused with the validator's error and its tables are never looked at.
   */
  policy?: BackingPolicy;
}

/**
 * Reads the header of the image at `path` (and its allocation when asked), with the fstat figures of the
 * same open file. Throws what readQcow2Header and allocatedBytes throw: CorruptImageError for malformed
 * images and for paths that are neither a regular file nor a block device, NotFoundError when `path` does
 * not exist, and UnsafeImageError when the header breaks `policy`.
 */
export async function readQcow2Layer(path: string, layer: string = basename(path), opts: ReadLayerOptions = {}): Promise<Qcow2LayerInfo> {
  const file = openLocalImage(path, layer);
  try {
    const { header, allocation } = await runSteps(layerSteps(file, opts), file);
    return {
      header,
      allocation,
      type: file.type,
      sizeBytes: file.sizeBytes,
      usedBytes: file.usedBytes,
      identity: `${file.dev}:${file.ino}`,
    };
  } finally {
    await file.release();
  }
}

function* layerSteps(
  file: Parameters<typeof headerSteps>[0],
  opts: ReadLayerOptions,
): ReadSteps<{ header: Qcow2Header; allocation: AllocationSummary | undefined }> {
  const header = yield* headerSteps(file);
  if (opts.policy !== undefined) validateLayerHeader(file.layer, header, opts.policy);
  return { header, allocation: opts.allocation ? yield* allocationSteps(file, header) : undefined };
}
