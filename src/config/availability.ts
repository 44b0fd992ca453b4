/**
 * Whether a storage can be used on this host, as Proxmox VE decides it before touching a storage:
 * - `nodes` (Storage.pm storage_check_node): a storage restricted to other nodes does not exist here;
 * - a mount (NFSPlugin/CIFSPlugin `*_is_mounted`, DirPlugin `path_is_mounted` for `is_mountpoint`): the
 *   directory must be the mounted file system, read from /proc/mounts.
 *
 * PVE mounts an NFS/CIFS share itself when it is missing; volchain never mounts anything, so it refuses
 * instead. The reason matters for data: an unmounted mount point is an ordinary directory on the root file
 * system, and images created there would be invisible to every other node (and hidden once the share is
 * mounted again over them).
 */
import { readFileSync, realpathSync } from 'node:fs';
import { hostname } from 'node:os';
import { ConfigError, NotSupportedError } from '../errors.js';
import type { Settings } from '../settings.js';
import type { MountRequirement, StorageDefinition } from './storage-config.js';

/** One /proc/mounts line: what is mounted (`source`), where (`mountpoint`) and its file system type. */
export interface MountEntry {
  source: string;
  mountpoint: string;
  fstype: string;
}

/** The mount table file; `$VOLCHAIN_PROC_MOUNTS` replaces it (tests give a table of their own). */
export const PROC_MOUNTS = '/proc/mounts';

/** PVE's nodename: the host name up to the first dot (PVE::INotify::nodename). */
export function localNodeName(): string {
  return hostname().split('.')[0] ?? '';
}

/** undefined = no restriction, else whether `node` is one of the storage's `nodes`. */
export function availableOnNode(def: Pick<StorageDefinition, 'nodes'>, node: string = localNodeName()): boolean {
  return def.nodes === undefined || def.nodes.includes(node);
}

/**
 * /proc/mounts format (fstab(5) fields, space-separated): source, mount point, type, options, 0, 0. Spaces,
 * tabs, newlines and backslashes inside a field are written as octal escapes (`\040`), decoded here as
 * PVE's ProcFSTools does, so a mount point with a space compares equal to the configured path.
 */
export function parseMountTable(text: string): MountEntry[] {
  const entries: MountEntry[] = [];
  for (const line of text.split('\n')) {
    const fields = line.trim().split(/\s+/);
    const [source, mountpoint, fstype] = fields;
    if (source === undefined || mountpoint === undefined || fstype === undefined || source.startsWith('#')) continue;
    entries.push({ source: decodeOctal(source), mountpoint: decodeOctal(mountpoint), fstype: decodeOctal(fstype) });
  }
  return entries;
}

function decodeOctal(field: string): string {
  return field.replace(/\\([0-7]{1,3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

/** Reads the mount table (`$VOLCHAIN_PROC_MOUNTS` or /proc/mounts); unreadable is an error, never "unmounted". */
export function readMountTable(settings: Pick<Settings, 'procMounts'>): MountEntry[] {
  const override = settings.procMounts;
  const file = override !== undefined && override !== '' ? override : PROC_MOUNTS;
  let text: string;
  try {
    // Synchronous: a few kilobytes from procfs, read once when a storage is first used.
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(file, undefined, `cannot read the mount table to check storage mounts: ${(err as Error).message}`);
  }
  return parseMountTable(text);
}

/**
 * PVE's match, per plugin: NFS and CIFS want an entry of their file system type (`nfs`, `nfs4`; `cifs`)
 * whose source is the configured share (a trailing '/' allowed) mounted exactly at the configured path;
 * `is_mountpoint` on dir wants anything mounted at the (symlink-resolved) path.
 */
export function isMounted(req: MountRequirement, table: readonly MountEntry[]): boolean {
  return table.some(
    (m) =>
      m.mountpoint === req.mountpoint &&
      (req.fstype === undefined || (m.fstype.startsWith(req.fstype) && (m.source === req.source || m.source === `${req.source ?? ''}/`))),
  );
}

/**
 * `isMounted` for a real requirement: for `is_mountpoint` the path is resolved first (PVE's Cwd::realpath,
 * so a symlink to the mount point counts); a path that does not exist is not mounted.
 */
export function mountPresent(req: MountRequirement, table: readonly MountEntry[]): boolean {
  if (req.fstype !== undefined) return isMounted(req, table);
  let mountpoint: string;
  try {
    mountpoint = realpathSync(req.mountpoint);
  } catch {
    return false;
  }
  return isMounted({ mountpoint }, table);
}

/** Where a mount table comes from: given (tests), else read where the settings say ($VOLCHAIN_PROC_MOUNTS). */
export type MountSource = { mounts: readonly MountEntry[] } | { settings: Pick<Settings, 'procMounts'> };

/** The mount table of `source`, read when not given. */
export function mountsOf(source: MountSource): readonly MountEntry[] {
  return 'mounts' in source ? source.mounts : readMountTable(source.settings);
}

/**
 * Refuses a storage this host must not use, before anything reads or writes it: not among its `nodes`,
 * or its share / mount point not mounted. Every operation goes through here (backends are made here).
 */
export function assertAvailableHere(def: StorageDefinition, opts: { node?: string } & MountSource): void {
  const node = opts.node ?? localNodeName();
  if (!availableOnNode(def, node)) {
    throw new NotSupportedError(`storage '${def.id}' is not available on node '${node}' (its nodes: ${(def.nodes ?? []).join(', ') || 'none'})`);
  }
  const req = def.supported && def.backend === 'dir' ? def.mount : undefined;
  if (req !== undefined && !mountPresent(req, mountsOf(opts))) {
    throw new NotSupportedError(notMountedMessage(def.id, req));
  }
}

/** The line PVE would die with, in volchain's words: what is expected where, and how to fix it. */
export function notMountedMessage(storageId: string, req: MountRequirement): string {
  if (req.fstype === undefined) {
    return `storage '${storageId}' expects a file system mounted at '${req.mountpoint}' (is_mountpoint), but none is; mount it first`;
  }
  return (
    `storage '${storageId}' is not mounted: expected ${req.fstype} share '${req.source ?? ''}' at '${req.mountpoint}'; ` +
    `mount it (Proxmox VE does when it activates the storage) and try again`
  );
}
