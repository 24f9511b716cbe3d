#!/usr/bin/env bash
# test-vfio-user.sh [VITEST_ARGS...] (npm run test:vfio-user): the vfio-user tier. Prepares the
# QEMU root once (cached; prepare.sh), builds the workspace (the device server runs from the
# built CLI), and runs the tier's suites (vitest.vfio-user.config.ts) on QEMU 11.1 with qtest
# playing the guest. Exits with vitest's status.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

main() {
  local t0 t1 t2 status=0
  [ "$(id -u)" -eq 0 ] || die "the tier needs root (debootstrap, chroot, unshare)"
  [ -d "$PROJECT_DIR/node_modules/vitest" ] || die "no node_modules: run npm ci first"
  t0=$(now)
  "$TIER_DIR/prepare.sh"
  t1=$(now)
  log "building the workspace (tsc -b)"
  (cd "$PROJECT_DIR" && npx tsc -b)
  # The vmmkit command rebuilds itself when it thinks its build is stale (tsc -b leaves unchanged
  # outputs alone, so it may): let it do so now rather than inside a suite's start-up time.
  node "$PROJECT_DIR/examples/bin/vmmkit.js" --help >/dev/null
  t2=$(now)
  (cd "$PROJECT_DIR" && npx vitest run -c vitest.vfio-user.config.ts "$@") || status=$?
  log "prepare $((t1 - t0)) s, build $((t2 - t1)) s, suites $(($(now) - t2)) s; vitest status $status"
  exit "$status"
}

main "$@"
