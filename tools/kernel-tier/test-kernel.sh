#!/usr/bin/env bash
# test-kernel.sh (npm run test:kernel): the real-kernel test tier. Prepares the guest once (host
# packages, Debian root, kernel built from Debian's source; all cached), boots it, runs the
# host-generic suites (*.host.test.ts) on LinuxHost inside it, and ends with "N passed, N failed".
# Exits non-zero on a failure, on guest death or timeout, or when nothing ran on the real kernel.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

prepare() {
  [ "$(id -u)" -eq 0 ] || die "the tier needs root (apt-get, debootstrap, chroot)"
  [ -d "$PROJECT_DIR/node_modules/vitest" ] || die "no node_modules: run npm ci first"
  ensure_host_packages qemu-system-x86
  "$TIER_DIR/prepare-rootfs.sh"
  "$TIER_DIR/build-kernel.sh"
}

main() {
  local t0 t1 results status=0
  t0=$(now)
  log "cache: $CACHE_DIR (VMMKIT_KERNEL_TIER_CACHE)"
  prepare
  t1=$(now)
  results=$(mktemp -d "${TMPDIR:-/tmp}/vmmkit-tier-results.XXXXXX")
  trap 'rm -rf "$results"' EXIT
  log "booting the guest ($(cat "$KERNEL_DIR/release")) to run the suites on LinuxHost"
  VMMKIT_KERNEL_TIER_RESULTS=$results "$TIER_DIR/boot-guest.sh" bash tools/kernel-tier/guest/run-suites.sh || status=$?
  log "preparation $((t1 - t0)) s, guest run $(($(now) - t1)) s; guest status $status"
  # The verdict comes from the report, so a guest that died mid-run still says what it saw.
  node "$TIER_DIR/summarize.mjs" "$results/report.json" || { [ "$status" -ne 0 ] || status=1; }
  exit "$status"
}

main "$@"
