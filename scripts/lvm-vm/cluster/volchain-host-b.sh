#!/bin/bash
# volchain-host-b.sh -- host B (lvmlockd host_id 2) of the two-host volchain test on a shared VG. Runs in a
# run-in-vm.sh guest (VM_SHARE=1, shared image = /dev/vdb) next to host A (volchain-host-a.sh); driven by
# test/integration/lvm-cluster.test.ts, which also explains the scenario. Environment: see volchain-lib.sh.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/lockd-lib.sh"
. "$HERE/volchain-lib.sh"
host_init host-b host-a
T0=$(now)

t B:lock_setup        lock_setup 2 "$IOT"                      || fail "lock_setup"
waitfor vg_created
t B:lock_start        lock_start "$VG"                         || fail "vgchange --lock-start $VG"   # joins A's lockspace

waitfor A_holds
log "phase 1: B sees A's volume without activating it, and is refused a change while A holds it"
show_lvs
list=$(t B:vc_list vc list "$STORAGE") || fail "volchain list $STORAGE"
printf '%s\n' "$list" >&2
grep -q "$VOLID" <<<"$list" || fail "volchain list $STORAGE on B does not show $VOLID"
tree_before=$(t B:vc_snapshot_list_json vc snapshot list "$VOLID" --json) || fail "volchain snapshot list $VOLID --json"
[ "$(json 'd.snapshots.map((s) => s.name).join(" ")' <<<"$tree_before")" = s1 ] || fail "snapshot list on B: $tree_before"
log "ok: B lists $VOLID and its snapshot s1"
assert_nothing_active "B listing while A holds the LVs"
lvs_before=$(all_lvs)

rc=0; msg=$(t B:vc_snapshot_s2_refused vc snapshot create "$VOLID" s2 2>&1) || rc=$?
log "volchain snapshot create $VOLID s2 while A holds the LVs: exit $rc: $msg"
[ $rc != 0 ] || fail "volchain snapshot create s2 on B succeeded while A held the LVs"
[ $rc = 6 ] || fail "volchain snapshot create s2 on B exited $rc, expected 6 (locked) while A held the LVs"
grep -q '^volchain: ' <<<"$msg" || fail "the refusal has no 'volchain: ...' message: $msg"
lvs_after=$(all_lvs)
[ "$lvs_after" = "$lvs_before" ] || fail "the refused snapshot changed LVs of $VG: before [$lvs_before] after [$lvs_after]"
log "ok: refused; no LV of $VG added, removed, resized, retagged or activated"
sig B_tried
# the chain volchain reads is unchanged too (checked while A releases)
tree_after=$(vc snapshot list "$VOLID" --json) || fail "volchain snapshot list $VOLID --json"
[ "$tree_after" = "$tree_before" ] || fail "the refused snapshot changed the chain: before $tree_before after $tree_after"
log "ok: the chain is unchanged after the refused snapshot"

waitfor A_released
log "A released the LVs: B takes snapshot s2"
t B:vc_snapshot_s2    vc snapshot create "$VOLID" s2           || fail "volchain snapshot create $VOLID s2 after A released"
sig B_s2_done            # A checks that it lists s1 and s2 (from the tags, activating nothing) meanwhile
show_lvs
activate_all             # (volchain leaves the layers it worked on active here: nothing to do)
t B:write_0x33        qio_write "$(layer_path)" "0x33 2M 1M"
t B:read_patterns     qio_read "$(snap_path s1)" "0x11 0 1M" "0x00 1M 2M"
qio_read "$(snap_path s2)" "0x11 0 1M" "0x22 1M 1M" "0x00 2M 1M"
qio_read "$(layer_path)"   "0x11 0 1M" "0x22 1M 1M" "0x33 2M 1M"
t B:qemu_img_check    check_layers
if [ "$PHASE2" = 1 ]; then
  # plan the crash while A still reads (every volchain start costs seconds in a software-emulated guest)
  plan=$(t B:vc_delete_dry_run vc snapshot delete "$VOLID" s1 --dry-run --json) || fail "volchain snapshot delete --dry-run"
  # the step after which the chain is half-changed: the first commit or rebase (data moved, no LV renamed or
  # removed yet): STEP TOTAL KINDS
  read -r step total kinds <<<"$(json '[d.plans[0].steps.findIndex((s) => s.kind === "commit" || s.kind === "rebase") + 1,
    d.plans[0].steps.length, d.plans[0].steps.map((s) => s.kind).join(",")].join(" ")' <<<"$plan")"
  log "plan of deleting s1: $kinds"
  [ "$step" -ge 1 ] && [ "$step" -lt "$total" ] || fail "no commit or rebase step in the middle of the plan: $plan"
fi
waitfor A_phase1_ok      # A reads the chain: change nothing before it is done
check_lockspace "end of phase 1"
sig B_phase1_ok
log "phase 1 passed on B"

if [ "$PHASE2" = 1 ]; then
  log "phase 2: B dies after step $step of $total of deleting s1: VOLCHAIN_CRASH_AT=snapshot-delete:$step:after"
  rc=0; VOLCHAIN_CRASH_AT=snapshot-delete:$step:after t B:vc_delete_s1_crash vc snapshot delete "$VOLID" s1 || rc=$?
  [ $rc = 137 ] || fail "volchain snapshot delete with VOLCHAIN_CRASH_AT should die by SIGKILL (137), exit $rc"
  log "volchain died by SIGKILL as asked"
  show_lvs
  log "B's local state dir (lost at power-off):"; find "$VOLCHAIN_STATE_DIR" -type f >&2 || true
  check_lockspace "after the crash"
  log "B dies: deactivates everything, leaves the lockspace, powers off"
  t B:vgchange_an       vgchange -an "$VG" >&2                 || fail "vgchange -an $VG"
  t B:lock_stop         lock_teardown "$VG"
  sig B_dead
  sig B_phase2_ok
fi

t B:lock_stop lock_teardown "$VG"
log "B total in-guest: $(since "$T0") s"
