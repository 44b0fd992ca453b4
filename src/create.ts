/**
 * The composition root: the one way in to a Volchain, for the CLI (src/cli/main.ts), programs using the
 * library (src/index.ts) and, later, the HTTP API. It reads the environment's settings once (src/settings.ts),
 * unless the caller gives its own, and hands them to the façade.
 */
import { loadStorageConfig, type LoadOptions, type StorageConfig } from './config/index.js';
import { InvalidInputError } from './errors.js';
import { currentSettings, type Settings } from './settings.js';
import { Volchain, type VolchainOptions } from './engine/volchain.js';
import type { ShrinkPolicy } from './engine/plan/shrink-policy.js';
import type { BackgroundWipeRunner, WipeMode } from './engine/run/wipe.js';

export interface CreateVolchainOptions {
  /**
   * The storage configuration: a parsed one (parseStorageConfig), or the path of a storage.cfg. Default as
   * for the CLI: $VOLCHAIN_CONFIG, else /etc/pve/storage.cfg if it exists, else the embedded default.
   */
  config?: StorageConfig | string;
  /**
   * Where LVM storages keep host-local state (the wipe queue, locks per VG, the fallback journal directory).
   * Default: $VOLCHAIN_STATE_DIR, else /var/lib/volchain. Dir storages keep theirs on the storage itself.
   * It is a setting of the process, as the background wipe volchain starts (a child process) must see it
   * too: it is put in this process's environment, and a second, different value in one process is refused.
   */
  stateDir?: string;
  /** How long a mutating call waits for the VM's lock before failing (LOCKED). Default $VOLCHAIN_LOCK_TIMEOUT, else 30. */
  lockTimeoutSeconds?: number;
  /** LVM: shrink a layer that becomes a snapshot (see VolchainOptions.shrinkFrozen). Default $VOLCHAIN_LVM_SHRINK, else 'auto'. */
  shrinkFrozen?: ShrinkPolicy;
  /** Where LVM saferemove's wipes run (see VolchainOptions.wipe). Default $VOLCHAIN_WIPE, else 'background'. */
  wipe?: WipeMode;
  /**
   * How a background wipe is started (the CLI: itself again, detached, as `volchain wipe`). Without one, wipes
   * run in the foreground at the end of the operation that left them.
   */
  backgroundWipe?: BackgroundWipeRunner;
  /**
   * The settings otherwise taken from the environment ($VOLCHAIN_CONFIG, $VOLCHAIN_WIPE, ...; see
   * src/settings.ts). Default: readSettings(process.env), read once here. The options above win over them.
   */
  settings?: Settings;
}

/**
 * A Volchain over the storages of the configuration. Progress and log callbacks are per call, as the façade
 * takes them (CallOptions.onEvent, WipeOptions.onProgress/log), so one instance serves many callers.
 * Bad settings fail here with InvalidInputError (exit status 2 in the CLI); nothing is touched on disk.
 */
export async function createVolchain(options: CreateVolchainOptions = {}): Promise<Volchain> {
  const { config, lockTimeoutSeconds } = options;
  const given = options.settings ?? currentSettings();
  // A state directory in given settings is made the process's, as the stateDir option is (children see it).
  const stateDir = options.stateDir ?? (options.settings?.stateDir !== '' ? options.settings?.stateDir : undefined);
  if (lockTimeoutSeconds !== undefined && !(Number.isFinite(lockTimeoutSeconds) && lockTimeoutSeconds >= 0)) {
    throw new InvalidInputError(`lockTimeoutSeconds must be a number of seconds (0 or more), got ${String(lockTimeoutSeconds)}`);
  }
  if (stateDir !== undefined) setStateDir(stateDir);
  const settings: Settings = stateDir !== undefined ? { ...given, stateDir } : given;
  const load: LoadOptions = typeof config === 'string' ? { configPath: config, settings } : { settings };
  const parsed = typeof config === 'object' ? config : await loadStorageConfig(load);
  const volchainOptions: VolchainOptions = {
    ...(options.wipe !== undefined ? { wipe: options.wipe } : {}),
    ...(options.backgroundWipe !== undefined ? { backgroundWipe: options.backgroundWipe } : {}),
    ...(options.shrinkFrozen !== undefined ? { shrinkFrozen: options.shrinkFrozen } : {}),
    ...(lockTimeoutSeconds !== undefined ? { lockTimeoutMs: lockTimeoutSeconds * 1000 } : {}),
    settings,
  };
  return new Volchain(parsed, volchainOptions);
}

function setStateDir(dir: string): void {
  if (!dir.startsWith('/')) throw new InvalidInputError(`stateDir must be an absolute path, got '${dir}'`);
  const current = currentSettings().stateDir;
  if (current !== undefined && current !== '' && current !== dir) {
    throw new InvalidInputError(`stateDir '${dir}' differs from the state directory this process already uses ('${current}')`);
  }
  process.env.VOLCHAIN_STATE_DIR = dir;
}
