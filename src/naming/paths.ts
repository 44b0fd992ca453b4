/**
 * Where layers live: `<storage path>/images/<vmid>/<layer>` on dir storage (PVE Plugin.pm filesystem_path),
 * `/dev/<vg>/<lv>` on LVM (LVMPlugin.pm filesystem_path).
 *
 * Names reaching here were validated already; the containment checks are defence in depth (DESIGN.md
 * section 6): whatever string slips through, the path built from it is directly inside the expected
 * directory or the function throws. POSIX path rules are used explicitly: these are Linux paths.
 */
import { posix as path } from 'node:path';
import { InvalidInputError } from '../errors.js';
import { LV_NAME_MAX, LVM_NAME_CHARS, quote } from './common.js';
import { validateVmid } from './volume-id.js';

/** `imagesSubdir`: the storage's sub-directory for images, `images` unless its content-dirs moves it. */
export function dirImagesDir(storagePath: string, vmid: number, imagesSubdir = 'images'): string {
  if (typeof storagePath !== 'string' || !path.isAbsolute(storagePath) || storagePath.includes('\0')) {
    throw new InvalidInputError(`storage path ${quote(storagePath)} is not valid: expected an absolute directory path`);
  }
  validateVmid(vmid);
  return path.resolve(storagePath, imagesSubdir, String(vmid));
}

export function dirLayerPath(storagePath: string, vmid: number, layerName: string, imagesSubdir = 'images'): string {
  const dir = dirImagesDir(storagePath, vmid, imagesSubdir);
  checkPlainName(layerName, 'layer name');
  return inside(dir, layerName);
}

export function lvmLayerPath(vgname: string, lvName: string): string {
  checkLvmName(vgname, 'volume group name');
  checkLvmName(lvName, 'LV name');
  return inside(path.join('/dev', vgname), lvName);
}

/** Joins and proves the result is a direct child of `dir` (path.resolve + relative check). */
function inside(dir: string, name: string): string {
  const full = path.resolve(dir, name);
  const relative = path.relative(dir, full);
  const direct = relative === name && !relative.includes('/') && relative !== '' && relative !== '..';
  if (!direct || path.dirname(full) !== dir) {
    throw new InvalidInputError(`name ${quote(name)} does not resolve to an entry directly inside ${quote(dir)}`);
  }
  return full;
}

function checkPlainName(name: string, what: string): void {
  const plain = typeof name === 'string' && name !== '' && name !== '.' && name !== '..';
  if (!plain || name.includes('/') || name.includes('\0')) {
    throw new InvalidInputError(`${what} ${quote(name)} is not valid: expected a plain file name without '/' or NUL, not '.' or '..'`);
  }
}

/** lvm(8) "VALID NAMES": letters, digits, `+ _ . -`, not starting with '-', not '.' or '..'. */
function checkLvmName(name: string, what: string): void {
  checkPlainName(name, what);
  if (!LVM_NAME_CHARS.test(name) || name.startsWith('-') || name.length > LV_NAME_MAX) {
    throw new InvalidInputError(
      `${what} ${quote(name)} is not valid: expected 1 to ${LV_NAME_MAX} of letters, digits, '+', '_', '.', '-', ` + "not starting with '-'",
    );
  }
}
