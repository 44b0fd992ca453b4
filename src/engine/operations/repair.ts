/**
 * `repair`: finishes interrupted operations from their journals (every step can be redone safely, so repair
 * always completes what was started; an interrupted undo is finished as an undo: engine/run/repair-record.ts),
 * then deals with temporary layers that no journal explains. Under each VM's lock, without refusing over the
 * unfinished operation it is there to finish.
 */
import type { Backend } from '../../backends/backend.js';
import { LockedError } from '../../errors.js';
import type { JournalRecord } from '../../journal/record.js';
import { formatVolid, isVolchainTemporaryName } from '../../naming/index.js';
import { readQcow2Header } from '../../qcow2/index.js';
import { openRepairSession } from '../live/socket.js';
import { pendingOperations } from '../run/journal.js';
import { repairActions, repairRecord } from '../run/repair-record.js';
import type { Session } from '../session/session.js';
import { withVmLockedForRepair } from '../session/vm-lock.js';
import type { CallOptions, RepairAction } from './types.js';

type Repaired = RepairAction[];

export async function repair(session: Session, target: { volid?: string }, opts: CallOptions = {}): Promise<Repaired> {
  const results: Repaired = [];
  const unreadable: string[] = [];
  // Each storage's journals are read once (on LVM that means reading, maybe activating, journal LVs).
  const targets: { backend: Backend; vmids: number[]; records: JournalRecord[] }[] = [];
  if (target.volid !== undefined) {
    const { backend, volume } = session.resolve(target.volid);
    targets.push({ backend, vmids: [volume.vmid], records: await pendingOperations(backend, { forRepair: true, vmid: volume.vmid }) });
  } else {
    for (const id of session.imageStorageIds()) {
      const backend = session.backend(id);
      const records = await pendingOperations(backend, { forRepair: true });
      // A journal can outlive every layer of its VM (an interrupted free): its VM still needs repair.
      const journaled = [...records.map((r) => r.plan.vmid), ...(await backend.journal().containerVmids())];
      targets.push({ backend, vmids: [...new Set([...(await backend.listVmids()), ...journaled])], records });
    }
  }
  for (const { backend, vmids, records } of targets) {
    for (const record of records) {
      if (target.volid !== undefined && record.plan.volid !== target.volid && record.group === undefined) continue;
      if (record.summaryOnly) {
        // Its steps are in a journal this host cannot read now (an LV another host holds): nothing to redo.
        unreadable.push(
          `${record.plan.operation} of ${record.plan.volid} (started ${record.startedAt} by pid ${record.pid} on ${record.host}): ${record.error ?? 'its journal is not readable on this host'}`,
        );
        continue;
      }
      results.push({ volid: record.plan.volid, actions: repairActions(record) });
      if (opts.dryRun) continue;
      await withVmLockedForRepair(session.locks, [backend], record.plan.vmid, 'repair', async () => {
        // A live plan finishes through its QEMU if that still runs, else with the offline equivalents.
        const live = record.plan.live ? await openRepairSession(record.plan, opts.qmp, session.settings) : undefined;
        try {
          await repairRecord(backend, record, session.settings.hooks, live);
        } finally {
          await live?.client.close();
        }
      });
    }
    for (const vmid of vmids) {
      const actions = await repairLeftovers(session, backend, vmid, { dryRun: opts.dryRun ?? false });
      results.push(...actions);
    }
  }
  if (unreadable.length > 0) {
    // Everything else was repaired; these need the host that holds their journal to let go of it.
    throw new LockedError(
      `could not finish ${unreadable.length} interrupted operation(s) from here: ${unreadable.map((u) => u.replace(/\.+$/, '')).join('; ')}. ` +
        'If that host is alive the operation may still be running there; otherwise wait for its locks to expire and run repair again',
    );
  }
  return results;
}

/**
 * Temporary layers with no journal (the journal was lost, or a crash hit before it was written). A
 * temporary is never anyone's backing file, so it can go, unless the volume's own name is missing: then
 * it is the volume's new top and takes that name. Each action is one rename or removal: if we die between
 * two, the next repair finds the rest.
 */
async function repairLeftovers(session: Session, backend: Backend, vmid: number, opts: { dryRun: boolean }): Promise<Repaired> {
  const out: Repaired = [];
  return withVmLockedForRepair(session.locks, [backend], vmid, 'repair', async () => {
    if ((await pendingOperations(backend, { vmid, forRepair: true })).length > 0) return out;
    // A journal container a crash left empty (created, never written) explains nothing: it goes too.
    for (const gone of await backend.journal().sweep(vmid, opts.dryRun)) {
      out.push({ volid: `${backend.id}:vm-${vmid}`, actions: [`remove ${gone}`] });
    }
    const names = await backend.listLayerNames(vmid);
    for (const name of names) {
      const tmp = isVolchainTemporaryName(name, backend.kind);
      if (!tmp) continue;
      const volid = formatVolid({ storage: backend.id, kind: backend.kind, vmid, name: tmp.volumeName });
      const hasVolume = names.includes(tmp.volumeName);
      let adopt = false;
      if (!hasVolume) {
        // LVs may be inactive (after a reboot): make the temporary readable before looking inside it.
        await backend.activate(vmid, [name]);
        const backing = (await readQcow2Header(backend.layerPath(vmid, name), name)).backingFile;
        adopt = backing !== undefined && names.includes(backing);
      }
      const action = adopt ? `rename ${name} -> ${tmp.volumeName} (the volume's top was left under its temporary name)` : `remove stray temporary ${name}`;
      out.push({ volid, actions: [action] });
      if (opts.dryRun) continue;
      if (adopt) await backend.renameLayer(vmid, name, tmp.volumeName);
      else await backend.removeLayer(vmid, name);
    }
    return out;
  });
}
