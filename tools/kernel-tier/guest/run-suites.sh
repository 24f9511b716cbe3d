#!/usr/bin/env bash
# guest/run-suites.sh [FILE...]: inside the kernel-tier guest, make the devices the host-generic
# suites need and run them on LinuxHost with vitest (all of them, or the FILEs given, as by hand:
# boot-guest.sh 'bash tools/kernel-tier/guest/run-suites.sh packages/sim/test/x.host.test.ts');
# the JSON report goes back to the host for the verdict.
set -euo pipefail

say() { echo "[guest] $*"; }

# An mtty mdev (the sample driver's 1-port type) for the VFIO migration suite. mdevs have no
# PCI address: the test finds its cdev under /sys/bus/mdev/devices/<uuid>/vfio-dev/.
create_mtty_mdev() {
  local types=/sys/class/mdev_bus/mtty/mdev_supported_types uuid
  [ -d "$types/mtty-1" ] || { say "no mtty mdev parent: the kernel lacks CONFIG_SAMPLE_VFIO_MDEV_MTTY"; return 0; }
  uuid=$(cat /proc/sys/kernel/random/uuid)
  echo "$uuid" >"$types/mtty-1/create"
  export VMMKIT_TEST_MTTY_MDEV=$uuid
  say "mtty mdev $uuid: $(ls /sys/bus/mdev/devices/"$uuid"/vfio-dev/)"
}

main() {
  say "kernel $(uname -r), node $(node --version), edu devices: ${VMMKIT_TEST_EDU_DEVICES:-none}"
  create_mtty_mdev
  # The tier config runs files one at a time: they share the guest's devices. The output goes
  # through cat because ttyS1 is a terminal, and vitest would redraw a live summary on it.
  node node_modules/vitest/vitest.mjs run --config vitest.kernel.config.ts "$@" \
    --reporter=default --reporter=json --outputFile.json="$VMMKIT_TIER_RESULTS/report.json" | cat
}

main "$@"
