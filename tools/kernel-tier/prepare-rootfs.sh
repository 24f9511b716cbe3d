#!/usr/bin/env bash
# prepare-rootfs.sh: debootstrap the guest's Debian trixie root (Node.js, busybox) into the cache,
# once. The guest mounts it read-only over 9p; the kernel has everything built in, so the root
# needs no kernel, modules or initramfs tools.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

# nodejs: trixie's 20.19.x meets vitest 4's minimum. busybox-static: ip(8) for the loopback device.
# apt stays (minbase has it) because build-kernel.sh downloads linux-source with the guest's apt.
PACKAGES=nodejs,busybox-static
STAMP=$ROOTFS_DIR/.vmmkit-rootfs

rootfs_is_current() {
  [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$DEBIAN_SUITE $PACKAGES" ]
}

# Build into a temporary folder and rename it at the end, so an interrupted run leaves no half root.
bootstrap() {
  local tmp=$CACHE_DIR/rootfs.partial
  log "debootstrap $DEBIAN_SUITE (minbase + $PACKAGES) into $ROOTFS_DIR (about a minute)"
  debootstrap_into "$tmp" "$DEBIAN_SUITE" "$DEBIAN_MIRROR" "$PACKAGES" "$CACHE_DIR/debootstrap.log"
  # backports carries linux-source-$KERNEL_SERIES; the guest never runs apt, only build-kernel.sh does.
  add_backports "$tmp" "$DEBIAN_SUITE" "$DEBIAN_MIRROR"
  rm -f "$tmp"/var/cache/apt/archives/*.deb
  rm -rf "$ROOTFS_DIR"
  mv "$tmp" "$ROOTFS_DIR"
  echo "$DEBIAN_SUITE $PACKAGES" >"$STAMP"
}

main() {
  if rootfs_is_current; then
    log "guest root: cached ($ROOTFS_DIR)"
    return 0
  fi
  [ "$(id -u)" -eq 0 ] || die "debootstrap needs root"
  ensure_host_packages debootstrap
  bootstrap
  log "guest root ready: node $(chroot "$ROOTFS_DIR" /usr/bin/node --version)"
}

main "$@"
