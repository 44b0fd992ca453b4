/**
 * The one way the live tests start a QEMU and keep their storage (each test file used to do both its own
 * way): a fresh dir storage per test file with the check that no QEMU outlives its tests, and three ways to
 * start a q35 VM with a second QMP socket for volchain (the harness keeps the first): as `volchain qemu-args`
 * says (startVm), as Proxmox VE 9 would (startPveVm, the -blockdev layout from pve-qemu.ts), or from a
 * command line a test built itself (startQmpVm).
 */
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before } from 'node:test';
import type { BlockdevOptions } from '../../src/qmp/index.js';
import { cliJson, makeStorage, type TestStorage } from './helpers.js';
import { pveDriveBlockdev, pveThrottleGroup, qemuHasDiscardNoUnref } from './pve-qemu.js';
import { runningQemuPids, startQemu, type QemuOptions, type RunningQemu } from './qemu-harness.js';

// ---- the storage of a test file ---------------------------------------------------------------------------

/**
 * Registers the file's hooks: before its tests a fresh dir storage, handed to `ready`, then `prepare` (more on
 * it); after them `beforeCleanup`, the storage removed, and the check that every QEMU started has exited.
 */
export function useLiveStorage(
  ready: (storage: TestStorage) => void,
  opts: { prepare?: (storage: TestStorage) => Promise<void>; beforeCleanup?: () => Promise<void> } = {},
): void {
  let storage: TestStorage | undefined;
  before(async () => {
    storage = await makeStorage();
    ready(storage);
    await opts.prepare?.(storage);
  });
  after(async () => {
    await opts.beforeCleanup?.();
    await storage?.cleanup();
    assert.deepEqual(runningQemuPids(), [], 'every QEMU started by these tests has exited');
  });
}

// ---- the VM ---------------------------------------------------------------------------------------------------

/** A running QEMU and the QMP socket volchain talks to (the harness keeps the other one). */
export interface QmpVm {
  vm: RunningQemu;
  socket: string;
  /** Stops QEMU and removes the socket. */
  stop(): Promise<void>;
}

export interface LiveVm extends QmpVm {
  /** Guest disk ids, in the order of `volids`. */
  disks: string[];
  volids: string[];
}

/** Starts a q35 QEMU as `options` say, with volchain's QMP socket `qmp-<label>-….sock` in the storage's root. */
export async function startQmpVm(storage: TestStorage, label: string, options: QemuOptions): Promise<QmpVm> {
  const socket = join(storage.root, `qmp-${label}-${Date.now()}-${Math.floor(Math.random() * 1e6)}.sock`);
  const vm = await startQemu({ machine: 'q35', ...options, extraArgs: [...(options.extraArgs ?? []), '-qmp', `unix:${socket},server=on,wait=off`] });
  return {
    vm,
    socket,
    stop: async () => {
      await vm.stop();
      await rm(socket, { force: true });
    },
  };
}

interface QemuArgsJson {
  volumes: { volid: string; top: string; nodes: BlockdevOptions[] }[];
  argv: string[];
}

/** Starts QEMU on the volumes exactly as `volchain qemu-args --json` says, one scsi-hd per volume. */
export async function startVm(storage: TestStorage, volids: readonly string[], opts: { paused?: boolean } = {}): Promise<LiveVm> {
  const args = await cliJson<QemuArgsJson>(storage, ['qemu-args', ...volids]);
  const disks = args.volumes.map((_, i) => `disk${i}`);
  const vm = await startQmpVm(storage, 'vm', {
    blockdevs: args.volumes.flatMap((v) => v.nodes),
    disks: args.volumes.map((v, i) => ({ id: disks[i] as string, node: v.top })),
    ...(opts.paused ? { paused: true } : {}),
  });
  return { ...vm, disks, volids: [...volids] };
}

/** One drive of a VM PVE started: its id (`scsi0`), the volume, and its layers top first as [snapshot name | undefined, path]. */
export interface PveDrive {
  drive: string;
  volid: string;
  layers: readonly [string | undefined, string][];
}

/**
 * Starts QEMU as PVE 9 starts a VM with these drives (qemu-server, not volchain): per drive its throttle
 * group and one nested -blockdev (pve-qemu.ts), a scsi-hd `drive-<id>` on a virtio-scsi controller `scsihw0`.
 */
export async function startPveVm(storage: TestStorage, drives: readonly PveDrive[]): Promise<LiveVm> {
  const discardNoUnref = await qemuHasDiscardNoUnref();
  const extraArgs = [
    ...drives.flatMap((d) => [
      '-object',
      JSON.stringify(pveThrottleGroup(d.drive)),
      '-blockdev',
      JSON.stringify(pveDriveBlockdev(d.drive, d.volid, d.layers, discardNoUnref)),
    ]),
    '-device',
    'virtio-scsi-pci,id=scsihw0',
    ...drives.flatMap((d) => ['-device', `scsi-hd,bus=scsihw0.0,drive=drive-${d.drive},id=${d.drive}`]),
  ];
  const vm = await startQmpVm(storage, 'pve', { extraArgs });
  return { ...vm, disks: drives.map((d) => d.drive), volids: drives.map((d) => d.volid) };
}
