/**
 * The import's own steps (engine/planners/import.ts): `import-layer` (a new temporary layer filled with one
 * layer of the chain stream) and `verify-import` (the stream's trailer, every temporary's header and
 * structure). The stream is the running import's input: plans are data written to the journal, a stream is
 * not, so the operation registers it here under the plan's `feed` id while the plan runs. Without it (repair,
 * after a crash) these steps cannot run; step-rules.ts walks them back instead.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Backend } from '../../backends/backend.js';
import { CorruptImageError, VolchainError } from '../../errors.js';
import type { Step } from '../../model/plan.js';
import { readQcow2Header, validateLayerHeader } from '../../qcow2/index.js';
import { chainImageOpts, checkLayerOpts, writeIntoLayer, type LayerWrite } from '../../tools/qemu-layer-io.js';
import type { ChainManifest } from '../planners/import.js';
import { SECTOR, streamError, type ChainStreamReader } from './chain-stream.js';

export interface ImportFeed {
  reader: ChainStreamReader;
  manifest: ChainManifest;
  /** Temporary layer name of each manifest layer (the plan's), for the backing chains qemu-io opens. */
  temps: string[];
}

const feeds = new Map<string, ImportFeed>();

/** Makes `feed` readable by the steps naming `id` until the returned function is called. */
export function registerFeed(id: string, feed: ImportFeed): () => void {
  feeds.set(id, feed);
  return () => feeds.delete(id);
}

/** Writes collected before one qemu-io run: at most this many bytes of data files, or this many commands. */
const BATCH_BYTES = 64 * 1024 * 1024;
const BATCH_WRITES = 2000;

type ImportStep = Extract<Step, { kind: 'import-layer' | 'verify-import' }>;

export async function runImportStep(
  backend: Backend,
  vmid: number,
  step: ImportStep,
  opts: { onProgress?: ((percent: number) => void) | undefined; redo: boolean },
): Promise<void> {
  const feed = feeds.get(step.feed);
  if (!feed) {
    throw new VolchainError(
      'INTERNAL',
      `the import stream of this plan is gone (step ${step.kind}): an interrupted import is walked back by 'volchain repair'`,
    );
  }
  if (step.kind === 'import-layer') return importLayer(backend, vmid, step, feed, opts);
  // The trailer: the SHA-256 of every byte of the stream, and nothing after it. A truncated stream fails here
  // at the latest, before any layer takes its name.
  const trailer = await feed.reader.next();
  if (trailer.tag !== 'T') throw streamError(`has a '${trailer.tag}' record where its trailer should be`);
  await feed.reader.expectEnd();
  // Our own temporaries, but judged like any image before they become a volume: version 3, no external data
  // file, no encryption, and exactly the backing reference the plan gave (the parent's final name).
  for (const { layer, backingName } of step.layers) {
    const header = await readQcow2Header(backend.layerPath(vmid, layer), layer);
    validateLayerHeader(layer, header, { isExpectedLayerName: (ref) => ref === backingName });
    if ((header.backingFile ?? null) !== backingName)
      throw new CorruptImageError(layer, `names backing ${header.backingFile ?? '(none)'}, expected ${backingName ?? '(none)'}`);
    const check = await checkLayerOpts(chainImageOpts(chainOf(backend, vmid, feed, feed.temps.indexOf(layer))));
    if (!check.clean) throw new CorruptImageError(layer, `is not a clean qcow2 image (${check.corruptions} corruption(s), ${check.leaks} leak(s))`);
  }
}

/** Paths of temporary `index` and its ancestors' temporaries, itself first. */
function chainOf(backend: Backend, vmid: number, feed: ImportFeed, index: number): string[] {
  const out: string[] = [];
  for (let i: number | null = index; i !== null; i = feed.manifest.layers[i]?.parent ?? null) {
    out.push(backend.layerPath(vmid, feed.temps[i] as string));
  }
  return out;
}

async function importLayer(
  backend: Backend,
  vmid: number,
  step: Extract<Step, { kind: 'import-layer' }>,
  feed: ImportFeed,
  opts: { onProgress?: ((percent: number) => void) | undefined; redo: boolean },
): Promise<void> {
  const want = feed.manifest.layers[step.index];
  if (!want) throw new VolchainError('INTERNAL', `no layer ${step.index} in the manifest`);
  // If we die in here, the target has a partial layer under its temporary name only: repair removes it
  // (and every other temporary of the import).
  if (opts.redo) await backend.removeLayer(vmid, step.layer);
  if (step.backingName === null) await backend.createImage(vmid, step.layer, 'qcow2', step.sizeBytes);
  else await backend.createOverlay(vmid, step.layer, step.backingName, step.sizeBytes);
  try {
    await fillLayer(backend, vmid, step, feed, want, opts.onProgress);
  } catch (err) {
    // The step fails whole: the executor undoes the steps before it, this one removes its own partial layer.
    await backend.removeLayer(vmid, step.layer).catch(() => undefined);
    throw err;
  }
  await backend.layerChanged(vmid, step.layer);
}

async function fillLayer(
  backend: Backend,
  vmid: number,
  step: Extract<Step, { kind: 'import-layer' }>,
  feed: ImportFeed,
  want: ChainManifest['layers'][number],
  onProgress: ((percent: number) => void) | undefined,
): Promise<void> {
  const start = await feed.reader.next();
  if (start.tag !== 'L' || start.index !== step.index) {
    throw streamError(`has ${start.tag === 'L' ? `layer ${start.index}` : `a '${start.tag}' record`} where layer ${step.index} should start`);
  }
  const imageOpts = chainImageOpts(chainOf(backend, vmid, feed, step.index));
  const dir = await mkdtemp(join(tmpdir(), 'volchain-import-'));
  let batch: LayerWrite[] = [];
  let batchBytes = 0;
  const flush = async (): Promise<void> => {
    await writeIntoLayer(imageOpts, batch);
    await Promise.all(batch.flatMap((w) => (w.kind === 'data' ? [rm(w.file, { force: true })] : [])));
    batch = [];
    batchBytes = 0;
  };
  let end = 0;
  let data = 0;
  let zero = 0;
  let extents = 0;
  try {
    for (;;) {
      const record = await feed.reader.next();
      if (record.tag === 'E') break;
      if (record.tag !== 'D' && record.tag !== 'Z') throw streamError(`has a '${record.tag}' record inside layer ${step.index}`);
      const length = record.tag === 'D' ? record.data.length : record.length;
      // Extents in order, inside the disk, sector-aligned, never more than the manifest announced (which
      // the space check was made with).
      if (record.offset < end || record.offset % SECTOR !== 0 || length % SECTOR !== 0 || length === 0 || record.offset + length > want.virtualSize) {
        throw streamError(`layer ${step.index}: extent ${record.offset}+${length} is out of order, unaligned or beyond the disk's ${want.virtualSize} bytes`);
      }
      end = record.offset + length;
      extents++;
      if (record.tag === 'D') {
        data += length;
        const file = join(dir, String(extents));
        await writeFile(file, record.data);
        batch.push({ kind: 'data', offset: record.offset, length, file });
        batchBytes += length;
      } else {
        zero += length;
        batch.push({ kind: 'zero', offset: record.offset, length });
      }
      if (data > want.dataBytes || zero > want.zeroBytes || extents > want.extents) {
        throw streamError(
          `layer ${step.index} holds more than its manifest says (${want.dataBytes} data, ${want.zeroBytes} zero bytes, ${want.extents} extents)`,
        );
      }
      if (batchBytes >= BATCH_BYTES || batch.length >= BATCH_WRITES) await flush();
      if (want.dataBytes > 0) onProgress?.(Math.min(100, (100 * data) / want.dataBytes));
    }
    if (data !== want.dataBytes || zero !== want.zeroBytes || extents !== want.extents) {
      throw streamError(`layer ${step.index} holds less than its manifest says (${data} of ${want.dataBytes} data, ${zero} of ${want.zeroBytes} zero bytes)`);
    }
    await flush();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
