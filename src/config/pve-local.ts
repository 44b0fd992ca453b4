/**
 * The `local` storage as Proxmox VE makes it when it reads /etc/pve/storage.cfg (Plugin.pm parse_config):
 * every node has a `local` dir storage at /var/lib/vz, the same on all nodes of a cluster, so PVE
 * - adds it when the file has none,
 * - replaces a `local` that is not of type dir, or whose path is not /var/lib/vz,
 * - fills in the path when a `dir: local` has none,
 * - drops `nodes` from it (local exists everywhere).
 * volchain applies this only to the file it found at PVE's own location: a file given with --config or
 * $VOLCHAIN_CONFIG means exactly what it says.
 */
import type { StorageSection } from './storage-config.js';

export const PVE_LOCAL_PATH = '/var/lib/vz';

/** The section PVE substitutes (its content list in a fixed order; PVE's comes from a hash). */
function pveDefaultLocal(): StorageSection {
  const options = {
    path: PVE_LOCAL_PATH,
    'prune-backups': 'keep-all=1',
    content: 'backup,images,iso,rootdir,snippets,vztmpl',
  };
  return { type: 'dir', id: 'local', options, line: 0, optionLines: {}, bareKeys: [] };
}

/** The sections PVE would see after its fix-up of `local`: the added or replaced one comes first, as in PVE. */
export function withPveLocal(sections: readonly StorageSection[]): StorageSection[] {
  const local = sections.find((s) => s.id === 'local');
  const others = sections.filter((s) => s.id !== 'local');
  // A bare `path` (no value) is one PVE skips as unparsable, so it counts as missing here too.
  const path = local !== undefined && Object.hasOwn(local.options, 'path') && !local.bareKeys.includes('path') ? local.options.path : undefined;
  if (local === undefined || local.type !== 'dir' || (path !== undefined && path !== PVE_LOCAL_PATH)) {
    return [pveDefaultLocal(), ...others];
  }
  const options: Record<string, string> = { ...local.options, path: PVE_LOCAL_PATH };
  const optionLines = { ...local.optionLines };
  delete options.nodes;
  delete optionLines.nodes;
  const fixed: StorageSection = {
    ...local,
    options,
    optionLines,
    bareKeys: local.bareKeys.filter((k) => k !== 'nodes' && k !== 'path'),
  };
  return sections.map((s) => (s === local ? fixed : s));
}
