/**
 * What every call of one Volchain shares: the storage configuration, the settings resolved once (wipe mode,
 * LVM shrink policy, rollback branches, lock timeout), and the backends opened so far. Operations
 * (engine/operations/) take it as their first argument; it resolves volume ids to a backend and a VolumeRef,
 * finds a VM's disks and runs work under a VM's locks. Live operations use it as their LiveHost.
 */
import { readSettings, settingsEnv, type Settings } from '../../settings.js';
import type { Backend } from '../../backends/backend.js';
import { createBackend } from '../../backends/registry.js';
import { availableOnNode, findStorage, type StorageConfig } from '../../config/index.js';
import { NotFoundError, NotSupportedError } from '../../errors.js';
import { parseVolname, splitVolid, type VolumeRef } from '../../naming/index.js';
import type { LiveHost } from '../live/host.js';
import { resolveKeepBranches } from '../plan/branch-policy.js';
import { resolveShrinkFrozen } from '../plan/shrink-policy.js';
import type { PlanContext } from '../planners/rules.js';
import { vmDisksFromConfig, vmDisksOnStorages } from '../read/vm-disks.js';
import { resolveWipeMode, type BackgroundWipeRunner, type WipeMode } from '../run/wipe.js';
import type { VolchainOptions } from '../operations/types.js';
import { withVmLocked, type LockSettings } from './vm-lock.js';

export class Session implements LiveHost {
  private readonly backends = new Map<string, Backend>();
  /** Where removals left for after an operation (LVM saferemove's wipe) run: see VolchainOptions. */
  readonly wipeMode: WipeMode;
  readonly backgroundWipe: BackgroundWipeRunner | undefined;
  /** LVM: frozen layers are shrunk to their image's end (see VolchainOptions.shrinkFrozen). */
  readonly shrinkFrozen: boolean;
  /** A rollback may keep newer snapshots as a branch (not next to PVE by default: engine/plan/branch-policy.ts). */
  readonly keepBranches: boolean;
  /** What taking and releasing a VM's lock needs (vm-lock.ts). */
  readonly locks: LockSettings;
  /**
   * The settings every part of this Volchain runs with (src/settings.ts), passed down from here: to the
   * executors (test hooks), the live operations (job speed, live stream, QMP directory), each backend the
   * registry opens (state directory, LVM trace and crash hook) and the config readers (VM configs, mounts).
   */
  readonly settings: Settings;

  constructor(
    readonly config: StorageConfig,
    options: VolchainOptions = {},
  ) {
    this.settings = sessionSettings(options);
    const env = settingsEnv(this.settings);
    this.wipeMode = resolveWipeMode(options.wipe, env);
    this.backgroundWipe = options.backgroundWipe;
    this.shrinkFrozen = resolveShrinkFrozen(options.shrinkFrozen, config.source, env);
    this.keepBranches = resolveKeepBranches(config.source, env);
    this.locks = { lockTimeoutMs: options.lockTimeoutMs, env, wipeMode: this.wipeMode, configSource: config.source, backgroundWipe: this.backgroundWipe };
  }

  /** The backend of storage `storageId`, opened once; refused when the storage is disabled or holds no images. */
  backend(storageId: string): Backend {
    const cached = this.backends.get(storageId);
    if (cached) return cached;
    const def = findStorage(this.config, storageId);
    if (def.disable) throw new NotSupportedError(`storage '${storageId}' is disabled in ${this.config.source}`);
    if (!def.content.includes('images')) {
      throw new NotSupportedError(`storage '${storageId}' does not allow VM disk images (content: ${def.content.join(',') || 'none'})`);
    }
    const backend = createBackend(def, { shrinkFrozen: this.shrinkFrozen, settings: this.settings });
    this.backends.set(storageId, backend);
    return backend;
  }

  resolve(volid: string): { backend: Backend; volume: VolumeRef } {
    const { storage, volname } = splitVolid(volid);
    const backend = this.backend(storage);
    return { backend, volume: parseVolname(backend.kind, storage, volname) };
  }

  /** `only`, else every storage that holds VM images on this host. */
  imageStorageIds(only?: string): string[] {
    return only !== undefined ? [only] : this.config.storages.filter(usableForImages).map((s) => s.id);
  }

  /** What the pure planners need to know of the backend. */
  planContext(backend: Backend): PlanContext {
    return { kind: backend.kind, volumeChain: backend.capabilities.volumeChain, fixedSizeLayers: backend.capabilities.fixedSizeLayers };
  }

  /**
   * All disks of `vmid` (optionally on one storage), in a stable order: the VM config's drives when it has
   * one (`vmConfig`, else /etc/pve/qemu-server/<vmid>.conf; see vm-disks.ts), else its volumes on the storages.
   */
  async vmVolumes(
    vmid: number,
    storage?: string,
    vmConfig?: string,
    onWarning?: (message: string) => void,
  ): Promise<{ backend: Backend; volume: VolumeRef }[]> {
    const fromConfig = await vmDisksFromConfig(this, vmid, { storage, vmConfig, settings: this.settings });
    if (fromConfig) return fromConfig;
    // An unavailable storage the user did not name is skipped with a warning (vm-disks.ts).
    const out = await vmDisksOnStorages(this, vmid, this.imageStorageIds(storage), storage !== undefined, onWarning);
    if (out.length === 0) {
      throw new NotFoundError(`VM ${vmid} has no disks${storage !== undefined ? ` on storage '${storage}'` : ''}`);
    }
    return out;
  }

  /** LiveHost's way to run a live operation under the VM's locks (vm-lock.ts withVmLocked). */
  withVmLocks<T>(backends: readonly Backend[], vmid: number, operation: string, fn: () => Promise<T>): Promise<T> {
    return withVmLocked(this.locks, backends, vmid, operation, fn);
  }
}

/**
 * The settings of a Volchain: those given, else (a Volchain made with `new Volchain(config)` or Volchain.open,
 * without createVolchain) the process's environment, read once, here, when the Volchain is made. Nothing
 * below reads the environment again, so changing process.env later does not change a Volchain made before.
 */
export function sessionSettings(options: Pick<VolchainOptions, 'settings'>): Settings {
  return options.settings ?? readSettings(process.env);
}

function usableForImages(def: StorageConfig['storages'][number]): boolean {
  return def.supported && !def.disable && def.content.includes('images') && availableOnNode(def);
}
