/**
 * One layer's own extents, out and in, for the chain stream (export/import):
 * - out: `qemu-img map --output=json` of the layer (with its chain, read-only), keeping what the layer itself
 *   allocates (depth 0, present): data, with where it lies in the layer's file, and explicit zeroes;
 * - in: `qemu-io` writes into a layer opened through --image-opts with its backing chain given explicitly
 *   (the import's temporaries carry their parents' final names, which do not exist yet), data from small
 *   files, zeroes with `write -z` (a zero cluster hiding its parent's data stays a zero cluster).
 */
import { InvalidInputError, NotSupportedError } from '../errors.js';
import { run } from './runner.js';

export interface OwnExtent {
  /** Guest offset and length. */
  start: number;
  length: number;
  /** Data the layer holds (at `hostOffset` in its file), or zeroes it defines over its parent. */
  kind: 'data' | 'zero';
  hostOffset?: number;
  /** Data a linked clone's bottom layer reads from its base volume (`hostOffset` in the base's file). */
  inBase?: true;
}

interface MapEntry {
  start: number;
  length: number;
  depth: number;
  present?: boolean;
  zero: boolean;
  data: boolean;
  offset?: number;
}

/**
 * The layer's own extents from `qemu-img map --output=json` output (pure; table-tested). `withBase`: the
 * layer is a linked clone's bottom layer, whose stream layer has no parent: what it reads from its base
 * (depth 1, a base never has a backing file of its own) is carried as its data too, so the imported layer
 * stands alone; the base's zeroes need no record (a bottom layer reads zeroes wherever it holds nothing).
 */
export function ownExtentsOfMap(json: string, withBase = false): OwnExtent[] {
  const entries = JSON.parse(json) as MapEntry[];
  if (!Array.isArray(entries)) throw new InvalidInputError('qemu-img map printed no list');
  const out: OwnExtent[] = [];
  for (const e of entries) {
    if (withBase && e.depth === 1 && e.present !== false && e.data) {
      if (e.offset === undefined)
        throw new NotSupportedError(
          `the base volume has data at guest offset ${e.start} without a file offset (compressed clusters?): export needs uncompressed layers`,
        );
      out.push({ start: e.start, length: e.length, kind: 'data', hostOffset: e.offset, inBase: true });
      continue;
    }
    // depth 0: the layer itself answers; `present` false there is an unallocated part of a bottom layer.
    if (e.depth !== 0 || e.present === false) continue;
    if (e.data) {
      // Data QEMU cannot locate in the file (compressed clusters) cannot be read from it directly.
      if (e.offset === undefined)
        throw new NotSupportedError(
          `the layer has data at guest offset ${e.start} without a file offset (compressed clusters?): export needs uncompressed layers`,
        );
      out.push({ start: e.start, length: e.length, kind: 'data', hostOffset: e.offset });
    } else if (e.zero) {
      out.push({ start: e.start, length: e.length, kind: 'zero' });
    }
  }
  return out;
}

/** `qemu-img map` of qcow2 layer `path` (its backing chain opened read-only, formats explicit). */
export async function ownExtents(path: string, withBase = false): Promise<OwnExtent[]> {
  const r = await run('qemu-img', ['map', '--output=json', '-U', '-f', 'qcow2', path]);
  return ownExtentsOfMap(r.stdout, withBase);
}

/**
 * --image-opts for qcow2 `chain[0]` whose backing chain is `chain[1..]` (parent first), overriding whatever
 * backing names the headers carry. Block devices (LVM) get the host_device protocol.
 */
export function chainImageOpts(chain: readonly string[]): string {
  const parts: string[] = [];
  chain.forEach((path, depth) => {
    const key = 'backing.'.repeat(depth);
    const protocol = path.startsWith('/dev/') ? 'host_device' : 'file';
    parts.push(`${key}driver=qcow2`, `${key}file.driver=${protocol}`, `${key}file.filename=${path.replaceAll(',', ',,')}`);
  });
  return parts.join(',');
}

export type LayerWrite = { kind: 'data'; offset: number; length: number; file: string } | { kind: 'zero'; offset: number; length: number };

/** Runs `writes` into the image `imageOpts` names, in one qemu-io process; fails unless every write was done. */
export async function writeIntoLayer(imageOpts: string, writes: readonly LayerWrite[]): Promise<void> {
  if (writes.length === 0) return;
  // Writeback cache and one flush at the end: qemu-io's default (writethrough) flushes after every write,
  // about 8x slower for hundreds of writes; the flush makes the batch durable before the step is done.
  const args = ['-t', 'writeback', '--image-opts', imageOpts];
  for (const w of writes) {
    if (/\s/.test(w.kind === 'data' ? w.file : '')) throw new InvalidInputError('a data file path for qemu-io has whitespace');
    args.push('-c', w.kind === 'data' ? `write -q -s ${w.file} ${w.offset} ${w.length}` : `write -q -z ${w.offset} ${w.length}`);
  }
  args.push('-c', 'flush');
  const r = await run('qemu-io', args);
  // qemu-io reports a failed command on stdout and still may exit 0 in older versions: nothing may be printed.
  if (r.stdout.trim() !== '') throw new InvalidInputError(`qemu-io writing a layer said: ${r.stdout.trim().split('\n')[0] ?? ''}`);
}

export interface LayerCheck {
  clean: boolean;
  corruptions: number;
  leaks: number;
}

/** `qemu-img check` of the image `imageOpts` names (exit 2: corruptions, 3: leaks; both reported, not thrown). */
export async function checkLayerOpts(imageOpts: string): Promise<LayerCheck> {
  const r = await run('qemu-img', ['check', '--output=json', '--image-opts', imageOpts], { okExitCodes: [2, 3] });
  const j = JSON.parse(r.stdout) as { corruptions?: number; leaks?: number; 'check-errors'?: number };
  const corruptions = (j.corruptions ?? 0) + (j['check-errors'] ?? 0);
  const leaks = j.leaks ?? 0;
  return { clean: corruptions === 0 && leaks === 0, corruptions, leaks };
}
