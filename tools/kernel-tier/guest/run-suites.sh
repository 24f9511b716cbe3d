#!/usr/bin/env bash
# guest/run-suites.sh [FILE...]: inside the kernel-tier guest, make the devices the host-generic
# suites need and run them on LinuxHost with vitest (all of them, or the FILEs given, as by hand:
# boot-guest.sh 'bash tools/kernel-tier/guest/run-suites.sh packages/sim/test/x.host.test.ts');
# the JSON report goes back to the host for the verdict.
set -euo pipefail

say() { echo "[guest] $*"; }

# Two mtty mdevs (the sample driver's 1-port type) for the VFIO migration suites: one to save
# from and one to load into. mdevs have no PCI address: a test finds an mdev's cdev under
# /sys/bus/mdev/devices/<uuid>/vfio-dev/. VMMKIT_TEST_MTTY_MDEV names the first alone.
create_mtty_mdevs() {
  local types=/sys/class/mdev_bus/mtty/mdev_supported_types uuid uuids= i
  [ -d "$types/mtty-1" ] || { say "no mtty mdev parent: the kernel lacks CONFIG_SAMPLE_VFIO_MDEV_MTTY"; return 0; }
  for i in 1 2; do
    uuid=$(cat /proc/sys/kernel/random/uuid)
    echo "$uuid" >"$types/mtty-1/create"
    say "mtty mdev $uuid: $(ls /sys/bus/mdev/devices/"$uuid"/vfio-dev/)"
    uuids=${uuids:+$uuids,}$uuid
  done
  export VMMKIT_TEST_MTTY_MDEVS=$uuids VMMKIT_TEST_MTTY_MDEV=${uuids%%,*}
}

main() {
  say "kernel $(uname -r), node $(node --version), edu devices: ${VMMKIT_TEST_EDU_DEVICES:-none}"
  create_mtty_mdevs
  # The tier config runs files one at a time: they share the guest's devices. The output goes
  # through cat because ttyS1 is a terminal, and vitest would redraw a live summary on it.
  # Arguments (file filters) narrow the run, e.g. by hand: boot-guest.sh 'bash
  # tools/kernel-tier/guest/run-suites.sh packages/migration'.
  node node_modules/vitest/vitest.mjs run --config vitest.kernel.config.ts \
    --reporter=default --reporter=json --outputFile.json="$VMMKIT_TIER_RESULTS/report.json" "$@" | cat
}

main "$@"
