/**
 * Whether a rollback may leave newer snapshots as a branch (volchain's tree), or must not, as in Proxmox VE 9.
 *
 * Next to PVE a branch is a data-loss hazard: PVE's snapshot commands see only the chain below the current
 * layer (Plugin.pm volume_snapshot_info) and treat it as the whole volume. After a rollback to an older
 * snapshot S that keeps S's newer snapshots, S is the backing layer of those snapshots as well as of the new
 * current layer; PVE deleting S (qm delsnapshot of a snapshot PVE made, offline) commits the current layer
 * into S's file and renames it to the volume's name, or rebases the current layer past S and unlinks S, and
 * either way the branch snapshots lose their backing file (test/integration/pve-interop-dir.test.ts shows
 * it); PVE's free leaves them behind. So where PVE operates the storage too (the configuration is PVE's own
 * /etc/pve/storage.cfg) such a rollback is refused unless the newer snapshots are deleted with it
 * (`--purge-newer`) or the user says otherwise; elsewhere branches are kept. The switch is volchain's own
 * (VOLCHAIN_BRANCHES), never a key in storage.cfg: PVE's parser rejects unknown keys.
 */
import { InvalidInputError, NotSupportedError } from '../../errors.js';
import { quote } from '../../naming/common.js';
import { quoteForeign } from '../../quote.js';
import type { Plan } from '../../model/plan.js';
import { isPveConfig } from './shrink-policy.js';
import { descendants, type VolumeTree } from '../read/volume-tree.js';

export type BranchPolicy = 'auto' | 'yes' | 'no';
export const BRANCH_POLICIES: readonly BranchPolicy[] = ['auto', 'yes', 'no'];

/**
 * $VOLCHAIN_BRANCHES, else auto; auto means: keep branches unless PVE shares the configuration. `env` is the
 * session's settings by variable name (settingsEnv), so the error names the variable.
 */
export function resolveKeepBranches(configSource: string, env: NodeJS.ProcessEnv): boolean {
  const value = env.VOLCHAIN_BRANCHES;
  if (value !== undefined && value !== '' && !(BRANCH_POLICIES as readonly string[]).includes(value)) {
    throw new InvalidInputError(`VOLCHAIN_BRANCHES must be ${BRANCH_POLICIES.join(', ')}, got ${quote(value)}`);
  }
  const policy: BranchPolicy = value === undefined || value === '' ? 'auto' : (value as BranchPolicy);
  if (policy === 'auto') return !isPveConfig(configSource);
  return policy === 'yes';
}

/**
 * Returns the rollback plan unchanged, or throws NotSupportedError (nothing done yet) when branches are not
 * kept and the plan would leave snapshots newer than its target on a branch. Internal-snapshot rollbacks
 * form no tree and pass.
 */
export function refuseNewBranch(keepBranches: boolean, tree: VolumeTree, plan: Plan): Plan {
  if (keepBranches) return plan;
  const overlay = plan.steps.find((s) => s.kind === 'create-overlay');
  if (!overlay) return plan;
  const removed = new Set(plan.steps.flatMap((s) => (s.kind === 'remove' ? [s.layer] : [])));
  const kept = descendants(tree, overlay.backing).filter((l) => l.name !== tree.current && !removed.has(l.name));
  if (kept.length === 0) return plan;
  // Names read from disk (made by PVE or anyone): quoted as foreign text.
  const names = kept.map((l) => quoteForeign(l.snapshot ?? l.name)).join(', ');
  throw new NotSupportedError(
    `rollback of ${quoteForeign(tree.volid)} to ${quote(plan.snapshot ?? '')} would keep newer snapshot(s) ${names} as a branch, ` +
      'which Proxmox VE (sharing this storage.cfg) cannot see and would break when it deletes a snapshot: ' +
      'add --purge-newer to delete them, or set VOLCHAIN_BRANCHES=yes to keep branches anyway',
  );
}
