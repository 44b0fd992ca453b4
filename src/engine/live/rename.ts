/**
 * Running a qmp-rename step (engine/plan/live-steps.ts): a layer below the top gets new node names and is opened under the
 * file name it has today, which is how a graph ends up with PVE's names after volchain renamed layers under a
 * running QEMU (engine/live/pve-graph.ts says when). QEMU cannot rename a node, and a file node cannot change its
 * filename without opening the file again, so, as qemu-server's blockdev_replace does:
 * 1. blockdev-add a qcow2 node `to.format` on a file node `to.protocol` (nested, so the format node owns it)
 *    for the layer's path, read-only, with the old node's backing as its backing. Read-only matters on QEMU
 *    7.2: a read-write qcow2 open takes the file's write lock, which the old node (a backing, which unshares
 *    writes) refuses; two read-only nodes on one file coexist. The file node itself is read-write (as
 *    blockdev.ts opens every protocol node) so a later commit into the layer never reopens the file.
 * 2. blockdev-reopen the format node above with `backing` = the new node (its other options as QEMU reports
 *    them). The guest's view does not change: both nodes read the same file.
 * 3. blockdev-del the old nodes that the monitor owns (nodes nested in a -blockdev, as PVE starts a VM, are
 *    freed by QEMU once their parent lets go).
 * Before 1, two QEMU 7.2 quirks: a layer opened read-write (PVE opens every layer so) holds its file's write
 * lock even below the top, so it is reopened read-only first; and QEMU reopens a file node by the name it was
 * opened with whenever the permissions on it change (file-posix raw_reconfigure_getfd), which 2 does to the old
 * nodes, so when that name is free (the plan renamed the layer away from it: `openedAs`) it is made a hard
 * link to the layer for the step, and unlinked at its end.
 * If we die after 1: a dangling new node (redo deletes it and adds it again). After 2: the old nodes may stay
 * open unused (redo deletes them). A link left behind is the same file under an old name: redo, or offline the
 * step's equivalent (a redone rename), removes it. QEMU stays consistent at every point: every node involved
 * reads the same file, the guest's view never changes.
 */
import { link, stat, unlink } from 'node:fs/promises';
import { VolchainError } from '../../errors.js';
import { protocolDriver } from '../../qmp/blockdev.js';
import type { QmpClient } from '../../qmp/client.js';
import { blockdevDel, queryNamedBlockNodes, type BlockDeviceInfo } from '../../qmp/commands.js';
import { readBlockView } from '../../qmp/live-view.js';
import { qmpHasDiscardNoUnref } from '../../qmp/qemu-features.js';
import type { LiveStep } from '../../model/plan.js';

type RenameStep = Extract<LiveStep, { kind: 'qmp-rename' }>;

/**
 * PVE sets detect-zeroes=unmap only with discard=on (Drive.pm detect_zeroes_cmdline_option), and QEMU does not
 * report `discard`: derive it from detect-zeroes (a drive with discard on and detect_zeroes=0 reads as 'ignore').
 */
function discardOf(info: BlockDeviceInfo | undefined): 'unmap' | 'ignore' {
  return info?.detect_zeroes === 'unmap' ? 'unmap' : 'ignore';
}

function cacheOf(info: BlockDeviceInfo | undefined): { direct: boolean; 'no-flush': boolean } {
  return { direct: info?.cache.direct ?? false, 'no-flush': info?.cache['no-flush'] ?? false };
}

/** blockdev-del of `node` if QEMU still has it; a nested node (freed with its parent) is left alone. */
export async function delIfPresent(c: QmpClient, node: string | undefined): Promise<void> {
  if (node === undefined) return;
  const present = (await queryNamedBlockNodes(c)).some((n) => n['node-name'] === node);
  if (!present) return;
  try {
    await blockdevDel(c, node);
  } catch (err) {
    // A nested node of a node still open elsewhere: QEMU frees it with its parent.
    if (!(err as Error).message.includes('not owned by the monitor')) throw err;
  }
}

function optionsOf(info: BlockDeviceInfo | undefined): {
  discard: 'unmap' | 'ignore';
  'detect-zeroes': string;
  cache: { direct: boolean; 'no-flush': boolean };
} {
  return { discard: discardOf(info), 'detect-zeroes': info?.detect_zeroes ?? 'unmap', cache: cacheOf(info) };
}

async function sameFile(a: string, b: string): Promise<boolean> {
  try {
    const [x, y] = await Promise.all([stat(a), stat(b)]);
    return x.dev === y.dev && x.ino === y.ino;
  } catch {
    return false;
  }
}

/**
 * `openedAs`: the path QEMU opened the old nodes under, when the plan says that name is free by now (the
 * layer was renamed away from it): see the header.
 */
export async function runQmpRename(c: QmpClient, socket: string, path: string, openedAs: string | undefined, step: RenameStep): Promise<void> {
  const view = await readBlockView(c);
  const holding = view.chains.filter((ch) => ch.layers.some((l) => l.node === step.node || l.node === step.to.format));
  const chain = holding.find((ch) => ch.devices.length > 0) ?? holding[0];
  if (!chain) throw new VolchainError('INTERNAL', `QEMU at ${socket} has no chain with node ${step.node} or ${step.to.format} (layer ${step.layer})`);
  const at = chain.layers.findIndex((l) => l.node === step.node || l.node === step.to.format);
  const layer = chain.layers[at];
  let linked = false;
  try {
    if (layer && layer.node !== step.to.format) {
      const above = chain.layers[at - 1];
      if (!above || above.driver !== 'qcow2' || above.protocolNode === undefined) {
        throw new VolchainError(
          'INTERNAL',
          `node ${step.node} of ${step.layer} has no qcow2 node above it in QEMU's chain: only layers below the top are reopened`,
        );
      }
      const byName = new Map(view.nodes.map((n) => [n['node-name'], n]));
      const old = byName.get(step.node);
      const aboveInfo = byName.get(above.node);
      const noUnref = (await qmpHasDiscardNoUnref(c)) ? { 'discard-no-unref': true } : {};
      const below = chain.layers[at + 1]?.node ?? null;
      // QEMU 7.2 reopens a file node by the name it was opened with whenever the permissions on it change
      // (file-posix raw_reconfigure_getfd), which the switch below does to the old node: give the file that
      // name again for the switch (a hard link, the same file), so that reopen finds the layer it had.
      // Regular files only: an LV's name is a device node (LVM live is untested, README).
      if (openedAs !== undefined && layer.path === openedAs && openedAs !== path && (await stat(path)).isFile()) {
        try {
          await link(path, openedAs);
          linked = true;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || !(await sameFile(path, openedAs))) throw err;
          linked = true; // left by an interrupted earlier run
        }
      }
      // A layer PVE opened read-write (every PVE layer is) keeps the file's write lock even below the top,
      // and a second node on the file is then refused: reopen it read-only first (its children by reference).
      if (!layer.readOnly) {
        await c.execute('blockdev-reopen', {
          options: [{ driver: 'qcow2', 'node-name': step.node, file: layer.protocolNode, backing: below, 'read-only': true, ...optionsOf(old), ...noUnref }],
        });
      }
      // Left by an interrupted earlier run, in no chain: add it afresh with today's backing.
      if (byName.has(step.to.format)) await blockdevDel(c, step.to.format);
      const o = optionsOf(old);
      await c.execute('blockdev-add', {
        driver: 'qcow2',
        'node-name': step.to.format,
        file: { driver: protocolDriver(path), filename: path, 'node-name': step.to.protocol, 'read-only': false, discard: o.discard, cache: o.cache },
        backing: below,
        'read-only': true,
        ...o,
        ...noUnref,
      });
      // A reopen resets every option not given: give the node above all it has (QEMU's report, PVE's defaults).
      await c.execute('blockdev-reopen', {
        options: [
          {
            driver: 'qcow2',
            'node-name': above.node,
            file: above.protocolNode,
            backing: step.to.format,
            'read-only': above.readOnly,
            ...optionsOf(aboveInfo),
            ...noUnref,
          },
        ],
      });
    }
    await delIfPresent(c, step.node);
    await delIfPresent(c, step.protocolNode);
  } finally {
    // The link is only ever a second name of the layer: drop it (also when an earlier run left it).
    if (openedAs !== undefined && openedAs !== path && (linked || (await sameFile(path, openedAs)))) await unlink(openedAs);
  }
}
