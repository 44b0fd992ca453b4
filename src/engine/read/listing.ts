/**
 * `volchain list <storage>`: one entry per volume, and one volume that cannot be read never hides the others
 * (DESIGN.md section 2). A volume whose name, header or chain volchain refuses is listed with its problem (the
 * error any operation on it gives); a volume whose current layer is renamed away by an unfinished operation
 * (a crash, or a live operation between its renames) is listed from its journal record. Only a storage that
 * cannot be listed at all fails the call. Reads only: nothing here changes the storage.
 */
import type { Backend } from '../../backends/backend.js';
import { asVolchainError, type ErrorCode } from '../../errors.js';
import { formatVolid, parseVolname, splitVolid, type ImageFormat, type VolumeRef } from '../../naming/index.js';
import { pendingOperations } from '../run/journal.js';
import type { JournalRecord } from '../../journal/record.js';
import type { VolumeSummary } from './volume-summary.js';

export interface VolumeProblem {
  /** The error code an operation on the volume fails with (src/errors.ts), e.g. UNSAFE_IMAGE. */
  code: ErrorCode;
  message: string;
}

export interface PendingOperationSummary {
  operation: string;
  startedAt: string;
  pid: number;
  host: string;
}

interface EntryBase {
  volid: string;
  storage: string;
  vmid: number;
  name: string;
  format: ImageFormat;
  /** A template's base volume (PVE create_base): read-only, listed with its linked clones in `clones`. */
  template: boolean;
  /** A template's base volume: the volids of its linked clones, found from their headers; [] otherwise. */
  clones: string[];
  /** An operation on the volume that is running or was interrupted (`volchain repair` finishes it). */
  pendingOperation: PendingOperationSummary | null;
}

/** What only a volume that could be read has: absent (undefined) on an entry with a problem. */
type Unread = Partial<Record<Exclude<keyof VolumeSummary, keyof EntryBase>, undefined>>;

/**
 * What volchain found in images/ but does not read as a volume (dir, backends/dir/listing.ts): a file whose name it does
 * not parse (a vmdk, an unknown name), `format` then being what the extension says (null if none it knows), or
 * a refused `images/<vmid>` directory (volid `<storage>:<vmid>/`, name '', format null).
 */
interface ForeignEntry extends Omit<EntryBase, 'format'> {
  format: string | null;
  /** The file's size in bytes (not followed; null for a directory or anything not a regular file). */
  fileBytes: number | null;
}

/** A volume read normally (`problem: null`), or one that could not be read, with why. */
export type VolumeListEntry =
  (EntryBase & VolumeSummary & { problem: null }) | (EntryBase & Unread & { problem: VolumeProblem }) | (ForeignEntry & Unread & { problem: VolumeProblem });

/**
 * The order of names within a VM (vm-1-disk-2 before vm-1-disk-10): the same as
 * `localeCompare(…, 'en', { numeric: true })`, whose every call builds a collator anew (issue 16: most of the
 * sorting time of a 1,000-volume listing). Made on first use: commands that list nothing do not pay for it.
 */
let collator: Intl.Collator | undefined;
const byName = (a: string, b: string): number => (collator ??= new Intl.Collator('en', { numeric: true })).compare(a, b);

/**
 * Lists the volumes of `backend` (optionally of one VM); `summarize` reads one volume and throws what any
 * operation on it would throw.
 */
export async function listVolumeEntries(
  backend: Backend,
  vmid: number | undefined,
  summarize: (volume: VolumeRef) => Promise<VolumeSummary>,
  clonesOfBase?: (volume: VolumeRef) => Promise<string[]>,
): Promise<VolumeListEntry[]> {
  const scan = await backend.scanImages(vmid);
  const volumes = scan.volumes;
  const records = await pendingOperations(backend, vmid !== undefined ? { vmid } : {});
  const pendingOf = (volume: VolumeRef): JournalRecord | undefined =>
    records.find((r) => {
      const ref = volumeOfRecord(backend, r);
      return ref !== undefined && ref.vmid === volume.vmid && ref.name === volume.name;
    });
  // Volumes an unfinished operation names but the listing no longer shows (their current layer is renamed
  // away): they exist, mid-operation, and are listed with that operation as their problem.
  const listed = new Set(volumes.map((v) => `${v.vmid}/${v.name}`));
  for (const record of records) {
    const ref = volumeOfRecord(backend, record);
    if (ref === undefined || listed.has(`${ref.vmid}/${ref.name}`)) continue;
    if (vmid !== undefined && ref.vmid !== vmid) continue;
    listed.add(`${ref.vmid}/${ref.name}`);
    volumes.push(ref);
  }
  volumes.sort((a, b) => a.vmid - b.vmid || byName(a.name, b.name));

  const out: VolumeListEntry[] = [];
  for (const volume of volumes) {
    const record = pendingOf(volume);
    const base: EntryBase = {
      volid: formatVolid(volume),
      storage: volume.storage,
      vmid: volume.vmid,
      name: volume.name,
      format: volume.format,
      template: volume.template === true,
      clones: [],
      pendingOperation: record ? { operation: record.plan.operation, startedAt: record.startedAt, pid: record.pid, host: record.host } : null,
    };
    try {
      const summary = await summarize(volume);
      // The chain says what the name cannot: a linked clone's volid carries its base (engine/read/clone-base.ts).
      out.push({ ...summary, ...base, volid: summary.volid, problem: null });
    } catch (err) {
      // This volume's problem, not the listing's: every operation on it reports the same error.
      const error = asVolchainError(err);
      out.push({ ...base, problem: { code: error.code, message: error.message } });
    }
  }
  for (const u of scan.unlisted) {
    out.push({
      volid: `${backend.id}:${String(u.vmid)}/${u.name}`,
      storage: backend.id,
      vmid: u.vmid,
      name: u.name,
      format: u.format,
      fileBytes: u.fileBytes,
      template: false,
      clones: [],
      pendingOperation: null,
      problem: { code: u.problem.code, message: u.problem.message },
    });
  }
  out.sort((a, b) => a.vmid - b.vmid || byName(a.name, b.name));
  // A base's clones: from the entries when the whole storage was listed, else (one VM listed) by reading the
  // other VMs' chains too. Either way an unreadable clone is not named here (it is listed with its problem).
  for (const entry of out) {
    if (!entry.template) continue;
    if (vmid === undefined) entry.clones = out.filter((e) => e.problem === null && e.base === entry.volid).map((e) => e.volid);
    else if (clonesOfBase) entry.clones = await clonesOfBase(volumeFor(entry)).catch(() => []);
  }
  return out;
}

function volumeFor(entry: VolumeListEntry): VolumeRef {
  return {
    storage: entry.storage,
    kind: 'dir',
    vmid: entry.vmid,
    name: entry.name,
    format: entry.format as ImageFormat,
    volname: `${entry.vmid}/${entry.name}`,
    template: true,
  };
}

/** The volume (on this storage, under this storage's id) a journal record is about, if its volid parses. */
function volumeOfRecord(backend: Backend, record: JournalRecord): VolumeRef | undefined {
  try {
    return parseVolname(backend.kind, backend.id, splitVolid(record.plan.volid).volname);
  } catch {
    return undefined;
  }
}
