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
  ensure_host_packages qemu-system-x86 gcc libc6-dev
  "$TIER_DIR/prepare-rootfs.sh"
  "$TIER_DIR/build-kernel.sh"
  check_uapi_facts
}

# The uAPI facts SimHost's 7.2 mode and core's declarations are checked against must be those of
# the kernel the tier built: measure them from its source tree and compare.
check_uapi_facts() {
  local facts=$PROJECT_DIR/packages/core/test/fixtures/linux-uapi-$KERNEL_SERIES.json measured
  measured=$(mktemp)
  node "$TIER_DIR/uapi-facts.mjs" "$BUILD_DIR/src" "$measured"
  if ! cmp -s "$measured" "$facts"; then
    diff "$facts" "$measured" | head -n 20 >&2 || true
    rm -f "$measured"
    die "the uAPI facts of $(cat "$BUILD_DIR/source-version") differ from $facts; regenerate it with: node tools/kernel-tier/uapi-facts.mjs $BUILD_DIR/src $facts"
  fi
  rm -f "$measured"
  log "uAPI facts: $(basename "$facts") matches the headers of $(cat "$BUILD_DIR/source-version")"
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
