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
import type { LiveStep, LiveStepKind, Step } from '../../model/plan.js';

const LIVE_KINDS: ReadonlySet<string> = new Set<LiveStepKind>([
  'qmp-open',
  'qmp-snapshot',
  'qmp-stream',
  'qmp-commit',
  'qmp-pivot',
  'qmp-resume',
  'qmp-close',
  'qmp-rename',
]);

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
      // onto a linked clone's base: its format goes with it (checkRebaseTarget checks both).
      return {
        kind: 'rebase',
        layer: step.layer,
        from: step.from,
        onto: step.onto,
        bytes: step.bytes,
        ...(step.ontoFormat ? { ontoFormat: step.ontoFormat } : {}),
      };
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
