/**
 * The bare command sequences Proxmox VE 9 runs on thick LVM with `snapshot-as-volume-chain 1`, for a VM that
 * is not running: every command is one PVE runs, with PVE's argv (absolute paths included), in PVE's order.
 * Used by bench/lvm-ops.ts (timings against volchain) and by test/lvm/pve-interop.test.ts (PVE's operations
 * on chains volchain made, and chains made by PVE for volchain to operate on). volchain's code is never used
 * here: only the runner that spawns the commands (so the bench can count them).
 *
 * Source: pve-storage 9.1.7 src/PVE/Storage/LVMPlugin.pm (alloc_image, alloc_lvm_image, calculate_lvm_size,
 * lvm_qcow2_format, volume_snapshot_locked, rename_snapshot, volume_rollback_is_possible,
 * volume_snapshot_rollback_locked, volume_snapshot_delete, volume_resize, free_image,
 * free_lvm_volumes_locked, activate_volume with get_activate_volume_target_opts, volume_snapshot_info),
 * Common.pm (qemu_img_create, qemu_img_create_qcow2_backed, qemu_img_measure, qemu_img_resize) and Plugin.pm
 * (file_size_info, preallocation_cmd_opt: `metadata` for qcow2). Not reproduced: Perl start-up, pmxcfs and the
 * storage lock (no subprocess), the VM config update; the saferemove cleanup worker runs in the foreground,
 * as PVE's fork_worker does from the CLI.
 *
 * PVE's own messages are reproduced where PVE dies (`die` in Perl), so a caller can tell which check stopped
 * PVE; each such error is a PveRefusal. A command that fails throws the runner's CommandFailedError.
 */
import { existsSync } from 'node:fs';
import { readFile, realpath } from 'node:fs/promises';
import { basename } from 'node:path';
import { run } from '../../src/tools/runner.js';

/** PVE stopped with one of its own messages (`die` in LVMPlugin.pm), before or between commands. */
export class PveRefusal extends Error {}

export interface PveSnapInfo {
  order: number;
  file: string;
  volname: string;
  virtualSize: number;
  parent?: string;
  child?: string;
}

export interface PveLvmOptions {
  /** The storage's `saferemove 1`: removed LVs are renamed `del-<name>`, zeroed, then removed. */
  saferemove?: boolean;
  /**
   * Test setup, not PVE: zero each new LV right after PVE's lvcreate, as on fresh extents. PVE formats with
   * `preallocation=metadata`, which maps every cluster onto the LV as it is, so a volume would otherwise show
   * what earlier LVs left there. Per LV (not all the VG's free extents at once), so that test files running
   * beside this one on the same VG never find it full.
   */
  zeroNewLvs?: boolean;
}

/** LVM_SUPPRESS_FD_WARNINGS as for volchain's LVM commands (PVE's daemons set it too). */
const PVE_ENV = { LVM_SUPPRESS_FD_WARNINGS: '1' };

/** LVMPlugin get_snap_name: `snap_<volume without its extension>_<snap>.qcow2`, or the volume for 'current'. */
export function pveSnapName(volname: string, snap: string): string {
  return snap === 'current' ? volname : `snap_${volname.replace(/\.[^.]+$/, '')}_${snap}.qcow2`;
}

export class PveLvm {
  readonly saferemove: boolean;
  readonly zeroNewLvs: boolean;

  constructor(
    readonly vg: string,
    opts: PveLvmOptions = {},
  ) {
    this.saferemove = opts.saferemove ?? false;
    this.zeroNewLvs = opts.zeroNewLvs ?? false;
  }

  dev(lv: string): string {
    return `/dev/${this.vg}/${lv}`;
  }

  private async run(command: string, args: readonly string[]): Promise<string> {
    return (await run(command, args, { env: PVE_ENV })).stdout;
  }

  /** LVMPlugin lvm_vgs: VG name -> free bytes. Also what activate_storage runs (Storage::activate_storage). */
  async vgs(): Promise<Map<string, number>> {
    const out = await this.run('/sbin/vgs', [
      '--separator',
      ':',
      '--noheadings',
      '--units',
      'b',
      '--unbuffered',
      '--nosuffix',
      '--options',
      'vg_name,vg_size,vg_free,lv_count',
    ]);
    const vgs = new Map<string, number>();
    for (const line of out.split('\n')) {
      const [name, , free] = line.trim().split(':');
      if (name) vgs.set(name, Number(free));
    }
    return vgs;
  }

  /** LVMPlugin lvm_list_volumes($vg): the LV names of the VG. */
  async listVolumes(): Promise<Set<string>> {
    const out = await this.run('/sbin/lvs', [
      '--separator',
      ':',
      '--noheadings',
      '--units',
      'b',
      '--unbuffered',
      '--nosuffix',
      '--config',
      'report/time_format="%s"',
      '--options',
      'vg_name,lv_name,lv_size,lv_attr,pool_lv,data_percent,metadata_percent,snap_percent,uuid,tags,metadata_size,time',
      this.vg,
    ]);
    const names = new Set<string>();
    for (const line of out.split('\n')) {
      const [vg, lv] = line.trim().split(':');
      if (vg === this.vg && lv) names.add(lv);
    }
    return names;
  }

  /** Storage::activate_storage -> LVMPlugin activate_storage (lvm_vgs; the VG exists, so no vgscan). */
  async activateStorage(): Promise<void> {
    if (!(await this.vgs()).has(this.vg)) throw new PveRefusal(`PVE: storage VG ${this.vg} not found`);
  }

  /** LVMPlugin activate_volume for a qcow2 volume: the whole chain by `--select` (since the fix of #7143). */
  async activateVolume(volname: string): Promise<void> {
    const name = volname.replace(/\.qcow2$/, '').replace(/\./g, '\\.');
    const filter = `vg_name = "${this.vg}" && lv_name =~ '^(${name}|snap_${name}_.+)\\.qcow2$'`;
    await this.run('/sbin/lvchange', ['-aey', '--select', filter]);
    await this.run('/sbin/lvchange', ['--refresh', '--select', filter]);
  }

  /** LVMPlugin calculate_lvm_size (Common.pm qemu_img_measure, timeout 5): KiB of the LV. */
  async calculateLvmSize(sizeKiB: number, backed: boolean): Promise<number> {
    const args = ['measure', '--output=json', '--size', `${sizeKiB}K`, '-O', 'qcow2'];
    if (backed) args.push('-o', 'extended_l2=on,cluster_size=128k');
    const json = JSON.parse(await this.run('/usr/bin/qemu-img', args)) as { 'fully-allocated'?: number };
    if (!json['fully-allocated']) throw new PveRefusal('PVE: Missing fully-allocated value from json');
    return json['fully-allocated'] / 1024;
  }

  /** LVMPlugin lvcreate: size in KiB, `-aly -Wy`, tags `pve-vm-<vmid>` and `@pve-<volume>`. */
  async lvcreate(name: string, sizeKiB: number, tags: readonly string[]): Promise<void> {
    const args = ['-aly', '-Wy', '--yes', '--size', `${sizeKiB}k`, '--name', name, '--setautoactivation', 'n'];
    for (const tag of tags) args.push('--addtag', tag);
    args.push(this.vg);
    await this.run('/sbin/lvcreate', args);
    // Active after `-aly`; see PveLvmOptions.zeroNewLvs.
    if (this.zeroNewLvs) await this.run('blkdiscard', ['--zeroout', this.dev(name)]);
  }

  /** LVMPlugin lvrename: lists the VG to refuse an existing target, then renames. */
  async lvrename(from: string, to: string): Promise<void> {
    if ((await this.listVolumes()).has(to)) throw new PveRefusal(`PVE: target volume '${to}' already exists`);
    await this.run('/sbin/lvrename', [this.vg, from, to]);
  }

  /**
   * LVMPlugin free_lvm_volumes_locked: without saferemove one `lvremove -f` per LV; with it, one `lvrename`
   * to `del-<name>` each, then the cleanup worker (run here in the foreground): activate, zero with
   * `blkdiscard --zeroout --step` (PVE falls back to cstream where the device cannot write zeroes), lvremove.
   */
  async freeLvmVolumes(names: readonly string[]): Promise<void> {
    if (!this.saferemove) {
      for (const name of names) await this.run('/sbin/lvremove', ['-f', `${this.vg}/${name}`]);
      return;
    }
    for (const name of names) await this.run('/sbin/lvrename', [this.vg, name, `del-${name}`]);
    for (const name of names) {
      const path = this.dev(`del-${name}`);
      await this.run('/sbin/lvchange', ['-aly', path]);
      await this.run('/sbin/lvchange', ['--refresh', path]);
      const dm = /^\/dev\/(dm-\d+)$/.exec(await realpath(path))?.[1];
      if (dm !== undefined) {
        const max = Number((await readFile(`/sys/block/${dm}/queue/write_zeroes_max_bytes`, 'utf8').catch(() => '0')).trim());
        const step = max > 0 ? Math.min(32 * 1024 * 1024, max) : 0;
        if (step > 0) await this.run('blkdiscard', [path, '-v', '--zeroout', '--step', String(step)]);
        else {
          await this.run('/usr/bin/cstream', ['-i', '/dev/zero', '-o', path, '-T', '10', '-v', '1', '-b', '1048576', '-t', '-10485760']).catch(() => undefined); // PVE: "'No space left on device' is ok here"
        }
      }
      await this.run('/sbin/lvremove', ['-f', `${this.vg}/del-${name}`]);
    }
  }

  /** Plugin.pm file_size_info -> Common.pm qemu_img_info($path, 'qcow2'): the virtual size in bytes. */
  async fileSizeInfo(path: string): Promise<number> {
    const json = JSON.parse(await this.run('/usr/bin/qemu-img', ['info', '--output=json', path, '-f', 'qcow2'])) as { 'virtual-size': number };
    return json['virtual-size'];
  }

  /**
   * LVMPlugin volume_snapshot_info: `qemu-img info --backing-chain` of the volume (Common.pm qemu_img_info with
   * the chain, no format given), names read back with parse_snap_name; layers whose names do not parse are
   * skipped ("not a proxmox snapshot").
   */
  async volumeSnapshotInfo(volname: string): Promise<Map<string, PveSnapInfo>> {
    const chain = JSON.parse(await this.run('/usr/bin/qemu-img', ['info', '--output=json', this.dev(volname), '--backing-chain'])) as {
      filename: string;
      'virtual-size': number;
      'backing-filename'?: string;
    }[];
    const short = volname.replace(/\.qcow2$/, '');
    const snapOf = (path: string): string | undefined => {
      const name = basename(path);
      const prefix = `snap_${short}_`;
      if (name.startsWith(prefix) && name.endsWith('.qcow2') && name.length > prefix.length + 6) return name.slice(prefix.length, -'.qcow2'.length);
      return name === volname ? 'current' : undefined;
    };
    const info = new Map<string, PveSnapInfo>();
    const entry = (snap: string): PveSnapInfo => {
      let e = info.get(snap);
      if (!e) info.set(snap, (e = { order: -1, file: '', volname: pveSnapName(volname, snap), virtualSize: 0 }));
      return e;
    };
    let order = 0;
    for (const image of chain) {
      const snap = snapOf(image.filename);
      if (snap === undefined) continue;
      const e = entry(snap);
      e.order = order;
      e.file = image.filename;
      e.virtualSize = image['virtual-size'];
      const backing = image['backing-filename'];
      if (backing) {
        const parent = snapOf(backing);
        if (parent !== undefined) {
          e.parent = parent;
          entry(parent).child = snap;
        }
      }
      order++;
    }
    return info;
  }

  /** LVMPlugin alloc_lvm_image for qcow2: vgs, measure, lvcreate at full size, activate, qemu-img create. */
  async allocLvmImage(vmid: number, name: string, sizeKiB: number, backingSnap?: string): Promise<void> {
    const free = (await this.vgs()).get(this.vg);
    if (free === undefined) throw new PveRefusal(`PVE: no such volume group '${this.vg}'`);
    const lvmSize = await this.calculateLvmSize(sizeKiB, backingSnap !== undefined);
    if (free < sizeKiB) throw new PveRefusal(`PVE: not enough free space (${free} < ${sizeKiB})`); // PVE compares bytes with KiB
    await this.lvcreate(name, lvmSize, [`pve-vm-${vmid}`, `@pve-${name}`]);
    try {
      // lvm_qcow2_format: activate the chain, then format (preallocation_cmd_opt: qcow2 default 'metadata').
      await this.activateVolume(name);
      if (backingSnap !== undefined) {
        // Common.pm qemu_img_create_qcow2_backed, backing named relative (get_snap_name).
        await this.run('/usr/bin/qemu-img', [
          'create',
          '-F',
          'qcow2',
          '-b',
          pveSnapName(name, backingSnap),
          '-f',
          'qcow2',
          this.dev(name),
          '-o',
          'extended_l2=on,cluster_size=128k,preallocation=metadata',
        ]);
      } else {
        // Common.pm qemu_img_create.
        await this.run('/usr/bin/qemu-img', ['create', '-o', 'preallocation=metadata', '-f', 'qcow2', this.dev(name), `${sizeKiB}K`]);
      }
    } catch (err) {
      // "no need to safe cleanup as the volume is still empty"
      await this.run('/sbin/lvremove', ['-f', `${this.vg}/${name}`]);
      throw err;
    }
  }

  /** LVMPlugin alloc_snap_image: the new current layer, as large as the backing image's virtual size. */
  async allocSnapImage(vmid: number, volname: string, backingSnap: string): Promise<void> {
    const size = await this.fileSizeInfo(this.dev(pveSnapName(volname, backingSnap)));
    await this.allocLvmImage(vmid, volname, size / 1024, backingSnap);
  }

  /**
   * Storage::vdisk_alloc -> LVMPlugin alloc_image: `name` as given (a custom name `vm-<vmid>-<rest>.qcow2`,
   * as PVE's API accepts), or find_free_diskname's `vm-<vmid>-disk-<n>.qcow2`. Returns the volume name.
   */
  async alloc(vmid: number, sizeBytes: number, name?: string): Promise<string> {
    await this.activateStorage();
    if (name === undefined) {
      const names = await this.listVolumes();
      name = '';
      for (let i = 0; name === ''; i++) {
        if (![...names].some((n) => n === `vm-${vmid}-disk-${i}.qcow2` || n === `vm-${vmid}-disk-${i}`)) name = `vm-${vmid}-disk-${i}.qcow2`;
      }
    }
    await this.allocLvmImage(vmid, name, sizeBytes / 1024);
    return name;
  }

  /** AbstractConfig snapshot_create (activate storages) -> qemu_volume_snapshot 'storage' -> volume_snapshot_locked. */
  async snapshotCreate(vmid: number, volname: string, snap: string): Promise<void> {
    await this.activateStorage();
    await this.activateVolume(volname);
    await this.lvrename(volname, pveSnapName(volname, snap)); // rename_snapshot('current' -> snap)
    try {
      await this.allocSnapImage(vmid, volname, snap);
    } catch (err) {
      await this.lvrename(pveSnapName(volname, snap), volname); // rename_snapshot(snap -> 'current')
      throw err;
    }
  }

  /** LVMPlugin volume_rollback_is_possible: only the most recent snapshot of the chain. */
  async rollbackIsPossible(volname: string, snap: string): Promise<void> {
    await this.activateVolume(volname);
    const info = await this.volumeSnapshotInfo(volname);
    const target = info.get(snap);
    if (!target || snap === 'current') throw new PveRefusal(`PVE: can't rollback, snapshot '${snap}' does not exist on '${volname}'`);
    const newer = [...info].filter(([name, e]) => name !== 'current' && e.order < target.order);
    if (newer.length > 0) throw new PveRefusal(`PVE: can't rollback, '${snap}' is not most recent snapshot on '${volname}'`);
  }

  /**
   * AbstractConfig snapshot_rollback: activate storages, __snapshot_rollback_vol_possible (Storage
   * volume_rollback_is_possible), then __snapshot_rollback_vol_rollback -> Storage::volume_snapshot_rollback,
   * which asks volume_rollback_is_possible again before LVMPlugin volume_snapshot_rollback_locked: free the
   * current layer, allocate a new one backed by the snapshot.
   */
  async snapshotRollback(vmid: number, volname: string, snap: string): Promise<void> {
    await this.activateStorage();
    await this.rollbackIsPossible(volname, snap);
    await this.rollbackIsPossible(volname, snap);
    await this.freeLvmVolumes([volname]); // free_snap_image_locked('current')
    await this.allocSnapImage(vmid, volname, snap);
  }

  /**
   * AbstractConfig snapshot_delete (activate storages) -> qemu_volume_snapshot_delete 'storage' -> LVMPlugin
   * volume_snapshot_delete, offline. The first snapshot (no parent): its child is committed into it (after a
   * volume_resize of the snapshot when the child is larger, fix #7094), the child's LV freed and the
   * snapshot's LV renamed to the child's name. Any other: safe rebase of the child onto the parent, then the
   * snapshot's LV freed. Returns which way it went.
   */
  async snapshotDelete(volname: string, snap: string): Promise<'commit' | 'rebase'> {
    await this.activateStorage();
    await this.activateVolume(volname);
    const info = await this.volumeSnapshotInfo(volname);
    const entry = info.get(snap);
    if (!entry || !existsSync(entry.file)) throw new PveRefusal(`PVE: volume ${entry?.file ?? snap} is missing`);
    const child = entry.child !== undefined ? info.get(entry.child) : undefined;
    if (!child) throw new PveRefusal(`PVE: snapshot ${snap} has no child`);
    if (entry.parent === undefined) {
      if (child.virtualSize > entry.virtualSize) await this.resize(volname, child.virtualSize, snap);
      // "can't use -d here, as it's an lvm volume"; on failure PVE warns "The state of $snap is now invalid".
      await this.run('/usr/bin/qemu-img', ['commit', child.file]);
      await this.freeLvmVolumes([child.volname]);
      await this.lvrename(entry.volname, child.volname);
      return 'commit';
    }
    await this.run('/usr/bin/qemu-img', ['rebase', '-b', pveSnapName(volname, entry.parent), '-F', 'qcow2', '-f', 'qcow2', child.file]);
    await this.freeLvmVolumes([entry.volname]);
    return 'rebase';
  }

  /**
   * LVMPlugin volume_resize (of the volume, or of snapshot `snap`'s layer): calculate_lvm_size without the
   * extended-L2 options, lvextend, qemu-img resize with the storage's preallocation. Reached from API2 Qemu
   * resize_vm after Storage::activate_volumes and volume_size_info (refusing to shrink).
   */
  async resize(volname: string, newSizeBytes: number, snap?: string): Promise<void> {
    const path = this.dev(snap === undefined ? volname : pveSnapName(volname, snap));
    if (snap === undefined) {
      await this.activateStorage();
      await this.activateVolume(volname);
      if (newSizeBytes < (await this.fileSizeInfo(path))) throw new PveRefusal('PVE: shrinking disks is not supported');
    }
    const lvmSize = await this.calculateLvmSize(newSizeBytes / 1024, false);
    await this.run('/sbin/lvextend', ['-L', `${lvmSize}k`, path]);
    await this.run('/usr/bin/qemu-img', ['resize', '--preallocation=metadata', '-f', 'qcow2', path, String(newSizeBytes)]);
  }

  /** Storage::vdisk_free -> LVMPlugin free_image: activate, read the chain, free the volume and its snapshots. */
  async free(volname: string): Promise<void> {
    await this.activateStorage();
    await this.activateVolume(volname);
    const info = await this.volumeSnapshotInfo(volname);
    const snaps = [...info].filter(([name]) => name !== 'current').sort((a, b) => a[1].order - b[1].order);
    await this.freeLvmVolumes([volname, ...snaps.map(([, e]) => e.volname)]);
  }
}
