#!/bin/bash
# run-in-vm.sh 'shell command' -- run a bash command as root in a throw-away Linux VM
# (qemu, KVM where a probe boot proved it works, else TCG software emulation) whose kernel has
# device-mapper (dm-mod, dm-thin-pool, dm-snapshot, dm-mirror), that sees the host's
# root filesystem (read-only 9p + tmpfs overlay: host lvm, node, qemu-img... work),
# scratch disks /dev/vdb, /dev/vdc, ... and $VM_WORKDIR shared read-write at the same
# path. Guest stdout/stderr -> host stdout/stderr; exit status = the command's
# (124 = timeout, 125 = VM/boot failure; the guest console log is then on stderr).
# env: VM_WORKDIR=$PWD  VM_DISKS="1G 1G" (new sparse raw disks of these sizes, or
#      existing image files)  VM_MEM=1024 (MiB)  VM_CPUS=2  VM_TIMEOUT=600 (s)
#      VM_ENV="VAR1 VAR2" (host variables exported in the guest)
#      VM_CACHE=<repo>/.cache/lvmvm (kernel+initramfs, built once)  VM_DEBUG=1 (kernel log)
#      VM_BOOT_TIMEOUT="120 300" (volchain: s per boot attempt until the guest's init runs; a guest that
#      hangs while booting is killed and booted again, the next attempt with the kernel log on)
#      VM_PREPARE_ONLY=1 (volchain: build the cache and exit, no boot)
#      VM_MACHINE=microvm (or pc)  VM_CPU=Nehalem-v1 (TCG CPU model; volchain addition)
#      VM_ACCEL=kvm|tcg (skip the KVM probe; see choose_accel)  VM_KVM_CPU=host (CPU model of forced KVM)
#      VM_SHARE=1: existing image files in VM_DISKS are attached so that several VMs
#      can use them at the same time (cluster tests: lvmlockd+sanlock): host page
#      cache bypassed (cache=$VM_SHARE_CACHE, default none = O_DIRECT), qemu image
#      locking off (file.locking=off), share-rw=on on the virtio-blk device
# needs (Debian): qemu-system-x86 qemu-utils lvm2 thin-provisioning-tools; the first run
#      apt-get downloads (not installs) linux-image-6.1.*-amd64 + busybox-static (~10 s)
set -euo pipefail
CMD=${1:?usage: run-in-vm.sh 'command'}
# volchain: cache in the project's own git-ignored .cache/ (this file lives in <repo>/scripts/lvm-vm/)
CACHE=${VM_CACHE:-$(cd "$(dirname "$0")/../.." && pwd)/.cache/lvmvm}
WORK=$(realpath "${VM_WORKDIR:-$PWD}")
MODS="virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_mmio
 virtio_blk virtio_console 9pnet 9pnet_virtio netfs fscache 9p overlay crc32c_generic
 libcrc32c dm-mod dm-bufio dm-bio-prison dm-persistent-data dm-thin-pool dm-snapshot
 dm-log dm-region-hash dm-mirror"   # in dependency order

build() {   # once: Debian kernel + busybox-static -> $CACHE/vmlinux + $CACHE/initrd.img
  local t m f i=10 off kpkg; t=$(mktemp -d); mkdir -p "$CACHE"
  # Debian's generic kernel (the cloud flavour lacks 9p); 9p, virtio, dm are modules there
  kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/.*Depends: \(linux-image-[0-9].*\)/\1/p')
  # volchain: on a fresh machine the package lists may be empty: update them once (as root) and retry
  if [ -z "$kpkg" ] && [ "$(id -u)" = 0 ]; then apt-get update -qq >/dev/null 2>&1 || true
    kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/.*Depends: \(linux-image-[0-9].*\)/\1/p'); fi
  ( cd "$t" && apt-get download "${kpkg%%$'\n'*}" busybox-static >/dev/null 2>&1 ) ||
    { [ "$(id -u)" = 0 ] && apt-get update -qq >/dev/null 2>&1 &&
      ( cd "$t" && apt-get download "${kpkg%%$'\n'*}" busybox-static >/dev/null 2>&1 ); } ||
    { echo "run-in-vm: apt-get download ${kpkg:-linux-image-?} busybox-static failed (apt-get update?)" >&2; exit 125; }
  dpkg-deb -x "$t"/linux-image-*.deb "$t/k"; dpkg-deb -x "$t"/busybox-static*.deb "$t/b"
  mkdir -p "$t/i/bin" "$t/i/mod"; cp "$t/b/bin/busybox" "$t/i/bin/"
  for m in $MODS; do
    f=$(find "$t"/k/lib/modules/*/kernel -name "$m.ko" -o -name "${m//-/_}.ko" | sed -n 1p)
    [ -n "$f" ] || { echo "run-in-vm: module $m missing" >&2; exit 125; }
    cp "$f" "$t/i/mod/$((i++))-$m.ko"
  done
  cat > "$t/i/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin; export PATH=/bin
bye() { sync; poweroff -f; echo o > /proc/sysrq-trigger; sleep 5; reboot -f; }
fail() { echo "vm-init: $* failed"; bye; }
mkdir -p /proc /sys /dev /ctl /lo /up /nr
mount -t proc p /proc; mount -t sysfs s /sys; mount -t devtmpfs d /dev
for m in /mod/*.ko; do insmod $m || fail "insmod $m"; done
o=trans=virtio,version=9p2000.L,msize=262144
mount -t 9p -o $o vmctl /ctl || fail "9p vmctl"
: > /ctl/booted   # volchain: the host's boot watchdog stops here; nothing of the command has run yet
mount -t 9p -o $o,ro,cache=loose hostroot /lo || fail "9p hostroot"
mount -t tmpfs -o mode=755 up /up; mkdir /up/u /up/w
mount -t overlay -o lowerdir=/lo,upperdir=/up/u,workdir=/up/w ov /nr || fail overlay
mount -t proc p /nr/proc; mount -t sysfs s /nr/sys; mount -t devtmpfs d /nr/dev
mkdir -p /nr/dev/pts /nr/dev/shm; mount -t devpts pt /nr/dev/pts
for d in run dev/shm; do mount -t tmpfs -o mode=1777 t /nr/$d; done  # rest: overlay (RAM)
chmod 755 /nr/run; mkdir -p /nr/run/lock /nr/run/vmctl; mount -o bind /ctl /nr/run/vmctl
W=$(cat /ctl/workdir); mkdir -p "/nr$W"; mount -t 9p -o $o work "/nr$W" || fail "9p work"
for n in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do  # virtio ports show up async
  for p in /sys/class/virtio-ports/*; do [ -s $p/name ] && ln -sf /dev/${p##*/} /dev/port-$(cat $p/name); done
  [ -e /dev/port-out ] && [ -e /dev/port-err ] && break; sleep 0.1
done
chroot /nr /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  HOME=/root TERM=dumb LANG=C.UTF-8 DM_DISABLE_UDEV=1 VM_WORKDIR="$W" \
  /bin/bash /run/vmctl/cmd.sh </dev/null >/dev/port-out 2>/dev/port-err
echo $? > /ctl/rc; bye
EOF
  chmod +x "$t/i/init"
  ( cd "$t/i" && find . | "$t/b/bin/busybox" cpio -o -H newc 2>/dev/null | gzip -1 ) > "$t/initrd.img"
  # boot the uncompressed ELF vmlinux via PVH: skips xz decompression (seconds under TCG)
  off=$(LC_ALL=C grep -obUaP -m1 '\xfd7zXZ\x00' "$t"/k/boot/vmlinuz-* | LC_ALL=C sed -n '1s/:.*//p')
  tail -c +$((off+1)) "$t"/k/boot/vmlinuz-* | xz -dcq --single-stream > "$t/vmlinux" || true
  [ "$(head -c4 "$t/vmlinux" | od -An -c | tr -d ' ')" = 177ELF ] ||
    { echo "run-in-vm: vmlinux extraction failed" >&2; exit 125; }
  mv "$t/initrd.img" "$t/vmlinux" "$CACHE/"; rm -rf "$t"
  printf '%s\n' "$RECIPE" > "$CACHE/recipe.tmp.$$" && mv -f "$CACHE/recipe.tmp.$$" "$CACHE/recipe"
}
# volchain: the cache is rebuilt when this recipe changes (the init script lives inside the initrd)
RECIPE=$(sed -n '/^build() {/,/^}/p' "$0" | cksum | cut -d' ' -f1)
[ -s "$CACHE/vmlinux" ] && [ -s "$CACHE/initrd.img" ] && [ "$(cat "$CACHE/recipe" 2>/dev/null)" = "$RECIPE" ] ||
  build   # ~10 s, once
[ -n "${VM_PREPARE_ONLY:-}" ] && exit 0

# volchain: KVM only where a guest really boots. /dev/kvm may be absent, working, or present but broken
# (nested virtualisation: QEMU aborts setting MSR 0x10a for -cpu host, or the kernel never starts with
# -cpu host,-arch-capabilities). So the first run after each host boot probes: it boots this guest under
# KVM with each CPU model in turn, running `true` (VM_PROBE_TIMEOUT, 15 s), and caches the verdict in
# $CACHE/accel.<boot_id> ("kvm <cpu>" or "tcg"); concurrent runs wait for one probe (flock).
# VM_ACCEL=kvm|tcg skips the probe; VM_KVM_CPU picks the forced KVM CPU model (host);
# VM_KVM_DEV (test hook, default /dev/kvm) is the device whose presence makes KVM a candidate.
choose_accel() {   # prints "kvm <cpu>" or "tcg"
  local kdev=${VM_KVM_DEV:-/dev/kvm} boot file c verdict=tcg
  case ${VM_ACCEL:-} in
    tcg) echo tcg; return ;;
    kvm) echo "kvm ${VM_KVM_CPU:-host}"; return ;;
    '') ;;
    *) echo "run-in-vm: VM_ACCEL must be kvm or tcg, not '${VM_ACCEL}'" >&2; exit 2 ;;
  esac
  [ -w "$kdev" ] || { echo tcg; return; }
  boot=$(cat /proc/sys/kernel/random/boot_id 2>/dev/null || echo unknown-boot)
  file=$CACHE/accel.$boot
  if [ ! -s "$file" ]; then
    exec 9>"$CACHE/accel.lock"; flock 9   # one probe at a time; the others then read its verdict
    if [ ! -s "$file" ]; then
      for c in host host,-arch-capabilities; do
        if VM_ACCEL=kvm VM_KVM_CPU=$c VM_TIMEOUT=${VM_PROBE_TIMEOUT:-15} VM_BOOT_TIMEOUT=${VM_PROBE_TIMEOUT:-15} \
             VM_DISKS= VM_MEM=256 VM_CPUS=1 \
             VM_DEBUG= VM_WORKDIR=$CACHE "$0" true </dev/null >/dev/null 2>&1 9>&-; then
          verdict="kvm $c"; break
        fi
      done
      rm -f "$CACHE"/accel.*-*-*   # verdicts of earlier host boots
      echo "$verdict" > "$file.tmp.$$" && mv -f "$file.tmp.$$" "$file"
    fi
    exec 9>&-
  fi
  verdict=$(cat "$file")
  [ "$verdict" = tcg ] && echo "run-in-vm: $kdev is present but a KVM guest does not boot on this host" \
    "(probe cached in $file); using TCG (VM_ACCEL=kvm forces KVM)" >&2
  echo "$verdict"
}
ACCEL=$(choose_accel)


CTL=$(mktemp -d /tmp/vmctl.XXXXXX); RELAY=(); QPID=
trap 'kill $QPID "${RELAY[@]}" 2>/dev/null || true; rm -rf "$CTL"' EXIT
trap 'exit 143' TERM INT HUP   # a killed script takes its VM down with it
printf '%s\n' "$WORK" > "$CTL/workdir"
{ for v in ${VM_ENV:-}; do printf 'export %s=%q\n' "$v" "${!v-}"; done
  printf 'cd %q || exit 125\n%s\n' "$WORK" "$CMD"; } > "$CTL/cmd.sh"
mkfifo "$CTL/out" "$CTL/err"
MACH=${VM_MACHINE:-microvm}   # microvm: ~1.5 s faster boot than pc under TCG; pc: PCI + SeaBIOS
if [ "$MACH" = microvm ]; then BUS=device; MOPT=microvm,acpi=on,pit=on,pic=off,rtc=on; else BUS=pci; MOPT=$MACH; fi
truncate -s 1M "$CTL/vda.raw"   # dummy /dev/vda, so scratch disks are /dev/vdb, /dev/vdc, ...
DEV=(-drive "file=$CTL/vda.raw,format=raw,if=none,id=d0" -device virtio-blk-$BUS,drive=d0)
n=1
for d in ${VM_DISKS-1G 1G}; do
  dopt=cache=unsafe; vopt=
  if [ -e "$d" ]; then img=$d; fmt=$(qemu-img info -U "$d" 2>/dev/null | sed -n 's/^file format: //p')
    [ -n "${VM_SHARE:-}" ] && { dopt=cache=${VM_SHARE_CACHE:-none},file.locking=off; vopt=,share-rw=on; }
  else img=$CTL/disk$n.raw; fmt=raw; truncate -s "$d" "$img"; fi
  DEV+=(-drive "file=${img//,/,,},format=${fmt:-raw},if=none,id=d$n,$dopt,discard=unmap"
        -device virtio-blk-$BUS,drive=d$n$vopt)
  n=$((n+1))
done
share() { DEV+=(-fsdev "local,id=$2,path=${1//,/,,},security_model=none,multidevs=remap${3-}"
                -device "virtio-9p-$BUS,fsdev=$2,mount_tag=$2"); }
share / hostroot ,readonly=on; share "$CTL" vmctl; share "$WORK" work
DEV+=(-device virtio-serial-$BUS
      -chardev "file,id=out,path=$CTL/out" -device virtserialport,chardev=out,name=out
      -chardev "file,id=err,path=$CTL/err" -device virtserialport,chardev=err,name=err)
KARGS="console=ttyS0 panic=-1 quiet loglevel=0"; [ -n "${VM_DEBUG:-}" ] && KARGS="console=ttyS0 panic=-1 loglevel=7"
if [ "${ACCEL%% *}" = kvm ]; then ACC=(-accel kvm -cpu "${ACCEL#kvm }")
else # volchain: TCG runs the SSE4.2 code glibc picks for Nehalem faster than the AVX2 paths it picks for
  # -cpu max (measured: LVM commands, qemu-img and node start ~1.3-1.6x faster); VM_CPU overrides
  ACC=(-accel "tcg,thread=multi,tb-size=${VM_TB_SIZE:-128}" -cpu "${VM_CPU:-Nehalem-v1}")
  # microvm has no HPET/PM timer; PIT-based TSC calibration is flaky under TCG (hangs ~1 boot in 3)
  # and the TCG guest TSC is the host's, so hand the kernel the host's TSC rate
  [ "$MACH" = microvm ] && KARGS+=" tsc_early_khz=$(awk '/^cpu MHz/{printf "%d", $4*1000; exit}' /proc/cpuinfo) tsc=reliable"
fi
# volchain: a boot watchdog. Under TCG on a loaded host a guest now and then hangs before its init runs
# (seen in CI: 600 s of nothing on the console). The init touches $CTL/booted before it starts the command,
# so a guest without that file after VM_BOOT_TIMEOUT has run nothing and is safely killed and booted again;
# the retry logs the kernel's messages, so a second hang shows where it stopped. A guest that finished its
# command (rc written) but does not power off within 30 s is killed too: the command's status stands.
read -ra BOOT_TIMEOUTS <<< "${VM_BOOT_TIMEOUT:-120 300}"
attempt=0; rc=0
for boot_timeout in "${BOOT_TIMEOUTS[@]}"; do
  attempt=$((attempt+1)); rc=0; hung=; rm -f "$CTL/booted" "$CTL/rc" "$CTL/console.log"
  cat "$CTL/out" & RELAY=($!); cat "$CTL/err" >&2 & RELAY+=($!)
  timeout -k 5 "${VM_TIMEOUT:-600}" qemu-system-x86_64 "${ACC[@]}" -M "$MOPT" \
    -m "${VM_MEM:-1024}" -smp "${VM_CPUS:-2}" -nographic -nodefaults -no-reboot -monitor none \
    -serial "file:$CTL/console.log" -kernel "$CACHE/vmlinux" -initrd "$CACHE/initrd.img" \
    -append "$KARGS" "${DEV[@]}" </dev/null & QPID=$!
  ticks=0; done_ticks=
  while kill -0 "$QPID" 2>/dev/null; do
    if [ ! -e "$CTL/booted" ] && [ $ticks -ge $((boot_timeout * 5)) ]; then hung=boot; break; fi
    if [ -s "$CTL/rc" ]; then done_ticks=${done_ticks:-$ticks}
      [ $((ticks - done_ticks)) -ge 150 ] && { hung=poweroff; break; }; fi
    sleep 0.2; ticks=$((ticks+1))
  done
  [ -n "$hung" ] && kill "$QPID" 2>/dev/null
  wait "$QPID" || rc=$?; QPID=
  exec 3<>"$CTL/out" 4<>"$CTL/err" 3>&- 4>&-   # unblock relays if qemu never opened the fifos
  wait "${RELAY[@]}" 2>/dev/null || true; RELAY=()
  [ "$hung" = poweroff ] && { echo "run-in-vm: the guest finished its command but did not power off; stopped it" >&2; rc=0; }
  [ "$hung" = boot ] && [ ! -e "$CTL/booted" ] || break
  echo "run-in-vm: the guest did not boot within ${boot_timeout}s (attempt $attempt of ${#BOOT_TIMEOUTS[@]}, ${ACCEL%% *})" >&2
  tail -n 40 "$CTL/console.log" >&2 2>/dev/null || true
  KARGS="${KARGS/quiet loglevel=0/loglevel=7}"   # the next attempt shows where a boot stops
done
# (a QEMU that aborted at start-up never made the console log: a missing log must not turn 125 into 1)
if [ "$rc" != 0 ] || [ ! -s "$CTL/rc" ] || [ -n "${VM_DEBUG:-}" ]; then cat "$CTL/console.log" >&2 2>/dev/null || true; fi
[ "$hung" = boot ] && { echo "run-in-vm: the guest never booted (${#BOOT_TIMEOUTS[@]} attempts); see the console log above" >&2; exit 125; }
[ "$rc" = 124 ] && { echo "run-in-vm: timeout after ${VM_TIMEOUT:-600}s" >&2; exit 124; }
[ -s "$CTL/rc" ] || { echo "run-in-vm: VM failed (qemu rc=$rc)" >&2; exit 125; }
exit "$(cat "$CTL/rc")"
