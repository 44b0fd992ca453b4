/**
 * The target side of the operations that write a new volume from data (clone, move, import): which storage
 * and VM it goes to, the names that VM already has there, and how much space a new layer takes (pure: the
 * operation measures, engine/operations/copy-target.ts; the planners only compare figures).
 */
import type { StorageKind } from '../../naming/index.js';

export interface CopyTarget {
  storage: string;
  kind: StorageKind;
  vmid: number;
  /** The new volume's name (`--name`); absent: the next free `vm-<vmid>-disk-<n>.qcow2`. */
  name?: string;
  /** Every layer name the target already has for VM `vmid` (dir: images/<vmid>; LVM: the VG's LVs). */
  existingNames: readonly string[];
  freeBytes: number;
  /**
   * Bytes a layer of `virtualSize` holding `dataBytes` of guest data takes there; `frozen`: a snapshot layer
   * once written (LVM shrinks it to its image end; elsewhere the same as a writable layer).
   */
  spaceNeeded: (virtualSize: number, dataBytes: number, frozen?: boolean) => number;
}
