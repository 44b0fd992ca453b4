/**
 * The installed qemu-system-x86_64: does it know qcow2's `discard-no-unref` (QEMU 8.1 and later)? PVE 9 sets
 * it on every qcow2 node of a volume chain; Debian 12's QEMU 7.2 refuses it (qmp/qemu-features.ts asks a
 * running QEMU the same over QMP and says why the option matters).
 */
import { run } from './runner.js';

/** `QEMU emulator version 7.2.22 (...)` → [7, 2]; undefined when the text has no version. */
export function parseQemuVersion(text: string): [number, number] | undefined {
  const m = /version (\d+)\.(\d+)/.exec(text);
  return m ? [Number(m[1]), Number(m[2])] : undefined;
}

export function versionHasDiscardNoUnref(v: readonly [number, number] | undefined): boolean {
  return v !== undefined && (v[0] > 8 || (v[0] === 8 && v[1] >= 1));
}

/** The answer per binary, asked once per process: an installed QEMU does not change under a running command. */
const installed = new Map<string, Promise<boolean>>();

/**
 * For command lines (qemu-args), where no QEMU runs yet: does the installed `binary` (the caller's setting
 * $VOLCHAIN_QEMU_SYSTEM, default qemu-system-x86_64) know it? No QEMU installed: false (the option is left out).
 */
export function installedQemuHasDiscardNoUnref(binary: string | undefined): Promise<boolean> {
  const command = binary ?? 'qemu-system-x86_64';
  let answer = installed.get(command);
  if (!answer) {
    answer = run(command, ['--version'], { timeoutMs: 10_000 }).then(
      (r) => versionHasDiscardNoUnref(parseQemuVersion(r.stdout)),
      () => false,
    );
    installed.set(command, answer);
  }
  return answer;
}
