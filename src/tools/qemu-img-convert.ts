/**
 * qemu-img commands of `volchain convert` (raw volume -> qcow2 volume): measuring what the copy needs, the copy
 * itself and the comparison that proves it. Formats always explicit (-f/-F, -O): a raw disk whose guest wrote a
 * qcow2 header into its first sector stays raw data here, never an image QEMU opens by probing.
 */
import { parseMeasure } from './lvm-measure.js';
import { QCOW2_CREATE_OPTIONS, type ProgressOptions } from './qemu-img.js';
import { run } from './runner.js';

/** Bytes a qcow2 copy of raw image `path` needs (`qemu-img measure` field `required`: its data plus metadata). */
export async function measureRawAsQcow2(path: string): Promise<number> {
  const { stdout } = await run('qemu-img', ['measure', '-f', 'raw', '-O', 'qcow2', '-o', QCOW2_CREATE_OPTIONS, '--output=json', path]);
  return parseMeasure(stdout).required;
}

/**
 * Copies raw image `rawPath` into the existing, freshly created (all-zero) qcow2 image `qcow2Path` of the same
 * virtual size. `-n` writes into the image the backend made (on LVM an LV sized for it, tagged), and
 * `--target-is-zero` lets zero areas of the source stay unallocated in the copy.
 */
export async function convertRawInto(rawPath: string, qcow2Path: string, opts: ProgressOptions = {}): Promise<void> {
  await run(
    'qemu-img',
    ['convert', opts.onProgress ? '-p' : '-q', '-n', '--target-is-zero', '-f', 'raw', '-O', 'qcow2', rawPath, qcow2Path],
    opts.onProgress ? { onProgress: opts.onProgress } : {},
  );
}

/**
 * True when qcow2 image `qcow2Path` and raw image `rawPath` read the same, byte for byte (`qemu-img compare`,
 * not strict: the copy leaves zero areas unallocated where the raw file has them written, which is the same
 * content). The caller made both the same virtual size. Exit 1 is the answer "different"; anything else fails.
 */
export async function sameContent(qcow2Path: string, rawPath: string, opts: ProgressOptions = {}): Promise<boolean> {
  const { exitCode } = await run('qemu-img', ['compare', opts.onProgress ? '-p' : '-q', '-f', 'qcow2', '-F', 'raw', qcow2Path, rawPath], {
    okExitCodes: [1],
    ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
  });
  return exitCode === 0;
}
