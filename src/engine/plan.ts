/**
 * Plans: what an operation will do, as data. Planners are pure; the executor journals and runs the steps.
 * Every step is JSON-serialisable so the journal can record it and `--dry-run` can print it.
 */
import { describeLiveStep, type LiveStep } from './live-steps.js';
import type { PlanSpace } from './space.js';

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
  /** Steps that act through a running QEMU (live-steps.ts), each with an offline equivalent for repair. */
  | LiveStep;

export type OperationKind =
  | 'snapshot-create'
  | 'snapshot-rollback'
  | 'snapshot-delete'
  | 'resize'
  | 'free';

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
  steps: Step[];
  /** Bytes of guest data the plan copies (commit/rebase). */
  bytesMoved: number;
  /** For delete: every strategy considered, with why it was or was not chosen. */
  strategies?: StrategyOption[];
  /** Set when the plan acts through a running QEMU: its QMP socket (repair talks to it if it still runs). */
  live?: { socket: string };
  /**
   * Dry runs on storages with fixed-size layers (LVM), for plans space.ts understands (snapshot create): the
   * space the plan takes, against the same operation with PVE 9's full-size layers.
   */
  space?: PlanSpace;
}

export function describeStep(step: Step): string {
  switch (step.kind) {
    case 'create-overlay':
      return `create overlay ${step.layer} backed by ${step.backing} (${step.sizeBytes} bytes virtual)`;
    case 'rename':
      return `rename ${step.from} -> ${step.to}`;
    case 'replace':
      return `replace ${step.to} with ${step.from}`;
    case 'grow':
      return `make room for ${step.layer} to hold ${step.sizeBytes} bytes virtual`;
    case 'freeze':
      return `settle frozen layer ${step.layer}`;
    case 'commit':
      return `commit ${step.top} into ${step.base} (${step.bytes} bytes)`;
    case 'rebase':
      return `rebase ${step.layer} from ${step.from} onto ${step.onto ?? '(no backing)'} (up to ${step.bytes} bytes)`;
    case 'remove':
      return `remove ${step.layer}`;
    case 'resize':
      return `resize ${step.layer} to ${step.sizeBytes} bytes`;
    case 'internal-snapshot':
      return `${step.action} internal snapshot ${step.name} in ${step.layer}`;
    default:
      return describeLiveStep(step);
  }
}
