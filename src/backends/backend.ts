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
}

export interface LayerStat {
  /** Bytes the layer occupies on the storage (file blocks, LV size). */
  usedBytes: number;
  /** Identity of the underlying object: two names with one identity are the same layer. */
  identity: string;
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
}
