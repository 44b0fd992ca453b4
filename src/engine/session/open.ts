/**
 * What the façade's static `Volchain.open` and `storages()` compute, kept out of the façade (engine/volchain.ts
 * only delegates): loading the storage configuration with the settings the caller gave, and describing it.
 */
import { describeStorage, loadStorageConfig, type LoadOptions, type StorageConfig, type StorageDescription } from '../../config/index.js';
import type { Settings } from '../../settings.js';
import type { VolchainOptions } from '../operations/types.js';
import { sessionSettings } from './session.js';

/**
 * The configuration `Volchain.open` loads and the options to open it with: the caller's settings
 * (VolchainOptions.settings, else the environment read once now) serve both, unless `opts` names its own.
 */
export async function loadConfigFor(opts: Partial<LoadOptions>, options: VolchainOptions): Promise<{ config: StorageConfig; options: VolchainOptions }> {
  const settings = sessionSettings(options);
  return { config: await loadStorageConfig({ settings, ...opts }), options: { ...options, settings } };
}

/** Every storage of the configuration as `volchain storage list` shows it (mount checks per `settings`). */
export function describeStorages(config: StorageConfig, settings: Settings): StorageDescription[] {
  return config.storages.map((def) => describeStorage(def, { settings }));
}
