/**
 * What Proxmox VE 9 gives QEMU for a dir qcow2 disk, written from qemu-server's Perl source (not from volchain's
 * code), for the live tests of VMs that PVE started: get_node_name and generate_drive_blockdev (Blockdev.pm).
 */
import { createHash } from 'node:crypto';
import { runCommand } from './helpers.js';

/** qemu-server's get_node_name: `f`/`e` + the first 30 hex digits of sha256("drive=<id>,[snap=<name>,]volid=<volid>"). */
export function pveName(type: 'f' | 'e', drive: string, volid: string, snap?: string): string {
  const info = `drive=${drive},${snap !== undefined ? `snap=${snap},` : ''}volid=${volid}`;
  return type + createHash('sha256').update(info).digest('hex').slice(0, 30);
}

export async function qemuHasDiscardNoUnref(): Promise<boolean> {
  const r = await runCommand('qemu-system-x86_64', ['--version']);
  const m = /version (\d+)\.(\d+)/.exec(r.stdout);
  return m !== null && (Number(m[1]) > 8 || (Number(m[1]) === 8 && Number(m[2]) >= 1));
}

/**
 * generate_drive_blockdev for a drive with `discard=on,cache=writeback` (tmpfs has no O_DIRECT, so not PVE's
 * default cache=none): throttle -> fmt -> file, the snapshot chain nested as `backing`
 * (generate_backing_chain_blockdev), every node read-write as PVE opens them, `discard-no-unref` on qcow2
 * nodes of a snapshot-as-volume-chain storage where the QEMU has it. Layers given top first as
 * [snapshot name | undefined, path].
 */
export function pveDriveBlockdev(
  drive: string,
  volid: string,
  layers: readonly [string | undefined, string][],
  discardNoUnref: boolean,
): Record<string, unknown> {
  const common = { discard: 'unmap', 'detect-zeroes': 'unmap', 'read-only': false };
  const cache = { direct: false, 'no-flush': false };
  const fmt = (i: number): Record<string, unknown> => {
    const [snap, path] = layers[i] as [string | undefined, string];
    const node: Record<string, unknown> = {
      'node-name': pveName('f', drive, volid, snap),
      driver: 'qcow2',
      file: { driver: 'file', filename: path, cache, aio: 'threads', 'node-name': pveName('e', drive, volid, snap), ...common },
      cache,
      ...common,
      ...(discardNoUnref ? { 'discard-no-unref': true } : {}),
    };
    if (i + 1 < layers.length) node['backing'] = fmt(i + 1);
    return node;
  };
  return { driver: 'throttle', 'node-name': `drive-${drive}`, 'throttle-group': `throttle-drive-${drive}`, file: fmt(0), ...common };
}

/** The throttle group object PVE creates for a drive (no limits set). */
export function pveThrottleGroup(drive: string): Record<string, unknown> {
  return { id: `throttle-drive-${drive}`, limits: {}, 'qom-type': 'throttle-group' };
}
