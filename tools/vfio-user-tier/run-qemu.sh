#!/usr/bin/env bash
# run-qemu.sh QEMU_ARGS...: run the tier's QEMU (qemu-system-x86_64 from trixie-backports) in the
# root prepare.sh built, with QEMU_ARGS as given. Paths in them are paths inside the root: put
# sockets in a folder under $ROOT_DIR/run/vmmkit, where the host sees them too.
#
# QEMU never outlives its caller: it runs as the forked child of unshare(1) --kill-child, in a
# PID namespace of its own, and unshare gets SIGKILL when its parent (the caller) dies
# (setpriv --pdeathsig, kept across exec). Killing this command's process kills QEMU with it.
# The mount namespace with the root's /proc disappears with QEMU, so nothing is left mounted.
# A caller that must not leak QEMU even if it dies while this script is still starting runs it
# under `setpriv --pdeathsig KILL` itself (support/qemu-peer.ts does).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

[ -f "$STAMP" ] || die "no QEMU root yet: run tools/vfio-user-tier/prepare.sh (needs root and the Debian mirror)"
[ "$(id -u)" -eq 0 ] || die "needs root (chroot, unshare)"
exec setpriv --pdeathsig KILL \
  unshare --mount --pid --fork --kill-child --mount-proc="$ROOT_DIR/proc" \
  chroot "$ROOT_DIR" /usr/bin/qemu-system-x86_64 "$@"
