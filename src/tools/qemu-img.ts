/**
 * Typed wrappers around the qemu-img commands volchain uses. Formats are always passed explicitly (-f, -F)
 * so QEMU never probes an image; callers validate every header in a chain before calling any of these.
 */
import { run, type RunOptions } from './runner.js';

/** Options for every new qcow2 image (DESIGN.md section 2): 128k clusters with 32 subclusters of 4k. */
export const QCOW2_CREATE_OPTIONS = 'cluster_size=128k,extended_l2=on';

export type Preallocation = 'off' | 'metadata' | 'falloc' | 'full';

export interface ProgressOptions {
  onProgress?: (percent: number) => void;
}

function progressArgs(opts: ProgressOptions): string[] {
  return opts.onProgress ? ['-p'] : ['-q'];
}

/** For the commands that move data (commit, rebase): killed with volchain (RunOptions.stopWithCaller). */
function runOpts(opts: ProgressOptions): RunOptions {
  return { stopWithCaller: true, ...(opts.onProgress ? { onProgress: opts.onProgress } : {}) };
}

export async function createImage(path: string, format: 'qcow2' | 'raw', sizeBytes: number, preallocation: Preallocation | undefined): Promise<void> {
  const args = ['create', '-q', '-f', format];
  const options: string[] = format === 'qcow2' ? [QCOW2_CREATE_OPTIONS] : [];
  if (preallocation !== undefined) options.push(`preallocation=${preallocation}`);
  if (options.length > 0) args.push('-o', options.join(','));
  args.push(path, String(sizeBytes));
  await run('qemu-img', args);
}

/**
 * A qcow2 overlay whose header names `backingName` (relative, same directory). `-u` because the backing name
 * may not exist yet: during snapshot create it is the name the old top is about to receive.
 */
export async function createOverlay(path: string, backingName: string, sizeBytes: number, preallocation?: Preallocation): Promise<void> {
  // Preallocation with a backing file needs extended_l2=on (QEMU), which QCOW2_CREATE_OPTIONS always sets.
  const options = preallocation === undefined ? QCOW2_CREATE_OPTIONS : `${QCOW2_CREATE_OPTIONS},preallocation=${preallocation}`;
  await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', backingName, '-u', '-o', options, path, String(sizeBytes)]);
}

/** Writes the data of `topPath` into its backing file. `-d`: the top is discarded afterwards, skip emptying it. */
export async function commitIntoBacking(topPath: string, opts: ProgressOptions = {}): Promise<void> {
  await run('qemu-img', ['commit', ...progressArgs(opts), '-f', 'qcow2', '-d', topPath], runOpts(opts));
}

/**
 * Safe rebase: copies into `path` whatever its view would lose by switching to `newBackingName`
 * (undefined = no backing file at all), then rewrites the header.
 */
export async function rebase(
  path: string,
  newBackingName: string | undefined,
  opts: ProgressOptions = {},
  backingFormat: 'raw' | 'qcow2' = 'qcow2',
): Promise<void> {
  // backingFormat is raw only for a linked clone's base volume (PVE templates may be raw).
  const backing = newBackingName === undefined ? ['-b', ''] : ['-b', newBackingName, '-F', backingFormat];
  await run('qemu-img', ['rebase', ...progressArgs(opts), '-f', 'qcow2', ...backing, path], runOpts(opts));
}

export async function resizeImage(path: string, format: 'qcow2' | 'raw', sizeBytes: number): Promise<void> {
  await run('qemu-img', ['resize', '-q', '-f', format, path, String(sizeBytes)]);
}

export interface CheckResult {
  clean: boolean;
  corruptions: number;
  leaks: number;
  imageEndOffset: number | undefined;
}

export async function checkImage(path: string): Promise<CheckResult> {
  // Exit 2 = corruptions, 3 = leaks only: both are findings to report, not failures of the command.
  const { stdout } = await run('qemu-img', ['check', '-f', 'qcow2', '--output=json', path], { okExitCodes: [2, 3] });
  const parsed = JSON.parse(stdout) as { corruptions?: number; leaks?: number; 'image-end-offset'?: number };
  const corruptions = parsed.corruptions ?? 0;
  const leaks = parsed.leaks ?? 0;
  return { clean: corruptions === 0 && leaks === 0, corruptions, leaks, imageEndOffset: parsed['image-end-offset'] };
}

/** Internal (in-file) snapshots, used when a storage does not set snapshot-as-volume-chain. */
export async function internalSnapshot(path: string, action: 'create' | 'apply' | 'delete', name: string): Promise<void> {
  const flag = { create: '-c', apply: '-a', delete: '-d' }[action];
  // `qemu-img snapshot` has no -f before QEMU 8.x (7.2 rejects it): --image-opts pins the format instead.
  // In an option string ',' separates options, so a ',' in the path is doubled.
  const image = `driver=qcow2,file.driver=file,file.filename=${path.replace(/,/g, ',,')}`;
  await run('qemu-img', ['snapshot', '-q', '--image-opts', flag, name, image]);
}
