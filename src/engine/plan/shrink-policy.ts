/**
 * Whether frozen LVM layers are shrunk to their image's end (volchain's space saving) or kept at full size
 * (as Proxmox VE 9 keeps every layer).
 *
 * Next to PVE the shrink is a data-loss hazard: PVE deletes the oldest snapshot by `qemu-img commit` of its
 * child into the snapshot's LV without growing that LV first (LVMPlugin::volume_snapshot_delete), so on a
 * shrunk LV the commit overwrites the snapshot's clusters in place and then fails for lack of space, leaving
 * the snapshot neither deleted nor intact; QEMU's live block-commit, which PVE uses on running VMs, writes into
 * it the same way. So where PVE operates the storage too (the configuration is PVE's own
 * /etc/pve/storage.cfg) layers keep their full size unless the user says otherwise; elsewhere they shrink.
 * The switch is volchain's own (an option or VOLCHAIN_LVM_SHRINK), never a key in storage.cfg: PVE's parser
 * rejects unknown keys and drops them on its next write.
 */
import { realpathSync } from 'node:fs';
import { PVE_STORAGE_CFG } from '../../config/index.js';
import { InvalidInputError } from '../../errors.js';

export type ShrinkPolicy = 'auto' | 'yes' | 'no';
export const SHRINK_POLICIES: readonly ShrinkPolicy[] = ['auto', 'yes', 'no'];

/** True when the configuration is the one Proxmox VE itself reads (so PVE operates these storages too). */
export function isPveConfig(source: string): boolean {
  if (source === PVE_STORAGE_CFG) return true;
  try {
    return realpathSync(source) === realpathSync(PVE_STORAGE_CFG);
  } catch {
    return false; // one of them does not exist: not the same file
  }
}

/**
 * The policy asked for, else $VOLCHAIN_LVM_SHRINK, else auto; auto means: shrink unless PVE shares the config.
 * `env` is the session's settings by variable name (settingsEnv).
 */
export function resolveShrinkFrozen(asked: ShrinkPolicy | undefined, configSource: string, env: NodeJS.ProcessEnv): boolean {
  let policy = asked;
  if (policy === undefined) {
    const value = env.VOLCHAIN_LVM_SHRINK;
    if (value !== undefined && value !== '' && !(SHRINK_POLICIES as readonly string[]).includes(value)) {
      throw new InvalidInputError(`VOLCHAIN_LVM_SHRINK must be ${SHRINK_POLICIES.join(', ')}, got '${value}'`);
    }
    policy = value === undefined || value === '' ? 'auto' : (value as ShrinkPolicy);
  }
  if (policy === 'auto') return !isPveConfig(configSource);
  return policy === 'yes';
}
