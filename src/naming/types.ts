/** The naming layer's vocabulary: storage kinds, image formats and volume references (types only). */

export type StorageKind = 'dir' | 'lvm';
export type ImageFormat = 'raw' | 'qcow2';

export interface VolumeRef {
  storage: string;
  kind: StorageKind;
  vmid: number;
  /** File name (dir) or LV name (lvm), e.g. vm-100-disk-0.qcow2. */
  name: string;
  format: ImageFormat;
  /** The part of the volid after `storage:`. */
  volname: string;
  /** A template's base volume (dir only): read-only, never written, takes no snapshots. */
  template?: true;
  /**
   * A linked clone (dir only): the base its bottom layer is backed by. Absent on a volid without the base
   * part; reading the chain finds the base from the headers either way (engine/read/volume-tree.ts).
   */
  base?: BaseVolume;
}

/** A template's base volume: `images/<vmid>/<name>` on the clone's storage. */
export interface BaseVolume {
  vmid: number;
  /** `base-<vmid>-<rest>.<raw|qcow2>`. */
  name: string;
  format: ImageFormat;
}
