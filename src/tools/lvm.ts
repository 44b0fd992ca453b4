/**
 * Typed wrappers around the LVM commands volchain uses, and the pure parsers for their output. Everything
 * goes through the one runner (argv arrays, LC_ALL=C); reports are always machine-readable
 * (`--reportformat json --units b --nosuffix`), so sizes are exact byte counts.
 *
 * LVM quirks handled here, not in callers:
 * - every failure exits with status 5 (ECMD_FAILED), so the meaning is read from stderr
 *   (`classifyLvmFailure`): "already exists" -> AlreadyExistsError, "not found" / "Failed to find" ->
 *   NotFoundError, "insufficient free space" -> NoSpaceError saying how many bytes are missing, lvmlockd's
 *   "locked by other host" / "held by another host" and "Logical volume ... in use" (open here) -> LockedError;
 * - `lvextend`/`lvreduce` to the size an LV already has fail ("matches existing size"): `lvresize` here
 *   compares first and does nothing then;
 * - LVM complains about inherited file descriptors on stderr (LVM_SUPPRESS_FD_WARNINGS) and lives in /sbin,
 *   which a non-login PATH may lack;
 * - stdin is never a terminal here, so every command that could ask gets `-y` or `-f`.
 *
 * Sizes are passed in bytes with the `b` unit (`-L 67108864b`); callers round them up to the VG's extent
 * size first, so LVM never rounds behind our back.
 */
import { AlreadyExistsError, CommandFailedError, LockedError, NoSpaceError, NotFoundError, NotSupportedError, VolchainError } from '../errors.js';
import { open, stat } from 'node:fs/promises';
import { run, type RunResult } from './runner.js';

/** One LV as `lvs` reports it. */
export interface LvRow {
  name: string;
  uuid: string;
  sizeBytes: number;
  tags: string[];
  /** `lv_attr`, e.g. `-wi-a-----`. */
  attr: string;
  /** Active on this host (lv_attr state `a`): /dev/<vg>/<lv> exists here. */
  active: boolean;
  /** Open by some process on this host (lv_attr device-open `o`). */
  open: boolean;
}

/** The VG as `vgs` reports it. */
export interface VgInfo {
  name: string;
  extentSizeBytes: number;
  freeBytes: number;
  sizeBytes: number;
  /** lvmlockd lock type: `sanlock`, `dlm`, `idm`, or '' / 'none' for a VG without lvmlockd. */
  lockType: string;
}

export type Activation = 'ly' | 'ey' | 'n' | 'sy';

// ---- pure parsers ---------------------------------------------------------------------------------------

/** A decimal byte count from a report (strings in LVM's JSON); throws on anything else. */
export function parseByteCount(value: unknown, what: string): number {
  const text = typeof value === 'number' ? String(value) : value;
  if (typeof text !== 'string' || !/^\d+$/.test(text.trim())) {
    throw new VolchainError('COMMAND_FAILED', `LVM reported ${what} as ${JSON.stringify(value)}, expected a byte count`);
  }
  const n = Number(text.trim());
  if (!Number.isSafeInteger(n)) throw new VolchainError('COMMAND_FAILED', `LVM reported ${what} = ${text}, too large`);
  return n;
}

interface JsonReport {
  report?: Record<string, unknown>[];
}

function reportRows(json: string, key: 'lv' | 'vg', command: string): Record<string, unknown>[] {
  let parsed: JsonReport;
  try {
    parsed = JSON.parse(json) as JsonReport;
  } catch (err) {
    throw new VolchainError('COMMAND_FAILED', `${command} printed no valid JSON report: ${(err as Error).message}`);
  }
  if (!Array.isArray(parsed.report)) throw new VolchainError('COMMAND_FAILED', `${command} printed a JSON report without 'report'`);
  const rows: Record<string, unknown>[] = [];
  for (const section of parsed.report) {
    const list = section[key];
    if (list === undefined) continue;
    if (!Array.isArray(list)) throw new VolchainError('COMMAND_FAILED', `${command}: '${key}' in the JSON report is not a list`);
    rows.push(...(list as Record<string, unknown>[]));
  }
  return rows;
}

function field(row: Record<string, unknown>, name: string): string {
  const value = row[name];
  if (typeof value !== 'string') {
    throw new VolchainError('COMMAND_FAILED', `LVM report row lacks field ${name}: ${JSON.stringify(row)}`);
  }
  return value;
}

/** Fields `lvs` is asked for (the parser needs exactly these). */
export const LV_FIELDS = ['lv_name', 'lv_uuid', 'lv_size', 'lv_attr', 'lv_tags'] as const;
export const VG_FIELDS = ['vg_name', 'vg_extent_size', 'vg_free', 'vg_size', 'vg_lock_type'] as const;

/** `lvs --reportformat json --units b --nosuffix -o lv_name,lv_uuid,lv_size,lv_attr,lv_tags`. */
export function parseLvsReport(json: string): LvRow[] {
  return reportRows(json, 'lv', 'lvs').map((row) => {
    const name = field(row, 'lv_name');
    const attr = field(row, 'lv_attr');
    const tagText = field(row, 'lv_tags');
    return {
      name,
      uuid: field(row, 'lv_uuid'),
      sizeBytes: parseByteCount(row.lv_size, `the size of LV ${name}`),
      // Tags cannot contain ',', which LVM uses to join them.
      tags: tagText === '' ? [] : tagText.split(','),
      attr,
      active: attr.charAt(4) === 'a',
      open: attr.charAt(5) === 'o',
    };
  });
}

/** `vgs --reportformat json --units b --nosuffix -o vg_name,vg_extent_size,vg_free,vg_size,vg_lock_type`. */
export function parseVgsReport(json: string): VgInfo[] {
  return reportRows(json, 'vg', 'vgs').map(vgInfoOf);
}

/** The VG fields an `lvs` report carries on each row (see reportVg); [] for a VG without LVs. */
export function parseVgFieldsOfLvs(json: string): VgInfo[] {
  const rows = reportRows(json, 'lv', 'lvs');
  return rows.slice(0, 1).map(vgInfoOf);
}

/** A VG's fields from a report row (of `vgs`, or of `lvs` asked for the VG fields too). */
function vgInfoOf(row: Record<string, unknown>): VgInfo {
  const name = field(row, 'vg_name');
  return {
    name,
    extentSizeBytes: parseByteCount(row.vg_extent_size, `the extent size of VG ${name}`),
    freeBytes: parseByteCount(row.vg_free, `the free space of VG ${name}`),
    sizeBytes: parseByteCount(row.vg_size, `the size of VG ${name}`),
    lockType: typeof row.vg_lock_type === 'string' ? row.vg_lock_type : '',
  };
}

/** True for a VG run by lvmlockd (sanlock, dlm, idm): LV activation there takes a cluster lock. */
export function hasLockManager(vg: VgInfo): boolean {
  return vg.lockType !== '' && vg.lockType !== 'none';
}

/** Smallest multiple of `unit` that is >= `bytes` (at least one unit). */
export function roundUpTo(bytes: number, unit: number): number {
  if (!Number.isSafeInteger(bytes) || bytes < 0) throw new VolchainError('INTERNAL', `invalid byte count ${bytes}`);
  if (!Number.isSafeInteger(unit) || unit <= 0) throw new VolchainError('INTERNAL', `invalid unit ${unit}`);
  return Math.max(unit, Math.ceil(bytes / unit) * unit);
}

/**
 * The error an LVM failure stands for. LVM exits 5 for nearly everything, so stderr decides. `what` names
 * the object for the message (e.g. "LV vm-100-disk-0.qcow2 in VG vg0").
 */
export function classifyLvmFailure(err: CommandFailedError, what: string, extentSizeBytes?: number): VolchainError {
  const text = err.stderr;
  const space = /insufficient free space \((\d+) extents?\):\s*(\d+) required/i.exec(text);
  if (space || /insufficient (free )?(space|extents)/i.test(text)) {
    let detail = '';
    if (space && extentSizeBytes !== undefined) {
      const free = Number(space[1]) * extentSizeBytes;
      const needed = Number(space[2]) * extentSizeBytes;
      detail = `: ${needed} bytes needed, ${free} free, ${needed - free} bytes missing`;
    }
    return withCause(new NoSpaceError(`not enough free space in the volume group for ${what}${detail}`), err);
  }
  if (/already exists/i.test(text)) return withCause(new AlreadyExistsError(`${what} already exists`), err);
  if (/not found|failed to find/i.test(text)) return new NotFoundError(`${what} does not exist (${err.argv.join(' ')})`, { cause: err });
  // `lvchange -an` (and lvremove) of an LV that something on this host holds open, e.g. a running QEMU.
  const inUse = text.match(/logical volume \S+ in use/gi);
  if (inUse) return withCause(new LockedError(`${inUse.join('; ')} (open on this host, e.g. by a running VM)`), err);
  // lvmlockd: another host's lock, or this host's own lockspace not (or no longer) running, e.g. a sanlock
  // lease lost when the shared storage stalled. The second is no reason to wait for another host.
  if (/locked by (an)?other host|held by (an)?other host/i.test(text)) {
    return withCause(new LockedError(`${what} is in use by another host (lvmlockd refused the lock): ${lastLine(text)}`), err);
  }
  if (/lockspace|lock skipped|lock start|lock .*error -\d+|due to failed lock/i.test(text)) {
    return withCause(
      new LockedError(
        `${what}: this host's cluster lock for the VG is not usable (lvmlockd lockspace not started or lost): ` +
          `${lastLine(text)}; check 'lvmlockctl --info' and 'sanlock client status', then 'vgchange --lock-start'`,
      ),
      err,
    );
  }
  if (/lock .*failed|LV locked|failed to lock/i.test(text)) {
    // lvmlockd says no more than this both when another host holds the lock and when this host's lease is gone.
    return withCause(
      new LockedError(`${what} is locked: lvmlockd refused the lock (another host holds it, or this host's lockspace is not running): ${lastLine(text)}`),
      err,
    );
  }
  return err;
}

function withCause<E extends VolchainError>(error: E, cause: unknown): E {
  Object.defineProperty(error, 'cause', { value: cause, enumerable: false, configurable: true, writable: true });
  return error;
}

function lastLine(text: string): string {
  return (
    text
      .split('\n')
      .map((l) => l.trim())
      .filter(Boolean)
      .pop() ?? ''
  );
}

/** `-L <bytes>b`: exact sizes, no unit guessing. */
export function sizeArg(bytes: number): string {
  return `${bytes}b`;
}

/** The device-mapper name of an LV (`<vg>-<lv>`, hyphens doubled); the kernel limits it to 127 bytes. */
export function dmName(vg: string, lv: string): string {
  return `${vg.replace(/-/g, '--')}-${lv.replace(/-/g, '--')}`;
}
export const DM_NAME_MAX = 127;

// ---- commands -------------------------------------------------------------------------------------------

const SBIN = ['/usr/local/sbin', '/usr/sbin', '/sbin'];

function lvmEnv(): Record<string, string> {
  const path = (process.env.PATH ?? '/usr/bin:/bin').split(':');
  for (const dir of SBIN) if (!path.includes(dir)) path.push(dir);
  return { PATH: path.join(':'), LVM_SUPPRESS_FD_WARNINGS: '1' };
}

/** How an LVM command runs: `trace` ($VOLCHAIN_LVM_TRACE=1) from the running backend's settings (none read here). */
export interface LvmRunOptions {
  trace?: boolean;
  /** The VG's extent size, to word "no space" errors (classifyLvmFailure). */
  extentSizeBytes?: number | undefined;
}

/** Runs one LVM command; failures are classified (see classifyLvmFailure). */
export async function lvm(command: string, args: readonly string[], what: string, how: LvmRunOptions = {}): Promise<RunResult> {
  const started = Date.now();
  try {
    return await run(command, args, { env: lvmEnv() });
  } catch (err) {
    if (err instanceof CommandFailedError) throw classifyLvmFailure(err, what, how.extentSizeBytes);
    throw err;
  } finally {
    if (how.trace === true) process.stderr.write(`[lvm ${Date.now() - started} ms] ${command} ${args.join(' ')}\n`);
  }
}

const REPORT_ARGS = ['--reportformat', 'json', '--units', 'b', '--nosuffix'];

export async function listLvs(vg: string, how: LvmRunOptions = {}): Promise<LvRow[]> {
  const { stdout } = await lvm('lvs', [...REPORT_ARGS, '-o', LV_FIELDS.join(','), '--', vg], `volume group ${vg}`, how);
  return parseLvsReport(stdout);
}

/** The VG and all its LVs: one `lvs` has the VG's fields on every row, `vgs` runs only for a VG without LVs (each costs a metadata read). */
export async function reportVg(vg: string, how: LvmRunOptions = {}): Promise<{ vg: VgInfo; lvs: LvRow[] }> {
  const { stdout } = await lvm('lvs', [...REPORT_ARGS, '-o', [...LV_FIELDS, ...VG_FIELDS].join(','), '--', vg], `volume group ${vg}`, how);
  const lvs = parseLvsReport(stdout);
  const fromRow = parseVgFieldsOfLvs(stdout).find((v) => v.name === vg);
  return { vg: fromRow ?? (await showVg(vg, how)), lvs };
}

export async function showVg(vg: string, how: LvmRunOptions = {}): Promise<VgInfo> {
  const { stdout } = await lvm('vgs', [...REPORT_ARGS, '-o', VG_FIELDS.join(','), '--', vg], `volume group ${vg}`, how);
  const info = parseVgsReport(stdout).find((v) => v.name === vg);
  if (!info) throw new NotFoundError(`volume group ${vg} does not exist`);
  return info;
}

export interface CreateLvOptions {
  vg: string;
  name: string;
  sizeBytes: number;
  tags: readonly string[];
  activation: 'ly' | 'ey';
  extentSizeBytes?: number;
  /** Insist on zeroing the first 4 KiB (lvcreate's default; fails instead of warning when it cannot). */
  zeroStart?: boolean;
}

/**
 * `lvcreate -a<ly|ey> -Wy --setautoactivation n --addtag ... -L <bytes>b -n <name> <vg>` (flags as in PVE 9;
 * --setautoactivation exists since lvm2 2.03.12, Debian 12 has 2.03.16). `-y` answers the wipe prompt
 * when the new LV's first sectors hold an old signature.
 */
export async function createLv(opts: CreateLvOptions, how: LvmRunOptions = {}): Promise<void> {
  const args = [`-a${opts.activation}`, '-Wy', ...(opts.zeroStart ? ['-Zy'] : []), '-y', '--setautoactivation', 'n'];
  for (const tag of opts.tags) args.push('--addtag', tag);
  args.push('-L', sizeArg(opts.sizeBytes), '-n', opts.name, '--', opts.vg);
  await lvm('lvcreate', args, `LV ${opts.name} in VG ${opts.vg}`, { ...how, extentSizeBytes: opts.extentSizeBytes });
}

/** `lvrename <vg> <from> <to>`; fails with AlreadyExistsError when `to` exists, NotFoundError without `from`. */
export async function renameLv(vg: string, from: string, to: string, how: LvmRunOptions = {}): Promise<void> {
  try {
    await lvm('lvrename', ['--', vg, from, to], `LV ${from} in VG ${vg}`, how);
  } catch (err) {
    if (err instanceof AlreadyExistsError) throw new AlreadyExistsError(`cannot rename LV ${from} to ${to} in VG ${vg}: ${to} already exists`);
    throw err;
  }
}

/** Grows or shrinks an LV to exactly `sizeBytes` (extent-aligned); nothing when it has that size already. */
export async function resizeLv(vg: string, name: string, currentBytes: number, sizeBytes: number, how: LvmRunOptions = {}): Promise<void> {
  if (sizeBytes === currentBytes) return;
  const what = `LV ${name} in VG ${vg}`;
  if (sizeBytes > currentBytes) {
    await lvm('lvextend', ['-L', sizeArg(sizeBytes), '--', `${vg}/${name}`], what, how);
  } else {
    // -f: no "THIS MAY DESTROY YOUR DATA" prompt; callers only shrink past the image's end.
    await lvm('lvreduce', ['-f', '-L', sizeArg(sizeBytes), '--', `${vg}/${name}`], what, how);
  }
}

/** `lvchange -a<mode> vg/lv ...` for several LVs in one command (never by tag: see DESIGN.md section 8). */
export async function activateLvs(vg: string, names: readonly string[], mode: Activation, how: LvmRunOptions = {}): Promise<void> {
  if (names.length === 0) return;
  await lvm('lvchange', [`-a${mode}`, '--', ...names.map((n) => `${vg}/${n}`)], `LV(s) ${names.join(', ')} in VG ${vg}`, how);
}

/** Adds and removes tags of one LV in one command (one metadata commit). */
export async function changeTags(vg: string, name: string, add: readonly string[], remove: readonly string[], how: LvmRunOptions = {}): Promise<void> {
  if (add.length === 0 && remove.length === 0) return;
  const args: string[] = [];
  for (const tag of remove) args.push('--deltag', tag);
  for (const tag of add) args.push('--addtag', tag);
  await lvm('lvchange', [...args, '--', `${vg}/${name}`], `LV ${name} in VG ${vg}`, how);
}

/** `lvremove -f vg/lv`. */
export async function removeLv(vg: string, name: string, how: LvmRunOptions = {}): Promise<void> {
  await lvm('lvremove', ['-f', '--', `${vg}/${name}`], `LV ${name} in VG ${vg}`, how);
}

/**
 * Overwrites `length` bytes at `offset` of a block device with zeroes: `blkdiscard --zeroout` (BLKZEROOUT:
 * the device zeroes the range itself where it can, fast on SAN storage), else a zeroing write with dd
 * (O_DIRECT, so nothing lingers in the page cache). Offset and length are multiples of 512. `shareFd` is
 * passed on to the command (see RunOptions). Returns the method that worked; `prefer: 'dd'` skips blkdiscard
 * (it failed on this device before).
 */
export async function zeroRange(
  path: string,
  offset: number,
  length: number,
  opts: { shareFd?: number; prefer?: 'blkdiscard' | 'dd' } = {},
): Promise<'blkdiscard' | 'dd'> {
  // Never write through a path that is not a block device (a vanished LV would leave a plain file in /dev).
  if (!(await stat(path)).isBlockDevice()) throw new VolchainError('INTERNAL', `${path} is not a block device: not zeroing it`);
  const shared = opts.shareFd !== undefined ? { shareFd: opts.shareFd } : {};
  if (opts.prefer !== 'dd') {
    try {
      await run('blkdiscard', ['--zeroout', '-o', String(offset), '-l', String(length), path], { env: lvmEnv(), ...shared });
      return 'blkdiscard';
    } catch (err) {
      if (!(err instanceof CommandFailedError) && !(err instanceof NotSupportedError)) throw err;
    }
  }
  await run(
    'dd',
    [
      'if=/dev/zero',
      `of=${path}`,
      'bs=1M',
      `seek=${offset}`,
      `count=${length}`,
      'iflag=count_bytes',
      'oflag=direct,seek_bytes',
      'conv=notrunc,nocreat',
      'status=none',
    ],
    { env: lvmEnv(), ...shared },
  );
  return 'dd';
}

/** Flushes a block device's write cache (fsync), so that zeroes written before are on stable storage. */
export async function flushDevice(path: string): Promise<void> {
  const handle = await open(path, 'r+');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** True when this kernel has a working device-mapper (LVM can activate LVs here). */
export async function deviceMapperWorks(): Promise<boolean> {
  try {
    await run('dmsetup', ['version'], { env: lvmEnv() });
    return true;
  } catch {
    return false;
  }
}
