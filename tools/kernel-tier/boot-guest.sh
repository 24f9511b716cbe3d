#!/usr/bin/env bash
# boot-guest.sh CMD: boot the kernel-tier guest once, run CMD (a bash command line) in it as root
# with the project as its working directory, stream CMD's output here, and exit with its status.
#
# The guest: QEMU q35 under single-threaded TCG (KVM does not run guests on these machines, and
# multi-threaded TCG crashed the guest kernel at boot now and then), an emulated Intel IOMMU,
# two QEMU edu devices in IOMMU groups of their own, the cached kernel booted straight onto the
# cached Debian root over 9p (read-only), and the project shared read-write at its host path.
# Besides CMD's status: 124 when the guest ran out of time, 125 when it died without a status.
#
# Environment: VMMKIT_KERNEL_TIER_TIMEOUT (seconds, default 3600), VMMKIT_KERNEL_TIER_ACCEL
# (default tcg,thread=single), VMMKIT_KERNEL_TIER_SMP (2), VMMKIT_KERNEL_TIER_MEM (MiB, 3072),
# VMMKIT_KERNEL_TIER_CONSOLE (keep the guest's kernel log in this file), VMMKIT_KERNEL_TIER_RESULTS
# (copy what CMD wrote to $VMMKIT_TIER_RESULTS in the guest into this host folder).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

TIMEOUT=${VMMKIT_KERNEL_TIER_TIMEOUT:-3600}
ACCEL=${VMMKIT_KERNEL_TIER_ACCEL:-tcg,thread=single}
SMP=${VMMKIT_KERNEL_TIER_SMP:-2}
MEM=${VMMKIT_KERNEL_TIER_MEM:-3072}
GUEST_INIT=/sbin/vmmkit-tier-init

# The init lives in the repository: copy it into the cached root when it changed. The root is
# read-only in the guest, so the project's mount point is made here.
install_guest_init() {
  cmp -s "$TIER_DIR/guest/init.sh" "$ROOTFS_DIR$GUEST_INIT" || install -m 0755 "$TIER_DIR/guest/init.sh" "$ROOTFS_DIR$GUEST_INIT"
  mkdir -p "$ROOTFS_DIR$PROJECT_DIR"
}

# The per-run control share: the command and its settings in, the status (and reports) out.
write_control() {
  local ctl=$1
  shift
  printf '%s\n' "$*" >"$ctl/command"
  mkdir "$ctl/results"
  printf 'PROJECT_DIR=%q\n' "$PROJECT_DIR" >"$ctl/env"
}

# Fixed PCI slots, so the edu devices are 0000:00:03.0 and 0000:00:04.0 on every run. A
# pcie.0 slot of its own puts each edu in its own IOMMU group.
run_qemu() {
  local ctl=$1 out=$2
  timeout -k 10 "$TIMEOUT" qemu-system-x86_64 \
    -machine q35,kernel-irqchip=split -accel "$ACCEL" -cpu max -smp "$SMP" -m "$MEM" \
    -nodefaults -display none -monitor none -no-reboot \
    -device intel-iommu,intremap=on,caching-mode=on \
    -device edu,addr=03.0,dma_mask=0xffffffffffffffff \
    -device edu,addr=04.0,dma_mask=0xffffffffffffffff \
    -fsdev "local,id=root,path=$ROOTFS_DIR,security_model=none,readonly=on" \
    -device virtio-9p-pci,addr=05.0,fsdev=root,mount_tag=/dev/root \
    -fsdev "local,id=ctl,path=$ctl,security_model=none" \
    -device virtio-9p-pci,addr=06.0,fsdev=ctl,mount_tag=ctl \
    -fsdev "local,id=project,path=$PROJECT_DIR,security_model=none" \
    -device virtio-9p-pci,addr=07.0,fsdev=project,mount_tag=project \
    -kernel "$KERNEL_DIR/bzImage" \
    -append "console=ttyS0 intel_iommu=on panic=-1 root=/dev/root rootfstype=9p rootflags=trans=virtio,version=9p2000.L,msize=262144,cache=loose ro init=$GUEST_INIT" \
    -serial "file:$ctl/console.log" \
    -chardev "file,id=out,path=$out" -serial chardev:out \
    </dev/null
}

# When the guest reported no status, say why as precisely as the console allows.
explain_death() {
  local ctl=$1 qemu_status=$2
  if [ "$qemu_status" -eq 124 ]; then
    log "the guest did not finish within ${TIMEOUT} s (VMMKIT_KERNEL_TIER_TIMEOUT); the end of its console:"
  else
    log "the guest died without reporting a status (QEMU exited with $qemu_status); the end of its console:"
  fi
  tail -n 40 "$ctl/console.log" >&2 || true
}

# Boot once with control share $1; sets qemu_status. The command's output is followed as the
# guest writes it, not shown after the guest ends.
boot_once() {
  local ctl=$1 qemu_pid
  : >"$ctl/output"
  run_qemu "$ctl" "$ctl/output" &
  qemu_pid=$!
  tail -n +1 -f --pid="$qemu_pid" "$ctl/output" &
  qemu_status=0
  wait "$qemu_pid" || qemu_status=$?
  wait
  [ ! -f "$ctl/init.log" ] || sed 's/^/[guest] /' "$ctl/init.log" >&2
  [ -z "${VMMKIT_KERNEL_TIER_CONSOLE:-}" ] || cp "$ctl/console.log" "$VMMKIT_KERNEL_TIER_CONSOLE"
  [ -z "${VMMKIT_KERNEL_TIER_RESULTS:-}" ] || cp -r "$ctl/results/." "$VMMKIT_KERNEL_TIER_RESULTS"
}

main() {
  [ $# -ge 1 ] || die "usage: boot-guest.sh CMD"
  [ -f "$KERNEL_DIR/bzImage" ] && [ -x "$ROOTFS_DIR/usr/bin/node" ] || die "no guest yet: run test-kernel.sh (it prepares one)"
  install_guest_init
  local ctl attempt qemu_status
  trap 'rm -rf "${ctl:-}"' EXIT
  # A guest that dies before its init runs (TCG has been seen to reset one early in boot now and
  # then) is booted once more; one that dies after the command started is never run again.
  for attempt in 1 2; do
    ctl=$(mktemp -d "${TMPDIR:-/tmp}/vmmkit-tier.XXXXXX")
    write_control "$ctl" "$@"
    boot_once "$ctl"
    [ -f "$ctl/status" ] && exit "$(cat "$ctl/status")"
    explain_death "$ctl" "$qemu_status"
    [ "$qemu_status" -eq 124 ] && exit 124
    [ -f "$ctl/init.log" ] && exit 125
    [ "$attempt" -eq 1 ] && log "the guest died while booting, before its init ran: booting it again"
    rm -rf "$ctl"
  done
  exit 125
}

main "$@"
