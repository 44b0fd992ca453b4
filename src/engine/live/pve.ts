/**
 * PVE 9's layout above a drive's chain (qemu-server Blockdev.pm generate_throttle_blockdev /
 * generate_throttle_group): a throttle-group object `throttle-drive-<id>` (no limits unless the VM config sets
 * some; volchain sets none) and a `throttle` node `drive-<id>` on the current layer's format node, which is what
 * the guest device names. PVE's own live snapshot and delete code looks the current layer up below that node
 * (get_node_name_below_throttle) and reopens the throttle onto new tops, so it must be there.
 */
import type { BlockdevOptionsThrottle } from '../../qmp/commands.js';
import { pveThrottleGroupId, pveTopNodeName } from '../../qmp/pve-names.js';

export function pveDriveTop(driveId: string, formatNode: string): { group: Record<string, unknown>; node: BlockdevOptionsThrottle } {
  const group = pveThrottleGroupId(driveId);
  return {
    group: { 'qom-type': 'throttle-group', id: group, limits: {} },
    node: {
      driver: 'throttle',
      'node-name': pveTopNodeName(driveId),
      'throttle-group': group,
      file: formatNode,
      discard: 'unmap',
      'detect-zeroes': 'unmap',
      'read-only': false,
    },
  };
}
