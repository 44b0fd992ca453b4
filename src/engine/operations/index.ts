/**
 * Every operation the façade (engine/volchain.ts) delegates to, one module each: read → pure planner →
 * executor. The option and result types are types.ts.
 */
export { activate, deactivate } from './activation.js';
export { alloc, free } from './alloc-free.js';
export { clone } from './clone.js';
export { linkedClone } from './clone-linked.js';
export { convert, template } from './convert.js';
export { exportChain } from './export.js';
export { importChain } from './import.js';
export { info, list, path } from './info-list.js';
export { move } from './move.js';
export { repair } from './repair.js';
export { resize } from './resize.js';
export { snapshotCreate, vmSnapshot } from './snapshot-create.js';
export { snapshotDelete, vmDeleteSnapshot } from './snapshot-delete.js';
export { snapshotList } from './snapshot-list.js';
export { snapshotRollback, vmRollback } from './snapshot-rollback.js';
export { journalLeftovers, pendingRemovals, status, wipe } from './status-wipe.js';
