/**
 * Proxmox VE 9's names for a drive's block nodes (qemu-server, src/PVE/QemuServer/Blockdev.pm): a VM that PVE
 * started, or that `volchain qemu-args --drive-id` opened, has a `throttle` filter node `drive-<id>` on top
 * (throttle group object `throttle-drive-<id>`), and below it, for every layer, a format node `f<h>` on a file
 * node `e<h>`, where <h> = the first 30 hex digits of sha256("drive=<id>,[snap=<name>,]volid=<volid>")
 * (get_node_name; no `snap=` part for the current layer). PVE's own live snapshot and delete code
 * (VolumeChain.pm) computes these names to find the nodes again, so a graph volchain leaves behind must use
 * them for PVE's later live operations on the VM to work.
 */
import { createHash } from 'node:crypto';
import { InvalidInputError } from '../errors.js';

const PVE_HASH_HEX_DIGITS = 30;
/** Drive ids as qemu-server's is_valid_drivename accepts them (bus + index; efidisk0, tpmstate0 included). */
const DRIVE_ID_RE = /^(?:ide[0-3]|sata[0-5]|scsi(?:[0-9]|[1-2][0-9]|30)|virtio(?:[0-9]|1[0-5])|efidisk0|tpmstate0)$/;

export function isValidDriveId(id: string): boolean {
  return DRIVE_ID_RE.test(id);
}

export function checkDriveId(id: string): string {
  if (!isValidDriveId(id)) {
    throw new InvalidInputError(`drive id ${JSON.stringify(id)} is not a PVE drive name (ide0-3, sata0-5, scsi0-30, virtio0-15, efidisk0, tpmstate0)`);
  }
  return id;
}

/** PVE's node name of one layer: `f` (format) or `e` (file) + hash; `snapshot` undefined for the current layer. */
export function pveNodeName(type: 'fmt' | 'file', driveId: string, volid: string, snapshot?: string): string {
  const info = `drive=${driveId},${snapshot !== undefined ? `snap=${snapshot},` : ''}volid=${volid}`;
  return `${type === 'fmt' ? 'f' : 'e'}${createHash('sha256').update(info).digest('hex').slice(0, PVE_HASH_HEX_DIGITS)}`;
}

export function pveLayerNodeNames(driveId: string, volid: string, snapshot?: string): { format: string; protocol: string } {
  return { format: pveNodeName('fmt', driveId, volid, snapshot), protocol: pveNodeName('file', driveId, volid, snapshot) };
}

/** The throttle filter node on top of a drive (what the guest device's `drive=` names). */
export function pveTopNodeName(driveId: string): string {
  return `drive-${driveId}`;
}

/** The drive id of a top node name `drive-<id>`, or undefined. */
export function parsePveTopNodeName(node: string): string | undefined {
  const m = /^drive-(.+)$/.exec(node);
  return m && isValidDriveId(m[1] as string) ? m[1] : undefined;
}

/** The id of the throttle-group object the throttle node names. */
export function pveThrottleGroupId(driveId: string): string {
  return `throttle-drive-${driveId}`;
}
