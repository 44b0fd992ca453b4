/**
 * Which optional blockdev options the QEMU at hand has. `discard-no-unref` (qcow2, QEMU 8.1 and later) is what
 * PVE 9 sets on every qcow2 node of a snapshot-as-volume-chain storage (its bug 6543: without it a discard
 * frees clusters for reuse in a pattern that lets the file outgrow what `qemu-img measure` reported, which a
 * thick LV sized from that measure cannot hold). Older QEMUs (Debian 12's 7.2) refuse the unknown option, so it
 * is only ever given when the QEMU in question reports it.
 */
import { run } from '../tools/runner.js';
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

/** `QEMU emulator version 7.2.22 (...)` → [7, 2]; undefined when the text has no version. */
export function parseQemuVersion(text: string): [number, number] | undefined {
  const m = /version (\d+)\.(\d+)/.exec(text);
  return m ? [Number(m[1]), Number(m[2])] : undefined;
}

export function versionHasDiscardNoUnref(v: readonly [number, number] | undefined): boolean {
  return v !== undefined && (v[0] > 8 || (v[0] === 8 && v[1] >= 1));
}

let installed: Promise<boolean> | undefined;

/**
 * For command lines (qemu-args), where no QEMU runs yet: the version of the installed qemu-system-x86_64
 * (VOLCHAIN_QEMU_SYSTEM overrides the binary). No QEMU installed: false (the option is left out).
 */
export function installedQemuHasDiscardNoUnref(): Promise<boolean> {
  installed ??= run(process.env['VOLCHAIN_QEMU_SYSTEM'] ?? 'qemu-system-x86_64', ['--version'], { timeoutMs: 10_000 }).then(
    (r) => versionHasDiscardNoUnref(parseQemuVersion(r.stdout)),
    () => false,
  );
  return installed;
}
