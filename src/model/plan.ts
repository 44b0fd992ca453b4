/**
 * The plan model, types only: what an operation will do, as data. Planners (engine/) build plans, the
 * executor runs them, the journal (journal/) records them and backends (LVM's journal tags) name their
 * operation kinds. Kept here, below all of those, so that none of them imports the engine for a type, and
 * free of code so that importing it loads nothing (`import type` only: .dependency-cruiser.cjs checks it).
 * Every shape is JSON-serialisable so the journal can record it and `--dry-run` can print it.
 */

export type Step =
  /** New qcow2 overlay `layer` whose header names `backing` (which need not exist yet). Undo: remove it. */
  | { kind: 'create-overlay'; layer: string; backing: string; sizeBytes: number }
  /** Rename a layer; `to` must not exist. Undo: rename back. */
  | { kind: 'rename'; from: string; to: string }
  /** Put `from` in the place of `to`, discarding the old `to`. No undo: the old `to` is gone. */
  | { kind: 'replace'; from: string; to: string }
  /** Make room for `layer` to grow to `sizeBytes` (LVM: grow the LV). Harmless to repeat. */
  | { kind: 'grow'; layer: string; sizeBytes: number }
  /** `layer` became a snapshot and will not be written again (LVM: shrink the LV to the image's end). */
  | { kind: 'freeze'; layer: string }
  /** Write `top`'s data into its backing layer `base`. `base` no longer holds its old state afterwards. */
  | { kind: 'commit'; top: string; base: string; bytes: number }
  /**
   * Safe rebase of `layer` from `from` onto `onto` (null: no backing), copying what its view needs. `onto` may
   * be a linked clone's base reference `../<vmid>/base-…` (read only), whose format `ontoFormat` then gives.
   */
  | { kind: 'rebase'; layer: string; from: string; onto: string | null; bytes: number; ontoFormat?: 'raw' | 'qcow2' }
  /** Delete a layer. */
  | { kind: 'remove'; layer: string }
  /** Grow the virtual size of `layer`. */
  | { kind: 'resize'; layer: string; format: 'qcow2' | 'raw'; sizeBytes: number }
  /** Snapshot inside one qcow2 file (storages without snapshot-as-volume-chain). */
  | { kind: 'internal-snapshot'; layer: string; action: 'create' | 'apply' | 'delete'; name: string }
  /**
   * Full copy (clone): a new qcow2 image `layer` of `sizeBytes` virtual on this storage, filled with the view
   * of `source` (`qemu-img convert`; up to `bytes` of guest data). Undo: remove it. Repair never redoes it
   * (the source may live on another storage): an interrupted clone is walked back (engine/run/repair-record.ts).
   */
  | { kind: 'copy'; layer: string; source: CopySource; sizeBytes: number; bytes: number }
  /** Compare the copy `layer` with the view of `source` (`qemu-img compare`); reads only. Undo: nothing. */
  | { kind: 'verify-copy'; layer: string; source: CopySource }

  /**
   * Copy raw layer `from` into a new qcow2 layer `layer` of `sizeBytes` virtual (`qemu-img convert -n`); `bytes`
   * is the data to copy. `from` is only read. Undo: remove `layer` (a temporary until a later rename).
   */
  | { kind: 'convert'; from: string; layer: string; sizeBytes: number; bytes: number }
  /** `qemu-img compare` of qcow2 `layer` against raw `against`: fails unless both read the same. Changes nothing. */
  | { kind: 'verify'; layer: string; against: string; bytes: number }
  /** Make a template's base volume read-only (dir: mode 0444 and, where it exists, the immutable flag). Repeatable. */
  | { kind: 'protect'; layer: string }
  /**
   * New qcow2 linked clone `layer` of `sizeBytes` virtual whose header names the template's base volume
   * `baseName` of VM `baseVmid` on the same storage (dir: `../<baseVmid>/<baseName>`, PVE's clone_image; LVM:
   * the base LV's name), with `-F` the base's format (from its name). The base is only read. Undo: remove `layer`.
   */
  | { kind: 'create-linked'; layer: string; baseVmid: number; baseName: string; sizeBytes: number }
  /**
   * Move (engine/planners/move.ts): new qcow2 layer `layer` of `sizeBytes` virtual on this storage whose header
   * names `backing` (a layer copied before it; null: none), filled with what `source`'s own layer defines over
   * its parent (`qemu-img convert -n -B`: data and zero clusters; with no backing, the whole view). Undo:
   * remove it. Repair never redoes it (the source is on another storage): an unfinished move is walked back.
   * `volume`: the new volume the layer belongs to (its name alone may not say: snapshot layer names are ambiguous).
   */
  | { kind: 'copy-layer'; layer: string; backing: string | null; source: CopySource; sizeBytes: number; bytes: number; volume: string }
  /** `qemu-img compare` of the view of the copied `layer` with `source`'s, plus its header and `qemu-img check`. Reads only. */
  | { kind: 'verify-layer'; layer: string; backing: string | null; source: CopySource }
  /**
   * Reassign (engine/planners/reassign.ts): layer `name` of VM `vmid` becomes layer `newName` of VM `newVmid` on
   * the same storage (dir: moved to images/<newVmid>; LVM: LV renamed and retagged for `volume`). Undo: back.
   */
  | { kind: 'reassign-layer'; vmid: number; name: string; newVmid: number; newName: string; volume: string }
  /** Reassign: rewrite the backing name in `name`'s header (VM `vmid`) to `parent` (`qemu-img rebase -u`). Undo: `oldParent` back. */
  | { kind: 'relink'; vmid: number; name: string; parent: string; oldParent: string; volume: string }
  /**
   * Import (engine/run/import-step.ts): new qcow2 layer `layer` of `sizeBytes` virtual, its header naming
   * `backingName` (the final name of its parent; null: the bottom layer), filled with layer `index` of the
   * chain stream `feed` (the import's input, registered by the running operation; never journaled). Undo:
   * remove it. Repair never redoes it (the stream is gone): an interrupted import is walked back.
   */
  | { kind: 'import-layer'; layer: string; backingName: string | null; index: number; sizeBytes: number; bytes: number; feed: string }
  /**
   * Import: the stream's trailer (the checksum of every byte, then its end) read from `feed`, and every new
   * layer's header judged by the header rules (qcow2/validate.ts) and `qemu-img check`ed. Reads only.
   */
  | { kind: 'verify-import'; layers: { layer: string; backingName: string | null }[]; feed: string }
  /** Steps that act through a running QEMU (engine/plan/live-steps.ts runs them), each with an offline equivalent for repair. */
  | LiveStep;

export type OperationKind =
  | 'snapshot-create'
  | 'snapshot-rollback'
  | 'snapshot-delete'
  | 'resize'
  | 'free'
  | 'clone'
  | 'convert'
  | 'template'
  // move: the copy and its check, journaled on the target; move-finish: the source's removal, journaled on the source
  | 'move'
  | 'move-finish'
  | 'reassign'
  | 'linked-clone'
  | 'import';

/** The view a `copy` step reads: one layer (and its backing chain) of a volume, on any storage. */
export interface CopySource {
  /** The source volume's id, and the snapshot whose view is copied (absent: the current state). */
  volid: string;
  snapshot?: string;
  /** The layer whose view is copied, its absolute path (computed by its backend, never taken from input) and format. */
  layer: string;
  path: string;
  format: 'qcow2' | 'raw';
}

/** What a clone's plan says besides its steps: where from, and the space it needs on the target. */
export interface CloneFigures {
  source: string;
  snapshot?: string;
  virtualSize: number;
  /** Bytes the copy takes on the target storage (LVM: the LV; dir: data plus qcow2 metadata). */
  spaceNeededBytes: number;
  /** Free bytes on the target storage when planned. */
  freeBytes: number;
}

export interface StrategyOption {
  strategy: string;
  valid: boolean;
  bytesMoved: number;
  reason: string;
}

export interface Plan {
  operation: OperationKind;
  volid: string;
  vmid: number;
  /** The snapshot the operation is about, for snapshot operations. */
  snapshot?: string;
  /** One line saying what the plan achieves. */
  summary: string;
  /** Operations that give the volume a new volid (convert, template): the volid it has once the plan ran. */
  newVolid?: string;
  steps: Step[];
  /** Bytes of guest data the plan copies (commit/rebase). */
  bytesMoved: number;
  /** For delete: every strategy considered, with why it was or was not chosen. */
  strategies?: StrategyOption[];
  /** Set when the plan acts through a running QEMU: its QMP socket (repair talks to it if it still runs). */
  live?: { socket: string };
  /**
   * Dry runs on storages with fixed-size layers (LVM), for plans engine/plan/space.ts understands (snapshot create): the
   * space the plan takes, against the same operation with PVE 9's full-size layers.
   */
  space?: PlanSpace;
  /** Clone plans: the source and the target's space (engine/planners/clone.ts). */
  clone?: CloneFigures;
  /** Move plans: what moves where, and the target's space (engine/planners/move.ts). */
  move?: MoveFigures;
  /** Import plans: what the stream holds and the target's space (engine/planners/import.ts). */
  import?: ImportFigures;
}

/** What a move's (or reassign's) plan says besides its steps. */
export interface MoveFigures {
  source: string;
  target: string;
  /** Layers moved (the current one and every snapshot layer). */
  layers: number;
  /** Bytes copied (0 for a reassign on the same storage: nothing is copied). */
  bytesToCopy: number;
  /** Bytes the copies take on the target storage, and its free bytes when planned (0 and 0 for a reassign). */
  spaceNeededBytes: number;
  freeBytes: number;
  /** The steps that run on the source storage once the target is verified (its removal), as data for --dry-run. */
  finish?: Plan;
}

/** What an import's plan says besides its steps: the volume the stream holds, and the space it needs. */
export interface ImportFigures {
  /** The exported volume's name as the stream's manifest gives it (informative: the import names it anew). */
  sourceName: string;
  virtualSize: number;
  /** Snapshots the new volume gets, oldest first (parents before children). */
  snapshots: string[];
  /** Data and zero bytes the stream's layers hold. */
  dataBytes: number;
  zeroBytes: number;
  spaceNeededBytes: number;
  freeBytes: number;
}

/** What a plan does to the storage's free space, as volchain runs it and with PVE 9's full-size layers. */
export interface PlanSpace {
  /** Bytes of the new layers the plan creates (each a full-size writable layer). */
  allocatedBytes: number;
  /**
   * Bytes given back by shrinking layers that become snapshots to their image end; null when that end is
   * not known beforehand (the layer cannot be read here without activating it).
   */
  releasedBytes: number | null;
  /** allocatedBytes - releasedBytes: how much free space the operation takes (null when released is). */
  netBytes: number | null;
  /** The same operation with PVE 9's full-size layers: the same new layers, nothing given back. */
  fullSize: { allocatedBytes: number; releasedBytes: number; netBytes: number };
}

/**
 * Steps of live plans: what a running QEMU must do while volchain changes the files of a chain it has open.
 * Every live step has an offline equivalent that repair runs when QEMU is gone (engine/plan/live-steps.ts explains
 * why that is safe, and runs the mapping).
 */
export type LiveStep =
  /**
   * Open `layer` (by then under its final name) in QEMU as a new, empty top: protocol node `protocolNode` and
   * qcow2 node `node` with `backing: null`. Undo: close both.
   */
  | { kind: 'qmp-open'; layer: string; node: string; protocolNode: string }
  /**
   * Switch QEMU's disk from the top node `node` onto `overlay` (blockdev-snapshot): from here the guest writes
   * into the overlay and `node` is a read-only snapshot layer. The qmp-snapshot steps of one operation (one
   * per disk) run as one QMP transaction: one instant for every disk. No undo.
   */
  | { kind: 'qmp-snapshot'; layer: string; node: string; overlay: string }
  /**
   * block-stream into `layer` (node `node`) of what it reads from `from`, down to `onto` (node `baseNode`;
   * null: no backing at all), writing `onto` as the backing name. The child's view never changes, so a
   * cancelled stream changes nothing that matters (undo: nothing).
   */
  | {
      kind: 'qmp-stream';
      layer: string;
      node: string;
      from: string;
      onto: string | null;
      baseNode: string | null;
      bytes: number;
      jobId: string;
      ontoFormat?: 'raw' | 'qcow2';
    }
  /**
   * block-commit of `top` (node `topNode`) into its backing `base` (node `baseNode`), in the chain whose top
   * node is `rootNode`. `active`: `top` is the chain's top; the job then stops at READY and the next step
   * (qmp-pivot) completes it. Otherwise the job ends by itself, writing `top`'s name into the header of the
   * layer above it (the name `base` is about to take). Writes into `base`: a cancelled commit leaves `base`
   * holding part of `top`'s data (no undo: repair finishes the commit).
   */
  | { kind: 'qmp-commit'; top: string; topNode: string; base: string; baseNode: string; rootNode: string; active: boolean; bytes: number; jobId: string }
  /**
   * Completes a READY active commit: pauses the guest (when `resume`: it was running), job-complete, waits
   * until QEMU runs on `base`'s node. The guest stays paused until the journal says so (next step).
   */
  | { kind: 'qmp-pivot'; top: string; topNode: string; base: string; baseNode: string; jobId: string; resume: boolean }
  /** Resumes the guest paused by qmp-pivot (when `resume`). */
  | { kind: 'qmp-resume'; resume: boolean }
  /** Closes the nodes of a layer QEMU no longer uses (blockdev-del, format node first). */
  | { kind: 'qmp-close'; layer: string; nodes: string[] }
  /**
   * Gives a layer below the top (node `node`) the node names `to` and opens it under its current file name
   * `layer` (PVE's names, engine/live/pve-graph.ts): new read-only nodes on the same file, the node above switched
   * onto them (blockdev-reopen), the old nodes closed. The guest's view never changes. `openedAs`: the layer
   * name the old nodes were opened under, free by now, which is a hard link to `layer` during the step
   * (engine/live/rename.ts); offline, the step only drops such a link left behind.
   */
  | { kind: 'qmp-rename'; layer: string; node: string; protocolNode: string | undefined; to: { format: string; protocol: string }; openedAs?: string };

export type LiveStepKind = LiveStep['kind'];
