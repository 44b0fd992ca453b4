/**
 * Which volumes a VM-wide operation (`vm snapshot|rollback|delsnapshot`, and the live variants) acts on.
 *
 * With the VM's PVE config (given, or /etc/pve/qemu-server/<vmid>.conf), the disks are the config's drives
 * as PVE's own snapshot takes them (see config/qemu-server-config.ts): every drive but cdrom media and
 * cloud-init. A drive volchain cannot act on is refused by name rather than skipped: a "VM snapshot" that
 * leaves one of the VM's disks out would not restore the VM. That is also what PVE does: its snapshot_create
 * refuses when any such drive lacks the snapshot feature ("snapshot feature is not available").
 *
 * Without a config, the disks are the VM's volumes on the storages, less the volumes PVE keeps beside
 * disks: cloud-init images (regenerated from the config) and saved VM states (`vm-<vmid>-state-<snap>`,
 * raw files written once by a snapshot with RAM).
 *
 * Nothing here changes anything; the config is only read.
 */
import type { Backend } from '../../backends/backend.js';
import { loadVmConfig, snapshotDrives, type Drive } from '../../config/qemu-server-config.js';
import { NotFoundError, NotSupportedError, VolchainError, asVolchainError } from '../../errors.js';
import type { Settings } from '../../settings.js';
import type { VolumeRef } from '../../naming/index.js';

export interface VmDisk {
  backend: Backend;
  volume: VolumeRef;
}

/** What this module needs of the Volchain front door (kept structural to avoid an import cycle). */
export interface VolumeResolver {
  resolve(volid: string): { backend: Backend; volume: VolumeRef };
}

export interface VmDiskOptions {
  /** Only disks on this storage. */
  storage?: string | undefined;
  /** `--vm-config FILE`. */
  vmConfig?: string | undefined;
  /** The session's: where VM configs are ($VOLCHAIN_VM_CONFIG_DIR). */
  settings: Settings;
}

/** Volumes of a VM that are not disks of it (without a config to say which are): cloud-init and VM states. */
export function isVmHelperVolume(vmid: number, name: string): boolean {
  return name.startsWith(`vm-${String(vmid)}-cloudinit`) || name.startsWith(`vm-${String(vmid)}-state-`);
}

/**
 * The disks VM `vmid`'s config lists, resolved to volumes that exist; undefined when there is no config
 * (then the caller lists the storages). Throws, naming the drive, when a drive is not something volchain
 * can act on, and NotFound when the config lists no disk (on `storage`).
 */
export async function vmDisksFromConfig(vc: VolumeResolver, vmid: number, opts: VmDiskOptions): Promise<VmDisk[] | undefined> {
  const config = await loadVmConfig(vmid, { path: opts.vmConfig, settings: opts.settings });
  if (!config) return undefined;
  const out: VmDisk[] = [];
  // Two drives naming one volume (or one volume through two storage ids on the same place) are one disk:
  // snapshotting it twice would fail on the second, after the first had changed it.
  const seen = new Set<string>();
  for (const drive of snapshotDrives(config)) {
    if (opts.storage !== undefined && (drive.target.kind !== 'volume' || drive.target.storage !== opts.storage)) continue;
    const disk = await resolveDrive(vc, vmid, drive, config.source);
    const where = disk.backend.layerPath(disk.volume.vmid, disk.volume.name);
    if (seen.has(where)) continue;
    seen.add(where);
    out.push(disk);
  }
  if (out.length === 0) {
    const on = opts.storage !== undefined ? ` on storage '${opts.storage}'` : '';
    throw new NotFoundError(`VM ${String(vmid)} has no disks${on} in ${config.source} (cdrom and cloud-init drives are not snapshotted)`);
  }
  return out;
}

async function resolveDrive(vc: VolumeResolver, vmid: number, drive: Drive, source: string): Promise<VmDisk> {
  const which = `VM ${String(vmid)}'s ${drive.key}`;
  const target = drive.target;
  if (target.kind === 'path') {
    throw new NotSupportedError(
      `${which} is the host path '${target.path}', not a volume of a storage: it cannot be snapshotted ` +
        `(PVE refuses too: 'snapshot feature is not available'); detach it or move it to a storage (${source}:${String(drive.line)})`,
    );
  }
  if (target.kind === 'empty') {
    throw new NotSupportedError(
      `${which} is '${target.value}' without media=cdrom: it has no volume to snapshot ` +
        `(PVE refuses too: 'snapshot feature is not available') (${source}:${String(drive.line)})`,
    );
  }
  let disk: VmDisk;
  try {
    disk = vc.resolve(target.volid);
  } catch (err) {
    // A storage missing from storage.cfg, of a type volchain does not drive (rbd, zfspool...), disabled, or
    // without images content; or a volume name volchain does not accept. PVE would snapshot some of these
    // through its own plugins, so leaving the disk out would make a VM snapshot without that disk.
    const e = asVolchainError(err);
    throw new VolchainError(e.code, `${which} (${target.volid}) cannot be snapshotted by volchain: ${e.message}`, { cause: err });
  }
  if (disk.volume.vmid !== vmid) {
    throw new NotSupportedError(
      `${which} (${target.volid}) is a disk of VM ${String(disk.volume.vmid)}: volchain acts only on VM ${String(vmid)}'s own disks ` +
        `(a snapshot here would change the other VM's chain under its lock)`,
    );
  }
  if (!(await disk.backend.statLayer(disk.volume.vmid, disk.volume.name))) {
    throw new NotFoundError(`${which} (${target.volid}) does not exist on storage '${disk.volume.storage}' (${source}:${String(drive.line)})`);
  }
  return disk;
}

/**
 * Without a VM config: the VM's volumes on the storages `ids` (every storage for images on this host, or the
 * one named with `--storage`), less cloud-init and VM-state volumes. A storage that is not available here (its
 * VG absent, its share not mounted: NotFound or NotSupported from opening or listing it) cannot hold a disk
 * this host could snapshot, so it is skipped with a warning rather than failing the call — unless the user
 * named it (`named`), when its error is the answer. Any other error (an unsafe path, exit 8) still fails.
 */
export async function vmDisksOnStorages(
  vc: { backend(id: string): Backend },
  vmid: number,
  ids: string[],
  named: boolean,
  onWarning?: (message: string) => void,
): Promise<VmDisk[]> {
  const out: VmDisk[] = [];
  // Storage ids naming the same directory or VG list the same disks: each disk is taken once, through the
  // first id that lists it (else a VM-wide snapshot would be taken twice of one disk).
  const seen = new Set<string>();
  for (const id of ids) {
    let backend: Backend;
    let volumes: VolumeRef[];
    try {
      backend = vc.backend(id);
      volumes = await backend.listVolumes(vmid);
    } catch (err) {
      if (named || !(err instanceof NotFoundError || err instanceof NotSupportedError)) throw err;
      onWarning?.(`storage '${id}' skipped while looking for VM ${String(vmid)}'s disks: ${err.message}`);
      continue;
    }
    for (const volume of volumes) {
      const where = backend.layerPath(vmid, volume.name);
      if (seen.has(where) || isVmHelperVolume(vmid, volume.name)) continue;
      seen.add(where);
      out.push({ backend, volume });
    }
  }
  return out;
}

/** Which disks a VM-wide call acts on (the `vm` commands' `--storage` and `--vm-config`). */
export interface VmTargetOptions {
  storage?: string;
  vmConfig?: string;
}

/** The live layer's target for a VM-wide call. */
export function vmTarget(vmid: number | string, opts: VmTargetOptions): { vmid: number | string; storage?: string; vmConfig?: string } {
  return {
    vmid,
    ...(opts.storage !== undefined ? { storage: opts.storage } : {}),
    ...(opts.vmConfig !== undefined ? { vmConfig: opts.vmConfig } : {}),
  };
}
