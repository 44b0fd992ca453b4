/**
 * Walking back the disks a VM-wide operation (vm snapshot) had finished when a later disk failed, through
 * the same journaled undo as one plan's (undo.ts): each finished disk's record is written again as "undoing"
 * (Journal.reopenForUndo), every one of them before any undo step runs, then each disk's steps are undone
 * in turn, the last finished disk first, and its record removed.
 *
 * Crash states: killed before the records are rewritten, the finished disks have no record and keep the
 * operation's result (the disk that failed had its own steps undone by the executor, the disks after it
 * never started and their records are gone); killed after, `repair` (repair-record.ts) finds every finished
 * disk that is not walked back yet with an undo record and finishes its undo, so no disk keeps the result of
 * an operation that failed on another.
 */
import type { Backend } from '../../backends/backend.js';
import { undoJournaled } from './executor.js';
import type { Journal } from './journal.js';
import type { TestHooks } from '../../settings.js';

export interface FinishedDisk {
  backend: Backend;
  /** The disk's journal, its record already removed by the executor when the plan finished. */
  journal: Journal;
}

/** Walks back `finished` (in the order they ran); `error` is why, recorded for repair's report; `hooks`: the session's. */
export async function walkBackFinished(finished: readonly FinishedDisk[], error: string, hooks: TestHooks): Promise<void> {
  // Every record first: a crash while undoing one disk must leave the others marked for undo too.
  for (const d of finished) await d.journal.reopenForUndo(error);
  for (const d of [...finished].reverse()) {
    await undoJournaled(d.backend, d.journal, hooks);
    await d.journal.finish();
  }
}
