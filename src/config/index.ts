/** The config layer's public API: storage.cfg parsing, storage definitions, discovery and defaults. */
export {
  DEFAULT_DIR_PREALLOCATION,
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
  LvmStorage,
  OtherStorage,
  Preallocation,
  StorageConfig,
  StorageDefinition,
  StorageSection,
  SupportedStorage,
} from './storage-config.js';
export { PVE_STORAGE_CFG, defaultStorageConfig, describeStorage, loadStorageConfig } from './load.js';
export type { LoadOptions, StorageDescription } from './load.js';
