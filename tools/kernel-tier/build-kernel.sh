#!/usr/bin/env bash
# build-kernel.sh: build the guest kernel from Debian's own linux-source package, once.
# No Debian kernel binary enables IOMMUFD (nor the VFIO cdev, the mtty sample or the iommufd
# selftest mock), so the tier builds one: linux-source-$KERNEL_SERIES from $KERNEL_SUITE, fetched
# with the guest root's apt, configured with kernel.config, about 10 minutes on 2 cores.
# The result is rebuilt only when kernel.config or the source package's version changes.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

PACKAGE=linux-source-$KERNEL_SERIES
FRAGMENT=$TIER_DIR/kernel.config
JOBS=${VMMKIT_KERNEL_TIER_JOBS:-$(($(nproc) + 1))}
SRC=$BUILD_DIR/src
OUT=$BUILD_DIR/out

# What a kernel is built from: the fragment's content and the source package it is applied to.
wanted_stamp() { echo "$(inputs_hash "$FRAGMENT") $PACKAGE/$KERNEL_SUITE"; }

kernel_is_current() {
  [ -f "$KERNEL_DIR/bzImage" ] && [ "$(cat "$KERNEL_DIR/stamp" 2>/dev/null)" = "$(wanted_stamp)" ]
}

# apt inside the guest root knows trixie-backports; the host (any Debian) need not.
fetch_source() {
  [ "$(cat "$BUILD_DIR/source-package" 2>/dev/null)" = "$PACKAGE/$KERNEL_SUITE" ] && [ -f "$SRC/Makefile" ] && return 0
  log "downloading $PACKAGE from $KERNEL_SUITE with the guest root's apt"
  cp /etc/resolv.conf "$ROOTFS_DIR/etc/resolv.conf"
  chroot "$ROOTFS_DIR" apt-get update -q >/dev/null
  rm -rf "$ROOTFS_DIR/tmp/linux-source" "$BUILD_DIR"
  mkdir -p "$ROOTFS_DIR/tmp/linux-source" "$SRC"
  chmod 0777 "$ROOTFS_DIR/tmp/linux-source"   # apt downloads as its unprivileged _apt user
  chroot "$ROOTFS_DIR" sh -c "cd /tmp/linux-source && apt-get download -q '$PACKAGE/$KERNEL_SUITE'" >/dev/null
  local deb
  deb=$(ls "$ROOTFS_DIR"/tmp/linux-source/*.deb)
  log "unpacking $(basename "$deb")"
  # The package holds one tarball, /usr/src/linux-source-X.Y.tar.xz, of Debian's patched source.
  dpkg-deb --fsys-tarfile "$deb" | tar -xO --wildcards './usr/src/linux-source-*.tar.xz' | tar -xJ -C "$SRC" --strip-components=1
  dpkg-deb -f "$deb" Version >"$BUILD_DIR/source-version"
  echo "$PACKAGE/$KERNEL_SUITE" >"$BUILD_DIR/source-package"
  rm -rf "$ROOTFS_DIR/tmp/linux-source" "$ROOTFS_DIR/var/lib/apt/lists"/*_dists_*
}

# defconfig + the KVM-guest fragment + ours; then insist every line of ours took effect.
configure() {
  mkdir -p "$OUT"
  make -s -C "$SRC" O="$OUT" x86_64_defconfig
  make -s -C "$SRC" O="$OUT" kvm_guest.config
  "$SRC/scripts/kconfig/merge_config.sh" -m -O "$OUT" "$OUT/.config" "$FRAGMENT" >"$OUT/merge.log"
  make -s -C "$SRC" O="$OUT" olddefconfig
  local line missing=0
  while IFS= read -r line; do
    case "$line" in
      CONFIG_*=*) grep -qxF "$line" "$OUT/.config" || { log "not applied: $line"; missing=1; } ;;
      "# CONFIG_"*" is not set") grep -q "^${line:2:-11}=" "$OUT/.config" && { log "not applied: $line"; missing=1; } ;;
    esac
  done <"$FRAGMENT"
  [ $missing -eq 0 ] || die "kernel.config does not fit $PACKAGE $(cat "$BUILD_DIR/source-version")"
}

main() {
  if kernel_is_current; then
    log "guest kernel: cached ($(cat "$KERNEL_DIR/release"))"
    return 0
  fi
  [ -x "$ROOTFS_DIR/usr/bin/node" ] || die "no guest root yet: run prepare-rootfs.sh first"
  ensure_host_packages build-essential flex bison bc libelf-dev libssl-dev python3 xz-utils
  local t0
  t0=$(now)
  fetch_source
  configure
  log "building $PACKAGE $(cat "$BUILD_DIR/source-version") (make -j$JOBS bzImage; about 10 minutes on 2 cores)"
  make -s -C "$SRC" O="$OUT" -j"$JOBS" bzImage >"$BUILD_DIR/make.log" 2>&1 \
    || { tail -n 30 "$BUILD_DIR/make.log" >&2; die "kernel build failed (log: $BUILD_DIR/make.log)"; }
  mkdir -p "$KERNEL_DIR"
  cp "$OUT/arch/x86/boot/bzImage" "$KERNEL_DIR/bzImage"
  cp "$OUT/.config" "$KERNEL_DIR/config"
  cp "$OUT/include/config/kernel.release" "$KERNEL_DIR/release"
  wanted_stamp >"$KERNEL_DIR/stamp"
  log "guest kernel $(cat "$KERNEL_DIR/release") built in $(($(now) - t0)) s"
}

main "$@"
