/** Turning library results into text for people. JSON output never goes through here. */
import { formatSize } from '../naming/index.js';
import { describeStep } from '../engine/plan/describe-step.js';
import type { Plan } from '../model/plan.js';
import type { ActivationResult, SnapshotListing, VolumeInfo } from '../engine/volchain.js';
import type { VolumeListEntry } from '../engine/read/listing.js';
import type { PlanSpace } from '../model/plan.js';
import type { LayerFlags } from '../engine/read/layer-guard.js';
import type { StorageDescription } from '../config/index.js';
import type { JournalLeftover } from '../journal/record.js';
import { RESERVED_SNAPSHOT_NAMES } from '../naming/index.js';
import { escapeUnsafe, quoteForeign } from '../quote.js';

/**
 * A snapshot name as listings show it. Internal snapshot names come from the image's snapshot table, which
 * anyone who wrote the image chose: a newline there would fake a line of the tree, `|-- ` a branch, and a
 * snapshot called `current` the current layer. Plain names (a letter, then letters, digits, '_' or '-', as PVE
 * and volchain name snapshots) are shown bare; any other name, and a reserved word in any case, is shown
 * quoted and escaped like a JSON string, cut after 64 characters.
 */
export function showSnapshotName(name: string): string {
  const plain = /^[A-Za-z][A-Za-z0-9_-]{0,63}$/.test(name) && !RESERVED_SNAPSHOT_NAMES.includes(name.toLowerCase());
  return plain ? name : quoteForeign(name);
}

export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}

export function renderStorages(storages: StorageDescription[]): string {
  return table(
    ['ID', 'TYPE', 'LOCATION', 'CONTENT', 'CHAIN', 'SHARED', 'STATE'],
    storages.map((s) => [
      s.id,
      s.type,
      s.path ?? (s.vgname !== null ? `vg ${s.vgname}` : '-'),
      s.content.join(',') || '-',
      s.snapshotAsVolumeChain ? 'yes' : 'no',
      s.shared ? 'yes' : 'no',
      !s.supported ? 'unsupported' : s.disabled ? 'disabled' : !s.availableHere ? 'not on this node' : s.mounted === false ? 'not mounted' : 'active',
    ]),
  );
}

/**
 * The volume table; a volume that could not be read gets '?' in the cells it has no value for, and its problem
 * (or an unfinished operation on it) on a line of its own below the table, so one bad volume reads as such.
 */
export function renderVolumes(volumes: VolumeListEntry[]): string {
  if (volumes.length === 0) return '(no volumes)';
  const unknown = '?';
  const lines = [
    table(
      ['VOLID', 'FORMAT', 'SIZE', 'USED', 'CHAIN USED', 'SNAPSHOTS', 'SNAP USED', 'SNAP FULL-SIZE'],
      volumes.map((v) =>
        v.problem === null
          ? [
              v.volid,
              v.format,
              formatSize(v.virtualSize),
              formatSize(v.usedBytes),
              formatSize(v.chainUsedBytes),
              String(v.snapshots.length),
              formatSize(v.snapshotBytes),
              formatSize(v.fullSizeSnapshotBytes),
            ]
          : [v.volid, v.format ?? unknown, fileSize(v), unknown, unknown, unknown, unknown, unknown],
      ),
    ),
  ];
  const notes = volumes.flatMap((v) => {
    if (v.problem !== null) return [`${v.volid}: cannot be read (${v.problem.code}): ${v.problem.message}`];
    const p = v.pendingOperation;
    return p ? [`${v.volid}: UNFINISHED ${p.operation} started ${p.startedAt} by pid ${p.pid} on ${p.host} (volchain repair)`] : [];
  });
  // Templates and linked clones (PVE on dir): which base a clone reads, which clones a base has.
  for (const v of volumes) {
    if (v.template) notes.push(`${v.volid}: template base volume (read-only), linked clones: ${v.clones.length > 0 ? v.clones.join(', ') : '(none)'}`);
    else if (v.problem === null && v.base !== null) notes.push(`${v.volid}: linked clone of ${v.base}`);
  }
  if (notes.length > 0) lines.push('', ...notes);
  return lines.join('\n');
}

/** A file volchain does not read as a volume (a vmdk...) still shows the space it takes: its size from lstat. */
function fileSize(v: VolumeListEntry): string {
  return 'fileBytes' in v && typeof v.fileBytes === 'number' ? formatSize(v.fileBytes) : '?';
}

export function renderInfo(info: VolumeInfo): string {
  const rows: [string, string][] = [
    ['volid', info.volid],
    ['path', info.path],
    ['format', info.format],
    ['virtual size', `${formatSize(info.virtualSize)} (${info.virtualSize} bytes)`],
    ['used', `${formatSize(info.usedBytes)} (${info.usedBytes} bytes)`],
    ['chain used', `${formatSize(info.chainUsedBytes)} (${info.chainUsedBytes} bytes)`],
    ['snapshots use', `${formatSize(info.snapshotBytes)} (${info.snapshotBytes} bytes)`],
    ['at full size', `${formatSize(info.fullSizeSnapshotBytes)} (${info.fullSizeSnapshotBytes} bytes, snapshot layers as PVE 9 allocates them)`],
    ['snapshot mode', info.snapshotMode],
    ['snapshots', info.snapshots.length > 0 ? info.snapshots.map(showSnapshotName).join(', ') : '(none)'],
  ];
  if (info.parentSnapshot !== null) rows.push(['based on', showSnapshotName(info.parentSnapshot)]);
  if (info.template) rows.push(['template', `base volume (read-only); linked clones: ${info.clones.length > 0 ? info.clones.join(', ') : '(none)'}`]);
  if (info.base !== null) rows.push(['linked clone of', info.base]);
  if (info.pendingOperation !== null) {
    const p = info.pendingOperation;
    rows.push(['UNFINISHED', `${p.operation} started ${p.startedAt} by pid ${p.pid} on ${p.host} (volchain repair)`]);
  }
  for (const l of info.layers) {
    const who = l.snapshot === null ? 'current' : `snapshot ${l.snapshot}`;
    if (l.corrupt === true) rows.push(['CORRUPT', `${who} (${l.layer}): run 'qemu-img check -r all -f qcow2' on it before changing the volume`]);
    // In internal mode the current layer's internal snapshots are the volume's snapshots, listed above.
    const internal = info.snapshotMode === 'internal' ? [] : (l.internalSnapshots ?? []);
    if (internal.length > 0) rows.push([`internal in ${l.snapshot ?? 'current'}`, internal.map((s) => showSnapshotName(s.name)).join(', ') + ` (${l.layer})`]);
  }
  for (const c of info.checks ?? []) {
    const verdict = c.clean ? 'clean' : `${c.corruptions} corruption(s), ${c.leaks} leak(s)`;
    rows.push([`check ${c.snapshot === null ? 'current' : showSnapshotName(c.snapshot)}`, `${verdict} (${c.layer})`]);
  }
  const width = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join('\n');
}

/** In place of a layer's data size when the layer cannot be opened here (tags say the rest). */
const UNREADABLE = 'data size unknown: LV not active on this host';

/** The snapshot tree, oldest at the top, with the current layer marked where it hangs. */
export function renderSnapshotTree(listing: SnapshotListing): string {
  // Flags of a layer (engine/read/layer-guard.ts): QEMU's corrupt bit, and internal snapshots inside a chain layer (in
  // internal mode those are the volume's snapshots themselves, listed as such).
  const flags = (l: LayerFlags): string => {
    const internal = listing.mode === 'internal' ? [] : (l.internalSnapshots ?? []);
    return (
      (l.corrupt === true ? '  [CORRUPT: qemu-img check -r]' : '') +
      (internal.length > 0 ? `  [internal snapshots: ${internal.map((s) => showSnapshotName(s.name)).join(', ')}]` : '')
    );
  };
  const lines = [`${listing.volid}${listing.mode === 'internal' ? ' (internal snapshots)' : ''}`];
  const byName = new Map(listing.snapshots.map((s) => [s.name, s]));
  const label = (name: string): string => {
    if (name === 'current') {
      const written = listing.current.definedBytes;
      const parent = listing.current.parent === null ? null : showSnapshotName(listing.current.parent);
      const since = parent === null ? ' creation' : parent.startsWith('"') ? ` ${parent}` : ` '${parent}'`;
      return `current  (${written === null ? UNREADABLE : `${formatSize(written)} written since${since}`})${flags(listing.current)}  <- you are here`;
    }
    const s = byName.get(name);
    return s
      ? `${showSnapshotName(s.name)}  (${s.definedBytes === null ? UNREADABLE : `${formatSize(s.definedBytes)} data`})${flags(s)}`
      : showSnapshotName(name);
  };
  const children = (name: string): string[] => {
    // In `children`, 'current' is the current layer (a leaf), never a snapshot of that name.
    if (listing.mode === 'internal' || name === 'current') return [];
    const s = byName.get(name);
    return s ? s.children : [];
  };
  const walk = (name: string, prefix: string, last: boolean, top: boolean): void => {
    lines.push(top ? label(name) : `${prefix}${last ? '`-- ' : '|-- '}${label(name)}`);
    const kids = children(name);
    kids.forEach((k, i) => walk(k, top ? '' : prefix + (last ? '    ' : '|   '), i === kids.length - 1, false));
  };
  if (listing.mode === 'internal') {
    for (const s of listing.snapshots) lines.push(`* ${showSnapshotName(s.name)}`);
    lines.push(`* ${label('current')}`);
    return lines.join('\n');
  }
  const roots = listing.snapshots.filter((s) => s.parent === null).map((s) => s.name);
  if (listing.current.parent === null) roots.push('current');
  for (const root of roots) walk(root, '', true, true);
  return lines.join('\n');
}

export function renderPlan(plan: Plan): string {
  const lines = [`plan: ${plan.summary}`];
  plan.steps.forEach((s, i) => lines.push(`  ${i + 1}. ${describeStep(s)}`));
  lines.push(`bytes moved: ${formatSize(plan.bytesMoved)} (${plan.bytesMoved} bytes)`);
  if (plan.strategies) {
    lines.push('strategies considered:');
    for (const s of plan.strategies) {
      const chosen = plan.summary.endsWith(`by ${s.strategy}`) ? '*' : ' ';
      const cost = s.valid ? formatSize(s.bytesMoved) : 'invalid';
      lines.push(`  ${chosen} ${s.strategy.padEnd(16)} ${cost.padEnd(10)} ${s.reason}`);
    }
  }
  if (plan.space) lines.push(...renderSpace(plan.space));
  return lines.join('\n');
}

/** A dry run's space estimate (LVM): what volchain takes, against PVE 9's full-size layers. */
export function renderSpace(space: PlanSpace, label = 'space'): string[] {
  const net = (bytes: number): string => (bytes >= 0 ? `takes ${formatSize(bytes)}` : `frees ${formatSize(-bytes)}`);
  const released =
    space.releasedBytes === null
      ? 'then shrinks the frozen layer to its image end (how much it gives back is known once the LV is active)'
      : `gives back ${formatSize(space.releasedBytes)} by shrinking the frozen layer to its image end`;
  return [
    `${label}: allocates ${formatSize(space.allocatedBytes)} for the new layer(s), ${released}` +
      (space.netBytes === null ? '' : `: ${net(space.netBytes)} in all`),
    `${' '.repeat(label.length)}  with PVE 9's full-size layers: allocates ${formatSize(space.fullSize.allocatedBytes)}, ` +
      `gives back ${formatSize(space.fullSize.releasedBytes)}: ${net(space.fullSize.netBytes)} in all`,
  ];
}

export function renderActivation(result: ActivationResult, action: 'activate' | 'deactivate'): string {
  if (result.active === null) return `${result.volid}: storage '${result.storage}' needs no activation, nothing to do`;
  const n = result.layers.length;
  return `${action}d ${result.volid} (${n} layer${n === 1 ? '' : 's'})`;
}

/** A `status` line for a journal file that is not a record (see JournalLeftover). */
export function renderJournalLeftover(f: JournalLeftover): string {
  // The file's name is whatever someone wrote into the journal directory: keep it on one line, escapes shown.
  const path = escapeUnsafe(f.path);
  const where = f.storage !== undefined ? `storage '${f.storage}'` : 'journal';
  return f.kind === 'set-aside'
    ? `${where}: journal file set aside as unreadable: ${path} (not a valid record; look at it, then delete it or run 'volchain repair --all' for leftovers of its VM)`
    : `${where}: temp file of an interrupted journal write: ${path} ('volchain repair --all' removes it)`;
}
