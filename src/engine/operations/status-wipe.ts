/**
 * What is unfinished, for `status`, and `wipe`, which finishes deferred removals (LVM saferemove: zeroing and
 * removing `del-` LVs). Each backend keeps its own; storage ids naming one place are reported once.
 */
import type { FinishRemovalsResult, PendingRemoval } from '../../backends/backend.js';
import { NotFoundError } from '../../errors.js';
import { journalLeftovers as leftoversOf, pendingOperations } from '../run/journal.js';
import type { JournalLeftover, JournalRecord } from '../../journal/record.js';
import type { Session } from '../session/session.js';
import type { WipeOptions } from './types.js';

/**
 * Finishes unfinished removals here and now, each under its own lock; without `wait`,
 * the ones another process is finishing are returned as busy.
 */
export async function wipe(session: Session, opts: WipeOptions = {}): Promise<FinishRemovalsResult> {
  const out: FinishRemovalsResult = { finished: [], busy: [], waited: [] };
  for (const id of session.imageStorageIds(opts.storage)) {
    const backend = session.backend(id);
    if (!backend.capabilities.deferredRemoval) continue;
    let r: FinishRemovalsResult;
    try {
      r = await backend.finishRemovals({
        ...(opts.vmid !== undefined ? { vmid: opts.vmid } : {}),
        wait: opts.wait ?? false,
        ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
        ...(opts.log ? { log: opts.log } : {}),
      });
    } catch (err) {
      // Every storage: one whose VG is not on this host has nothing to wipe here.
      if (opts.storage === undefined && err instanceof NotFoundError) continue;
      throw err;
    }
    out.finished.push(...r.finished);
    out.busy.push(...r.busy);
    out.waited.push(...r.waited);
  }
  return out;
}

/** Removals not finished yet (LVM saferemove: `del-` LVs being wiped or waiting for a wiper). */
export async function pendingRemovals(session: Session): Promise<PendingRemoval[]> {
  const out = new Map<string, PendingRemoval>();
  for (const id of session.imageStorageIds()) {
    const backend = session.backend(id);
    // Two storages may name one VG: each LV once.
    for (const r of await backend.pendingRemovals()) if (!out.has(r.path)) out.set(r.path, r);
  }
  return [...out.values()];
}

/** Journal files set aside as unreadable, and temp files of interrupted journal writes, for `status`. */
export function journalLeftovers(session: Session): Promise<JournalLeftover[]> {
  return leftoversOf(session.imageStorageIds().map((id) => session.backend(id)));
}

/** Every unfinished operation (a journal record) on the storages of this host, with its volume. */
export async function status(session: Session): Promise<(JournalRecord & { volid: string })[]> {
  const out: (JournalRecord & { volid: string })[] = [];
  for (const id of session.imageStorageIds()) {
    for (const record of await pendingOperations(session.backend(id))) out.push({ ...record, volid: record.plan.volid });
  }
  return out;
}
