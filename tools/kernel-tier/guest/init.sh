#!/bin/sh
# guest/init.sh: PID 1 of the kernel-tier guest (installed into the cached root by boot-guest.sh).
# The root is Debian's, read-only over 9p; this makes the writable places a program expects,
# binds the edu devices to vfio-pci, mounts the project at its host path, runs the command that
# boot-guest.sh left in the control share, writes its status there, and powers the guest off.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 TERM=dumb HOME=/tmp
CTL=/run/vmmkit-tier

# Messages go to the kernel console and to the control share, which boot-guest.sh shows the user.
say() {
  echo "vmmkit-init: $*" >/dev/console
  [ -d "$CTL" ] && echo "vmmkit-init: $*" >>"$CTL/init.log"
}

# Whatever happens, report a status and power off: a guest that hangs costs the host its timeout.
finish() {
  echo "$1" >"$CTL/status"
  sync
  busybox poweroff -f
}

mount_basics() {
  mount -t proc proc /proc
  mount -t sysfs sysfs /sys
  mountpoint -q /dev || mount -t devtmpfs devtmpfs /dev
  mkdir -p /dev/pts /dev/shm
  mount -t devpts devpts /dev/pts
  for d in /tmp /run /dev/shm /var/tmp; do mount -t tmpfs -o mode=1777 tmpfs "$d"; done
  mount -t debugfs debugfs /sys/kernel/debug
  [ -e /dev/fd ] || ln -s /proc/self/fd /dev/fd
  mkdir -p "$CTL"
  mount -t 9p -o trans=virtio,version=9p2000.L ctl "$CTL" || { say "cannot mount the control share"; busybox poweroff -f; }
}

# vfio-pci clears Bus Master Enable when a device is opened; binding is all the guest does here.
bind_edu_devices() {
  local d bdf devices=
  for d in /sys/bus/pci/devices/*; do
    [ "$(cat "$d/vendor"):$(cat "$d/device")" = "0x1234:0x11e8" ] || continue
    bdf=${d##*/}
    echo vfio-pci >"$d/driver_override"
    echo "$bdf" >/sys/bus/pci/drivers_probe
    [ "$(basename "$(readlink "$d/driver")")" = vfio-pci ] || say "could not bind $bdf to vfio-pci"
    devices=${devices:+$devices,}$bdf
  done
  echo "$devices"
}

main() {
  mount_basics
  . "$CTL/env"   # PROJECT_DIR
  # Where the command leaves files for the host (boot-guest.sh's VMMKIT_KERNEL_TIER_RESULTS).
  export VMMKIT_TIER_RESULTS=$CTL/results
  busybox ip link set lo up
  export VMMKIT_TEST_EDU_DEVICES
  VMMKIT_TEST_EDU_DEVICES=$(bind_edu_devices)
  mkdir -p "$PROJECT_DIR"
  mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,cache=mmap project "$PROJECT_DIR" \
    || { say "cannot mount the project at $PROJECT_DIR"; finish 125; }
  cd "$PROJECT_DIR"
  # ttyS1 carries the command's output to the host: raw, so that no \r is added to each line.
  stty -F /dev/ttyS1 raw -echo 115200
  say "running the command at $(cut -d' ' -f1 /proc/uptime) s of guest uptime"
  bash "$CTL/command" </dev/null >/dev/ttyS1 2>&1
  local status=$?
  say "the command exited with status $status at $(cut -d' ' -f1 /proc/uptime) s"
  finish $status
}

main
