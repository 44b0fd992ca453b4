/**
 * Which volume an LV belongs to when its name alone fits several volumes of the VM and no trusted tag says:
 * an untagged snapshot layer made by PVE, `snap_vm-100-disk-0_x_y.qcow2`, is vm-100-disk-0.qcow2's snapshot
 * `x_y` or vm-100-disk-0_x.qcow2's snapshot `y` (PVE accepts both volume names and both snapshot names).
 * The qcow2 headers settle it, as engine/read/volume-tree.ts does for the engine: a layer belongs to the volume whose
 * chain its backing references join (it is the parent of one of the volume's layers, or its parent is one of
 * them), repeated until nothing changes, starting from the layers that are the volume's for sure (the
 * current layer, layers whose name fits only that volume): ownership/layer-owners.ts settleOwnership, the
 * rule the engine's tree reader uses too. Pure: the caller reads the headers.
 */
import { settleOwnership } from '../../ownership/layer-owners.js';

/**
 * `candidates`: LV name -> the volumes its name (or trusted tag) allows (backends/lvm/tags.ts volumesOfLv);
 * `parentOf`: LV name -> its backing LV name (null: none) for the LVs whose header was read. Returns LV name ->
 * volume for every LV that belongs to exactly one volume: sure ones, and ambiguous ones the headers join to
 * one volume's chain only. An ambiguous LV joined to no chain, or to two (a corrupt header), is left out.
 */
export function attributeLayers(candidates: ReadonlyMap<string, readonly string[]>, parentOf: ReadonlyMap<string, string | null>): Map<string, string> {
  return settleOwnership(candidates, parentOf).owner;
}
