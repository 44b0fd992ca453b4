/**
 * One interface for every storage type. The engine plans with layer *names* and asks the backend to carry
 * out small primitives; it never compares backend kinds, it reads `capabilities` (which of the methods below do something here).
 */
import type { BaseVolume, ImageFormat, StorageKind, VolumeRef } from '../naming/index.js';
import type { StorageDefinition } from '../config/index.js';
import type { Preallocation } from '../tools/qemu-img.js';
import type { JournalStore } from '../journal/record.js';
import type { DirScan } from './dir/listing.js';

export interface BackendCapabilities {
  /** Snapshots are qcow2 layers (storage option snapshot-as-volume-chain). */
  readonly volumeChain: boolean;
  /** Formats this storage can hold. */
  readonly formats: readonly ImageFormat[];
  /** Several hosts see the storage (journal and locks must live on it). */
  readonly shared: boolean;
  /**
   * Layers have a fixed size chosen at creation (LVs): plans must grow a layer before writing into it and
   * may shrink it once frozen. Files grow on demand, so those steps are left out of their plans.
   */
  readonly fixedSizeLayers: boolean;

  // What the optional parts of the interface do on this storage. Every Backend method exists on every
  // backend; a capability that is false means its methods do nothing (where nothing is the honest answer:
  // activation, layer records, deferred removals) or throw NotSupportedError (where an answer would be made
  // up: base volumes, layer sizing). Callers read these flags, never the backend's kind.

  /**
   * `activate`/`deactivate` make layers usable on this host and release them (LVM: `lvchange -ay/-an`).
   * False: layers are always usable (files); both are no-ops.
   */
  readonly activation: boolean;
  /**
   * The backend keeps a record of each layer outside its image (LVM: LV tags), which `layerChanged` refreshes
   * after qemu-img rewrote a header. False: nothing is recorded; `layerChanged` is a no-op.
   */
  readonly layerRecords: boolean;
  /**
   * Removals finish after the operation (LVM saferemove: rename to `del-` at once, zero and remove later):
   * `deferredRemovals`, `finishRemovals`, `pendingRemovals`, `removalLog`. False: a removal is done when
   * `removeLayer` returns; the first three report nothing to do, `removalLog` throws NotSupportedError.
   */
  readonly deferredRemoval: boolean;
  /**
   * PVE's linked clones: a clone's bottom layer may name a template's base volume, which `inspectBase`
   * checks (dir). False: no backing reference may leave a volume's own directory or VG; `inspectBase`
   * throws NotSupportedError.
   */
  readonly baseVolumes: boolean;
  /**
   * Space figures for fixed-size layers (list, info, dry runs): `fullLayerBytes`, `frozenLayerBytes`. False
   * (layers grow on demand): both throw NotSupportedError.
   */
  readonly layerSizing: boolean;
}

/** What `scanImages` returns: the volumes, and the entries of the storage volchain cannot read. */
export type ImageScan = DirScan;

export interface LayerStat {
  /** Bytes the layer occupies on the storage (file blocks, LV size). */
  usedBytes: number;
  /** Identity of the underlying object: two names with one identity are the same layer. */
  identity: string;
  /**
   * False when the layer cannot be opened on this host right now (an inactive LV, e.g. held by another host
   * of a shared VG): readers then use `recorded` instead of the image. Absent means readable.
   */
  readable?: boolean;
  /** What the backend recorded about the layer outside its image (LVM: LV tags), when it records anything. */
  recorded?: LayerRecord;
}

/** A backend's own record of a layer, readable without opening the image. The image header stays the truth. */
export interface LayerRecord {
  /** The volume the layer belongs to (settles snapshot layer names that are ambiguous on their own). */
  volume?: string;
  /** Backing layer name; null: the layer has no backing image. */
  parent: string | null;
  /** Guest-visible size in bytes. */
  virtualSize: number;
}

/** A template's base volume as a linked clone's chain sees it (dir storage; backends/dir/base.ts). */
export interface BaseInfo {
  path: string;
  virtualSize: number;
  usedBytes: number;
  identity: string;
}

/** A removal that is not finished yet (LVM saferemove: a `del-` LV being zeroed before its lvremove). */
export interface PendingRemoval {
  storage: string;
  /** The object being removed (LVM: the `del-` LV) and its path. */
  layer: string;
  path: string;
  vmid: number | null;
  totalBytes: number;
  doneBytes: number;
  /** 'running': a wiper works on it now; 'waiting': none does (not started yet, or it died: run `volchain wipe`). */
  state: 'running' | 'waiting';
  pid: number | null;
  host: string | null;
  startedAt: string | null;
  updatedAt: string | null;
}

export interface FinishedRemoval {
  storage: string;
  layer: string;
  vmid: number | null;
  /** Bytes zeroed in all (including what an earlier, interrupted wipe had done). */
  bytes: number;
  /** Where this wipe started: > 0 when it continued an interrupted one. */
  resumedFromBytes: number;
}

export interface FinishRemovalsResult {
  /** Finished here. */
  finished: FinishedRemoval[];
  /** Left alone: another process is finishing them (without `wait`). */
  busy: PendingRemoval[];
  /** Finished by another process while this one waited (`wait`). */
  waited: PendingRemoval[];
}

export interface FinishRemovalsOptions {
  /** Only these (as deferredRemovals named them); without it every unfinished removal (of `vmid`). */
  layers?: readonly string[];
  vmid?: number;
  /** Also wait for the removals another process is finishing now (and finish them if that process dies). */
  wait?: boolean;
  onProgress?: (progress: PendingRemoval) => void;
  /** One line per event (start, end, failure), for the background wiper's log. */
  log?: (line: string) => void;
}

export interface Backend {
  readonly id: string;
  readonly kind: StorageKind;
  readonly capabilities: BackendCapabilities;
  readonly preallocation: Preallocation | undefined;
  readonly definition: StorageDefinition;

  /** Current layers of the volumes on this storage (snapshot layers, temporaries and foreign files hidden). */
  listVolumes(vmid?: number): Promise<VolumeRef[]>;
  /** For `list`: the volumes and, with their problems, the entries volchain cannot read (dir: backends/dir/listing.ts). */
  scanImages(vmid?: number): Promise<ImageScan>;
  /** VM ids that have any layer on this storage (including leftovers of interrupted operations). */
  listVmids(): Promise<number[]>;
  /** Every layer name in the namespace where volumes of `vmid` live (raw material for chain discovery). */
  listLayerNames(vmid: number): Promise<string[]>;
  /** Absolute path QEMU opens for a layer. */
  layerPath(vmid: number, layerName: string): string;
  /** Stat of a layer, or undefined when it does not exist. */
  statLayer(vmid: number, layerName: string): Promise<LayerStat | undefined>;

  /**
   * `volume`: the volume a snapshot layer made directly under its own name belongs to (move copies each layer
   * under its final name); without it the layer must be a volume's name or a temporary of one.
   */
  createImage(vmid: number, layerName: string, format: ImageFormat, sizeBytes: number, volume?: string): Promise<void>;
  /** A qcow2 overlay whose header names `backingLayerName` (need not exist yet); `volume` as for createImage. */
  createOverlay(vmid: number, layerName: string, backingLayerName: string, sizeBytes: number, volume?: string): Promise<void>;
  /** Renames a layer; fails when `to` exists. */
  renameLayer(vmid: number, from: string, to: string): Promise<void>;
  /** Puts layer `from` in the place of `to`, discarding the old `to`, as one atomic step where possible. */
  replaceLayer(vmid: number, from: string, to: string): Promise<void>;
  removeLayer(vmid: number, layerName: string): Promise<void>;
  /**
   * Gives layer `from` of VM `vmid` to VM `toVmid` as `to` on this storage (reassign: dir moves the file to
   * images/<toVmid>, LVM renames the LV and retags it for `toVmid` and volume `toVolume`); fails when `to`
   * exists. Harmless to repeat once done (`from` gone and `to` there).
   */
  reassignLayer(vmid: number, from: string, toVmid: number, to: string, toVolume: string): Promise<void>;
  /**
   * Makes room for a layer's image to be written up to `sizeBytes` of virtual size (LVM: grow the LV back
   * to full size). Called before anything writes into a frozen layer; harmless to repeat.
   */
  prepareGrow(vmid: number, layerName: string, sizeBytes: number): Promise<void>;
  /** A layer became a snapshot and is read-only from now on (LVM: shrink the LV to the image's end). */
  settleFrozen(vmid: number, layerName: string): Promise<void>;

  /** A directory on (or for) this storage for locks (and, on dir storage, operation journals). */
  stateDir(): string;
  /**
   * The file whose lock serializes operations on VM `vmid`'s volumes here. One per VM and per place the
   * volumes live (directory, VG), not per storage id: two storage ids naming the same place share a VM's
   * journal, so they must exclude each other too.
   */
  lockFile(vmid: number): string;
  /** Where this storage's operation journals live: on the storage, so every host that sees it finds them. */
  journal(): JournalStore;

  /** Bytes free for new layers now (dir: the file system's, for unprivileged users; LVM: the VG's free extents). */
  freeBytes(): Promise<number>;

  /** Grows (qcow2: `qemu-img resize`, LVM also the LV) a layer for a 'resize' step; prepareGrow has run. */
  resizeLayer(vmid: number, layerName: string, format: ImageFormat, sizeBytes: number): Promise<void>;

  // ---- activation and layer records (capabilities.activation, capabilities.layerRecords) -----------------

  /**
   * Makes the named layers, and every other layer of their volumes, usable on this host (LVM: activate the
   * LVs, exclusively on a shared VG) and checks what the backend recorded against the image headers. Names
   * that do not exist are ignored. Called before a plan runs and before a step is redone.
   */
  activate(vmid: number, layerNames: readonly string[]): Promise<void>;
  /** The inverse of activate: releases the layers of these volumes on this host (LVM: `lvchange -an`). */
  deactivate(vmid: number, layerNames: readonly string[]): Promise<void>;
  /** qemu-img rewrote a layer's image (rebase, commit): refresh what the backend records about it. */
  layerChanged(vmid: number, layerName: string): Promise<void>;

  // ---- removals finished after the operation (capabilities.deferredRemoval) ------------------------------

  /**
   * The removals left for later (of `vmid`, else all) since the last call, plus unfinished ones nobody works
   * on: the caller finishes them once the VM's lock is released. Each is handed out once.
   */
  deferredRemovals(vmid?: number): Promise<string[]>;
  /** Finishes unfinished removals in this process (each under its own lock); busy: held by another process. */
  finishRemovals(opts: FinishRemovalsOptions): Promise<FinishRemovalsResult>;
  /** Removals not finished yet, with their progress. */
  pendingRemovals(): Promise<PendingRemoval[]>;
  /** The file a background process finishing removals writes its output to. */
  removalLog(): string;

  // ---- base volumes (capabilities.baseVolumes) ------------------------------------------------------------

  /**
   * Checks the base volume a clone's bottom layer names and returns what the chain needs of it (throws
   * UnsafeImageError for anything but a plain base volume of this storage).
   */
  inspectBase(base: BaseVolume): Promise<BaseInfo>;
  /**
   * Protects a layer that just became a template's base volume (`volchain template`) as PVE's create_base
   * does: dir: mode 0444 and, where the file system has it, the immutable flag. Harmless to repeat.
   */
  protectBase(vmid: number, layerName: string): Promise<void>;
  /**
   * A new qcow2 linked clone `layerName` of VM `vmid` (`volchain clone --linked`) of `sizeBytes` virtual, whose
   * header names base volume `base` of this storage (checked with inspectBase first) with its format, as PVE's
   * clone_image writes it. Fails when `layerName` exists; leaves nothing behind when it fails.
   */
  createLinkedClone(vmid: number, layerName: string, base: BaseVolume, sizeBytes: number): Promise<void>;

  // ---- space figures (capabilities.layerSizing): list, info, dry runs ------------------------------------

  /** Bytes a writable qcow2 layer of this virtual size takes (LVM: the fully-allocated size of its LV). */
  fullLayerBytes(virtualSizeBytes: number): Promise<number>;
  /**
   * Bytes a layer will take once frozen (settleFrozen: LVM shrinks it to its image end), read without changing
   * anything; undefined when that cannot be known here (an inactive LV).
   */
  frozenLayerBytes(vmid: number, layerName: string): Promise<number | undefined>;
}
