/**
 * Finding the storage configuration. Order: `--config FILE`, then `$VOLCHAIN_CONFIG`, then Proxmox VE's own
 * /etc/pve/storage.cfg when it exists, then an embedded default so the tool works with no setup at all.
 *
 * A file the user named explicitly must exist: falling back to another config when a path is mistyped would
 * run the command against different storages than the user meant.
 */
import { readFile } from 'node:fs/promises';
import { posix } from 'node:path';
import { ConfigError } from '../errors.js';
import type { Settings } from '../settings.js';
import { availableOnNode, localNodeName, mountPresent, mountsOf, type MountSource } from './availability.js';
import { withPveLocal } from './pve-local.js';
import {
  DEFAULT_DIR_PREALLOCATION,
  EMBEDDED_DEFAULT_SOURCE,
  parseSections,
  parseStorageConfig,
  storageFromSection,
  type Preallocation,
  type StorageConfig,
  type StorageDefinition,
} from './storage-config.js';

export const PVE_STORAGE_CFG = '/etc/pve/storage.cfg';

export interface LoadOptions {
  /** From `--config FILE`. */
  configPath?: string | undefined;
  /** $VOLCHAIN_CONFIG and the default storage's place (the caller's settings: nothing here reads the environment). */
  settings: Settings;
  /** Where Proxmox VE's file is looked for; only tests move it. */
  pveConfigPath?: string;
}

export async function loadStorageConfig(opts: LoadOptions): Promise<StorageConfig> {
  const settings = opts.settings;
  if (opts.configPath !== undefined && opts.configPath !== '') {
    return parseStorageConfig(await readNamedFile(opts.configPath, 'given with --config'), opts.configPath);
  }
  // An empty variable counts as unset, the usual shell convention (`VOLCHAIN_CONFIG= volchain ...`).
  const fromEnv = settings.config;
  if (fromEnv !== undefined && fromEnv !== '') {
    return parseStorageConfig(await readNamedFile(fromEnv, 'named by $VOLCHAIN_CONFIG'), fromEnv);
  }
  const pvePath = opts.pveConfigPath ?? PVE_STORAGE_CFG;
  const pveText = await readIfPresent(pvePath);
  if (pveText !== undefined) return parsePveStorageConfig(pveText, pvePath);
  return defaultStorageConfig(settings);
}

/** PVE's own file, read as PVE reads it: with its fix-up of the `local` storage (see pve-local.ts). */
function parsePveStorageConfig(text: string, file: string): StorageConfig {
  const storages = withPveLocal(parseSections(text, file)).map((section) => storageFromSection(section, file));
  return { source: file, storages };
}

async function readNamedFile(file: string, how: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    throw new ConfigError(file, undefined, `cannot read storage config (${how}): ${describeFsError(err)}`);
  }
}

/**
 * Absent is fine (not a PVE host). Present but unreadable is not: on a PVE node the file is root:www-data
 * 0640, and silently using the embedded default there would hide every real storage from the user.
 */
async function readIfPresent(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw new ConfigError(file, undefined, `exists but cannot be read: ${describeFsError(err)}; run as a user that can read it or give --config FILE`);
  }
}

function describeFsError(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return 'no such file';
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
  if (code === 'EISDIR') return 'is a directory';
  return err instanceof Error ? err.message : String(err);
}

/**
 * The storage used when no file exists: one dir storage `local` under the user's data directory, with
 * volume chains on (the point of the tool) and PVE's default preallocation written out.
 */
export function defaultStorageConfig(settings: Pick<Settings, 'dataHome' | 'home'>): StorageConfig {
  const path = defaultDataDir(settings);
  const options: Record<string, string> = {
    path,
    content: 'images',
    'snapshot-as-volume-chain': '1',
    preallocation: DEFAULT_DIR_PREALLOCATION,
  };
  // Built through the same reader as a file so the default obeys every rule a user's config does.
  const local = storageFromSection({ type: 'dir', id: 'local', options, line: 1, optionLines: {}, bareKeys: [] }, EMBEDDED_DEFAULT_SOURCE);
  return { source: EMBEDDED_DEFAULT_SOURCE, storages: [local] };
}

/** `$XDG_DATA_HOME/volchain`, else `$HOME/.local/share/volchain` (XDG Base Directory rules). */
function defaultDataDir(settings: Pick<Settings, 'dataHome' | 'home'>): string {
  // The XDG spec says a relative $XDG_DATA_HOME is invalid and must be ignored.
  const xdg = settings.dataHome;
  if (xdg !== undefined && posix.isAbsolute(xdg)) return posix.join(xdg, 'volchain');
  const home = settings.home;
  if (home !== undefined && posix.isAbsolute(home)) return posix.join(home, '.local', 'share', 'volchain');
  const why = home === undefined || home === '' ? 'neither $XDG_DATA_HOME nor $HOME is set' : `$HOME ('${home}') is not absolute`;
  throw new ConfigError(EMBEDDED_DEFAULT_SOURCE, undefined, `cannot place the default storage: ${why}; set one of them or give --config FILE`);
}

/** The stable shape of `volchain storage list --json`: every field always present, null where it does not apply. */
export interface StorageDescription {
  id: string;
  type: string;
  path: string | null;
  vgname: string | null;
  content: string[];
  shared: boolean;
  disabled: boolean;
  /** null = available on every node. */
  nodes: string[] | null;
  /** false when `nodes` does not list this host (PVE's nodename): every operation on it is refused. */
  availableHere: boolean;
  /** nfs/cifs (and dir with is_mountpoint): whether the share is mounted at its path; null when nothing must be. */
  mounted: boolean | null;
  snapshotAsVolumeChain: boolean;
  /** The effective mode on dir storage (PVE's default when the option is absent); null elsewhere. */
  preallocation: Preallocation | null;
  /** dir family: where `<vmid>/` image directories are (`path` + content-dirs' images entry); null elsewhere. */
  imagesPath: string | null;
  /** dir family: the `format` option (alloc's default format); null when absent or not a dir type. */
  format: string | null;
  saferemove: boolean | null;
  /** false for types volchain lists but does not drive (zfspool, rbd, ...). */
  supported: boolean;
}

/** `here`: this host's node name (default: the real one) and its mount table (tests give one; else read as the settings say). */
export function describeStorage(def: StorageDefinition, here: { node?: string } & MountSource): StorageDescription {
  const dir = def.supported && def.backend === 'dir' ? def : undefined;
  const lvm = def.supported && def.backend === 'lvm' ? def : undefined;
  const req = dir?.mount;
  return {
    id: def.id,
    type: def.type,
    path: dir ? dir.path : null,
    vgname: lvm ? lvm.vgname : null,
    content: [...def.content],
    shared: def.shared,
    disabled: def.disable,
    nodes: def.nodes === undefined ? null : [...def.nodes],
    availableHere: availableOnNode(def, here.node ?? localNodeName()),
    mounted: req === undefined ? null : mountPresent(req, mountsOf(here)),
    snapshotAsVolumeChain: def.snapshotAsVolumeChain,
    preallocation: dir ? (dir.preallocation ?? DEFAULT_DIR_PREALLOCATION) : null,
    imagesPath: dir ? posix.join(dir.path, dir.imagesDir) : null,
    format: dir ? (dir.format ?? null) : null,
    saferemove: lvm ? lvm.saferemove : null,
    supported: def.supported,
  };
}
