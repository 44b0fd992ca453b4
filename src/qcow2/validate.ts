/**
 * Security rules for chains (DESIGN.md section 6). A guest, or whoever controls one layer, can write any
 * header it likes; these checks decide whether a header may be followed or handed to QEMU at all.
 *
 * The rules are deliberately narrower than what QEMU accepts: a layer's backing reference must be a bare
 * file/LV name in the same directory or VG that the caller's policy expects, with an explicit qcow2 format,
 * so nothing is probed, nothing outside the storage is opened, and no protocol driver is ever reached.
 */
import { dirname, join } from 'node:path';
import { NotFoundError, UnsafeImageError } from '../errors.js';
import { quoteForeign } from '../quote.js';
import { headerSteps } from './header.js';
import type { Qcow2Header } from './header-format.js';
import { openLocalImage, runStepsAsync, runStepsSync, type LocalImageFile } from './io.js';

/**
 * What a reader expects of one layer's backing reference. validateLayerHeader is the one validator of layer
 * headers: walkChain, readQcow2Layer (given a policy) and every other caller judge a header through it, so the
 * same hostile header is refused the same way whichever entry point read it.
 */
export interface BackingPolicy {
  /**
   * The layer is a base volume (a PVE template): PVE makes bases without a backing file, so any backing
   * reference is refused before the other rules, and none is ever followed out of a base.
   */
  base?: boolean;
  /**
   * Returns true when `ref` is an acceptable parent layer name for this volume. `referencedBy` is the layer
   * whose header holds `ref` (policies that only know the volume may ignore it).
   */
  isExpectedLayerName(ref: string, referencedBy: string): boolean;
  /**
   * The one exception to "same directory" (DESIGN.md section 6): PVE's linked clone on dir storage, whose
   * bottom layer names `../<basevmid>/base-<basevmid>-….<fmt>`. Returns the format the base must be read
   * with when `ref` is such a reference this policy accepts, else undefined. The header's backing format must
   * equal it; that the file is a real base volume is the caller's check (engine/read/clone-base.ts).
   */
  baseFormat?(ref: string, referencedBy: string): 'raw' | 'qcow2' | undefined;
}

export interface ChainLayer {
  /** Layer name: the caller's name for the top, the backing reference for the others. */
  name: string;
  path: string;
  header: Qcow2Header;
}

export interface WalkChainOptions {
  /** Most layers accepted, top included; default 1000. */
  maxDepth?: number;
}

export const DEFAULT_MAX_CHAIN_DEPTH = 1000;

/**
 * Throws UnsafeImageError when `header` breaks a rule: a backing file on a base volume, not version 3, unknown
 * incompatible features, an external data file, encryption, or a backing reference that is not a bare
 * expected layer name with an explicit qcow2 backing format.
 */
export function validateLayerHeader(layer: string, header: Qcow2Header, policy: BackingPolicy): void {
  if (policy.base === true && header.backingFile !== undefined) {
    throw new UnsafeImageError(
      layer,
      'is a base volume with a backing file of its own; PVE makes bases without one, and volchain follows no reference out of a base',
      header.backingFile,
    );
  }
  if (header.version !== 3) {
    throw new UnsafeImageError(
      layer,
      `qcow2 version ${header.version} (compat=0.10) is not accepted, only version 3 (compat=1.1); ` + `upgrade it with qemu-img amend -f qcow2 -o compat=1.1`,
    );
  }
  if (header.unknownIncompatibleFeatures !== 0n) {
    throw new UnsafeImageError(layer, `unknown incompatible features: ${describeBits(header, header.unknownIncompatibleFeatures)}`);
  }
  if (header.externalData || header.dataFile !== undefined) {
    throw new UnsafeImageError(layer, 'uses an external data file, which volchain does not accept', header.dataFile);
  }
  if (header.encrypted) {
    const method = header.cryptMethod === 1 ? 'AES' : 'LUKS';
    throw new UnsafeImageError(layer, `is encrypted (${method}), which volchain does not accept`);
  }
  if (header.backingFile === undefined) return;
  const ref = header.backingFile;
  const baseFormat = policy.baseFormat?.(ref, layer);
  if (baseFormat !== undefined) {
    if (header.backingFormat !== baseFormat) {
      const found = header.backingFormat === undefined ? 'missing, so QEMU would probe it' : quoteForeign(header.backingFormat);
      throw new UnsafeImageError(layer, `backing format of the base volume is ${found}, expected "${baseFormat}"`, ref);
    }
    return;
  }
  const problem = backingNameProblem(ref);
  if (problem !== undefined) throw new UnsafeImageError(layer, `backing reference ${problem}`, ref);
  if (header.backingFormat === undefined) {
    throw new UnsafeImageError(layer, 'backing reference has no backing format, so QEMU would probe it; qcow2 is required', ref);
  }
  if (header.backingFormat !== 'qcow2') {
    throw new UnsafeImageError(layer, `backing format is ${quoteForeign(header.backingFormat)}, only "qcow2" is accepted`, ref);
  }
  if (!policy.isExpectedLayerName(ref, layer)) {
    throw new UnsafeImageError(layer, 'backing reference is not an expected layer name of this volume', ref);
  }
}

/**
 * Why a backing reference is not a bare name, or undefined when it is one. Any ':' is refused, not only known
 * protocol prefixes: QEMU parses "<protocol>:" for every driver it has (nbd, http, ssh, iscsi, json, …).
 */
export function backingNameProblem(ref: string): string | undefined {
  if (ref.length === 0) return 'is empty';
  if (ref.startsWith('/')) return 'is an absolute path';
  if (ref.startsWith('json:')) return 'is a json: pseudo-protocol specification';
  if (/^[A-Za-z0-9+.-]*:/.test(ref)) return 'has a protocol prefix (nbd:, http:, …)';
  if (ref.includes('/')) return "contains '/'";
  if (ref === '.' || ref.includes('..')) return "contains '..'";
  if (ref.includes('\0')) return 'contains a NUL byte';
  // eslint-disable-next-line no-control-regex -- a backing reference with a control character is refused on purpose
  if (/[\u0000-\u001f\u007f-\u009f]/u.test(ref)) return 'contains a control character';
  // QEMU looks for a protocol prefix before the first '/' or ',' in ways that have changed over versions;
  // a layer name never needs ':', so refuse it anywhere.
  if (ref.includes(':')) return "contains ':' (QEMU may read it as a protocol prefix)";
  return undefined;
}

function describeBits(header: Qcow2Header, bits: bigint): string {
  const parts: string[] = [];
  // 64 iterations at most.
  for (let bit = 0; bit < 64; bit++) {
    if ((bits & (1n << BigInt(bit))) === 0n) continue;
    const named = header.featureNames.find((f) => f.type === 'incompatible' && f.bit === bit);
    parts.push(named ? `bit ${bit} (${quoteForeign(named.name)})` : `bit ${bit}`);
  }
  return parts.join(', ');
}

/**
 * Walks a chain from its top, reading and validating each header before following its backing reference,
 * which resolves relative to the directory of the referencing file (a dir storage's image directory, or
 * /dev/<vg>/ for LVs). Returns the layers top first.
 *
 * Throws UnsafeImageError for rule violations, loops (same name, or same device+inode through links) and
 * chains longer than maxDepth; CorruptImageError for malformed headers; NotFoundError when the top or a
 * referenced parent does not exist (the message names the referencing layer and the reference).
 */
export async function walkChain(topPath: string, topLayer: string, policy: BackingPolicy, opts: WalkChainOptions = {}): Promise<ChainLayer[]> {
  const maxDepth = opts.maxDepth ?? DEFAULT_MAX_CHAIN_DEPTH;
  const layers: ChainLayer[] = [];
  const names = new Set<string>([topLayer]);
  const inodes = new Map<string, string>();
  let name = topLayer;
  let path = topPath;
  // Each pass adds a layer; the depth check bounds the loop even if names and inodes never repeat.
  for (;;) {
    const child = layers[layers.length - 1];
    const file = openLayer(path, name, child);
    let header: Qcow2Header;
    try {
      const inode = `${file.dev}:${file.ino}`;
      const earlier = inodes.get(inode);
      if (earlier !== undefined) {
        const message = `backing chain loops: ${name} is the same file as ${earlier}`;
        throw new UnsafeImageError(child?.name ?? name, message, name);
      }
      inodes.set(inode, name);
      // Regular files: no promise round trip at all (open, fstat, read and close are synchronous).
      const readSync = file.readUpToSync;
      header = readSync !== undefined ? runStepsSync(headerSteps(file), readSync) : await runStepsAsync(headerSteps(file), file);
    } finally {
      const closing = file.release();
      if (closing !== undefined) await closing;
    }
    validateLayerHeader(name, header, policy);
    layers.push({ name, path, header });
    const ref = header.backingFile;
    if (ref === undefined) return layers;
    if (names.has(ref)) throw new UnsafeImageError(name, 'backing chain loops back to an earlier layer', ref);
    if (layers.length >= maxDepth) {
      throw new UnsafeImageError(name, `backing chain is deeper than the limit of ${maxDepth} layers`, ref);
    }
    names.add(ref);
    name = ref;
    path = join(dirname(path), ref);
  }
}

function openLayer(path: string, name: string, child: ChainLayer | undefined): LocalImageFile {
  try {
    return openLocalImage(path, name);
  } catch (err) {
    if (err instanceof NotFoundError && child !== undefined) {
      throw new NotFoundError(`${child.name}: backing file ${JSON.stringify(name)} not found (looked for ${path})`, { cause: err });
    }
    throw err;
  }
}
