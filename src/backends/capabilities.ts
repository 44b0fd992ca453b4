/**
 * Which `Backend` methods each declared capability switches on (backend.ts, BackendCapabilities), and the
 * refusal a backend gives for a method whose capability it lacks and for which doing nothing would be a
 * made-up answer. The table is what the capability test walks; the engine reads only the flags.
 */
import { NotSupportedError } from '../errors.js';
import type { Backend, BackendCapabilities } from './backend.js';

/** The capabilities that switch methods on, with those methods. */
export const CAPABILITY_METHODS = {
  activation: ['activate', 'deactivate'],
  layerRecords: ['layerChanged'],
  deferredRemoval: ['deferredRemovals', 'finishRemovals', 'pendingRemovals', 'removalLog'],
  baseVolumes: ['inspectBase', 'protectBase', 'createLinkedClone'],
  layerSizing: ['fullLayerBytes', 'frozenLayerBytes'],
} as const satisfies Partial<Record<keyof BackendCapabilities, readonly (keyof Backend)[]>>;

export type SwitchCapability = keyof typeof CAPABILITY_METHODS;

/** What a storage without the capability lacks, for the refusal's message. */
const LACKS: Record<SwitchCapability, string> = {
  activation: 'no activation',
  layerRecords: 'no layer records',
  deferredRemoval: 'no deferred removals',
  baseVolumes: "no base volumes (PVE's linked clones)",
  layerSizing: 'no fixed-size layers to measure',
};

/** The NotSupportedError for calling `method` on storage `storage`, which lacks `capability`. */
export function notCapable(storage: string, capability: SwitchCapability, method: string): NotSupportedError {
  return new NotSupportedError(`storage '${storage}' has ${LACKS[capability]}: ${method} is not supported there (capabilities.${capability} is false)`);
}
