/**
 * One interface for every storage type. The engine plans with layer *names* and asks the backend to carry
 * out small primitives; it never compares backend kinds, it reads `capabilities`.
 */
import type { ImageFormat, StorageKind, VolumeRef } from '../naming/index.js';
import type { StorageDefinition } from '../config/index.js';
import type { Preallocation } from '../tools/qemu-img.js';

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
}

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

export interface Backend {
  readonly id: string;
  readonly kind: StorageKind;
  readonly capabilities: BackendCapabilities;
  readonly preallocation: Preallocation | undefined;
  readonly definition: StorageDefinition;

  /** Current layers of the volumes on this storage (snapshot layers, temporaries and foreign files hidden). */
  listVolumes(vmid?: number): Promise<VolumeRef[]>;
  /** VM ids that have any layer on this storage (including leftovers of interrupted operations). */
  listVmids(): Promise<number[]>;
  /** Every layer name in the namespace where volumes of `vmid` live (raw material for chain discovery). */
  listLayerNames(vmid: number): Promise<string[]>;
  /** Absolute path QEMU opens for a layer. */
  layerPath(vmid: number, layerName: string): string;
  /** Stat of a layer, or undefined when it does not exist. */
  statLayer(vmid: number, layerName: string): Promise<LayerStat | undefined>;

  createImage(vmid: number, layerName: string, format: ImageFormat, sizeBytes: number): Promise<void>;
  /** A qcow2 overlay whose header names `backingLayerName` (need not exist yet). */
  createOverlay(vmid: number, layerName: string, backingLayerName: string, sizeBytes: number): Promise<void>;
  /** Renames a layer; fails when `to` exists. */
  renameLayer(vmid: number, from: string, to: string): Promise<void>;
  /** Puts layer `from` in the place of `to`, discarding the old `to`, as one atomic step where possible. */
  replaceLayer(vmid: number, from: string, to: string): Promise<void>;
  removeLayer(vmid: number, layerName: string): Promise<void>;
  /**
   * Makes room for a layer's image to be written up to `sizeBytes` of virtual size (LVM: grow the LV back
   * to full size). Called before anything writes into a frozen layer; harmless to repeat.
   */
  prepareGrow(vmid: number, layerName: string, sizeBytes: number): Promise<void>;
  /** A layer became a snapshot and is read-only from now on (LVM: shrink the LV to the image's end). */
  settleFrozen(vmid: number, layerName: string): Promise<void>;

  /** A directory on (or for) this storage for locks and operation journals. */
  stateDir(): string;

  // ---- optional hooks (the executor calls them when a backend has them) ----------------------------------

  /**
   * Makes the named layers, and every other layer of their volumes, usable on this host (LVM: activate the
   * LVs, exclusively on a shared VG) and checks what the backend recorded against the image headers. Names
   * that do not exist are ignored. Called before a plan runs and before a step is redone.
   */
  activate?(vmid: number, layerNames: readonly string[]): Promise<void>;
  /** The inverse of activate: releases the layers of these volumes on this host (LVM: `lvchange -an`). */
  deactivate?(vmid: number, layerNames: readonly string[]): Promise<void>;
  /** qemu-img rewrote a layer's image (rebase, commit): refresh what the backend records about it. */
  layerChanged?(vmid: number, layerName: string): Promise<void>;
  /** Carries out a 'resize' step itself (prepareGrow has run); without it the executor runs qemu-img resize. */
  resizeLayer?(vmid: number, layerName: string, format: ImageFormat, sizeBytes: number): Promise<void>;
}
