/**
 * What `volchain convert` (raw volume -> qcow2 volume) measures before it copies; the copy and the comparison
 * are the full copy's (qemu-img-copy.ts, always with `-f raw` for the source: a raw disk whose guest wrote a
 * qcow2 header into its first sector stays raw data, never an image QEMU opens by probing).
 */
import { parseMeasure } from './lvm-measure.js';
import { QCOW2_CREATE_OPTIONS } from './qemu-img.js';
import { run } from './runner.js';

/** Bytes a qcow2 copy of raw image `path` needs (`qemu-img measure` field `required`: its data plus metadata). */
export async function measureRawAsQcow2(path: string): Promise<number> {
  const { stdout } = await run('qemu-img', ['measure', '-f', 'raw', '-O', 'qcow2', '-o', QCOW2_CREATE_OPTIONS, '--output=json', path]);
  return parseMeasure(stdout).required;
}
