/**
 * Template base volumes on dir storage (PVE create_base: `images/<vmid>/base-<vmid>-….<raw|qcow2>`, mode 0444,
 * `chattr +i` where the file system has it). volchain never writes a base: it only reads one as the bottom of
 * a linked clone's chain, and removes one with `free` when no clone needs it.
 *
 * A clone's bottom layer names its base `../<basevmid>/<basename>`, the only backing reference allowed to
 * leave a VM's directory (DESIGN.md section 6). Before that reference is trusted, the file it leads to is
 * checked here the way every layer is (safe-fs.ts): the directories on the way are real directories of this
 * storage, the file is regular (lstat: no symlink, FIFO or device), its format is read natively and agrees
 * with its name, and a qcow2 base has no backing file of its own (PVE's bases on dir have none; one that does
 * could lead anywhere), no external data file and version 3.
 */
import { closeSync, constants, openSync, readSync } from 'node:fs';
import { chmod } from 'node:fs/promises';
import type { DirStorage } from '../../config/index.js';
import { NotFoundError, UnsafeImageError } from '../../errors.js';
import { dirLayerPath, type BaseVolume } from '../../naming/index.js';
import { readQcow2Header, validateLayerHeader } from '../../qcow2/index.js';
import { run } from '../../tools/runner.js';
import type { BaseInfo } from '../backend.js';
import { checkImagesDirs, checkLayerFile } from '../safe-fs.js';

const QCOW2_MAGIC = 'QFI\xfb';

export async function inspectDirBase(definition: DirStorage, base: BaseVolume): Promise<BaseInfo> {
  const path = dirLayerPath(definition.path, base.vmid, base.name, definition.imagesDir);
  const missing = (): NotFoundError => new NotFoundError(`base volume ${definition.id}:${base.vmid}/${base.name} does not exist (looked for ${path})`);
  // Throws (exit 8) for a symlinked or non-directory images/<vmid>; false when it does not exist.
  if (!checkImagesDirs(definition.path, definition.imagesDir, base.vmid)) throw missing();
  const st = checkLayerFile(path);
  if (st === undefined) throw missing();
  const native = readMagic(path) === QCOW2_MAGIC ? 'qcow2' : 'raw';
  if (native !== base.format) {
    // A raw base opened with -F raw would be safe, but a name that lies about the content is not PVE's doing.
    throw new UnsafeImageError(base.name, `base volume holds ${native} data but its name says ${base.format}`);
  }
  let virtualSize = Number(st.size);
  if (base.format === 'qcow2') {
    const header = await readQcow2Header(path, base.name);
    validateLayerHeader(base.name, header, { base: true, isExpectedLayerName: () => false });
    virtualSize = header.virtualSize;
  }
  return { path, virtualSize, usedBytes: Number(st.blocks * 512n), identity: `${st.dev}:${st.ino}` };
}

function readMagic(path: string): string {
  // O_NOFOLLOW: checkLayerFile has just refused a symlink; a swap since then fails here instead of following.
  const fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    const buf = Buffer.alloc(4);
    const n = readSync(fd, buf, 0, 4, 0);
    return buf.subarray(0, n).toString('latin1');
  } finally {
    closeSync(fd);
  }
}

/**
 * Before a base volume is removed (`free` of a template without clones): PVE's create_base set the immutable
 * flag where the file system has one, and its free_image clears it first the same way. Best effort, as in
 * PVE: where chattr or the flag is unsupported (tmpfs, NFS) the removal itself says whether it worked.
 */
export async function clearImmutable(path: string): Promise<void> {
  try {
    await run('chattr', ['-i', path]);
  } catch {
    // no chattr, no flag support, or not permitted: the unlink that follows reports a real problem
  }
}

/**
 * A volume that just became a base volume (`volchain template`), protected as PVE's create_base protects it:
 * mode 0444 (nobody writes it), then the immutable flag where the file system and privileges allow it
 * (best effort, as in PVE; `free` of the base clears it again: clearImmutable). Harmless to repeat.
 */
export async function protectDirBase(path: string): Promise<void> {
  // A repeat (repair after a crash right after this step) finds the flag set, and chmod of an immutable file
  // fails with EPERM: clear it first, so the repeat ends in the same state.
  await clearImmutable(path);
  await chmod(path, 0o444);
  try {
    await run('chattr', ['+i', path]);
  } catch {
    // no chattr, no flag support (tmpfs, NFS) or not permitted: mode 0444 is the protection that stays
  }
}
