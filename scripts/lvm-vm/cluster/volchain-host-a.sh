#!/bin/bash
# volchain-host-a.sh -- host A (lvmlockd host_id 1) of the two-host volchain test on a shared VG. Runs in a
# run-in-vm.sh guest (VM_SHARE=1, shared image = /dev/vdb) next to host B (volchain-host-b.sh); driven by
# test/integration/lvm-cluster.test.ts, which also explains the scenario. Environment: see volchain-lib.sh.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/lockd-lib.sh"
. "$HERE/volchain-lib.sh"
host_init host-a host-b
T0=$(now)

log "phase 1: A makes the VG, a volume with snapshot s1 and data, and holds its LVs"
t A:lock_setup        lock_setup 1 "$IOT"                      || fail "lock_setup"
t A:vgcreate_shared   vgcreate --shared "$VG" /dev/vdb         || fail "vgcreate --shared"   # also joins the lockspace
sig vg_created
volid=$(t A:vc_alloc vc alloc "$STORAGE" "$VMID" 64M --format qcow2) || fail "volchain alloc"
[ "$volid" = "$VOLID" ] || fail "volchain alloc printed '$volid', expected '$VOLID'"
t A:write_0x11        qio_write "$(layer_path)" "0x11 0 1M"
t A:vc_snapshot_s1    vc snapshot create "$VOLID" s1           || fail "volchain snapshot create $VOLID s1"
t A:write_0x22        qio_write "$(layer_path)" "0x22 1M 1M"
[ "$(vm_lvs_active | wc -l)" = 2 ] || { show_lvs; fail "after snapshot s1, the two layers of $VOL should be active on A"; }
sig A_holds
# while B tries (every volchain start costs seconds in a software-emulated guest: only off the critical path)
show_lvs
vc snapshot list "$VOLID" >&2
have_deactivate=0; vc --help 2>&1 | grep -qE '^\s+deactivate\b' && have_deactivate=1

waitfor B_tried
log "B was refused while A held the LVs: A releases them"
release_volume "$have_deactivate"
assert_nothing_active "after release"
sig A_released

waitfor B_s2_done
log "A reads the chain B changed, from the LV tags alone"
t A:vc_snapshot_list  expect_snaps "s1 s2" "A after B took s2"
assert_nothing_active "A listing while B holds the LVs"
check_lockspace "end of phase 1"
sig A_phase1_ok
log "phase 1 passed on A"

if [ "$PHASE2" = 1 ]; then
  log "phase 2: B crashes in the middle of deleting s1 and dies; A repairs"
  waitfor B_dead
  show_lvs
  status=$(t A:vc_status vc status --json) || fail "volchain status"
  log "volchain status --json on A: $status"
  pending=$(json "d.pending.filter((p) => p.volid === '$VOLID').map((p) => p.host + ' ' + p.plan.operation).join(',')" <<<"$status")
  [ "$pending" = "host-b snapshot-delete" ] ||
    fail "phase 2: volchain status on A shows '$pending', expected the unfinished snapshot-delete of $VOLID recorded by host-b (is the journal on the VG?)"
  log "ok: A sees the snapshot-delete host-b left unfinished"
  t A:vc_repair_all     vc repair --all >&2                    || fail "volchain repair --all"
  status=$(vc status --json) || fail "volchain status"
  [ "$(json 'd.pending.length' <<<"$status")" = 0 ] || fail "phase 2: unfinished operations after repair: $status"
  log "ok: volchain status is empty after repair"
  leftover=$(all_lvs | awk '$1 ~ /^volchain-(journal|tmp)-/ { print $1 }')
  [ -z "$leftover" ] || fail "phase 2: LVs left after repair: $leftover"
  snaps=$(snap_names) || fail "volchain snapshot list after repair"
  log "snapshots after repair: $snaps"
  case " $snaps " in *" s2 "*) ;; *) fail "phase 2: s2 is gone after repair (snapshots: '$snaps')" ;; esac
  activate_all
  show_lvs
  qio_read "$(snap_path s2)" "0x11 0 1M" "0x22 1M 1M" "0x00 2M 1M"
  qio_read "$(layer_path)"   "0x11 0 1M" "0x22 1M 1M" "0x33 2M 1M"
  case " $snaps " in
    *" s1 "*) log "repair kept s1 (operation rolled back)"; qio_read "$(snap_path s1)" "0x11 0 1M" "0x00 1M 2M" ;;
    *) log "repair finished deleting s1" ;;
  esac
  t A:qemu_img_check    check_layers
  check_lockspace "end of phase 2"
  sig A_phase2_ok
  log "phase 2 passed on A"
fi

t A:lock_stop lock_teardown "$VG"
log "A total in-guest: $(since "$T0") s"
