/**
 * Operation journals of an LVM storage, kept on the volume group itself so that they survive the host:
 * while an operation on VM <vmid> runs (or after it was interrupted), the VG holds a small LV
 * `volchain-journal-<vmid>` whose contents are the journal records of that VM's running operations (one
 * per disk of a VM-wide operation), in the crash-safe two-copy format of journal/device-format.ts. The LV
 * is created when the operation starts and removed when its last record goes, so on a VG every host sees:
 * - in `lvs` alone (no activation), that VM <vmid> has an unfinished operation, and from the LV's tags
 *   which operation, on which volume, started when by which host and pid (what list/info/status report);
 * - after activating it (`repair`, exclusively on a shared VG: lvmlockd refuses while the host running
 *   the operation still holds it), every step done and the one that was running.
 *
 * The name matches neither PVE's volume pattern (`vm-<vmid>-...`) nor its `pve-vm-<vmid>` tag, so PVE
 * ignores it. Cost per operation: one lvcreate and one lvremove; each step's update is two sector-aligned
 * writes with a flush after each, on the LV.
 *
 * When the VG has no room left even for that LV (a full VG is where `free` and deletes that release space
 * must still work), the records go to the host's state directory instead, as before there was a VG-side
 * journal; `status` and `repair` read both places.
 */
import type { LvRow } from '../../tools/lvm.js';
import { NoSpaceError } from '../../errors.js';
import { readDeviceDocument, writeDeviceDocument, type DeviceDocument } from '../../journal/device-format.js';
import type { FileJournalStore } from '../../journal/file-store.js';
import type { JournalLeftover, JournalRecord, JournalStore, ListJournalOptions } from '../../journal/record.js';
import { asJournalRecord } from '../../journal/validate.js';
import type { OperationKind } from '../../model/plan.js';
import { decodeTagValue, encodeTagValue } from './tags.js';

export const JOURNAL_LV_PREFIX = 'volchain-journal-';
/** Room for the two copies of a VM's records (lvcreate rounds it up to whole extents). */
export const JOURNAL_LV_BYTES = 4 * 1024 * 1024;
const TAG_JOURNAL = 'volchain.journal';
const TAG_SUMMARY = 'volchain.j.';
/** LVM refuses longer tags. */
const TAG_MAX = 128;

export function journalLvName(vmid: number): string {
  return `${JOURNAL_LV_PREFIX}${vmid}`;
}

export function vmidOfJournalLv(name: string): number | undefined {
  const m = /^volchain-journal-([1-9][0-9]{2,8})$/.exec(name);
  return m ? Number(m[1]) : undefined;
}

/** What the store needs from the LVM backend (which keeps the VG report and runs the LVM commands). */
export interface JournalVolumeGroup {
  readonly vg: string;
  readonly storage: string;
  /** The journal LV's row as the backend knows it now (current under the VM's lock). */
  row(vmid: number, name: string): Promise<LvRow | undefined>;
  /** Every journal LV of the VG, from a listing (no activation). */
  journalRows(): Promise<LvRow[]>;
  /** The LV's row from an `lvs` taken now (undefined when it no longer exists). */
  freshRow(name: string): Promise<LvRow | undefined>;
  /** lvcreate with the first 4 KiB zeroed, active here (exclusively on a shared VG); NoSpaceError when full. */
  create(name: string, sizeBytes: number, tags: readonly string[]): Promise<LvRow>;
  /** Activates the LV here (exclusively on a shared VG); LockedError when another host holds it. */
  activate(row: LvRow): Promise<void>;
  remove(name: string): Promise<void>;
  /** Several hosts use the VG: activating an LV here is visible to (and may block) the others. */
  shared(): Promise<boolean>;
  path(name: string): string;
}

interface Document {
  storage: string;
  vmid: number;
  records: JournalRecord[];
}

export class LvmJournalStore implements JournalStore {
  constructor(
    private readonly vg: JournalVolumeGroup,
    /** Records kept on this host when the VG had no room for a journal LV. */
    private readonly fallback: FileJournalStore,
  ) {}

  get location(): string {
    return `${this.vg.vg}/${JOURNAL_LV_PREFIX}<vmid> (else ${this.fallback.location})`;
  }

  async save(record: JournalRecord): Promise<void> {
    const vmid = record.plan.vmid;
    const name = journalLvName(vmid);
    let row = await this.vg.row(vmid, name);
    if (!row) {
      if ((await this.fallback.list({ vmid })).some((r) => r.id === record.id)) return this.fallback.save(record);
      try {
        row = await this.vg.create(name, JOURNAL_LV_BYTES, summaryTags(record));
      } catch (err) {
        if (err instanceof NoSpaceError) return this.fallback.save(record);
        throw err;
      }
      await this.write(row, undefined, { storage: this.vg.storage, vmid, records: [record] });
      return;
    }
    const current = await this.readActive(row);
    const records = current?.doc.records ?? [];
    const index = records.findIndex((r) => r.id === record.id);
    if (index >= 0) records[index] = record;
    else records.push(record);
    await this.write(row, current?.version, { storage: this.vg.storage, vmid, records });
  }

  async remove(record: JournalRecord): Promise<void> {
    const vmid = record.plan.vmid;
    const name = journalLvName(vmid);
    const row = await this.vg.row(vmid, name);
    if (row) {
      const current = await this.readActive(row);
      const records = (current?.doc.records ?? []).filter((r) => r.id !== record.id);
      // The LV goes with its last record: a VM with no operation running has no journal LV.
      if (records.length === 0) await this.vg.remove(name);
      else if (records.length !== current?.doc.records.length) await this.write(row, current?.version, { storage: this.vg.storage, vmid, records });
    }
    await this.fallback.remove(record);
  }

  async list(opts: ListJournalOptions = {}): Promise<JournalRecord[]> {
    const out: JournalRecord[] = [];
    const shared = await this.vg.shared();
    for (const row of await this.vg.journalRows()) {
      const vmid = vmidOfJournalLv(row.name);
      if (vmid === undefined || (opts.vmid !== undefined && vmid !== opts.vmid)) continue;
      if (!row.active && shared && !opts.forRepair) {
        // Reading it would take activating it here, which another host (the one running the operation)
        // would see: what the tags say is enough to know an operation is pending.
        const summary = summaryRecord(this.vg.storage, vmid, row);
        if (summary.storage === this.vg.storage) out.push(summary);
        continue;
      }
      try {
        const current = await this.readActive(row);
        out.push(...(current?.doc.records ?? []).filter((r) => r.storage === this.vg.storage));
      } catch (err) {
        // Another process's operation on that VM may have ended (and removed its journal LV) between the
        // listing and the read: then nothing is pending there. Only a journal still present is an error.
        if ((await this.vg.freshRow(row.name)) === undefined) continue;
        // Still there and unreadable (damaged, or not activatable here): that VM's operation is pending and
        // named by its tags with why it cannot be read, and every other VM's journal is still listed.
        out.push({
          ...summaryRecord(this.vg.storage, vmid, row),
          error: `journal LV ${this.vg.vg}/${row.name} could not be read here: ${(err as Error).message}`,
        });
      }
    }
    out.push(...(await this.fallback.list(opts)));
    return out.sort((a, b) => a.startedAt.localeCompare(b.startedAt) || a.id.localeCompare(b.id));
  }

  async sweep(vmid: number, dryRun: boolean): Promise<string[]> {
    const name = journalLvName(vmid);
    const row = await this.vg.row(vmid, name);
    const fromFallback = await this.fallback.sweep(vmid, dryRun);
    if (!row) return fromFallback;
    const current = await this.readActive(row);
    if ((current?.doc.records.length ?? 0) > 0) return fromFallback;
    if (!dryRun) await this.vg.remove(name);
    return [...fromFallback, `empty journal ${this.vg.vg}/${name}`];
  }

  async containerVmids(): Promise<number[]> {
    const lvs = (await this.vg.journalRows()).map((r) => vmidOfJournalLv(r.name)).filter((v): v is number => v !== undefined);
    return [...new Set([...lvs, ...(await this.fallback.containerVmids())])];
  }

  /** The host-side records' leftovers (a journal LV that cannot be read is reported as a pending record). */
  leftovers(): Promise<JournalLeftover[]> {
    return this.fallback.leftovers();
  }

  /** The LV's document, activating the LV first when needed; undefined when it holds none yet. */
  private async readActive(row: LvRow): Promise<{ doc: Document; version: DeviceDocument } | undefined> {
    if (!row.active) await this.vg.activate(row);
    const version = await readDeviceDocument(this.vg.path(row.name), row.sizeBytes);
    if (!version) return undefined;
    const doc = parseDocument(version.payload, `journal LV ${this.vg.vg}/${row.name}`);
    // One journal LV per VM and VG: storage ids that name the same VG share it, each reading its own records.
    if (doc.vmid !== vmidOfJournalLv(row.name)) {
      throw new Error(`journal LV ${this.vg.vg}/${row.name} holds the journal of VM ${doc.vmid}`);
    }
    return { doc, version };
  }

  private async write(row: LvRow, previous: DeviceDocument | undefined, doc: Document): Promise<void> {
    await writeDeviceDocument(this.vg.path(row.name), row.sizeBytes, previous, Buffer.from(JSON.stringify(doc)));
  }
}

/**
 * A journal LV's document, checked before it is trusted: a payload that passed its checksum can still be
 * one an older or foreign writer made. Throws (the LV is then reported unreadable, never rewritten).
 */
function parseDocument(payload: Buffer, where: string): Document {
  let value: unknown;
  try {
    value = JSON.parse(payload.toString('utf8'));
  } catch (err) {
    throw new Error(`${where} does not hold JSON: ${(err as Error).message}`, { cause: err });
  }
  const doc = value as Partial<Document> | null;
  if (typeof doc !== 'object' || doc === null || !Number.isSafeInteger(doc.vmid) || typeof doc.storage !== 'string' || !Array.isArray(doc.records)) {
    throw new Error(`${where} does not hold a journal document (storage, vmid, records)`);
  }
  doc.records.forEach((r, i) => asJournalRecord(r, `record ${i + 1} of ${where}`));
  return doc as Document;
}

/**
 * Tags saying what the journal is about, for hosts that cannot read it: operation, volume, host, pid,
 * start time. A value too long for a tag is left out (the record itself has it).
 */
export function summaryTags(record: JournalRecord): string[] {
  const fields: Record<string, string> = {
    storage: record.storage,
    op: record.plan.operation,
    volid: record.plan.volid,
    host: record.host,
    pid: String(record.pid),
    since: record.startedAt,
  };
  const tags = [TAG_JOURNAL];
  for (const [key, value] of Object.entries(fields)) {
    const tag = `${TAG_SUMMARY}${key}.${encodeTagValue(value)}`;
    if (tag.length <= TAG_MAX) tags.push(tag);
  }
  return tags;
}

/** A record made from a journal LV's tags alone (see JournalRecord.summaryOnly). */
export function summaryRecord(storage: string, vmid: number, row: Pick<LvRow, 'name' | 'tags'>): JournalRecord {
  const fields = new Map<string, string>();
  for (const tag of row.tags) {
    const m = /^volchain\.j\.([a-z]+)\.(.*)$/.exec(tag);
    const value = m ? decodeTagValue(m[2] as string) : undefined;
    if (m && value !== undefined) fields.set(m[1] as string, value);
  }
  const pid = Number(fields.get('pid'));
  return {
    id: `lv:${row.name}`,
    storage: fields.get('storage') ?? storage,
    host: fields.get('host') ?? 'an unknown host',
    pid: Number.isSafeInteger(pid) ? pid : 0,
    startedAt: fields.get('since') ?? 'an unknown time',
    plan: {
      operation: (fields.get('op') ?? 'operation') as OperationKind,
      volid: fields.get('volid') ?? `${storage}:vm-${vmid}`,
      vmid,
      summary: `journal on LV ${row.name}, not active on this host`,
      steps: [],
      bytesMoved: 0,
    },
    completedSteps: 0,
    runningStep: null,
    summaryOnly: true,
  };
}
