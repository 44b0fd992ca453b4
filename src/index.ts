/**
 * volchain as a library: `import { createVolchain } from 'volchain'`. This is the package's public surface
 * (package.json `exports`): the composition root, the façade, the result types the CLI's --json documents,
 * the error classes with their codes, outcomes and fields, and the plan model. Anything not exported here is
 * internal and may change without notice.
 *
 *   const vc = await createVolchain({ config: '/etc/pve/storage.cfg' });
 *   const volid = await vc.alloc('local', 100, '4G');
 *   await vc.snapshotCreate(volid, 'before_upgrade');
 *   const { snapshots } = await vc.snapshotList(volid);
 */

// ---- the way in ------------------------------------------------------------------------------------------
export { createVolchain, type CreateVolchainOptions } from './create.js';
export {
  CURRENT,
  Volchain,
  type ActivationResult,
  type CallOptions,
  type LayerCheck,
  type PendingSummary,
  type SnapshotEntry,
  type SnapshotListing,
  type VolchainOptions,
  type VolumeInfo,
  type WipeOptions,
} from './engine/volchain.js';
export type { VolumeSummary } from './engine/read/volume-summary.js';
export type { ShrinkPolicy } from './engine/plan/shrink-policy.js';
export type { WipeMode } from './engine/run/wipe.js';
export type { CloneOptions } from './engine/operations/clone.js';
export type { LinkedCloneOptions } from './engine/operations/clone-linked.js';
export type { ExportResult } from './engine/operations/export.js';
export type { ImportOptions } from './engine/operations/import.js';
export type { ChainManifest, ManifestLayer } from './engine/planners/import.js';

// ---- configuration -------------------------------------------------------------------------------------
export { readSettings, SETTING_VARIABLES, type Settings, type TestHooks } from './settings.js';
export {
  loadStorageConfig,
  parseStorageConfig,
  type LoadOptions,
  type StorageConfig,
  type StorageDefinition,
  type StorageDescription,
} from './config/index.js';

// ---- results (the --json documents and what the calls return) -----------------------------------------
export type {
  AllocJson,
  ErrorDocument,
  ListJson,
  PathJson,
  PendingOperation,
  PlansJson,
  RepairJson,
  RepairResult,
  StatusJson,
  StorageListJson,
  WipeJson,
} from './results.js';
export type { PendingOperationSummary, VolumeListEntry, VolumeProblem } from './engine/read/listing.js';
export type { LayerFlags, LayerFlagsEntry } from './engine/read/layer-guard.js';
export type { AttachInfo } from './engine/live/attach-info.js';
export type { QemuArgs, QemuArgsVolume } from './engine/live/qemu-args.js';
export type { FinishedRemoval, FinishRemovalsResult, PendingRemoval } from './backends/backend.js';
export type { JournalLeftover, JournalRecord } from './journal/record.js';
export type { EngineEvent } from './engine/run/step-rules.js';
export type { ImageFormat } from './naming/index.js';

// ---- the plan model ------------------------------------------------------------------------------------
export { describeStep } from './engine/plan/describe-step.js';
export type * from './model/plan.js';

// ---- errors --------------------------------------------------------------------------------------------
export {
  AlreadyExistsError,
  CommandFailedError,
  ConfigError,
  CorruptImageError,
  InvalidInputError,
  LockedError,
  NoSpaceError,
  NotFoundError,
  NotSupportedError,
  PendingOperationError,
  QmpError,
  UnsafeImageError,
  VolchainError,
  asVolchainError,
  type ErrorCode,
  type ErrorFields,
  type ErrorFieldValue,
  type ErrorJson,
  type ErrorOutcome,
  type VolchainErrorOptions,
} from './errors.js';
