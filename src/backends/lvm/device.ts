/**
 * `/dev/<vg>/<lv>` is always a symlink (made by udev or by LVM), so it cannot be opened O_NOFOLLOW. Before a
 * layer's path is read or written, this checks that it leads to the device-mapper device of that very LV:
 * the node it resolves to is a block device whose sysfs `dm/name` is LVM's name for the LV (`<vg>-<lv>`,
 * each '-' doubled) and, when the `lvs` row's UUID is known, whose `dm/uuid` ends with it. LVM's own view of
 * the VG is trusted (README "Security"); a /dev entry pointing anywhere else (another LV, a loop device, a
 * file) is refused with exit 8 before anything opens it. Cheap: one stat(2) and two reads from sysfs, which
 * is in memory. Read-only, so no crash state.
 */
import { readFileSync, statSync } from 'node:fs';
import { UnsafeImageError } from '../../errors.js';

/** The device-mapper name LVM gives an LV (libdm's dm_build_dm_name without a layer suffix). */
export function dmNameOf(vg: string, lv: string): string {
  return `${vg.replaceAll('-', '--')}-${lv.replaceAll('-', '--')}`;
}

/** Linux dev_t to "major:minor" (glibc's gnu_dev_major/minor). */
function majorMinor(rdev: bigint): string {
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn);
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & ~0xffn);
  return `${major}:${minor}`;
}

function sysfs(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/**
 * Throws UnsafeImageError unless `path` (the LV's /dev path) resolves to the dm device of `lv` in `vg`.
 * `uuid` is the LV's UUID as `lvs` prints it (with dashes); pass undefined for an LV made moments ago whose
 * UUID is not known yet. A path that does not exist is left to the caller (an inactive LV has none).
 */
export function checkLvDevice(path: string, vg: string, lv: string, uuid: string | undefined): void {
  let rdev: bigint;
  try {
    const st = statSync(path, { bigint: true });
    if (!st.isBlockDevice()) {
      throw new UnsafeImageError(path, `is not a block device: it should lead to LV ${lv} of VG ${vg}; refusing to use it`);
    }
    rdev = st.rdev;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return;
    throw err;
  }
  const dev = majorMinor(rdev);
  const wantedName = dmNameOf(vg, lv);
  const name = sysfs(`/sys/dev/block/${dev}/dm/name`);
  if (name !== wantedName) {
    throw new UnsafeImageError(
      path,
      `leads to device ${dev} (${name === undefined ? 'not a device-mapper device' : `dm name ${JSON.stringify(name)}`}), ` +
        `not to LV ${lv} of VG ${vg} (dm name ${JSON.stringify(wantedName)}); refusing to use it`,
    );
  }
  if (uuid === undefined || uuid === '') return;
  const dmUuid = sysfs(`/sys/dev/block/${dev}/dm/uuid`);
  if (dmUuid === undefined || !dmUuid.startsWith('LVM-') || !dmUuid.endsWith(uuid.replaceAll('-', ''))) {
    throw new UnsafeImageError(
      path,
      `leads to device ${dev} whose dm uuid ${JSON.stringify(dmUuid ?? '')} is not that of LV ${lv} (${uuid}) as lvs reports it; refusing to use it`,
    );
  }
}
