/**
 * Thick LVM storage (a volume group, possibly shared by several hosts over a SAN): one LV per layer, named
 * exactly as Proxmox VE 9 names them (DESIGN.md section 2): the volume `vm-<vmid>-disk-<n>.qcow2`, snapshot S's
 * layer `snap_vm-<vmid>-disk-<n>_S.qcow2`, each qcow2 header naming its parent LV (resolved in /dev/<vg>/).
 * The engine's planners, executor and journal drive it through the Backend primitives; nothing here knows
 * about snapshots as operations.
 *
 * One concern per module, sharing one view of the VG (`vg.ts`: the cached `lvs` report, the LV changes that
 * keep it current): sizing (`sizing.ts`), activation and LV tags (`activation.ts`, `tags.ts`), saferemove
 * (`removal.ts`, `wipe.ts`), journals (`journal.ts`). This class, the driver the engine sees, creates,
 * renames and removes layers and delegates the rest.
 *
 * Selection: LVs are always named exactly (`vg/lv`), or chosen by exact volume tag; never by an LVM tag
 * expression (`@pve-vm-100` would also match LVs of other VGs, PVE bug 7143) nor by name prefix (`disk-1`
 * must never select `disk-11`'s layers).
 *
 * Activation: `lvcreate -aly -Wy --setautoactivation n --addtag pve-vm-<vmid>` as PVE 9 does (on a shared VG
 * `-aey`); activating existing layers: activation.ts, and "Shared VGs" below.
 *
 * Renames. `lvrename` never replaces an existing LV, so `replaceLayer(from, to)` removes `to` first, then
 * renames `from` to `to` (with saferemove: renames `to` to `del-<to>`, then `from` to `to`, so the volume's
 * name is missing only between two renames). If the process dies after the first command, redoing the step
 * (repair) finds `from` still there and carries on (`to` is gone already); after the rename, the executor's
 * redo sees `from` gone and stops.
 *
 * Journal and locks. Operation journals live on the VG (backends/lvm/journal.ts): a small LV `volchain-journal-<vmid>`
 * exists while an operation on that VM runs or after it was interrupted, tagged with what the operation is,
 * so every host sees it in `lvs` and the host that repairs it reads the steps from the LV. Only when the VG
 * has no room for that LV do the records go to the local state directory. Locks are host-local flock(2)s
 * per VM and VG (`lockFile()`, under `$VOLCHAIN_STATE_DIR`, default `/var/lib/volchain`); across hosts, see
 * below.
 *
 * Shared VGs (storage option `shared 1`, or a VG with an lvmlockd lock type). Cluster safety comes from an
 * existing lock manager, not a home-made one:
 * - with lvmlockd (VG lock type sanlock or dlm), LVM takes the cluster locks itself: every activation here
 *   is exclusive (`-aey`), and LVM refuses a second host's exclusive activation of an LV another host holds;
 *   since `activate` runs before every plan and covers every layer of the volume, two hosts can never run
 *   operations on one volume at the same time, and metadata changes (lvcreate/lvrename/lvremove) are
 *   serialised by lvmlockd's VG lock;
 * - without lvmlockd (PVE's own model), volchain assumes what PVE assumes: the cluster's lock service
 *   (pmxcfs' storage lock in PVE) serialises callers across hosts; volchain's per-VM flock is host-local.
 */
import { join } from 'node:path';
import type { LvmStorage } from '../../config/index.js';
import { AlreadyExistsError, InvalidInputError, NotFoundError, NotSupportedError } from '../../errors.js';
import { parseLvmBaseName, parseVolname, snapshotOfLayerName, type BaseVolume, type ImageFormat, type VolumeRef } from '../../naming/index.js';
import * as lvm from '../../tools/lvm.js';
import * as qemuImg from '../../tools/qemu-img.js';
import { FileJournalStore } from '../../journal/file-store.js';
import { lvmTemplatesAllowed, type Settings } from '../../settings.js';
import type { JournalStore } from '../../journal/record.js';
import type { Backend, BackendCapabilities, BaseInfo, FinishRemovalsOptions, FinishRemovalsResult, ImageScan, LayerStat, PendingRemoval } from '../backend.js';
import { notCapable } from '../capabilities.js';
import { LvmActivation } from './activation.js';
import { createLvmLinkedClone, inspectLvmBase, protectLvmBase, unprotectLvmBase } from './base.js';
import { crashPoint } from './crash.js';
import { LvmJournalStore } from './journal.js';
import { newLayerVolume, vmidsOfLv } from './lv-records.js';
import { LvmRemovals } from './removal.js';
import { LvmSizing } from './sizing.js';
import { storageStateDir, vgStateDir } from './state-dirs.js';
import { isVolumeLv, layerTags, parseLayerTags, vmTag } from './tags.js';
import { LISTING_REUSE_MS, LvmVolumeGroup } from './vg.js';

export class LvmBackend implements Backend {
  readonly kind = 'lvm' as const;
  readonly capabilities: BackendCapabilities;
  /** Thick LVs need no preallocation: the LV is the space. */
  readonly preallocation = undefined;
  private readonly vgView: LvmVolumeGroup;
  private readonly activation: LvmActivation;
  private readonly sizing: LvmSizing;
  private readonly removals: LvmRemovals;
  private journalStore: JournalStore | undefined;

  constructor(
    readonly definition: LvmStorage,
    /** The settings it runs with (state directory, LVM trace, crash hook), given when the registry opens it. */
    private readonly opts: { shrinkFrozen?: boolean; settings: Pick<Settings, 'stateDir' | 'hooks' | 'lvmTemplates'> },
  ) {
    this.capabilities = {
      volumeChain: definition.snapshotAsVolumeChain,
      // PVE 9 allows qcow2 on LVM only with snapshot-as-volume-chain.
      formats: definition.snapshotAsVolumeChain ? ['qcow2', 'raw'] : ['raw'],
      shared: definition.shared,
      fixedSizeLayers: true,
      activation: true,
      layerRecords: true,
      deferredRemoval: true,
      // Opt-in per storage ($VOLCHAIN_LVM_TEMPLATES, base.ts), and qcow2 only: a linked clone is a qcow2 chain.
      baseVolumes: definition.snapshotAsVolumeChain && lvmTemplatesAllowed(opts.settings, definition.id),
      layerSizing: true,
    };
    this.vgView = new LvmVolumeGroup(definition, (vmid) => this.lockFile(vmid), { trace: opts.settings.hooks.lvmTrace });
    this.activation = new LvmActivation(this.vgView, this.capabilities.baseVolumes);
    this.sizing = new LvmSizing(this.vgView, opts.shrinkFrozen ?? true, (vmid, layer) => this.layerChanged(vmid, layer));
    this.removals = new LvmRemovals(
      this.vgView,
      () => vgStateDir(opts.settings.stateDir, this.id, this.vg, '.wipe'),
      (point) => crashPoint(point, opts.settings.hooks),
    );
  }

  get id(): string {
    return this.definition.id;
  }

  get vg(): string {
    return this.definition.vgname;
  }

  // ---- reading ----------------------------------------------------------------------------------------

  async listVolumes(vmid?: number): Promise<VolumeRef[]> {
    // `del-` LVs left unfinished are picked up from this report by deferredRemovals (the caller's next step).
    const volumes: VolumeRef[] = [];
    for (const name of (await this.vgView.forListing()).rows.keys()) {
      let volume: VolumeRef;
      try {
        volume = parseVolname('lvm', this.id, name);
      } catch {
        continue; // snapshot layers, del- LVs, temporaries and LVs that are not VM disks
      }
      // A `base-` LV is a volume only where templates are opted in (PVE's LVM plugin does not list it either).
      if (volume.template === true && !this.capabilities.baseVolumes) continue;
      if (vmid === undefined || volume.vmid === vmid) volumes.push(volume);
    }
    return volumes.sort((a, b) => a.vmid - b.vmid || a.name.localeCompare(b.name, 'en', { numeric: true }));
  }

  /**
   * The VG's LVs that belong to `vmid`: tagged `pve-vm-<vmid>`, or with `vm-<vmid>-` in the name (volumes,
   * snapshot layers, temporaries, `del-` LVs still being wiped: name allocation must see them all).
   */
  async listLayerNames(vmid: number): Promise<string[]> {
    return [...(await this.vgView.reportFor(vmid, LISTING_REUSE_MS)).rows.values()].filter((r) => vmidsOfLv(r).includes(vmid)).map((r) => r.name);
  }

  async listVmids(): Promise<number[]> {
    const ids = new Set<number>();
    for (const row of (await this.vgView.forListing()).rows.values()) for (const id of vmidsOfLv(row)) ids.add(id);
    return [...ids].sort((a, b) => a - b);
  }

  /** For `list`: the volumes; every LV is a volume, a layer of one, or not volchain's, so nothing is unlisted. */
  async scanImages(vmid?: number): Promise<ImageScan> {
    return { volumes: await this.listVolumes(vmid), unlisted: [] };
  }

  layerPath(_vmid: number, layerName: string): string {
    return this.vgView.path(layerName);
  }

  statLayer(vmid: number, layerName: string): Promise<LayerStat | undefined> {
    return this.activation.stat(vmid, layerName);
  }

  // ---- creating -----------------------------------------------------------------------------------------

  async createImage(vmid: number, layerName: string, format: ImageFormat, sizeBytes: number, ofVolume?: string): Promise<void> {
    if (format === 'qcow2' && !this.capabilities.volumeChain) {
      throw new NotSupportedError(`storage '${this.id}' holds qcow2 volumes only with 'snapshot-as-volume-chain 1' (as Proxmox VE 9): allocate a raw volume`);
    }
    // A volume's own name, or the temporary that becomes one (a clone's copy, convert's `volchain-tmp-convert-<volume>`).
    // ... or a snapshot layer of `ofVolume` (move: each layer copied under its final name).
    const volume = ofVolume !== undefined && snapshotOfLayerName('lvm', ofVolume, layerName) !== undefined ? ofVolume : newLayerVolume(layerName);
    if (volume === undefined || !isVolumeLv(volume, vmid)) throw new InvalidInputError(`${layerName} is not a volume name of VM ${vmid}`);
    const report = await this.vgView.fresh();
    const lvSize = format === 'raw' ? lvm.roundUpTo(sizeBytes, report.vg.extentSizeBytes) : await this.vgView.fullSize(report, sizeBytes);
    const tags = layerTags(vmid, format === 'raw' ? { volume } : { volume, parent: null, virtualSize: sizeBytes });
    await this.vgView.createLv(report, layerName, lvSize, tags, `volume ${layerName}`);
    if (format === 'raw') return;
    try {
      await qemuImg.createImage(this.layerPath(vmid, layerName), 'qcow2', sizeBytes, undefined);
    } catch (err) {
      await this.vgView.dropLv(layerName);
      throw err;
    }
  }

  async createOverlay(vmid: number, layerName: string, backingLayerName: string, sizeBytes: number, ofVolume?: string): Promise<void> {
    const report = await this.vgView.fresh();
    const volume = ofVolume !== undefined && snapshotOfLayerName('lvm', ofVolume, layerName) !== undefined ? ofVolume : newLayerVolume(layerName);
    const lvSize = await this.vgView.fullSize(report, sizeBytes);
    const tags = layerTags(vmid, { ...(volume !== undefined ? { volume } : {}), parent: backingLayerName, virtualSize: sizeBytes });
    await this.vgView.createLv(report, layerName, lvSize, tags, `new layer ${layerName}`);
    try {
      await qemuImg.createOverlay(this.layerPath(vmid, layerName), backingLayerName, sizeBytes);
    } catch (err) {
      await this.vgView.dropLv(layerName);
      throw err;
    }
  }

  // ---- renaming and removing ----------------------------------------------------------------------------

  async renameLayer(_vmid: number, from: string, to: string): Promise<void> {
    this.vgView.checkDmName(to);
    const report = await this.vgView.fresh();
    if (report.rows.has(to)) throw new AlreadyExistsError(`cannot rename ${from} to ${to}: ${to} already exists in VG ${this.vg}`);
    await this.vgView.renameLv(report, from, to);
  }

  async reassignLayer(vmid: number, from: string, toVmid: number, to: string, toVolume: string): Promise<void> {
    this.vgView.checkDmName(to);
    let report = await this.vgView.fresh();
    if (report.rows.has(from)) {
      if (report.rows.has(to)) throw new AlreadyExistsError(`cannot give ${from} to VM ${toVmid} as ${to}: ${to} already exists in VG ${this.vg}`);
      // If we die between the rename and the retagging, the redo finds `to` only and retags it.
      await this.vgView.renameLv(report, from, to);
      report = await this.vgView.refresh();
    }
    const row = report.rows.get(to);
    if (!row) throw new NotFoundError(`cannot give ${from} to VM ${toVmid}: neither ${from} nor ${to} exists in VG ${this.vg}`);
    // The parent recorded stays until the relink step rewrites the header (and layerChanged the tags).
    const recorded = parseLayerTags(row.tags);
    const wanted = layerTags(toVmid, {
      volume: toVolume,
      ...(recorded.parent !== undefined ? { parent: recorded.parent } : {}),
      ...(recorded.virtualSize !== undefined ? { virtualSize: recorded.virtualSize } : {}),
    });
    const old = [vmTag(vmid), ...row.tags.filter((t) => t.startsWith('pve-vm-') || (t.startsWith('pve-') && t.endsWith('.qcow2')))];
    await this.vgView.syncTags(row, wanted, old);
  }

  async replaceLayer(_vmid: number, from: string, to: string): Promise<void> {
    this.vgView.checkDmName(to);
    const report = await this.vgView.fresh();
    if (!report.rows.has(from)) throw new NotFoundError(`cannot put ${from} in the place of ${to}: ${from} does not exist in VG ${this.vg}`);
    if (report.rows.has(to)) {
      // If we die after this, the volume has no current layer until repair redoes this step: the redo
      // finds `from` still there, skips this part (`to` is gone) and renames `from` below.
      if (this.definition.saferemove) await this.removals.renameForRemoval(report, to);
      else await this.vgView.dropLv(to);
      crashPoint('replace-removed', this.opts.settings.hooks);
    }
    await this.vgView.renameLv(report, from, to);
  }

  async removeLayer(_vmid: number, layerName: string): Promise<void> {
    let report = await this.vgView.fresh();
    if (!report.rows.has(layerName)) report = await this.vgView.refresh(); // make sure before concluding it is gone
    // Already gone (a redo; a `del-` LV a crashed run left is picked up by deferredRemovals after the step).
    if (!report.rows.has(layerName)) return;
    // A template's base LV is read-only (base.ts): writable again before it is zeroed and removed.
    if (parseLvmBaseName(layerName) !== undefined) await unprotectLvmBase(this.vgView, layerName);
    if (!this.definition.saferemove) {
      await this.vgView.dropLv(layerName); // lvremove itself refuses an LV that is open
      return;
    }
    // From here the layer is gone for everyone; its data stays on the LV until the wipe after the operation.
    await this.removals.renameForRemoval(report, layerName);
    crashPoint('remove-renamed', this.opts.settings.hooks);
  }

  // ---- space (sizing.ts) ----------------------------------------------------------------------------------

  async freeBytes(): Promise<number> {
    return (await this.vgView.fresh()).vg.freeBytes;
  }

  prepareGrow(_vmid: number, layerName: string, sizeBytes: number): Promise<void> {
    return this.sizing.prepareGrow(layerName, sizeBytes);
  }

  settleFrozen(_vmid: number, layerName: string): Promise<void> {
    return this.sizing.settleFrozen(layerName);
  }

  fullLayerBytes(virtualSizeBytes: number): Promise<number> {
    return this.sizing.fullLayerBytes(virtualSizeBytes);
  }

  frozenLayerBytes(_vmid: number, layerName: string): Promise<number | undefined> {
    return this.sizing.frozenLayerBytes(layerName);
  }

  resizeLayer(vmid: number, layerName: string, format: ImageFormat, sizeBytes: number): Promise<void> {
    return this.sizing.resizeLayer(vmid, layerName, format, sizeBytes);
  }

  // ---- recorded metadata and activation (activation.ts) ---------------------------------------------------

  layerChanged(vmid: number, layerName: string): Promise<void> {
    return this.activation.layerChanged(vmid, layerName);
  }

  activate(vmid: number, layerNames: readonly string[]): Promise<void> {
    return this.activation.activate(vmid, layerNames);
  }

  deactivate(vmid: number, layerNames: readonly string[]): Promise<void> {
    return this.activation.deactivate(vmid, layerNames);
  }

  // ---- templates and linked clones: only where $VOLCHAIN_LVM_TEMPLATES opts in (base.ts) --------------------
  // Without the opt-in (PVE makes no templates on thick LVM) a chain ends in its own VG.

  inspectBase(base: BaseVolume): Promise<BaseInfo> {
    if (!this.capabilities.baseVolumes) return Promise.reject(notCapable(this.id, 'baseVolumes', 'inspectBase'));
    return inspectLvmBase(this.vgView, base);
  }

  protectBase(vmid: number, layerName: string): Promise<void> {
    if (!this.capabilities.baseVolumes) return Promise.reject(notCapable(this.id, 'baseVolumes', 'protectBase'));
    return protectLvmBase(this.vgView, vmid, layerName);
  }

  async createLinkedClone(vmid: number, layerName: string, base: BaseVolume, sizeBytes: number): Promise<void> {
    if (!this.capabilities.baseVolumes) throw notCapable(this.id, 'baseVolumes', 'createLinkedClone');
    const volume = newLayerVolume(layerName);
    if (volume === undefined || !isVolumeLv(volume, vmid)) throw new InvalidInputError(`${layerName} is not a volume name of VM ${vmid}`);
    await createLvmLinkedClone(this.vgView, vmid, layerName, volume, base, sizeBytes);
  }

  // ---- saferemove: `del-` LVs, zeroed and removed after the operation (removal.ts) ------------------------

  deferredRemovals(vmid?: number): Promise<string[]> {
    return this.removals.deferredRemovals(vmid);
  }

  finishRemovals(opts: FinishRemovalsOptions = {}): Promise<FinishRemovalsResult> {
    return this.removals.finishRemovals(opts);
  }

  pendingRemovals(): Promise<PendingRemoval[]> {
    return this.removals.pendingRemovals();
  }

  removalLog(): string {
    return this.removals.removalLog();
  }

  // ---- state: locks and journals --------------------------------------------------------------------------

  stateDir(): string {
    return storageStateDir(this.opts.settings.stateDir, this.id);
  }

  lockFile(vmid: number): string {
    // Per VG, not per storage id: storage ids naming one VG share its journal LVs.
    return join(vgStateDir(this.opts.settings.stateDir, this.id, this.vg, '.locks'), `${vmid}.lock`);
  }

  /** Journals live on the VG (backends/lvm/journal.ts), so that another host can finish what this one started. */
  journal(): JournalStore {
    this.journalStore ??= new LvmJournalStore(this.vgView.journalView(), new FileJournalStore(join(this.stateDir(), 'journal')));
    return this.journalStore;
  }
}
