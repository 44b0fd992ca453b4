/**
 * The summary of one volume that `list` and `info` show (a `--json` shape). Its own module because both
 * volchain.ts (which computes it) and listing.ts (which lists it) need it, and listing.ts must not import
 * volchain.ts (which imports listing.ts).
 */
import type { ImageFormat } from '../../naming/index.js';

export interface VolumeSummary {
  volid: string;
  storage: string;
  vmid: number;
  name: string;
  format: ImageFormat;
  virtualSize: number;
  /** Bytes used on the storage by the current layer and by the whole chain. */
  usedBytes: number;
  chainUsedBytes: number;
  /** Bytes the snapshot layers take on the storage (LVM: their LV sizes; dir: their files' blocks). */
  snapshotBytes: number;
  /**
   * Bytes the same snapshot layers would take as full-size layers, as PVE 9 keeps them on LVM (each an LV of
   * the fully-allocated size of its virtual size); on storages whose layers grow on demand (dir) = snapshotBytes.
   */
  fullSizeSnapshotBytes: number;
  snapshots: string[];
  /** A template's base volume (read-only; its linked clones are listed in `clones`). */
  template: boolean;
  /** A linked clone: the volid of the base volume its chain ends in; null otherwise. */
  base: string | null;
}
