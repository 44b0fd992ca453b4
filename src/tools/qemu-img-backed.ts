/**
 * The one qemu-img command of a linked clone (PVE's clone_image through qemu_img_create_qcow2_backed in
 * pve-storage's Common.pm): a new qcow2 image whose header names a template's base volume, its format given
 * with -F so the base is never probed, with the options every new qcow2 gets (extended_l2, 128k clusters).
 */
import { QCOW2_CREATE_OPTIONS, type Preallocation } from './qemu-img.js';
import { run } from './runner.js';

/**
 * `qemu-img create -f qcow2 -F <baseFormat> -b <backingRef> -o … <path> <sizeBytes>`. `backingRef` is written
 * into the header as given (dir: `../<vmid>/base-…`, resolved by QEMU against the clone's own directory; LVM:
 * the base LV's name in the same VG). No -u: qemu-img opens the base read-only to check it is there (the caller
 * has checked the base itself first).
 */
export async function createBackedImage(
  path: string,
  backingRef: string,
  baseFormat: 'qcow2' | 'raw',
  sizeBytes: number,
  preallocation: Preallocation | undefined,
): Promise<void> {
  const options = preallocation === undefined ? QCOW2_CREATE_OPTIONS : `${QCOW2_CREATE_OPTIONS},preallocation=${preallocation}`;
  await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', baseFormat, '-b', backingRef, '-o', options, path, String(sizeBytes)]);
}
