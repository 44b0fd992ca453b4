/** The config layer's public API: storage.cfg parsing, storage definitions, discovery and defaults. */
export {
  DEFAULT_DIR_PREALLOCATION,
  DIR_TYPES,
  EMBEDDED_DEFAULT_SOURCE,
  PREALLOCATIONS,
  findStorage,
  formatStorageConfig,
  isValidStorageId,
  isValidVgName,
  parseSections,
  parseStorageConfig,
  storageFromSection,
} from './storage-config.js';
export type {
  DirStorage,
  DirType,
  MountRequirement,
  LvmStorage,
  OtherStorage,
  Preallocation,
  StorageConfig,
  StorageDefinition,
  StorageSection,
  SupportedStorage,
} from './storage-config.js';
export { defaultAllocFormat } from './dir-storage.js';
export { PROC_MOUNTS, assertAvailableHere, availableOnNode, isMounted, localNodeName, mountPresent, parseMountTable, readMountTable } from './availability.js';
export type { MountEntry } from './availability.js';
export { PVE_LOCAL_PATH, withPveLocal } from './pve-local.js';
export { PVE_STORAGE_CFG, defaultStorageConfig, describeStorage, loadStorageConfig } from './load.js';
export type { LoadOptions, StorageDescription } from './load.js';
