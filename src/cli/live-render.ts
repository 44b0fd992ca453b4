/** Text output of the commands about running VMs (qemu-args, vm attach-info). */
import type { AttachInfo } from '../engine/live/attach-info.js';
import type { QemuArgs } from '../engine/live/qemu-args.js';
import { table } from './render.js';

/** A word for a POSIX shell: single-quoted unless it is plainly safe. */
export function shellQuote(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

/**
 * One `-blockdev '<json>'` per line, continued with backslashes: paste it into a QEMU command line (or a
 * script). Each volume's top node (what `-device ...,drive=` names) is its last -blockdev; `--json` says it.
 */
export function renderQemuArgs(args: QemuArgs): string {
  const words: string[] = [];
  for (let i = 0; i < args.argv.length; i += 2) words.push(`${args.argv[i] ?? ''} ${shellQuote(args.argv[i + 1] ?? '')}`);
  return words.join(' \\\n');
}

export function renderAttachInfo(info: AttachInfo): string {
  const lines = [`VM ${info.vmid}: QEMU at ${info.socket}, ${info.running ? 'running' : info.status}`];
  for (const d of info.disks) {
    lines.push('');
    if (!d.open) {
      lines.push(`${d.volid}: not open in QEMU`);
    } else {
      lines.push(`${d.volid}${d.devices.length > 0 ? ` (device ${d.devices.join(', ')})` : ''}`);
      lines.push(
        table(
          ['LAYER', 'SNAPSHOT', 'NODE', 'FILE NODE', 'MODE', 'OPENED AS'],
          d.layers.map((l) => [
            l.layer,
            l.snapshot ?? '(current)',
            l.node,
            l.protocolNode ?? '-',
            l.readOnly ? 'ro' : 'rw',
            l.openedAs === null ? '-' : (l.openedAs.split('/').pop() ?? ''),
          ]),
        )
          .split('\n')
          .map((l) => `  ${l}`)
          .join('\n'),
      );
    }
    if (d.base) lines.push(`  base volume ${d.base.volid}: node ${d.base.node}, ${d.base.readOnly ? 'ro' : 'rw'}, opened as ${d.base.ref} (never written)`);
    for (const n of d.detached) lines.push(`  detached node ${n.node} (opened as ${n.openedAs ?? '?'}): no device uses it`);
    for (const p of d.problems) lines.push(`  DISAGREES: ${p}`);
  }
  for (const o of info.others) lines.push('', `other nodes ${o.nodes.join(' -> ')}: ${o.reason}`);
  for (const j of info.jobs) lines.push('', `block job ${j.id}: ${j.type} ${j.status} ${j['current-progress']}/${j['total-progress']}`);
  return lines.join('\n');
}
