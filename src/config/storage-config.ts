/**
 * Reading Proxmox VE's storage.cfg (pve-common SectionConfig + pve-storage Plugin.pm), in two layers:
 *
 * 1. syntax (`parseSections`): sections, option lines, comments, with line numbers kept for messages;
 * 2. meaning (`storageFromSection`): typed definitions for the types volchain drives (`dir`, `nfs`, `cifs`, `lvm`).
 *
 * PVE only warns and skips what it cannot parse; volchain stops instead, because acting on a storage that is
 * half-understood (a wrong path, a VG name that escapes /dev) could touch the wrong disks. Where the two
 * would read a file differently (see `parseSections`) volchain refuses the file rather than disagree
 * silently. Sections of other types, and keys volchain does not use, are kept as written and otherwise
 * ignored, so a real PVE file with zfspool, rbd, pbs, ... sections loads unchanged.
 */
import { ConfigError, InvalidInputError, NotFoundError } from '../errors.js';
import { dirFieldsFromSection, isDirType, type DirFields, type DirType } from './dir-storage.js';

export { DEFAULT_DIR_PREALLOCATION, DIR_TYPES, PREALLOCATIONS } from './dir-storage.js';
export type { DirType, MountRequirement, Preallocation } from './dir-storage.js';

/** One `<type>: <id>` section exactly as written (after syntax checks only). */
export interface StorageSection {
  /** Lower-cased, as PVE does with the header's type. */
  type: string;
  id: string;
  /** Every option in file order; a key written without a value holds "1" (PVE's reading of a bare flag). */
  options: Record<string, string>;
  /** 1-based line of the section header. */
  line: number;
  /** 1-based line of each option, so semantic errors can point at the offending line. */
  optionLines: Record<string, number>;
  /** Keys written without a value; a string option (path, vgname, ...) written bare is an error. */
  bareKeys: string[];
}

interface Common {
  id: string;
  /** Allowed content types; PVE's per-type default when the option is absent, [] for `none`. */
  content: string[];
  shared: boolean;
  disable: boolean;
  /** undefined = every node (no restriction). */
  nodes: string[] | undefined;
  snapshotAsVolumeChain: boolean;
  /** Every key as written, including the ones volchain does not know. */
  options: Record<string, string>;
}

/** `dir`, `nfs`, `cifs`: files under `path` (see dir-storage.ts for the fields). */
export interface DirStorage extends Common, DirFields {
  type: DirType;
  supported: true;
  /** Which backend drives it: types differ in how PVE mounts them, not in the layout volchain writes. */
  backend: 'dir';
}

export interface LvmStorage extends Common {
  type: 'lvm';
  supported: true;
  backend: 'lvm';
  vgname: string;
  saferemove: boolean;
}

/** Any other type (zfspool, rbd, cephfs, ...): kept so listings show it, never driven by volchain. */
export interface OtherStorage extends Common {
  type: string;
  supported: false;
}

export type StorageDefinition = DirStorage | LvmStorage | OtherStorage;
export type SupportedStorage = DirStorage | LvmStorage;

export interface StorageConfig {
  /** File path the config came from, or EMBEDDED_DEFAULT_SOURCE. */
  source: string;
  storages: StorageDefinition[];
}

export const EMBEDDED_DEFAULT_SOURCE = '(embedded default)';

/** PVE's `parse_id` rule for storage ids (case-insensitive there too; at least 2 characters). */
const STORAGE_ID_RE = /^[a-z][a-z0-9\-_.]*[a-z0-9]$/i;
/** PVE's `pve_verify_node_name`. */
const NODE_NAME_RE = /^[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?$/;
/** LVM's own rule for VG names (lvm(8)): these characters, no leading '-', at most 127 of them. */
const VG_NAME_RE = /^[a-zA-Z0-9+_.][a-zA-Z0-9+_.-]{0,126}$/;
/** Section types: letters, digits and a few separators (third-party PVE plugins choose their own). */
const TYPE_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

/** Types PVE always treats as shared whatever the file says (pve-storage `@SHARED_STORAGE`). */
const ALWAYS_SHARED_TYPES = new Set(['iscsi', 'nfs', 'cifs', 'rbd', 'cephfs', 'iscsidirect', 'zfs', 'drbd', 'pbs']);
/** PVE's default `content` when a section has none (plugindata of DirPlugin / LVMPlugin). */
const DEFAULT_CONTENT: Record<DirType | 'lvm', readonly string[]> = {
  dir: ['images', 'rootdir'],
  nfs: ['images'],
  cifs: ['images'],
  lvm: ['images'],
};

export function isValidStorageId(id: string): boolean {
  return STORAGE_ID_RE.test(id);
}

export function isValidVgName(name: string): boolean {
  // '.' and '..' match the character rule but would resolve /dev/<vg>/ to another directory.
  return VG_NAME_RE.test(name) && name !== '.' && name !== '..';
}

// ---------------------------------------------------------------------------------------------------------
// Layer 1: syntax

/**
 * Splits storage.cfg text into sections. Follows SectionConfig's reading, including two details that
 * matter for agreeing with PVE on what a file means:
 * - a comment line (`#` after optional indentation) is skipped and does not end a section;
 * - only an empty line ends a section: a line of spaces or tabs does not. So a header that follows a
 *   section without an empty line would be swallowed by PVE (its options merged into the previous
 *   section); volchain reports it instead of reading a different set of storages.
 * A `#` inside a value is part of the value (PVE has no trailing comments; passwords may contain `#`).
 */
export function parseSections(text: string, fileName: string): StorageSection[] {
  const sections: StorageSection[] = [];
  const seenIds = new Map<string, number>();
  let current: SectionBuilder | undefined;
  let lastSectionEnd: { id: string; line: number } | undefined;
  let previousWasWhitespaceOnly = false;

  const lines = text.split('\n');
  for (let index = 0; index < lines.length; index++) {
    const raw = lines[index] ?? '';
    const lineNo = index + 1;
    // Explicitly typed so TypeScript's control-flow analysis knows a call never returns.
    const fail: (message: string) => never = (message) => {
      throw new ConfigError(fileName, lineNo, message);
    };

    if (/^\s*#/.test(raw)) continue;
    if (raw === '') {
      if (current) {
        sections.push(current.finish());
        lastSectionEnd = { id: current.id, line: lineNo };
        current = undefined;
      }
      previousWasWhitespaceOnly = false;
      continue;
    }
    if (raw.trim() === '') {
      previousWasWhitespaceOnly = true;
      continue;
    }
    const whitespaceBefore = previousWasWhitespaceOnly;
    previousWasWhitespaceOnly = false;

    if (/^\s/.test(raw)) {
      if (!current) {
        const after = lastSectionEnd ? ` (the empty line ${lastSectionEnd.line} ended section '${lastSectionEnd.id}')` : '';
        fail(`option line outside any section${after}: ${JSON.stringify(raw.trim())}`);
      }
      current.addOption(raw, lineNo, fail);
      continue;
    }

    if (current) {
      const hint = whitespaceBefore ? ' (a line of only spaces or tabs does not end a section)' : '';
      fail(`section header ${JSON.stringify(raw.trim())} must follow an empty line${hint}; ` + `Proxmox VE would read it as part of section '${current.id}'`);
    }
    const header = /^(\S+?):\s*(\S+)\s*$/.exec(raw);
    const type = header?.[1];
    const id = header?.[2];
    if (type === undefined || id === undefined || !TYPE_RE.test(type)) {
      fail(`expected a section header '<type>: <storage id>', got ${JSON.stringify(raw.trim())}`);
    }
    if (!isValidStorageId(id)) {
      fail(
        `invalid storage id '${id}': it needs at least 2 characters, must start with a letter, end with a ` +
          `letter or digit and contain only letters, digits, '-', '_' and '.'`,
      );
    }
    const firstLine = seenIds.get(id);
    if (firstLine !== undefined) fail(`duplicate storage id '${id}' (first defined at line ${firstLine})`);
    seenIds.set(id, lineNo);
    current = new SectionBuilder(type.toLowerCase(), id, lineNo);
  }
  if (current) sections.push(current.finish());
  return sections;
}

class SectionBuilder {
  // A Map, not an object literal, so a key such as `__proto__` is stored as data and not as a prototype.
  private readonly options = new Map<string, string>();
  private readonly optionLines = new Map<string, number>();
  private readonly bareKeys: string[] = [];

  constructor(
    readonly type: string,
    readonly id: string,
    readonly line: number,
  ) {}

  addOption(raw: string, lineNo: number, fail: (message: string) => never): void {
    // Key, then optionally whitespace and a value that runs to the last non-space character.
    // `s` flag: a stray \r (or U+2028) inside the value must reach the check below, not break the match.
    const match = /^\s+(\S+)(?:\s+(.*\S))?\s*$/s.exec(raw);
    const key = match?.[1];
    if (key === undefined) return fail(`malformed option line ${JSON.stringify(raw)}`);
    const firstLine = this.optionLines.get(key);
    if (firstLine !== undefined) {
      fail(`duplicate option '${key}' in section '${this.id}' (first set at line ${firstLine})`);
    }
    const value = match?.[2];
    // PVE refuses line breaks inside a value too ("property contains a line feed").
    if (value !== undefined && /[\r\u2028\u2029]/.test(value)) fail(`option '${key}' contains a line break`);
    if (value === undefined) this.bareKeys.push(key);
    this.options.set(key, value ?? '1');
    this.optionLines.set(key, lineNo);
  }

  finish(): StorageSection {
    return {
      type: this.type,
      id: this.id,
      options: Object.fromEntries(this.options),
      line: this.line,
      optionLines: Object.fromEntries(this.optionLines),
      bareKeys: [...this.bareKeys],
    };
  }
}

// ---------------------------------------------------------------------------------------------------------
// Layer 2: meaning

/** Reads one section into a definition; strict for dir/nfs/cifs/lvm, lenient (nothing can fail) for other types. */
export function storageFromSection(section: StorageSection, fileName: string): StorageDefinition {
  if (isDirType(section.type) || section.type === 'lvm') return supportedFromSection(section, fileName);
  return otherFromSection(section);
}

/**
 * Other types are never driven by volchain, so a value PVE might reject there must not stop volchain from
 * working with the storages it does drive: read the common fields leniently.
 */
function otherFromSection(section: StorageSection): OtherStorage {
  const o = section.options;
  return {
    id: section.id,
    type: section.type,
    supported: false,
    content: o.content === undefined ? [] : splitList(o.content),
    shared: o.shared === '1' || ALWAYS_SHARED_TYPES.has(section.type),
    disable: o.disable === '1',
    nodes: o.nodes === undefined ? undefined : splitList(o.nodes),
    snapshotAsVolumeChain: o['snapshot-as-volume-chain'] === '1',
    options: { ...o },
  };
}

function supportedFromSection(section: StorageSection, fileName: string): SupportedStorage {
  const type = section.type as DirType | 'lvm';
  const fail: (key: string | undefined, message: string) => never = (key, message) => {
    const line = key === undefined ? section.line : (section.optionLines[key] ?? section.line);
    throw new ConfigError(fileName, line, `storage '${section.id}': ${message}`);
  };
  const o = section.options;
  /** A string option: absent → undefined; written bare (no value) → error, PVE's "got undefined value". */
  const text = (key: string): string | undefined => {
    if (section.bareKeys.includes(key)) fail(key, `option '${key}' needs a value`);
    return Object.hasOwn(o, key) ? o[key] : undefined;
  };
  const flag = (key: string): boolean => {
    const value = Object.hasOwn(o, key) ? o[key] : undefined;
    if (value === undefined) return false;
    // PVE's schema check accepts exactly '0' and '1' in the file (not yes/no/true, which only its API takes).
    if (value !== '0' && value !== '1') fail(key, `option '${key}' must be 0 or 1, got '${value}'`);
    return value === '1';
  };

  const contentText = text('content');
  const nodesText = text('nodes');
  const common = {
    id: section.id,
    content: contentText === undefined ? [...DEFAULT_CONTENT[type]] : parseContent(contentText, (m) => fail('content', m)),
    shared: flag('shared') || ALWAYS_SHARED_TYPES.has(type),
    disable: flag('disable'),
    nodes: nodesText === undefined ? undefined : parseNodes(nodesText, (m) => fail('nodes', m)),
    snapshotAsVolumeChain: flag('snapshot-as-volume-chain'),
    options: { ...o },
  };

  if (type !== 'lvm') {
    const fields = dirFieldsFromSection(type, { id: section.id, text, fail });
    return { ...common, type, supported: true, backend: 'dir', ...fields };
  }

  const vgname = text('vgname');
  if (vgname === undefined) return fail(undefined, `an lvm storage needs a 'vgname' option`);
  if (!isValidVgName(vgname)) {
    fail(
      'vgname',
      `invalid volume group name '${vgname}': LVM allows letters, digits, '+', '_', '.', '-' ` + `(not first), at most 127 characters, and not '.' or '..'`,
    );
  }
  return { ...common, type, supported: true, backend: 'lvm', vgname, saferemove: flag('saferemove') };
}

/** PVE's split_list: commas, semicolons and whitespace all separate items. Duplicates are dropped. */
function splitList(value: string): string[] {
  return [...new Set(value.split(/[,;\s]+/).filter((item) => item !== ''))];
}

function parseContent(value: string, fail: (message: string) => never): string[] {
  const items = splitList(value);
  if (!items.includes('none')) return items;
  // PVE: 'none' is the explicit empty list and cannot be combined with real content types.
  if (items.length > 1) fail(`content 'none' cannot be combined with other content types ('${value}')`);
  return [];
}

function parseNodes(value: string, fail: (message: string) => never): string[] {
  const nodes = splitList(value);
  // PVE drops invalid names silently, which can leave a storage usable on no node at all: say so instead.
  const bad = nodes.find((node) => !NODE_NAME_RE.test(node));
  if (bad !== undefined) fail(`invalid node name '${bad}' in nodes`);
  return nodes;
}

// ---------------------------------------------------------------------------------------------------------
// Whole file, lookup, writing

export function parseStorageConfig(text: string, fileName: string): StorageConfig {
  const storages = parseSections(text, fileName).map((section) => storageFromSection(section, fileName));
  return { source: fileName, storages };
}

export function findStorage(config: StorageConfig, id: string): StorageDefinition {
  const found = config.storages.find((storage) => storage.id === id);
  if (found) return found;
  const known = config.storages.map((storage) => storage.id);
  throw new NotFoundError(
    `storage '${id}' is not defined in ${config.source}; ` + (known.length > 0 ? `known storages: ${known.join(', ')}` : 'it defines no storage'),
  );
}

/**
 * Writes sections in PVE's own layout (header, tab-indented options, an empty line between sections).
 * Refuses anything that would not read back identically, rather than write a file PVE reads differently.
 */
export function formatStorageConfig(sections: readonly Pick<StorageSection, 'type' | 'id' | 'options'>[]): string {
  const seen = new Set<string>();
  const blocks = sections.map(({ type, id, options }) => {
    if (!TYPE_RE.test(type) || type !== type.toLowerCase()) {
      throw new InvalidInputError(`cannot write storage type '${type}': use lower-case letters, digits, '_', '.', '-'`);
    }
    if (!isValidStorageId(id)) throw new InvalidInputError(`cannot write invalid storage id '${id}'`);
    if (seen.has(id)) throw new InvalidInputError(`cannot write storage id '${id}' twice`);
    seen.add(id);
    const lines = [`${type}: ${id}`];
    for (const [key, value] of Object.entries(options)) {
      if (!/^\S+$/.test(key) || key.startsWith('#')) {
        throw new InvalidInputError(`storage '${id}': cannot write option name ${JSON.stringify(key)}`);
      }
      if (value === '' || value !== value.trim() || /[\n\r\u2028\u2029]/.test(value)) {
        throw new InvalidInputError(
          `storage '${id}': option '${key}' value ${JSON.stringify(value)} must be non-empty, on one line, ` + `without leading or trailing whitespace`,
        );
      }
      lines.push(`\t${key} ${value}`);
    }
    return lines.join('\n') + '\n';
  });
  return blocks.join('\n');
}
