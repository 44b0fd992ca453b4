/**
 * Which volume an LV belongs to when its name alone fits several volumes of the VM and no trusted tag says:
 * an untagged snapshot layer made by PVE, `snap_vm-100-disk-0_x_y.qcow2`, is vm-100-disk-0.qcow2's snapshot
 * `x_y` or vm-100-disk-0_x.qcow2's snapshot `y` (PVE accepts both volume names and both snapshot names).
 * The qcow2 headers settle it, as engine/read/volume-tree.ts does for the engine: a layer belongs to the volume whose
 * chain its backing references join (it is the parent of one of the volume's layers, or its parent is one of
 * them), repeated until nothing changes, starting from the layers that are the volume's for sure (the
 * current layer, layers whose name fits only that volume). Pure: the caller reads the headers.
 */

/**
 * `candidates`: LV name -> the volumes its name (or trusted tag) allows (backends/lvm/tags.ts volumesOfLv);
 * `parentOf`: LV name -> its backing LV name (null: none) for the LVs whose header was read. Returns LV name ->
 * volume for every LV that belongs to exactly one volume: sure ones, and ambiguous ones the headers join to
 * one volume's chain only. An ambiguous LV joined to no chain, or to two (a corrupt header), is left out.
 */
export function attributeLayers(candidates: ReadonlyMap<string, readonly string[]>, parentOf: ReadonlyMap<string, string | null>): Map<string, string> {
  const owner = new Map<string, string>();
  const ambiguous = new Map<string, readonly string[]>();
  for (const [name, volumes] of candidates) {
    if (volumes.length === 1) owner.set(name, volumes[0] as string);
    else if (volumes.length > 1) ambiguous.set(name, volumes);
  }
  if (ambiguous.size === 0) return owner;
  const joinedBy = new Map<string, string[]>();
  const volumes = new Set([...ambiguous.values()].flat());
  for (const volume of volumes) {
    const members = new Set([...owner].filter(([, v]) => v === volume).map(([name]) => name));
    for (let grew = true; grew;) {
      grew = false;
      const parentsOfMembers = new Set([...members].map((m) => parentOf.get(m)).filter((p): p is string => typeof p === 'string'));
      for (const [name, allowed] of ambiguous) {
        if (members.has(name) || !allowed.includes(volume)) continue;
        const parent = parentOf.get(name);
        if (parentsOfMembers.has(name) || (typeof parent === 'string' && members.has(parent))) {
          members.add(name);
          joinedBy.set(name, [...(joinedBy.get(name) ?? []), volume]);
          grew = true;
        }
      }
    }
  }
  for (const [name, by] of joinedBy) if (by.length === 1) owner.set(name, by[0] as string);
  return owner;
}
