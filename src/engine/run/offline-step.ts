/**
 * Runs one offline step (no QEMU involved: files, LVs, qemu-img) on `backend`. Live steps (qmp-*) go through
 * engine/live/step.ts's dispatchStep, which calls this for every other step and for a live step's offline
 * equivalent when QEMU is gone.
 */
import type { Backend } from '../../backends/backend.js';
import { VolchainError } from '../../errors.js';
import type { Step } from '../../model/plan.js';
import { parseBaseName } from '../../naming/index.js';
import { readQcow2Header } from '../../qcow2/index.js';
import * as qemuImg from '../../tools/qemu-img.js';
import { convertStep, verifyStep } from './convert-steps.js';
import { isLiveStep } from '../plan/live-steps.js';
import { isVolumeName, stepLayers } from './step-rules.js';
import { checkRebaseTarget } from '../read/clone-base.js';
import { runCopyStep } from './copy-step.js';
import { runMoveStep } from './move-steps.js';
import { runImportStep } from './import-step.js';

export interface OfflineStepOptions {
  /** Told how far a long step (commit, rebase) has come. */
  onProgress?: ((percent: number) => void) | undefined;
  /**
   * The step may already have happened (repair after a crash, or an undo step): it first checks whether its
   * effect is there, so that running any step twice is harmless. Default false.
   */
  redo?: boolean;
}

export async function runOfflineStep(backend: Backend, vmid: number, step: Step, opts: OfflineStepOptions = {}): Promise<void> {
  const { onProgress, redo = false } = opts;
  // A live step here is a programming error (it would be silently skipped by the switch below).
  if (isLiveStep(step)) throw new VolchainError('INTERNAL', `step ${step.kind} needs QEMU: run it through dispatchStep`);
  const path = (name: string): string => backend.layerPath(vmid, name);
  const exists = async (name: string): Promise<boolean> => (await backend.statLayer(vmid, name)) !== undefined;
  const progress = onProgress ? { onProgress } : {};
  if (redo) await backend.activate(vmid, stepLayers([step]));
  switch (step.kind) {
    case 'create-overlay':
      if (redo) await backend.removeLayer(vmid, step.layer);
      await backend.createOverlay(vmid, step.layer, step.backing, step.sizeBytes);
      return;
    case 'rename': {
      if (redo) {
        const from = await backend.statLayer(vmid, step.from);
        const to = await backend.statLayer(vmid, step.to);
        if (!from && to) return;
        // Interrupted between link and unlink: both names are one layer.
        if (from && to && from.identity === to.identity) return backend.removeLayer(vmid, step.from);
      }
      await backend.renameLayer(vmid, step.from, step.to);
      return;
    }
    case 'replace':
      if (redo && !(await exists(step.from))) return;
      await backend.replaceLayer(vmid, step.from, step.to);
      return;
    case 'grow':
      await backend.prepareGrow(vmid, step.layer, step.sizeBytes);
      return;
    case 'freeze':
      await backend.settleFrozen(vmid, step.layer);
      return;
    case 'commit':
      await qemuImg.commitIntoBacking(path(step.top), progress);
      // Commit may have grown the base's virtual size to the top's.
      await backend.layerChanged(vmid, step.base);
      return;
    case 'rebase': {
      checkRebaseTarget(step.layer, step.onto, step.ontoFormat, backend.kind);
      const header = await readQcow2Header(path(step.layer), step.layer);
      if (!(redo && header.backingFile === (step.onto ?? undefined))) {
        // A safe rebase copies data into the layer: a frozen layer that was shrunk (LVM) needs room first.
        await backend.prepareGrow(vmid, step.layer, header.virtualSize);
        await qemuImg.rebase(path(step.layer), step.onto ?? undefined, progress, step.ontoFormat);
      }
      await backend.layerChanged(vmid, step.layer);
      // A snapshot layer stays frozen: give back what the rebase did not use.
      if (!isVolumeName(backend, step.layer)) await backend.settleFrozen(vmid, step.layer);
      return;
    }
    case 'remove':
      await backend.removeLayer(vmid, step.layer);
      return;
    case 'copy':
    case 'verify-copy':
      return runCopyStep(backend, vmid, step, { onProgress, redo });
    case 'resize':
      await backend.resizeLayer(vmid, step.layer, step.format, step.sizeBytes);
      return;
    case 'convert':
      return convertStep(backend, vmid, step, { ...progress, redo });
    case 'verify':
      return verifyStep(backend, vmid, step, progress);
    case 'protect':
      await backend.protectBase(vmid, step.layer);
      return;
    case 'create-linked': {
      // The step may come from a journal file (data): the base's name is checked again before it is used.
      const base = parseBaseName(step.baseName, step.baseVmid);
      // If we die in here, only the temporary layer exists (no volume name): repair removes it and creates it again.
      if (redo) await backend.removeLayer(vmid, step.layer);
      await backend.createLinkedClone(vmid, step.layer, base, step.sizeBytes);
      return;
    }
    case 'copy-layer':
    case 'verify-layer':
    case 'reassign-layer':
    case 'relink':
      return runMoveStep(backend, vmid, step, { onProgress, redo });
    case 'internal-snapshot': {
      if (redo && step.action !== 'apply') {
        const names = (await readQcow2Header(path(step.layer), step.layer)).internalSnapshots.map((s) => s.name);
        if (names.includes(step.name) === (step.action === 'create')) return;
      }
      await qemuImg.internalSnapshot(path(step.layer), step.action, step.name);
      return;
    }
    case 'import-layer':
    case 'verify-import':
      return runImportStep(backend, vmid, step, { onProgress, redo });
  }
}
