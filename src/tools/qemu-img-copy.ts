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
