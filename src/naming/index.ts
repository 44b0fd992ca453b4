/** The naming layer: volume ids, layer names, name allocation, paths and sizes. Pure: no I/O. */
export { DIR_NAME_MAX_BYTES, LV_NAME_MAX, LVM_RESERVED_SUBSTRINGS } from './common.js';
export { formatSize, parseSize } from './size.js';
export {
  RESERVED_SNAPSHOT_NAMES,
  SNAPSHOT_NAME_MAX,
  SNAPSHOT_NAME_PATTERN,
  isValidSnapshotName,
  sameSnapshotName,
  validateSnapshotName,
} from './snapshot-name.js';
export {
  LAYER_NAME_OVERHEAD,
  VMID_MAX,
  VMID_MIN,
  formatVolid,
  parseVmid,
  parseVolname,
  parseBaseName,
  parseLvmBaseName,
  parseVolumeName,
  splitVolid,
  validateStorageId,
  validateVmid,
  validateVolumeName,
} from './volume-id.js';
export type { BaseVolume, ImageFormat, StorageKind, VolumeRef } from './types.js';
export type { NamingScheme } from './scheme.js';
export { isStorageKind, namingScheme } from './schemes.js';
export { isVolchainTemporaryName, snapshotLayerName, snapshotOfLayerName, temporaryLayerName } from './layer-names.js';
export { dirImagesDir, dirLayerPath, lvmLayerPath } from './paths.js';
export { MAX_DISKS_PER_VM, nextFreeDiskName } from './allocate-name.js';
export { baseBackingRef, parseBaseBackingRef } from './base-name.js';
