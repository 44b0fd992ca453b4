/**
 * qemu-img commands for full copies (clone): convert a chain's view into an existing, empty qcow2 image and
 * compare the two. Formats are always explicit (-f, -O, -F): nothing is probed. The source's chain must have
 * been validated (its headers read natively) before these run; backing names in it are relative to its own
 * directory or VG, which qemu-img resolves against the image's own path.
 */
import { run } from './runner.js';

export interface CopyProgress {
  onProgress?: (percent: number) => void;
}

/**
 * Copies the guest view of `sourcePath` (with its backing chain) into the qcow2 image at `targetPath`, which
 * exists already (created empty by the backend, sized for the storage: -n) and reads as zeroes
 * (--target-is-zero: zero areas are skipped, not written, so the copy allocates only the data). `-t writeback`:
 * convert's default cache mode (unsafe) never flushes, and the copy is renamed to its final name right after.
 */
export async function convertInto(sourcePath: string, sourceFormat: 'qcow2' | 'raw', targetPath: string, opts: CopyProgress = {}): Promise<void> {
  await run(
    'qemu-img',
    ['convert', opts.onProgress ? '-p' : '-q', '-n', '--target-is-zero', '-t', 'writeback', '-f', sourceFormat, '-O', 'qcow2', sourcePath, targetPath],
    { stopWithCaller: true, ...(opts.onProgress ? { onProgress: opts.onProgress } : {}) },
  );
}

/**
 * True when the guest views of the two images are identical (`qemu-img compare`: exit 0 identical,
 * 1 different; anything else is a failure of the command).
 */
export async function sameContent(aPath: string, aFormat: 'qcow2' | 'raw', bPath: string, bFormat: 'qcow2' | 'raw', opts: CopyProgress = {}): Promise<boolean> {
  const { exitCode } = await run('qemu-img', ['compare', ...(opts.onProgress ? ['-p'] : []), '-f', aFormat, '-F', bFormat, aPath, bPath], {
    okExitCodes: [1],
    stopWithCaller: true,
    ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
  });
  return exitCode === 0;
}

/**
 * Copies what the qcow2 layer at `sourcePath` itself defines over its backing (data and zero clusters, which
 * must keep hiding the backing's data) into the existing qcow2 image at `targetPath`, whose header already
 * names `backingName`, a copy of the source's backing view (move: each layer written onto its copied parent).
 * `-n -B`: only the source's top layer is consulted, unallocated areas are left to the target's backing.
 */
export async function convertDeltaInto(sourcePath: string, targetPath: string, backingName: string, opts: CopyProgress = {}): Promise<void> {
  await run(
    'qemu-img',
    ['convert', opts.onProgress ? '-p' : '-q', '-n', '-B', backingName, '-F', 'qcow2', '-t', 'writeback', '-f', 'qcow2', '-O', 'qcow2', sourcePath, targetPath],
    opts.onProgress ? { onProgress: opts.onProgress } : {},
  );
}

/** Rewrites only the backing name (and format) in the qcow2 header at `path` (`qemu-img rebase -u`); no data is read or copied. */
export async function relinkBacking(path: string, backingName: string): Promise<void> {
  await run('qemu-img', ['rebase', '-q', '-u', '-f', 'qcow2', '-b', backingName, '-F', 'qcow2', path]);
}
