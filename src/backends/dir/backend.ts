/**
 * Directory storage (local disk, NFS, CIFS): one file per layer under `<path>/images/<vmid>/`, as PVE lays it
 * out. Renames are rename(2), atomic within the directory, which the crash-safety of every plan relies on.
 */
import { closeSync, constants, openSync, readdirSync } from 'node:fs';
import { link, mkdir, readdir, rename, rm, rmdir, stat, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import type { DirStorage } from '../../config/index.js';
import { AlreadyExistsError, NoSpaceError } from '../../errors.js';
import { baseBackingRef, dirImagesDir, dirLayerPath, parseVolname, type BaseVolume, type ImageFormat, type VolumeRef } from '../../naming/index.js';
import { FileJournalStore } from '../../journal/file-store.js';
import type { JournalStore } from '../../journal/record.js';
import * as qemuImg from '../../tools/qemu-img.js';
import { createBackedImage } from '../../tools/qemu-img-backed.js';
import type { Backend, BackendCapabilities, BaseInfo, FinishRemovalsResult, LayerStat, PendingRemoval } from '../backend.js';
import { notCapable } from '../capabilities.js';
import { clearImmutable, inspectDirBase, protectDirBase } from './base.js';
import { explainNoSpace } from './space.js';
import { scanDirImages, type DirScan } from './listing.js';
import { checkImagesDirs, checkLayerFile, checkOwnedDir, checkOwnedFile } from '../safe-fs.js';

export class DirBackend implements Backend {
  readonly kind = 'dir' as const;
  readonly capabilities: BackendCapabilities;
  private journalStore: JournalStore | undefined;

  constructor(readonly definition: DirStorage) {
    this.capabilities = {
      volumeChain: definition.snapshotAsVolumeChain,
      formats: ['qcow2', 'raw'],
      shared: definition.shared,
      fixedSizeLayers: false,
      activation: false,
      layerRecords: false,
      deferredRemoval: false,
      baseVolumes: true,
      layerSizing: false,
    };
  }

  get id(): string {
    return this.definition.id;
  }

  get preallocation(): qemuImg.Preallocation | undefined {
    return this.definition.preallocation ?? 'metadata';
  }

  async listVolumes(vmid?: number): Promise<VolumeRef[]> {
    const vmids = vmid === undefined ? await this.listVmids() : [vmid];
    const volumes: VolumeRef[] = [];
    for (const id of vmids) {
      for (const name of await this.listLayerNames(id)) {
        try {
          volumes.push(parseVolname('dir', this.id, `${id}/${name}`));
        } catch {
          // Snapshot layers, temporaries and foreign files are not volumes.
        }
      }
    }
    return volumes.sort((a, b) => a.vmid - b.vmid || a.name.localeCompare(b.name, 'en', { numeric: true }));
  }

  /** For `list`: the volumes, and what volchain cannot read listed with its problem (backends/dir/listing.ts). */
  async scanImages(vmid?: number): Promise<DirScan> {
    return scanDirImages(this.definition, vmid === undefined ? await this.listVmids() : [vmid]);
  }

  listVmids(): Promise<number[]> {
    // A symlinked images directory would list (and later open) another tree: refused, as everywhere below the root.
    if (!checkImagesDirs(this.definition.path, this.definition.imagesDir)) return Promise.resolve([]);
    return listNumericDirs(join(this.definition.path, this.definition.imagesDir));
  }

  async listLayerNames(vmid: number): Promise<string[]> {
    if (!checkImagesDirs(this.definition.path, this.definition.imagesDir, vmid)) return [];
    try {
      // Synchronous, as statLayer: a VM directory's listing is small, and the thread-pool round trip of the
      // async call cost 3-5 times the readdir itself (issue 16, bulk listings).
      return readdirSync(dirImagesDir(this.definition.path, vmid, this.definition.imagesDir));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
  }

  layerPath(vmid: number, layerName: string): string {
    return dirLayerPath(this.definition.path, vmid, layerName, this.definition.imagesDir);
  }

  async statLayer(vmid: number, layerName: string): Promise<LayerStat | undefined> {
    // Synchronous: a stat of a local or NFS file is answered from cache, and the thread-pool round trip of
    // the async call cost more than the stat itself in bulk listings. lstat, not stat: a symlink, FIFO,
    // directory or device in a layer's place is refused (exit 8) here, before anything opens it, rather than
    // reported as absent.
    if (!checkImagesDirs(this.definition.path, this.definition.imagesDir, vmid)) return undefined;
    const st = checkLayerFile(this.layerPath(vmid, layerName));
    if (st === undefined) return undefined;
    return { usedBytes: Number(st.blocks * 512n), identity: `${st.dev}:${st.ino}` };
  }

  async createImage(vmid: number, layerName: string, format: ImageFormat, sizeBytes: number): Promise<void> {
    const path = this.layerPath(vmid, layerName);
    const madeDir = await this.claimNewFile(vmid, layerName);
    try {
      await qemuImg.createImage(path, format, sizeBytes, format === 'qcow2' ? this.preallocation : rawPreallocation(this.preallocation));
    } catch (err) {
      // qemu-img may leave a partial file behind (e.g. ENOSPC during preallocation): nothing half-made stays,
      // not even the images/<vmid> directory made for it.
      await this.undoNewFile(vmid, path, madeDir);
      if (err instanceof NoSpaceError) throw await explainNoSpace(err, this.definition.path, sizeBytes, this.preallocation);
      throw err;
    }
  }

  async createOverlay(vmid: number, layerName: string, backingLayerName: string, sizeBytes: number): Promise<void> {
    const path = this.layerPath(vmid, layerName);
    const madeDir = await this.claimNewFile(vmid, layerName);
    try {
      // PVE's alloc_backed_image: the overlay gets the storage's preallocation too (for qcow2, default metadata).
      await qemuImg.createOverlay(path, backingLayerName, sizeBytes, this.preallocation);
    } catch (err) {
      await this.undoNewFile(vmid, path, madeDir);
      throw err;
    }
  }

  /**
   * Makes `images/<vmid>` if needed and creates the layer's file empty with O_CREAT|O_EXCL (which neither
   * follows a symlink, dangling or not, nor opens anything already there), so qemu-img, which opens the path
   * with O_TRUNC, only ever writes the regular file made here. Returns whether the directory was made here.
   * Crash state: an empty or partly written file under the layer's name, the same as a crash inside
   * qemu-img alone leaves. Mode 0644 before the umask, as qemu-img gives the files it creates itself.
   */
  private async claimNewFile(vmid: number, layerName: string): Promise<boolean> {
    const path = this.layerPath(vmid, layerName);
    let madeDir = false;
    if (!checkImagesDirs(this.definition.path, this.definition.imagesDir, vmid)) {
      await mkdir(join(this.definition.path, this.definition.imagesDir), { recursive: true });
      // Non-recursive: `images` was checked (or just made); another creator may have won the race.
      try {
        await mkdir(dirImagesDir(this.definition.path, vmid, this.definition.imagesDir));
        madeDir = true;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      checkImagesDirs(this.definition.path, this.definition.imagesDir, vmid);
    }
    await this.refuseExisting(vmid, layerName);
    try {
      closeSync(openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o644));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
        // Appeared since the check (or a dangling symlink, which statLayer reports first on the next run).
        checkLayerFile(path);
        throw new AlreadyExistsError(`${layerName} already exists in storage '${this.id}'`);
      }
      if (madeDir) await rmdir(dirImagesDir(this.definition.path, vmid, this.definition.imagesDir)).catch(() => undefined);
      throw err;
    }
    return madeDir;
  }

  private async undoNewFile(vmid: number, path: string, madeDir: boolean): Promise<void> {
    await rm(path, { force: true });
    if (!madeDir) return;
    try {
      await rmdir(dirImagesDir(this.definition.path, vmid, this.definition.imagesDir));
    } catch {
      // something else arrived in it meanwhile: it stays
    }
  }

  async renameLayer(vmid: number, from: string, to: string): Promise<void> {
    // link + unlink instead of rename: link(2) fails with EEXIST, so an existing `to` is never clobbered.
    const src = this.layerPath(vmid, from);
    const dst = this.layerPath(vmid, to);
    // Only a checked regular file is moved, and never onto a symlink (link(2) does not follow it, but a
    // planted link in `to`'s place must be reported as what it is).
    await this.statLayer(vmid, from);
    await this.statLayer(vmid, to);
    try {
      await link(src, dst);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EEXIST') throw new AlreadyExistsError(`cannot rename ${from} to ${to}: ${to} already exists`);
      if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP') throw err;
      // File systems without hard links (some CIFS mounts): check, then rename.
      if (await this.statLayer(vmid, to)) throw new AlreadyExistsError(`cannot rename ${from} to ${to}: ${to} already exists`);
      await rename(src, dst);
      return;
    }
    await rm(src);
  }

  async replaceLayer(vmid: number, from: string, to: string): Promise<void> {
    await this.statLayer(vmid, from);
    await this.statLayer(vmid, to);
    await rename(this.layerPath(vmid, from), this.layerPath(vmid, to));
  }

  async reassignLayer(vmid: number, from: string, toVmid: number, to: string): Promise<void> {
    const before = await this.statLayer(vmid, from);
    const after = await this.statLayer(toVmid, to);
    if (!before && after) return; // done by an earlier attempt
    if (before && after) {
      // Interrupted between link and unlink: both names are one file. Anything else is a name taken.
      if (before.identity === after.identity) return this.removeLayer(vmid, from);
      // An empty file is the placeholder a crash left right before the rename below: made again there.
      if ((await stat(this.layerPath(toVmid, to))).size !== 0) {
        throw new AlreadyExistsError(`cannot give ${from} to VM ${toVmid} as ${to}: ${to} already exists`);
      }
      await rm(this.layerPath(toVmid, to));
    }
    // images/<toVmid> is made (checked) as for a new layer; its empty placeholder file is replaced below.
    const madeDir = await this.claimNewFile(toVmid, to);
    const dst = this.layerPath(toVmid, to);
    try {
      // rename(2) over the placeholder made by O_EXCL: atomic, and never onto anything that was there before.
      await rename(this.layerPath(vmid, from), dst);
    } catch (err) {
      await this.undoNewFile(toVmid, dst, madeDir);
      throw err;
    }
    // Leave no empty images/<vmid> directory behind once a VM's last layer is gone.
    await rmdir(dirImagesDir(this.definition.path, vmid, this.definition.imagesDir)).catch(() => undefined);
  }

  async removeLayer(vmid: number, layerName: string): Promise<void> {
    // rm(2) of a symlink would only drop the link, but a symlinked images/<vmid> would remove elsewhere.
    if (!checkImagesDirs(this.definition.path, this.definition.imagesDir, vmid)) return;
    if (layerName.startsWith('base-')) await clearImmutable(this.layerPath(vmid, layerName));
    await rm(this.layerPath(vmid, layerName), { force: true });
    // Leave no empty images/<vmid> directory behind once a VM's last layer is gone.
    try {
      await rmdir(dirImagesDir(this.definition.path, vmid, this.definition.imagesDir));
    } catch {
      // not empty (or already gone): fine
    }
  }

  inspectBase(base: BaseVolume): Promise<BaseInfo> {
    return inspectDirBase(this.definition, base);
  }

  async protectBase(vmid: number, layerName: string): Promise<void> {
    // Checked like every layer first (regular file, no symlink): chmod follows symlinks.
    if (!(await this.statLayer(vmid, layerName))) return;
    await protectDirBase(this.layerPath(vmid, layerName));
  }

  async createLinkedClone(vmid: number, layerName: string, base: BaseVolume, sizeBytes: number): Promise<void> {
    // The base is checked as a clone's chain checks it (regular file of this storage, format read natively).
    await inspectDirBase(this.definition, base);
    const path = this.layerPath(vmid, layerName);
    const madeDir = await this.claimNewFile(vmid, layerName);
    try {
      // PVE's clone_image: relative `../<basevmid>/<basename>`, -F the base's format, and the preallocation
      // PVE derives from the base's format (preallocation_cmd_opt: a raw base turns 'metadata' into 'off').
      const prealloc = base.format === 'qcow2' ? this.preallocation : (rawPreallocation(this.preallocation) ?? 'off');
      await createBackedImage(path, baseBackingRef(base), base.format, sizeBytes, prealloc);
    } catch (err) {
      await this.undoNewFile(vmid, path, madeDir);
      throw err;
    }
  }

  async prepareGrow(): Promise<void> {
    // Files grow on demand.
  }

  async settleFrozen(): Promise<void> {
    // A sparse file takes only what it holds: nothing to give back.
  }

  async resizeLayer(vmid: number, layerName: string, format: ImageFormat, sizeBytes: number): Promise<void> {
    await qemuImg.resizeImage(this.layerPath(vmid, layerName), format, sizeBytes);
  }

  // ---- capabilities this storage lacks (backend.ts, BackendCapabilities) --------------------------------

  async activate(): Promise<void> {
    // Files are usable as they are: nothing to activate.
  }

  async deactivate(): Promise<void> {
    // ... nor to release.
  }

  async layerChanged(): Promise<void> {
    // The image is the only record of a layer: nothing else to refresh.
  }

  async deferredRemovals(): Promise<string[]> {
    return []; // removeLayer removes at once
  }

  async finishRemovals(): Promise<FinishRemovalsResult> {
    return { finished: [], busy: [], waited: [] };
  }

  async pendingRemovals(): Promise<PendingRemoval[]> {
    return [];
  }

  removalLog(): string {
    throw notCapable(this.id, 'deferredRemoval', 'removalLog');
  }

  fullLayerBytes(): Promise<number> {
    return Promise.reject(notCapable(this.id, 'layerSizing', 'fullLayerBytes'));
  }

  frozenLayerBytes(): Promise<number | undefined> {
    return Promise.reject(notCapable(this.id, 'layerSizing', 'frozenLayerBytes'));
  }

  async freeBytes(): Promise<number> {
    const fs = await statfs(this.definition.path);
    return fs.bavail * fs.bsize;
  }

  stateDir(): string {
    return join(this.definition.path, '.volchain');
  }

  lockFile(vmid: number): string {
    // The state directory is inside the storage's directory: storage ids naming one directory share it.
    // Checked like layers (safe-fs.ts): taking the lock opens the file, which must not lead outside.
    const locks = join(this.stateDir(), 'locks');
    if (checkOwnedDir(this.stateDir()) && checkOwnedDir(locks)) checkOwnedFile(join(locks, `${vmid}.lock`));
    return join(locks, `${vmid}.lock`);
  }

  journal(): JournalStore {
    // Records are written and read by path: a symlinked state or journal directory is refused first.
    if (checkOwnedDir(this.stateDir())) checkOwnedDir(join(this.stateDir(), 'journal'));
    this.journalStore ??= new FileJournalStore(join(this.stateDir(), 'journal'));
    return this.journalStore;
  }

  private async refuseExisting(vmid: number, layerName: string): Promise<void> {
    if (await this.statLayer(vmid, layerName)) {
      throw new AlreadyExistsError(`${layerName} already exists in storage '${this.id}'`);
    }
  }
}

/** For raw files only off/falloc/full mean something; metadata (the dir default) is a qcow2 notion. */
function rawPreallocation(p: qemuImg.Preallocation | undefined): qemuImg.Preallocation | undefined {
  return p === 'metadata' ? undefined : p;
}

async function listNumericDirs(dir: string): Promise<number[]> {
  let entries: string[];
  try {
    entries = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  return entries
    .filter((e) => /^[1-9][0-9]*$/.test(e))
    .map(Number)
    .sort((a, b) => a - b);
}
