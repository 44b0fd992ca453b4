/**
 * The QMP vocabulary volchain uses, as typed functions over any QmpExecutor. Semantics are QEMU 7.2's
 * (qapi/block-core.json, qapi/job.json, qapi/transaction.json); each function says what it relies on.
 *
 * Spelling: structures QEMU defines and returns (BlockdevOptions, JobInfo, BlockDeviceInfo) keep QEMU's
 * member names, so the same object can go into `-blockdev` JSON, `blockdev-add` and back out of a query;
 * the option objects of our own functions are camelCase and mapped explicitly.
 */
import type { ExecuteOptions, QmpExecutor } from './client.js';
import { QmpDisconnectedError, QmpTimeoutError } from './errors.js';

// ---- QEMU's structures ----------------------------------------------------------------------------------

/** Options shared by every BlockdevOptions (QAPI union base). */
export interface BlockdevOptionsBase {
  /** ≤ 31 characters, a letter first, then letters, digits, '-', '.', '_'. */
  'node-name': string;
  'read-only'?: boolean;
  /** With read-only false: open read-only while nobody writes, read-write once a writer attaches. */
  'auto-read-only'?: boolean;
  discard?: 'ignore' | 'unmap';
  'detect-zeroes'?: 'off' | 'on' | 'unmap';
  cache?: { direct?: boolean; 'no-flush'?: boolean };
  'force-share'?: boolean;
}

/** Protocol node: a regular file, or a block device (an LV). */
export interface BlockdevOptionsFile extends BlockdevOptionsBase {
  driver: 'file' | 'host_device';
  filename: string;
  locking?: 'on' | 'off' | 'auto';
  aio?: 'threads' | 'native' | 'io_uring';
}

/** A reference to an existing node by name, or a node defined inline. */
export type BlockdevRef = string | BlockdevOptions;

export interface BlockdevOptionsQcow2 extends BlockdevOptionsBase {
  driver: 'qcow2';
  file: BlockdevRef;
  /** A node name, an inline definition, or null for "no backing" (never read from the header then). */
  backing?: BlockdevRef | null;
  /** QEMU 8.1+: a discard keeps clusters allocated (PVE bug 6543); see qemu-features.ts. */
  'discard-no-unref'?: boolean;
}

/** PVE's filter on top of a drive: `throttle-group` names a throttle-group object (object-add / -object). */
export interface BlockdevOptionsThrottle extends BlockdevOptionsBase {
  driver: 'throttle';
  'throttle-group': string;
  file: BlockdevRef;
}

export interface BlockdevOptionsRaw extends BlockdevOptionsBase {
  driver: 'raw';
  file: BlockdevRef;
  offset?: number;
  size?: number;
}

export type BlockdevOptions = BlockdevOptionsFile | BlockdevOptionsQcow2 | BlockdevOptionsRaw | BlockdevOptionsThrottle;

/** ImageInfo (the parts volchain reads). */
export interface ImageInfo {
  filename: string;
  format: string;
  'virtual-size': number;
  'actual-size'?: number;
  'cluster-size'?: number;
  'dirty-flag'?: boolean;
  'backing-filename'?: string;
  'full-backing-filename'?: string;
  'backing-filename-format'?: string;
  'backing-image'?: ImageInfo;
  'format-specific'?: { type: string; data: Record<string, unknown> };
}

/** BlockDeviceInfo: one node of the block graph, as query-named-block-nodes and query-block report it. */
export interface BlockDeviceInfo {
  /** The filename the node was opened with (a json: pseudo-filename for some drivers). */
  file: string;
  'node-name'?: string;
  ro: boolean;
  drv: string;
  backing_file?: string;
  backing_file_depth: number;
  encrypted: boolean;
  detect_zeroes: 'off' | 'on' | 'unmap';
  image: ImageInfo;
  cache: { writeback: boolean; direct: boolean; 'no-flush': boolean };
  write_threshold: number;
}

/** BlockInfo: one block backend (a guest device's disk, or a legacy -drive). */
export interface BlockInfo {
  /** Legacy drive name; "" for backends created by -device drive=<node>. */
  device: string;
  /** The guest device's id or QOM path (since 2.10). */
  qdev?: string;
  type: string;
  removable: boolean;
  locked: boolean;
  inserted?: BlockDeviceInfo;
  'io-status'?: 'ok' | 'failed' | 'nospace';
}

export type JobType = 'commit' | 'stream' | 'mirror' | 'backup' | 'create' | 'amend' | 'snapshot-load' | 'snapshot-save' | 'snapshot-delete';

export type JobStatus = 'undefined' | 'created' | 'running' | 'paused' | 'ready' | 'standby' | 'waiting' | 'pending' | 'aborting' | 'concluded' | 'null';

/** JobInfo (query-jobs). `error` present in the concluded state means the job failed (or was cancelled). */
export interface JobInfo {
  id: string;
  type: JobType;
  status: JobStatus;
  'current-progress': number;
  'total-progress': number;
  error?: string;
}

export type TransactionAction =
  | { type: 'blockdev-snapshot'; data: { node: string; overlay: string } }
  /** Always fails: lets tests prove a transaction is all-or-nothing. */
  | { type: 'abort'; data: Record<string, never> };

export type OnError = 'report' | 'ignore' | 'enospc' | 'stop';

// ---- queries ---------------------------------------------------------------------------------------------

export function queryBlock(c: QmpExecutor, options?: ExecuteOptions): Promise<BlockInfo[]> {
  return c.execute<BlockInfo[]>('query-block', undefined, options);
}

/**
 * Every named node. `flat` (default true) leaves out the nested backing-image data, which for a long chain
 * repeats every lower layer once per node above it.
 */
export function queryNamedBlockNodes(c: QmpExecutor, options: ExecuteOptions & { flat?: boolean } = {}): Promise<BlockDeviceInfo[]> {
  const { flat = true, ...exec } = options;
  return c.execute<BlockDeviceInfo[]>('query-named-block-nodes', { flat }, exec);
}

export function queryJobs(c: QmpExecutor, options?: ExecuteOptions): Promise<JobInfo[]> {
  return c.execute<JobInfo[]>('query-jobs', undefined, options);
}

// ---- the graph ---------------------------------------------------------------------------------------------

/** Adds one node (with any children defined inline). Nodes named in `file`/`backing` must exist. */
export async function blockdevAdd(c: QmpExecutor, node: BlockdevOptions, options?: ExecuteOptions): Promise<void> {
  await c.execute('blockdev-add', node as unknown as Record<string, unknown>, options);
}

/** Removes a node added by blockdev-add (or -blockdev); fails while anything (a device, a parent) uses it. */
export async function blockdevDel(c: QmpExecutor, nodeName: string, options?: ExecuteOptions): Promise<void> {
  await c.execute('blockdev-del', { 'node-name': nodeName }, options);
}

/**
 * Installs `node` as the backing of `overlay`, and makes the device on `node` (if any) use `overlay`.
 * `overlay` must have been added with `backing: null` and must not be in use. QEMU then reopens `node`
 * read-only: the old top is frozen from here on.
 */
export async function blockdevSnapshot(c: QmpExecutor, args: { node: string; overlay: string }, options?: ExecuteOptions): Promise<void> {
  await c.execute('blockdev-snapshot', args, options);
}

export function snapshotAction(node: string, overlay: string): TransactionAction {
  return { type: 'blockdev-snapshot', data: { node, overlay } };
}

/** All actions or none; on failure QEMU reports the first failing action's error and rolls the rest back. */
export async function transaction(
  c: QmpExecutor,
  actions: readonly TransactionAction[],
  properties?: { completionMode?: 'individual' | 'grouped' },
  options?: ExecuteOptions,
): Promise<void> {
  const args: Record<string, unknown> = { actions };
  if (properties?.completionMode !== undefined) args['properties'] = { 'completion-mode': properties.completionMode };
  await c.execute('transaction', args, options);
}

// ---- block jobs ------------------------------------------------------------------------------------------

interface JobCommon {
  /** Always give one: without it QEMU names the job after the device, and two jobs on a disk collide. */
  jobId: string;
  speed?: number;
  onError?: OnError;
  filterNodeName?: string;
  /** false: wait in PENDING for job-finalize before changing the graph (default true). */
  autoFinalize?: boolean;
  /** false: stay in CONCLUDED (with the error, if any) until job-dismiss (default true). */
  autoDismiss?: boolean;
}

function jobArgs(o: JobCommon): Record<string, unknown> {
  return dropUndefined({
    'job-id': o.jobId,
    speed: o.speed,
    'on-error': o.onError,
    'filter-node-name': o.filterNodeName,
    'auto-finalize': o.autoFinalize,
    'auto-dismiss': o.autoDismiss,
  });
}

export interface BlockStreamOptions extends JobCommon {
  /** Node (or device) that receives the data: the image whose backing chain is shortened. */
  device: string;
  /** Data below and including this node stays where it is; it becomes `device`'s backing. */
  baseNode?: string;
  /**
   * The backing name written into `device`'s header on completion. Always give the exact layer name (a
   * relative name on dir storage): left out, QEMU writes the name it opened base with, i.e. an absolute path.
   */
  backingFile?: string;
}

/** Copies into `device` everything its chain holds above `baseNode`, then drops those layers from its chain. */
export async function blockStream(c: QmpExecutor, o: BlockStreamOptions, options?: ExecuteOptions): Promise<void> {
  await c.execute('block-stream', { device: o.device, ...dropUndefined({ 'base-node': o.baseNode, 'backing-file': o.backingFile }), ...jobArgs(o) }, options);
}

export interface BlockCommitOptions extends JobCommon {
  /** Device name or node name of the root node of the chain. */
  device: string;
  /** Topmost node whose data is committed; default the active layer (then the job needs job-complete). */
  topNode?: string;
  /** Node receiving the data; default the bottom of the chain. */
  baseNode?: string;
  /**
   * Backing name written into the overlay of `topNode`. An error when top is the active layer (there is no
   * overlay). Give the exact layer name, for the same reason as BlockStreamOptions.backingFile.
   */
  backingFile?: string;
}

/**
 * Commits the data of `topNode` (and everything between it and `baseNode`) into `baseNode`. Committing the
 * active layer never ends by itself: the job reaches READY and waits for job-complete (pivot to base) or
 * job-cancel. QEMU reopens `baseNode` read-write for the job.
 */
export async function blockCommit(c: QmpExecutor, o: BlockCommitOptions, options?: ExecuteOptions): Promise<void> {
  await c.execute(
    'block-commit',
    {
      device: o.device,
      ...dropUndefined({ 'top-node': o.topNode, 'base-node': o.baseNode, 'backing-file': o.backingFile }),
      ...jobArgs(o),
    },
    options,
  );
}

/** Finishes a READY job (for an active commit: the device switches to the base node). */
export async function jobComplete(c: QmpExecutor, id: string, options?: ExecuteOptions): Promise<void> {
  await c.execute('job-complete', { id }, options);
}

/**
 * Cancels a job. A stream or commit that is cancelled leaves the chain as it was (data copied so far stays
 * in the target, which is harmless: it is the same data). QEMU 7.2's job-cancel is a forced cancel: a READY
 * active commit does not pivot.
 */
export async function jobCancel(c: QmpExecutor, id: string, options?: ExecuteOptions): Promise<void> {
  await c.execute('job-cancel', { id }, options);
}

/** Removes a CONCLUDED job (started with autoDismiss false) from query-jobs. */
export async function jobDismiss(c: QmpExecutor, id: string, options?: ExecuteOptions): Promise<void> {
  await c.execute('job-dismiss', { id }, options);
}

/** Lets a PENDING job (started with autoFinalize false) make its graph changes. */
export async function jobFinalize(c: QmpExecutor, id: string, options?: ExecuteOptions): Promise<void> {
  await c.execute('job-finalize', { id }, options);
}

// ---- the VM ------------------------------------------------------------------------------------------------

/** StatusInfo: `running` is false while the guest is paused (stopped by `stop`, an I/O error, -S, ...). */
export interface StatusInfo {
  running: boolean;
  status: string;
}

export function queryStatus(c: QmpExecutor, options?: ExecuteOptions): Promise<StatusInfo> {
  return c.execute<StatusInfo>('query-status', undefined, options);
}

export async function stop(c: QmpExecutor, options?: ExecuteOptions): Promise<void> {
  await c.execute('stop', undefined, options);
}

export async function cont(c: QmpExecutor, options?: ExecuteOptions): Promise<void> {
  await c.execute('cont', undefined, options);
}

/**
 * Runs an HMP command and returns its text output. HMP reports most failures as text, not as a QMP error,
 * so callers must inspect the output. (QEMU 7.2's `qemu-io` prints its results on QEMU's stdout, not here:
 * only its errors come back.)
 */
export function humanMonitorCommand(c: QmpExecutor, commandLine: string, options?: ExecuteOptions & { cpuIndex?: number }): Promise<string> {
  const { cpuIndex, ...exec } = options ?? {};
  return c.execute<string>('human-monitor-command', dropUndefined({ 'command-line': commandLine, 'cpu-index': cpuIndex }), exec);
}

/**
 * Asks QEMU to exit. QEMU answers, then closes the connection as it exits; with a client that has a
 * `closed` promise this also waits (up to `timeoutMs`, default 10 s) until the connection is gone. Losing the
 * connection before the answer counts as success: that is what quitting looks like from here.
 */
export async function quit(c: QmpExecutor & { closed?: Promise<unknown> }, options: ExecuteOptions = {}): Promise<void> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  try {
    await c.execute('quit', undefined, options);
  } catch (err) {
    if (!(err instanceof QmpDisconnectedError)) throw err;
  }
  if (!c.closed) return;
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      c.closed,
      new Promise((_, reject) => {
        if (timeoutMs > 0) timer = setTimeout(() => reject(new QmpTimeoutError('quit: QEMU closing the connection', timeoutMs)), timeoutMs);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

function dropUndefined(o: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));
}
