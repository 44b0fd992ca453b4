/**
 * qcow2 layer knowledge with no storage type in it: native header reading, chain validation against hostile
 * images, and per-layer allocation figures. (The header builder for tests is test/fixtures/qcow2-craft.ts.)
 */
export { parseQcow2Header, readQcow2Header, readHeaderFrom } from './header.js';
export { QCOW2_MAGIC, MAX_BACKING_NAME_BYTES, KNOWN_INCOMPAT, type Qcow2Header, type Qcow2CompressionType, type Qcow2FeatureName } from './header-format.js';
export { type Qcow2Snapshot } from './snapshots.js';
export {
  validateLayerHeader,
  walkChain,
  backingNameProblem,
  DEFAULT_MAX_CHAIN_DEPTH,
  type BackingPolicy,
  type ChainLayer,
  type WalkChainOptions,
} from './validate.js';
export { allocatedBytes, countAllocation, type AllocationSummary } from './allocation.js';
export { readQcow2Layer, type Qcow2LayerInfo, type ReadLayerOptions } from './layer.js';
export { openImage, bufferReader, type ImageReader, type ImageFile, type LocalImageFile } from './io.js';
