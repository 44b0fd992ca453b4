/**
 * The documents the CLI prints with --json (README "JSON output"), as types: what a program gets back from
 * the library calls the CLI wraps, and what an API will send. The CLI builds its output with `satisfies`
 * these types, so the documented shapes and the printed ones cannot drift apart. Types only.
 */
import type { FinishedRemoval, PendingRemoval } from './backends/backend.js';
import type { StorageDescription } from './config/index.js';
import type { ErrorJson } from './errors.js';
import type { JournalLeftover, JournalRecord } from './journal/record.js';
import type { Plan } from './model/plan.js';
import type { VolumeListEntry } from './engine/read/listing.js';

/** `storage list --json`. */
export interface StorageListJson {
  source: string;
  storages: StorageDescription[];
}

/** `alloc --json`. */
export interface AllocJson {
  volid: string;
}

/** `list --json`. */
export interface ListJson {
  volumes: VolumeListEntry[];
}

/** `path --json`. */
export interface PathJson {
  volid: string;
  path: string;
}

/** `free`, `resize`, `snapshot create|rollback|delete`, `vm snapshot|rollback|delsnapshot` with --json. */
export interface PlansJson {
  dryRun: boolean;
  plans: Plan[];
  /** What a VM-wide call skipped (a storage not available here); present only when there is something. */
  warnings?: string[];
}

/** One entry of `status --json`'s `pending`: a journal record with its volume. */
export type PendingOperation = JournalRecord & { volid: string };

/** `status --json`. */
export interface StatusJson {
  pending: PendingOperation[];
  wipes: PendingRemoval[];
  journalFiles: JournalLeftover[];
}

/** `wipe --json`. */
export interface WipeJson {
  wiped: FinishedRemoval[];
  waited: PendingRemoval[];
  busy: PendingRemoval[];
}

/** What `repair` did (or would do) to one volume. */
export interface RepairResult {
  volid: string;
  actions: string[];
}

/** `repair --json`. */
export interface RepairJson {
  dryRun: boolean;
  repaired: RepairResult[];
}

/** What any command prints on stdout with --json when it fails. */
export interface ErrorDocument {
  error: ErrorJson;
}
