#!/usr/bin/env bash
# The main job, on the embedded default storage: allocate a disk, write data, take snapshots, roll back to
# an older one (the newer ones stay as a branch), delete snapshots, and show the tree at each stage. Every
# data claim is checked by reading patterns back with qemu-io.
set -euo pipefail
cd "$(dirname "$0")/.."

vmid=${DEMO_VMID:-9900}
cfg=()
if [ -z "${VOLCHAIN_CONFIG:-}" ] && [ -e /etc/pve/storage.cfg ]; then
  # On a Proxmox VE host the real storage.cfg would be used: keep the demo off the real storages.
  tmpcfg=$(mktemp)
  printf 'dir: local\n\tpath %s\n\tcontent images\n\tsnapshot-as-volume-chain 1\n' "${XDG_DATA_HOME:-$HOME/.local/share}/volchain" >"$tmpcfg"
  cfg=(--config "$tmpcfg")
fi
vc() { echo "\$ volchain $*" >&2; node bin/volchain.js "${cfg[@]}" "$@"; }
write() { qemu-io -f qcow2 -c "write -P $2 $3 $4" "$1" >/dev/null; echo "  (guest writes byte $2 at $3, $4)" >&2; }
expect() { qemu-io -r -f qcow2 -c "read -P $2 $3 $4" "$1" | grep -q 'Pattern verification failed' && { echo "DEMO FAILED: $1 lacks $2 at $3" >&2; exit 1; }; echo "  ok: $(basename "$1") has byte $2 at $3" >&2; }

if [ -n "$(node bin/volchain.js "${cfg[@]}" list local --vmid "$vmid" --json | node -e 'const v=JSON.parse(require("fs").readFileSync(0)).volumes; if (v.length) console.log(v.length)')" ]; then
  echo "demo: VM $vmid already has disks on storage 'local'; set DEMO_VMID to another VM id" >&2
  exit 1
fi

vc storage list
vol=$(vc alloc local "$vmid" 1G)
echo "  allocated $vol" >&2
disk=$(vc path "$vol")
trap 'node bin/volchain.js "${cfg[@]}" free "$vol" >/dev/null 2>&1 || true' EXIT

write "$disk" 0xa1 0 4M
vc snapshot create "$vol" installed
write "$disk" 0xb2 4M 4M
vc snapshot create "$vol" configured
write "$disk" 0xc3 0 1M
vc snapshot create "$vol" upgraded
write "$disk" 0xee 0 1M
vc snapshot list "$vol"

echo "# roll back to an OLDER snapshot: 'configured' and 'upgraded' stay, as a branch" >&2
vc snapshot rollback "$vol" installed
expect "$disk" 0xa1 0 1M
expect "$(vc path "$vol" --snapshot upgraded)" 0xc3 0 1M
write "$disk" 0xd4 8M 2M
vc snapshot create "$vol" experiment
vc snapshot list "$vol"

echo "# delete the oldest snapshot, which now has two children: the planner picks the cheapest valid way" >&2
vc snapshot delete "$vol" installed --dry-run
vc snapshot delete "$vol" installed
vc snapshot delete "$vol" configured
vc snapshot list "$vol"
expect "$(vc path "$vol" --snapshot upgraded)" 0xb2 4M 4M
expect "$(vc path "$vol" --snapshot upgraded)" 0xc3 0 1M
expect "$disk" 0xd4 8M 2M
expect "$disk" 0xa1 0 1M
vc info "$vol"
vc free "$vol"
trap - EXIT
echo "demo: done (every pattern read back from the layer that must hold it)" >&2
