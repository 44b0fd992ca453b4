/**
 * What the façade's static `Volchain.open` and `storages()` compute, kept out of the façade (engine/volchain.ts
 * only delegates): loading the storage configuration with the settings the caller gave, and describing it.
 */
import { describeStorage, loadStorageConfig, type LoadOptions, type StorageConfig, type StorageDescription } from '../../config/index.js';
import type { VolchainOptions } from '../operations/types.js';

/** The configuration `Volchain.open` loads: the caller's settings (VolchainOptions.settings) apply unless `opts` names its own. */
export function loadConfigFor(opts: LoadOptions, options: VolchainOptions): Promise<StorageConfig> {
  return loadStorageConfig({ ...(options.settings ? { settings: options.settings } : {}), ...opts });
}

/** Every storage of the configuration as `volchain storage list` shows it. */
export function describeStorages(config: StorageConfig): StorageDescription[] {
  return config.storages.map((def) => describeStorage(def));
}
