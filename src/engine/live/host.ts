/**
 * What live operations (the modules of engine/live/) use of the per-call session: resolving volume ids, finding
 * a VM's disks and taking the VM's locks. Declared here so that they depend on this much rather than on
 * engine/session/session.ts, which the operations calling into them also use; Session implements it.
 */
import type { Backend } from '../../backends/backend.js';
import type { VolumeRef } from '../../naming/index.js';
import type { Settings } from '../../settings.js';

export interface LiveHost {
  /** The session's settings: the QMP directory, job speed, live-stream and fault hooks, the QEMU binary. */
  readonly settings: Settings;
  resolve(volid: string): { backend: Backend; volume: VolumeRef };
  vmVolumes(vmid: number, storage?: string, vmConfig?: string, onWarning?: (message: string) => void): Promise<{ backend: Backend; volume: VolumeRef }[]>;
  withVmLocks<T>(backends: readonly Backend[], vmid: number, operation: string, fn: () => Promise<T>): Promise<T>;
}
