/**
 * Which optional blockdev options the QEMU at hand has. `discard-no-unref` (qcow2, QEMU 8.1 and later) is what
 * PVE 9 sets on every qcow2 node of a snapshot-as-volume-chain storage (its bug 6543: without it a discard
 * frees clusters for reuse in a pattern that lets the file outgrow what `qemu-img measure` reported, which a
 * thick LV sized from that measure cannot hold). Older QEMUs (Debian 12's 7.2) refuse the unknown option, so it
 * is only ever given when the QEMU in question reports it. Here: the running QEMU, asked over QMP; the installed
 * binary, for command lines, is asked by tools/qemu-system.ts (this folder starts no processes).
 */
import type { QmpExecutor } from './client.js';

interface SchemaInfo {
  name: string;
  'meta-type': string;
  members?: { name: string }[];
}

/** From a running QEMU: does its QMP schema list `discard-no-unref` for qcow2 options? */
export async function qmpHasDiscardNoUnref(c: QmpExecutor): Promise<boolean> {
  const schema = await c.execute<SchemaInfo[]>('query-qmp-schema');
  return schemaHasDiscardNoUnref(schema);
}

/** Pure part: any object type of the schema with a member `discard-no-unref` (only qcow2's options have it). */
export function schemaHasDiscardNoUnref(schema: readonly SchemaInfo[]): boolean {
  return schema.some((t) => t['meta-type'] === 'object' && (t.members ?? []).some((m) => m.name === 'discard-no-unref'));
}
