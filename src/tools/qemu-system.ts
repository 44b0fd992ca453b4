/**
 * The installed qemu-system-x86_64: does it know qcow2's `discard-no-unref` (QEMU 8.1 and later)? PVE 9 sets
 * it on every qcow2 node of a volume chain; Debian 12's QEMU 7.2 refuses it (qmp/qemu-features.ts asks a
 * running QEMU the same over QMP and says why the option matters).
 */
import { run } from './runner.js';
import { currentSettings } from '../settings.js';

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
  installed ??= run(currentSettings().qemuSystem ?? 'qemu-system-x86_64', ['--version'], { timeoutMs: 10_000 }).then(
    (r) => versionHasDiscardNoUnref(parseQemuVersion(r.stdout)),
    () => false,
  );
  return installed;
}
