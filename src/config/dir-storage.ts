/**
 * The options of the directory family: `dir`, `nfs`, `cifs`. In Proxmox VE all three are Plugin.pm's file
 * layout under `path`; NFS and CIFS add a share PVE mounts at `path` (NFSPlugin/CIFSPlugin), and all three
 * offer `snapshot-as-volume-chain`. (CephFS and BTRFS do not: their option lists lack it, so they stay
 * types volchain lists but does not drive.)
 *
 * Read here: `path` (default `/mnt/pve/<id>` for nfs/cifs, as PVE's check_config fills it in),
 * `content-dirs` (PVE's `pve-dir-override-list`: `images` may live in another sub-directory), `format`
 * (PVE's default format for new volumes), `preallocation`, and what must be mounted: the share for nfs/cifs,
 * `is_mountpoint` for dir.
 */
import { isIPv6 } from 'node:net';
import { posix } from 'node:path';
import { NotSupportedError } from '../errors.js';

export type Preallocation = 'off' | 'metadata' | 'falloc' | 'full';
export const PREALLOCATIONS: readonly Preallocation[] = ['off', 'metadata', 'falloc', 'full'];
/** What PVE (and volchain) use on dir storage when the option is absent (DESIGN.md section 2). */
export const DEFAULT_DIR_PREALLOCATION: Preallocation = 'metadata';

/** What must be mounted before the storage is used; see availability.ts. */
export interface MountRequirement {
  mountpoint: string;
  /** nfs/cifs: the file system type (a prefix: `nfs` matches nfs4) and the share; absent: anything mounted. */
  fstype?: 'nfs' | 'cifs';
  source?: string;
}

export const DIR_TYPES = ['dir', 'nfs', 'cifs'] as const;
export type DirType = (typeof DIR_TYPES)[number];

export function isDirType(type: string): type is DirType {
  return (DIR_TYPES as readonly string[]).includes(type);
}

/** Values PVE accepts for `format` (each plugin's plugindata); volchain itself creates only qcow2 and raw. */
const VALID_FORMATS: Record<DirType, readonly string[]> = {
  dir: ['raw', 'qcow2', 'vmdk', 'subvol'],
  nfs: ['raw', 'qcow2', 'vmdk'],
  cifs: ['raw', 'qcow2', 'vmdk'],
};

/** Plugin.pm's default sub-directory per content type (`$vtype_subdirs`); `content-dirs` overrides them. */
const CONTENT_SUBDIRS: Record<string, string> = {
  images: 'images',
  rootdir: 'private',
  iso: 'template/iso',
  vztmpl: 'template/cache',
  backup: 'dump',
  snippets: 'snippets',
  import: 'import',
};

/**
 * PVE's verify_dir_override: a relative path with no two dots in a row (so no `..`), no trailing dot, and
 * components under 255 characters, 1022 in all.
 */
const DIR_OVERRIDE_RE = /^([a-z]+)=([^.]*(?:\.?[^.]+)+)$/;

export interface DirFields {
  path: string;
  /** Sub-directory of `path` holding `<vmid>/` directories of images: `images` unless `content-dirs` moves it. */
  imagesDir: string;
  /** `content-dirs` as written (content type -> sub-directory), {} when absent. */
  contentDirs: Record<string, string>;
  preallocation: Preallocation | undefined;
  /** PVE's `format`: the format `alloc` uses when none is given. */
  format: string | undefined;
  mount: MountRequirement | undefined;
}

export interface OptionReader {
  id: string;
  /** A string option; throws when written bare. */
  text(key: string): string | undefined;
  fail(key: string | undefined, message: string): never;
}

export function dirFieldsFromSection(type: DirType, r: OptionReader): DirFields {
  const path = r.text('path') ?? (type === 'dir' ? undefined : `/mnt/pve/${r.id}`);
  if (path === undefined) return r.fail(undefined, `a dir storage needs a 'path' option`);
  // PVE's verify_path wants an absolute path other than '/' itself.
  if (!path.startsWith('/') || path === '/' || path.includes('\0')) {
    r.fail('path', `path must be an absolute directory other than '/', got '${path}'`);
  }

  const prealloc = r.text('preallocation');
  if (prealloc !== undefined && !(PREALLOCATIONS as readonly string[]).includes(prealloc)) {
    r.fail('preallocation', `preallocation must be one of ${PREALLOCATIONS.join(', ')}, got '${prealloc}'`);
  }

  const format = r.text('format');
  if (format !== undefined && !VALID_FORMATS[type].includes(format)) {
    r.fail('format', `format must be one of ${VALID_FORMATS[type].join(', ')} on ${type} storage, got '${format}'`);
  }

  const contentDirs = parseContentDirs(r.text('content-dirs'), (m) => r.fail('content-dirs', m));
  const imagesDir = contentDirs.images === undefined ? 'images' : normalizeSubdir(contentDirs.images);

  return {
    path,
    imagesDir,
    contentDirs,
    preallocation: prealloc as Preallocation | undefined,
    format,
    mount: mountRequirement(type, path, r),
  };
}

/**
 * `content-dirs images=vm-disks,iso=isos`. PVE warns and drops an entry it cannot read; volchain refuses
 * the file, since a dropped `images` entry would put new disks in a directory PVE does not look in.
 */
function parseContentDirs(value: string | undefined, fail: (message: string) => never): Record<string, string> {
  if (value === undefined) return {};
  const out: Record<string, string> = {};
  for (const item of value.split(/[,;\s]+/).filter((i) => i !== '')) {
    const match = DIR_OVERRIDE_RE.exec(item);
    const content = match?.[1];
    const subdir = match?.[2];
    if (content === undefined || subdir === undefined) {
      fail(`content-dirs entry '${item}' must be <content type>=<relative directory> without '..'`);
    }
    if (!Object.hasOwn(CONTENT_SUBDIRS, content)) {
      fail(`content-dirs entry '${item}': unknown content type '${content}' (known: ${Object.keys(CONTENT_SUBDIRS).join(', ')})`);
    }
    if (subdir.length >= 1023 || subdir.split('/').some((part) => part.length >= 255)) {
      fail(`content-dirs entry '${item}': directory name too long`);
    }
    if (Object.hasOwn(out, content)) fail(`content-dirs names '${content}' twice`);
    out[content] = subdir;
  }
  return out;
}

/**
 * PVE builds "$path/$subdir", so a leading '/' still means inside `path` ("images=/vm" is `<path>/vm`), and
 * the pattern already excludes '..': normalising cannot leave `path`. `images=/` is `path` itself.
 */
function normalizeSubdir(subdir: string): string {
  const normal = posix.normalize(`/${subdir}`).slice(1).replace(/\/+$/, '');
  return normal === '' ? '.' : normal;
}

function mountRequirement(type: DirType, path: string, r: OptionReader): MountRequirement | undefined {
  const need = (key: string): string => {
    const value = r.text(key);
    if (value === undefined) r.fail(undefined, `${type} storage needs the '${key}' option (the mount check reads it)`);
    return value;
  };
  if (type === 'nfs') {
    const server = need('server');
    return { mountpoint: path, fstype: 'nfs', source: `${bracketIPv6(server)}:${need('export')}` };
  }
  if (type === 'cifs') {
    const server = need('server');
    const share = need('share');
    return { mountpoint: path, fstype: 'cifs', source: `//${bracketIPv6(server)}/${share}${r.text('subdir') ?? ''}` };
  }
  const isMountpoint = r.text('is_mountpoint');
  if (isMountpoint === undefined) return undefined;
  // PVE's parse_boolean, else the value is the path that must be a mount point.
  if (/^(1|true|yes|on)$/i.test(isMountpoint)) return { mountpoint: path };
  if (/^(0|false|no|off)$/i.test(isMountpoint)) return undefined;
  if (!isMountpoint.startsWith('/') || isMountpoint.includes('\0')) {
    r.fail('is_mountpoint', `is_mountpoint must be yes, no or an absolute path, got '${isMountpoint}'`);
  }
  return { mountpoint: isMountpoint };
}

/** As PVE writes the source of an IPv6 server in /proc/mounts: `[addr]`. */
function bracketIPv6(server: string): string {
  return isIPv6(server) ? `[${server}]` : server;
}

/**
 * The format `alloc` uses when the caller names none: the storage's `format` option on the dir family
 * (PVE's default format), else qcow2, volchain's own default (PVE's would be raw, which cannot hold
 * snapshots on dir storage). A `format` volchain cannot create (vmdk, subvol) is refused, not replaced.
 */
export function defaultAllocFormat(def: { id: string; supported: boolean; backend?: 'dir' | 'lvm'; format?: string | undefined }): 'qcow2' | 'raw' {
  if (!def.supported || def.backend !== 'dir' || def.format === undefined) return 'qcow2';
  if (def.format === 'qcow2' || def.format === 'raw') return def.format;
  throw new NotSupportedError(`storage '${def.id}' has default format '${def.format}', which volchain cannot create; give --format qcow2 or --format raw`);
}
