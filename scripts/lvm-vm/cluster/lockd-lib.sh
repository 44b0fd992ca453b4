# lockd-lib.sh -- sourced inside a scripts/lvm-vm/run-in-vm.sh guest: a shared LVM VG under lvmlockd + sanlock,
# one guest per "host", all guests on one raw image (run-in-vm.sh with VM_SHARE=1: a SAN LUN seen by every host).
# Adapted from the project's shared lvm-vm notes (cluster/lockd-lib.sh).
#
#   lock_setup HOST_ID [IO_TIMEOUT]  lvm.conf use_lvmlockd=1 + host_id (the guest's /etc is a RAM layer), then
#                                    start sanlock and lvmlockd (-o IO_TIMEOUT: sanlock I/O timeout, default 10 s)
#   lock_start VG                    join the VG's lockspace (vgchange --lock-start, retried once, see below)
#   lock_teardown [VG]               deactivate VG's LVs, leave every lockspace (frees this host_id's lease on
#                                    disk: without that the next start on the image waits ~86 s), stop daemons
#   t LABEL CMD...                   run CMD, print "T LABEL <seconds> rc=<rc>" on stderr, return CMD's rc
#   sig NAME / waitfor NAME [SECS]   coordination between guests: files in $SYNC (under the shared $VM_WORKDIR);
#                                    waitfor gives up when $SYNC/${PEER}_exit appears (the peer's script ended)
#   expect_fail CMD...               CMD must fail
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.2f", b-a}'; }
t() { local l=$1 a rc=0; shift; a=$(now); "$@" || rc=$?
      printf 'T %-30s %6s s rc=%s\n' "$l" "$(since "$a")" "$rc" >&2; return $rc; }
log() { printf '%s [%s] %s\n' "$(date +%T)" "${HOST_NAME:-?}" "$*" >&2; }

lock_setup() {
  local hid=${1:?host_id} iot=${2:-} i
  # use_lvmlockd is commented out (default 0) in Debian's lvm.conf; host_id goes to lvmlocal.conf
  sed -i 's/^\s*#\s*use_lvmlockd = 0/\tuse_lvmlockd = 1/' /etc/lvm/lvm.conf
  printf 'local {\n\thost_id = %s\n}\n' "$hid" > /etc/lvm/lvmlocal.conf
  [ "$(lvmconfig --typeconfig full global/use_lvmlockd)" = use_lvmlockd=1 ] || { echo "lvm.conf edit failed" >&2; return 1; }
  mkdir -p /run/lvm /run/sanlock
  # no /dev/watchdog in the guest (and no wdmd): -w 0. Forks; runs as user sanlock plus a root helper.
  sanlock daemon -w 0 || return 1
  for i in $(seq 100); do sanlock client status >/dev/null 2>&1 && break; sleep 0.1; done
  # Joining a lockspace costs about 2 x io_timeout (+ renewal slack): small values keep tests short.
  lvmlockd ${iot:+-o "$iot"} || return 1
  for i in $(seq 100); do [ -S /run/lvm/lvmlockd.socket ] && lvmlockctl --info >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "lvmlockd did not come up" >&2; return 1
}

# Without udev, the first `vgchange --lock-start` on a host where the VG's internal lvmlock LV is not active yet
# fails with "VG x start failed: invalid parameters for sanlock": lvm activates <vg>-lvmlock but creates
# /dev/mapper/<vg>-lvmlock only after lvmlockd stat()ed it. Retry after dmsetup mknodes.
lock_start() { vgchange --lock-start "$@" 2>/dev/null || { dmsetup mknodes; vgchange --lock-start "$@"; }; }

# lockspace_ok VG: this host still holds its lease in VG's lockspace. When sanlock cannot renew it in time
# (8 x io_timeout), lvmlockd drops the VG's locks and LVM carries on "without a lock": a test would then
# no longer test locking.
lockspace_ok() {
  local err; err=$(vgs "$1" 2>&1 >/dev/null) || true
  ! grep -qiE 'lock skipped|without a lock|storage failed|failed lock' <<<"$err" &&
    sanlock client status 2>/dev/null | grep -q "^s lvm_$1:"
}
lock_diagnostics() {
  echo "--- sanlock client status" >&2; sanlock client status >&2 2>&1 || true
  echo "--- lvmlockctl --info" >&2; lvmlockctl --info >&2 2>&1 || true
  echo "--- sanlock log (last 40 lines)" >&2; sanlock client log_dump 2>&1 | tail -40 >&2 || true
}

lock_teardown() {
  [ -n "${1:-}" ] && vgchange -an "$1" >/dev/null 2>&1   # --lock-stop refuses while LVs are active
  vgchange --lock-stop >/dev/null 2>&1 || true
  lvmlockctl --stop-lockspaces --wait 1 >/dev/null 2>&1 || true
  kill "$(cat /run/lvmlockd.pid 2>/dev/null)" 2>/dev/null || true
  sanlock client shutdown -f 1 >/dev/null 2>&1 || true
}

sig() { touch "$SYNC/$1"; }
waitfor() {
  local i n=$(( ${2:-${CLUSTER_WAIT:-600}} * 10 ))
  for ((i = 0; i < n; i++)); do
    [ -e "$SYNC/$1" ] && return 0
    [ -n "${PEER:-}" ] && [ -e "$SYNC/${PEER}_exit" ] && [ ! -e "$SYNC/$1" ] && { log "peer $PEER exited while this host waited for '$1'"; return 1; }
    sleep 0.1
  done
  log "timeout waiting for '$1'"; return 1
}
expect_fail() { if "$@"; then echo "UNEXPECTED SUCCESS: $*" >&2; return 1; else echo "expected failure: $*" >&2; fi; }
