/**
 * The options the façade's calls take and the results they return (the `--json` shapes the CLI prints and
 * src/results.ts documents). Types only, apart from the reserved name CURRENT: every operation module, the
 * session and the façade import them from here, and this module imports no operation, so no cycle can form.
 */
import type { Settings } from '../../settings.js';
import type { PendingRemoval } from '../../backends/backend.js';
import type { EngineEvent } from '../run/step-rules.js';
import type { BackgroundWipeRunner, WipeMode } from '../run/wipe.js';
import type { ShrinkPolicy } from '../plan/shrink-policy.js';
import type { LayerFlags, LayerFlagsEntry } from '../read/layer-guard.js';
import type { VolumeSummary } from '../read/volume-summary.js';

export interface VolchainOptions {
  /**
   * Where removals left for after an operation run (LVM saferemove: zeroing and removing `del-` LVs):
   * 'background' (a detached `volchain wipe` process, as PVE forks a worker) or 'foreground' (before the
   * call returns). Default: $VOLCHAIN_WIPE, else 'background'.
   */
  wipe?: WipeMode;
  /**
   * How a background wipe is started (the CLI passes cli/wipe-runner.ts's spawnCliWiper: itself, detached).
   * Without one, 'background' wipes in the foreground too: the engine does not know how to start a wiper.
   */
  backgroundWipe?: BackgroundWipeRunner;
  /**
   * LVM: shrink a layer that becomes a snapshot to its image's end ('yes'), keep it full size as PVE does
   * ('no'), or 'auto': 'no' when the configuration is /etc/pve/storage.cfg (PVE commits into snapshot LVs
   * without growing them), else 'yes'. Default: $VOLCHAIN_LVM_SHRINK, else 'auto'. See engine/plan/shrink-policy.ts.
   */
  shrinkFrozen?: ShrinkPolicy;
  /** How long to wait for a VM's lock. Default: $VOLCHAIN_LOCK_TIMEOUT (of the settings, checked when a lock is taken), else 30 s. */
  lockTimeoutMs?: number;
  /**
   * The settings (src/settings.ts) the defaults above come from, and everything below the façade runs with
   * (test hooks, job speed, state directory, ...). Without: process.env as it is when the Volchain is made
   * (engine/session/session.ts sessionSettings), never read again afterwards.
   */
  settings?: Settings;
}

export interface WipeOptions {
  /** Only this storage (default: every storage). */
  storage?: string;
  /** Only removals of this VM. */
  vmid?: number;
  /** Also wait for removals another process is finishing now (and finish them if it dies). */
  wait?: boolean;
  onProgress?: (progress: PendingRemoval) => void;
  log?: (line: string) => void;
}

export interface CallOptions {
  dryRun?: boolean;
  onEvent?: (event: EngineEvent) => void;
  /**
   * QEMU's QMP socket when the VM runs: snapshot operations then act live (engine/live/). Without it, a socket
   * `$VOLCHAIN_QMP_DIR/<vmid>.qmp` that answers counts the same.
   */
  qmp?: string;
  /** Aborting cancels a live operation's block job (the operation then fails, leaving a valid chain). */
  signal?: AbortSignal;
  /** Told what a VM-wide call skipped (a storage not available here, when searched without a VM config). */
  onWarning?: (message: string) => void;
}

/** What `activate`/`deactivate` did. */
export interface ActivationResult {
  volid: string;
  storage: string;
  /** The layers of the volume's chain (current layer first, then the snapshot layers by name). */
  layers: string[];
  /** The chain's state afterwards; null on storages whose layers need no activation (dir: nothing was done). */
  active: boolean | null;
}

export interface PendingSummary {
  operation: string;
  startedAt: string;
  pid: number;
  host: string;
}

export interface VolumeInfo extends VolumeSummary {
  path: string;
  /** An operation on this VM that is running now or was interrupted (then `repair` finishes it). */
  pendingOperation: PendingSummary | null;
  snapshotMode: 'volume-chain' | 'internal' | 'none';
  /** With `deep`: `qemu-img check` of every layer (run only after every header passed validation). */
  checks?: LayerCheck[];
  /** Snapshot the current layer continues from (volume-chain mode). */
  parentSnapshot: string | null;
  /** Every layer with QEMU's corrupt bit and its internal snapshots (engine/read/layer-guard.ts). */
  layers: LayerFlagsEntry[];
  /** A template's base volume: the volids of its linked clones ([] for other volumes). */
  clones: string[];
}

export interface LayerCheck {
  layer: string;
  snapshot: string | null;
  clean: boolean;
  corruptions: number;
  leaks: number;
  imageEndOffset: number | null;
}

export interface SnapshotEntry extends LayerFlags {
  name: string;
  layer: string;
  path: string;
  parent: string | null;
  children: string[];
  /** On the path from the current layer to the base: what the disk's current state builds on. */
  inCurrentChain: boolean;
  virtualSize: number;
  /**
   * Guest data the layer holds, from its L2 tables; null when the layer cannot be opened on this host (an
   * inactive LV, perhaps held by another host): its LV size is in usedBytes, but that is not its data.
   */
  definedBytes: number | null;
  usedBytes: number;
}

export interface SnapshotListing {
  volid: string;
  mode: 'volume-chain' | 'internal';
  current: { layer: string; path: string; parent: string | null; virtualSize: number; definedBytes: number | null; usedBytes: number } & LayerFlags;
  snapshots: SnapshotEntry[];
}

/** What `repair` did (or would do) to one volume. */
export interface RepairAction {
  volid: string;
  actions: string[];
}

/** The name the current layer has in snapshot listings (reserved: no snapshot can be called that). */
export const CURRENT = 'current';
