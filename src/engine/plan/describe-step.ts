/**
 * Plans: what an operation will do, as data. Planners are pure; the executor journals and runs the steps.
 * The shapes (Plan, Step, OperationKind) are in src/model/plan.ts, below the journal and the backends.
 */
import type { Step } from '../../model/plan.js';
import type { CopySource } from '../../model/plan.js';
import { describeLiveStep } from './live-steps.js';

function copySource(source: CopySource): string {
  return source.snapshot !== undefined ? `snapshot '${source.snapshot}' of ${source.volid}` : `the current state of ${source.volid}`;
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
    case 'copy':
      return `copy ${copySource(step.source)} into new ${step.layer} (${step.sizeBytes} bytes virtual, up to ${step.bytes} bytes of data)`;
    case 'verify-copy':
      return `compare ${step.layer} with ${copySource(step.source)}`;
    case 'convert':
      return `copy raw ${step.from} into new qcow2 ${step.layer} (${step.sizeBytes} bytes virtual, ${step.bytes} bytes of data)`;
    case 'verify':
      return `compare ${step.layer} with ${step.against} (qemu-img compare)`;
    case 'protect':
      return `make ${step.layer} read-only`;
    case 'create-linked':
      return `create linked clone ${step.layer} backed by base volume ${step.baseName} of VM ${step.baseVmid} (${step.sizeBytes} bytes virtual)`;
    case 'copy-layer':
      return step.backing === null
        ? `copy the view of ${step.source.layer} of ${step.source.volid} into new ${step.layer} (${step.sizeBytes} bytes virtual, up to ${step.bytes} bytes of data)`
        : `copy what ${step.source.layer} of ${step.source.volid} holds over its parent into new ${step.layer} backed by ${step.backing} (up to ${step.bytes} bytes)`;
    case 'verify-layer':
      return `check ${step.layer} and compare its view with ${step.source.layer} of ${step.source.volid}`;
    case 'reassign-layer':
      return `give ${step.name} (VM ${step.vmid}) to VM ${step.newVmid} as ${step.newName}`;
    case 'relink':
      return `write backing name ${step.parent} into ${step.name} (was ${step.oldParent})`;
    case 'import-layer':
      return `import layer ${step.index} of the stream into new ${step.layer}${step.backingName !== null ? ` backed by ${step.backingName}` : ''} (${step.sizeBytes} bytes virtual, ${step.bytes} bytes of data)`;
    case 'verify-import':
      return `check the stream's trailer checksum and the ${step.layers.length} new layer(s) (headers, qemu-img check)`;
    default:
      return describeLiveStep(step);
  }
}
