# volchain-lib.sh -- sourced (after lockd-lib.sh) by volchain-host-a.sh and volchain-host-b.sh: what both hosts
# of the two-host volchain test share. Every check that fails calls `fail`, which ends the host's script.
#
# Environment (run-in-vm.sh VM_ENV passes it in from test/integration/lvm-cluster.test.ts):
#   CLUSTER_SYNC        directory under the shared $VM_WORKDIR for sig/waitfor (required)
#   CLUSTER_IO_TIMEOUT  sanlock I/O timeout in seconds (lvmlockd -o), default 3
#   CLUSTER_PHASE2=1    also run phase 2 (crash on host B, repair on host A)
#   CLUSTER_WAIT        seconds to wait for the other host at each rendezvous, default 600
SYNC=${CLUSTER_SYNC:?CLUSTER_SYNC: sync directory}
IOT=${CLUSTER_IO_TIMEOUT:-3}
PHASE2=${CLUSTER_PHASE2:-0}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)

VG=vgs STORAGE=san VMID=100 VOL=vm-100-disk-0.qcow2
VOLID=$STORAGE:$VOL
CFG=/run/volchain/storage.cfg
# Locks and (until the journal lives on the VG) journals: local to this guest, lost when it powers off,
# like the local disk of a host that died.
export VOLCHAIN_STATE_DIR=/run/volchain-state LC_ALL=C LVM_SUPPRESS_FD_WARNINGS=1
unset VOLCHAIN_CRASH_AT VOLCHAIN_FAIL_AT VOLCHAIN_CONFIG VOLCHAIN_DEBUG

fail() {
  log "FAIL: $*"
  lockspace_ok "$VG" || { log "this host lost its lease in the lockspace of $VG:"; lock_diagnostics; }
  exit 1
}
# check_lockspace WHEN: the locking this test relies on still works here
check_lockspace() { lockspace_ok "$VG" || fail "$HOST_NAME lost its sanlock lease of VG $VG ($1): the run says nothing about locking"; }

# host_init NAME PEER: hostname (volchain records it in journals and locks), storage.cfg, exit trap
host_init() {
  HOST_NAME=$1 PEER=$2
  echo "$HOST_NAME" > /proc/sys/kernel/hostname
  mkdir -p "$(dirname "$CFG")" "$VOLCHAIN_STATE_DIR"
  printf 'lvm: %s\n\tvgname %s\n\tcontent images\n\tsnapshot-as-volume-chain 1\n\tshared 1\n' "$STORAGE" "$VG" > "$CFG"
  # Whatever happens, leave the lockspace (a lease left on the image stalls the next start) and tell the peer.
  trap 'rc=$?; trap - EXIT; lock_teardown $VG; echo $rc > "$SYNC/${HOST_NAME}_exit"; log "exit status $rc"; exit $rc' EXIT
}

vc() { node "$REPO/bin/volchain.js" --config "$CFG" "$@"; }

# json EXPR: evaluates the JS expression EXPR with `d` = the JSON document on stdin; prints a string as is,
# anything else as JSON
json() {
  node -e 'const d = JSON.parse(require("fs").readFileSync(0, "utf8"));
const r = new Function("d", "return (" + process.argv[1] + ")")(d);
console.log(typeof r === "string" ? r : JSON.stringify(r));' "$1"
}

# LVs of the test volume (its layers and temporaries): "name attr size tags" lines, sorted
vm_lvs() { lvs --noheadings --units b -o lv_name,lv_attr,lv_size,lv_tags "$VG" | awk -v v="${VOL%.qcow2}" 'index($1, v) { print $1, $2, $3, $4 }' | sort; }
# the volume's LVs active on this host
vm_lvs_active() { vm_lvs | awk 'substr($2, 5, 1) == "a" { print $1 }'; }
# every LV of the VG with attributes, size and tags
all_lvs() { lvs -a --noheadings --units b -o lv_name,lv_attr,lv_size,lv_tags "$VG" | sort; }
show_lvs() { log "lvs on $HOST_NAME:"; lvs -a -o lv_name,lv_attr,lv_size,lv_tags "$VG" >&2 || true; }

assert_nothing_active() {
  local active; active=$(vm_lvs_active)
  [ -z "$active" ] || { show_lvs; fail "$1: LVs of $VOL are active on $HOST_NAME: $(echo $active)"; }
  log "ok: no LV of $VOL is active on $HOST_NAME ($1)"
}

# snapshot names of the volume, sorted, space-separated (from `snapshot list --json`)
snap_names() { vc snapshot list "$VOLID" --json | json 'd.snapshots.map((s) => s.name).sort().join(" ")'; }

# expect_snaps "s1 s2" LABEL
expect_snaps() {
  local got; got=$(snap_names) || fail "$2: volchain snapshot list $VOLID failed"
  [ "$got" = "$1" ] || fail "$2: snapshots of $VOLID are '$got', expected '$1'"
  log "ok: snapshots of $VOLID: $got ($2)"
}

layer_path() { echo "/dev/$VG/${1:-$VOL}"; }
snap_path() { layer_path "snap_${VOL%.qcow2}_$1.qcow2"; }

# qio_read PATH "BYTE OFFSET LEN"...: every range must hold its pattern (one read-only qemu-io, chain included)
qio_read() {
  local path=$1 spec out rc=0; shift; local args=()
  for spec in "$@"; do args+=(-c "read -P $spec"); done
  out=$(qemu-io -r -f qcow2 "${args[@]}" "$path" 2>&1) || rc=$?
  if [ $rc != 0 ] || grep -qiE 'verification failed|fail|error|could not' <<<"$out"; then
    fail "qemu-io read of $path ($*) exit $rc: $(tr '\n' ' ' <<<"$out" | cut -c1-400)"
  fi
  log "ok: $path holds $(printf '[%s] ' "$@")"
}
qio_write() {
  local path=$1 spec out rc=0; shift; local args=()
  for spec in "$@"; do args+=(-c "write -P $spec"); done
  out=$(qemu-io -f qcow2 "${args[@]}" "$path" 2>&1) || rc=$?
  if [ $rc != 0 ] || grep -qiE 'fail|error|could not' <<<"$out"; then fail "qemu-io write $* to $path exit $rc: $out"; fi
}

# qemu-img check of every qcow2 layer of the volume (all must be active here)
check_layers() {
  local lv out
  for lv in $(vm_lvs | awk '{ print $1 }'); do
    case $lv in *.qcow2) ;; *) continue ;; esac
    out=$(qemu-img check -f qcow2 "$(layer_path "$lv")" 2>&1) || fail "qemu-img check $lv: $out"
    log "ok: qemu-img check $lv: $(tr '\n' ' ' <<<"$out" | cut -c1-120)"
  done
}

# activate (exclusively) whatever layer of the volume is not active here, for reading it
activate_all() {
  local lv inactive=()
  for lv in $(vm_lvs | awk 'substr($2, 5, 1) != "a" { print $1 }'); do inactive+=("$VG/$lv"); done
  [ ${#inactive[@]} = 0 ] && return 0
  log "activating ${inactive[*]} to read them"
  lvchange -aey "${inactive[@]}" || fail "lvchange -aey ${inactive[*]}"
}

# release_volume HAVE_DEACTIVATE: `volchain deactivate <volid>` when the CLI has that command (1), else
# lvchange -an on the volume's LVs active here
release_volume() {
  if [ "$1" = 1 ]; then
    log "releasing $VOLID with: volchain deactivate $VOLID"
    t "$HOST_NAME:vc_deactivate" vc deactivate "$VOLID" || fail "volchain deactivate $VOLID"
  else
    local lvs_=(); for lv in $(vm_lvs_active); do lvs_+=("$VG/$lv"); done
    log "volchain has no deactivate command yet: lvchange -an ${lvs_[*]}"
    [ ${#lvs_[@]} = 0 ] || t "$HOST_NAME:lvchange_an" lvchange -an "${lvs_[@]}" || fail "lvchange -an ${lvs_[*]}"
  fi
}
