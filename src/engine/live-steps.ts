/**
 * Steps of live plans: what a running QEMU must do while volchain changes the files of a chain it has open.
 *
 * Every live step has an *offline equivalent*, the step that reaches the same result on disk when no QEMU is
 * there any more (it was killed): repair after a crash redoes the remaining steps live when QEMU still runs,
 * and with their offline equivalents when it is gone. The equivalences are what make that safe:
 * - opening, switching and closing nodes change nothing on disk: offline they are nothing;
 * - a stream into a child ends as a safe rebase of that child would (same header, same view);
 * - a commit ends as `qemu-img commit` of the same top into the same base. An active commit only ends at its
 *   pivot, which runs with the guest paused, so redoing the commit offline after QEMU died during the pivot
 *   copies into the base exactly what the base already holds (no guest write can have gone to the base
 *   alone); once the pivot is journaled as done, nothing redoes the commit.
 */
import type { Step } from './plan.js';

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
  | { kind: 'qmp-stream'; layer: string; node: string; from: string; onto: string | null; baseNode: string | null; bytes: number; jobId: string }
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
   * `layer` (PVE's names, live-pve-graph.ts): new read-only nodes on the same file, the node above switched
   * onto them (blockdev-reopen), the old nodes closed. The guest's view never changes. `openedAs`: the layer
   * name the old nodes were opened under, free by now, which is a hard link to `layer` during the step
   * (live-rename.ts); offline, the step only drops such a link left behind.
   */
  | { kind: 'qmp-rename'; layer: string; node: string; protocolNode: string | undefined; to: { format: string; protocol: string }; openedAs?: string };

export type LiveStepKind = LiveStep['kind'];

const LIVE_KINDS: ReadonlySet<string> = new Set<LiveStepKind>(['qmp-open', 'qmp-snapshot', 'qmp-stream', 'qmp-commit', 'qmp-pivot', 'qmp-resume', 'qmp-close', 'qmp-rename']);

export function isLiveStep(step: { kind: string }): step is LiveStep {
  return LIVE_KINDS.has(step.kind);
}

export function describeLiveStep(step: LiveStep): string {
  switch (step.kind) {
    case 'qmp-open':
      return `QEMU: open ${step.layer} as node ${step.node}`;
    case 'qmp-snapshot':
      return `QEMU: switch the disk from ${step.layer} (node ${step.node}) onto node ${step.overlay}`;
    case 'qmp-stream':
      return `QEMU: stream ${step.from} into ${step.layer}, new backing ${step.onto ?? '(none)'} (up to ${step.bytes} bytes)`;
    case 'qmp-commit':
      return `QEMU: commit ${step.top} into ${step.base}${step.active ? ' (active layer)' : ''} (${step.bytes} bytes)`;
    case 'qmp-pivot':
      return `QEMU: ${step.resume ? 'pause the guest, ' : ''}switch the disk from ${step.top} onto ${step.base}`;
    case 'qmp-resume':
      return step.resume ? 'QEMU: resume the guest' : 'QEMU: (guest was not running: leave it paused)';
    case 'qmp-close':
      return `QEMU: close the nodes of ${step.layer} (${step.nodes.join(', ')})`;
    case 'qmp-rename':
      return `QEMU: reopen ${step.layer} (node ${step.node}) as node ${step.to.format}`;
  }
}

/** What undoes a live step when a later step fails before any point of no return. */
export function liveUndoOf(step: LiveStep): Step | 'nothing' | 'impossible' {
  switch (step.kind) {
    case 'qmp-open':
      return { kind: 'qmp-close', layer: step.layer, nodes: [step.node, step.protocolNode] };
    case 'qmp-stream':
    case 'qmp-resume':
    case 'qmp-rename': // both node sets read the same file: the graph is consistent either way
      return 'nothing';
    default:
      return 'impossible';
  }
}

/** Live steps that leave their target half-changed when interrupted (repair must finish them). */
export function liveDamagesWhenInterrupted(step: LiveStep): boolean {
  return step.kind === 'qmp-commit' || step.kind === 'qmp-pivot';
}

export function liveIsLong(step: LiveStep): boolean {
  return step.kind === 'qmp-stream' || step.kind === 'qmp-commit';
}

/** The offline step reaching the same state on disk, or null when the step changes nothing on disk. */
export function offlineEquivalent(step: LiveStep): Step | null {
  switch (step.kind) {
    case 'qmp-stream':
      return { kind: 'rebase', layer: step.layer, from: step.from, onto: step.onto, bytes: step.bytes };
    case 'qmp-commit':
      // An active commit is only finished by its pivot; the pivot's equivalent does the commit.
      return step.active ? null : { kind: 'commit', top: step.top, base: step.base, bytes: step.bytes };
    case 'qmp-pivot':
      return { kind: 'commit', top: step.top, base: step.base, bytes: 0 };
    case 'qmp-rename':
      // Run as a redo, a rename whose target exists only drops the source when it is the same file (a link).
      return step.openedAs !== undefined && step.openedAs !== step.layer ? { kind: 'rename', from: step.openedAs, to: step.layer } : null;
    default:
      return null;
  }
}
