/**
 * For `list` (issue 16): one readdir per VM directory instead of one per volume. readVolumeTree asks the
 * backend for the VM's layer names for every volume it reads; on a dir storage that is a readdir of
 * `images/<vmid>/` each time, most of a bulk listing's time. `list` reads the volumes sorted by vmid, so the
 * view returned here remembers the names of the last VM only: a VM's volumes share one readdir, and a name
 * list is never older than the reading of that one VM's volumes. A volume whose read fails through this view
 * is read again through the backend itself (see `list`), so a directory changed in between can only cost
 * time, never change what is reported. Reads only.
 */
import type { Backend } from '../../backends/backend.js';

/** `backend`, with `listLayerNames` answered from the last VM's readdir (dir storages; others as they are). */
export function withSharedLayerNames(backend: Backend): Backend {
  // LVM answers from its own short-lived VG report already; only dir storages pay a syscall per call.
  if (backend.kind !== 'dir') return backend;
  let last: { vmid: number; names: Promise<string[]> } | undefined;
  const view = Object.create(backend) as Backend;
  view.listLayerNames = (vmid: number): Promise<string[]> => {
    if (last?.vmid !== vmid) last = { vmid, names: backend.listLayerNames(vmid) };
    // A copy: callers may sort or filter what they get.
    return last.names.then((names) => [...names]);
  };
  return view;
}
