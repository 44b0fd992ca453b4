/**
 * Directory storage (local disk, NFS, CIFS): one file per layer under `<path>/images/<vmid>/`, as PVE lays it
 * out. Renames are rename(2), atomic within the directory, which the crash-safety of every plan relies on.
 */
import { statSync } from 'node:fs';
import { link, mkdir, readdir, rename, rm, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { DirStorage } from '../config/index.js';
import { AlreadyExistsError, NoSpaceError } from '../errors.js';
import {
  dirImagesDir,
  dirLayerPath,
  parseVolname,
  type ImageFormat,
  type VolumeRef,
} from '../naming/index.js';
import { FileJournalStore } from '../journal/file-store.js';
import type { JournalStore } from '../journal/record.js';
import * as qemuImg from '../tools/qemu-img.js';
import type { Backend, BackendCapabilities, LayerStat } from './backend.js';
import { explainNoSpace } from './dir-space.js';

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
    };
  }

  get id(): string {
    return this.definition.id;
  }

  get preallocation(): qemuImg.Preallocation | undefined {
    return this.definition.preallocation ?? 'metadata';
  }

  async listVolumes(vmid?: number): Promise<VolumeRef[]> {
    const imagesRoot = join(this.definition.path, this.definition.imagesDir);
    const vmids = vmid === undefined ? await listNumericDirs(imagesRoot) : [vmid];
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

  listVmids(): Promise<number[]> {
    return listNumericDirs(join(this.definition.path, this.definition.imagesDir));
  }

  async listLayerNames(vmid: number): Promise<string[]> {
    try {
      return await readdir(dirImagesDir(this.definition.path, vmid, this.definition.imagesDir));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
  }

  layerPath(vmid: number, layerName: string): string {
    return dirLayerPath(this.definition.path, vmid, layerName, this.definition.imagesDir);
  }

  async statLayer(vmid: number, layerName: string): Promise<LayerStat | undefined> {
    try {
      // Synchronous: a stat of a local or NFS file is answered from cache, and the thread-pool round trip of
      // the async call cost more than the stat itself in bulk listings.
      const st = statSync(this.layerPath(vmid, layerName), { bigint: true });
      if (!st.isFile()) return undefined;
      return { usedBytes: Number(st.blocks * 512n), identity: `${st.dev}:${st.ino}` };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  async createImage(vmid: number, layerName: string, format: ImageFormat, sizeBytes: number): Promise<void> {
    const path = this.layerPath(vmid, layerName);
    await mkdir(dirImagesDir(this.definition.path, vmid, this.definition.imagesDir), { recursive: true });
    await this.refuseExisting(vmid, layerName);
    try {
      await qemuImg.createImage(path, format, sizeBytes, format === 'qcow2' ? this.preallocation : rawPreallocation(this.preallocation));
    } catch (err) {
      // qemu-img may leave a partial file behind (e.g. ENOSPC during preallocation): nothing half-made stays,
      // not even the images/<vmid> directory made for it (removeLayer leaves one that holds other layers).
      await this.removeLayer(vmid, layerName);
      if (err instanceof NoSpaceError) throw await explainNoSpace(err, this.definition.path, sizeBytes, this.preallocation);
      throw err;
    }
  }

  async createOverlay(vmid: number, layerName: string, backingLayerName: string, sizeBytes: number): Promise<void> {
    await mkdir(dirImagesDir(this.definition.path, vmid, this.definition.imagesDir), { recursive: true });
    await this.refuseExisting(vmid, layerName);
    const path = this.layerPath(vmid, layerName);
    try {
      // PVE's alloc_backed_image: the overlay gets the storage's preallocation too (for qcow2, default metadata).
      await qemuImg.createOverlay(path, backingLayerName, sizeBytes, this.preallocation);
    } catch (err) {
      await rm(path, { force: true });
      throw err;
    }
  }

  async renameLayer(vmid: number, from: string, to: string): Promise<void> {
    // link + unlink instead of rename: link(2) fails with EEXIST, so an existing `to` is never clobbered.
    const src = this.layerPath(vmid, from);
    const dst = this.layerPath(vmid, to);
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
    await rename(this.layerPath(vmid, from), this.layerPath(vmid, to));
  }

  async removeLayer(vmid: number, layerName: string): Promise<void> {
    await rm(this.layerPath(vmid, layerName), { force: true });
    // Leave no empty images/<vmid> directory behind once a VM's last layer is gone.
    try {
      await rmdir(dirImagesDir(this.definition.path, vmid, this.definition.imagesDir));
    } catch {
      // not empty (or already gone): fine
    }
  }

  async prepareGrow(): Promise<void> {
    // Files grow on demand.
  }

  async settleFrozen(): Promise<void> {
    // A sparse file takes only what it holds: nothing to give back.
  }

  stateDir(): string {
    return join(this.definition.path, '.volchain');
  }

  lockFile(vmid: number): string {
    // The state directory is inside the storage's directory: storage ids naming one directory share it.
    return join(this.stateDir(), 'locks', `${vmid}.lock`);
  }

  journal(): JournalStore {
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
  return entries.filter((e) => /^[1-9][0-9]*$/.test(e)).map(Number).sort((a, b) => a - b);
}
