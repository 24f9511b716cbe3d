#!/usr/bin/env bash
# prepare.sh: build (once) the Debian trixie root QEMU runs in for the vfio-user tier: minbase
# trixie plus qemu-system-x86 from trixie-backports, whose binary needs trixie's libraries (the
# host is older). Cached in $CACHE_DIR (VMMKIT_VFIO_USER_TIER_CACHE); rebuilt when this recipe
# changes; serialized with flock so concurrent runs wait for one build instead of racing.
#
# Needs: root (debootstrap, chroot), debootstrap and util-linux's unshare (installed on the host
# with apt-get when missing), and network access to the Debian mirror (VMMKIT_VFIO_USER_TIER_MIRROR,
# default deb.debian.org) on the first run: about a minute for debootstrap and 15 s for QEMU.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

# --no-install-recommends keeps the root small: the tier needs the emulator, SeaBIOS and nothing
# that draws a screen.
QEMU_PACKAGES="qemu-system-x86"

# The recipe's identity: this script, the shared settings and helpers. Any change rebuilds.
recipe() { echo "$(inputs_hash "$TIER_DIR/prepare.sh" "$TIER_DIR/lib.sh" "$TIER_DIR/../lib/debian.sh") $QEMU_SUITE $QEMU_PACKAGES"; }

root_is_current() { [ -f "$STAMP" ] && [ "$(head -n 1 "$STAMP")" = "$(recipe)" ]; }

# apt in the root, in a mount namespace of its own with /proc mounted (maintainer scripts read
# it), which disappears with the command.
in_root() { unshare --mount --mount-proc="$1/proc" chroot "$1" "${@:2}"; }

install_qemu() {
  local root=$1
  add_backports "$root" "$DEBIAN_SUITE" "$DEBIAN_MIRROR"
  log "apt-get install -t $QEMU_SUITE $QEMU_PACKAGES (about 15 s)"
  in_root "$root" env DEBIAN_FRONTEND=noninteractive apt-get update -q >>"$CACHE_DIR/apt.log" 2>&1 \
    || { tail -n 20 "$CACHE_DIR/apt.log" >&2; die "apt-get update in the root failed (log: $CACHE_DIR/apt.log)"; }
  # shellcheck disable=SC2086 # the package list is words
  in_root "$root" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    -t "$QEMU_SUITE" $QEMU_PACKAGES >>"$CACHE_DIR/apt.log" 2>&1 \
    || { tail -n 20 "$CACHE_DIR/apt.log" >&2; die "installing $QEMU_PACKAGES failed (log: $CACHE_DIR/apt.log)"; }
  in_root "$root" apt-get clean
}

# The version QEMU reports ("QEMU emulator version 11.1.3 (Debian 1:11.1.3+ds-2~bpo13+1)").
qemu_version() { in_root "$1" /usr/bin/qemu-system-x86_64 --version | head -n 1; }

check_qemu() {
  local root=$1 line version
  line=$(qemu_version "$root") || die "qemu-system-x86_64 does not run in the root"
  version=$(sed -n 's/^QEMU emulator version \([0-9]*\.[0-9]*\).*/\1/p' <<<"$line")
  [ -n "$version" ] || die "unexpected version line from QEMU: $line"
  [ "$(printf '%s\n%s\n' "$QEMU_MIN_VERSION" "$version" | sort -V | head -n 1)" = "$QEMU_MIN_VERSION" ] \
    || die "QEMU $version from $QEMU_SUITE has no vfio-user client (needs $QEMU_MIN_VERSION or later)"
  in_root "$root" /usr/bin/qemu-system-x86_64 -device help | grep -q '"vfio-user-pci"' \
    || die "QEMU $version in the root has no vfio-user-pci device"
  echo "$line"
}

build() {
  local tmp=$CACHE_DIR/root.partial t0 line
  t0=$(now)
  mkdir -p "$CACHE_DIR"
  : >"$CACHE_DIR/apt.log"
  log "debootstrap $DEBIAN_SUITE (minbase) into $ROOT_DIR (about a minute)"
  debootstrap_into "$tmp" "$DEBIAN_SUITE" "$DEBIAN_MIRROR" "" "$CACHE_DIR/debootstrap.log"
  install_qemu "$tmp"
  line=$(check_qemu "$tmp")
  mkdir -p "$tmp/run/vmmkit"
  rm -rf "$ROOT_DIR"
  mv "$tmp" "$ROOT_DIR"
  printf '%s\n%s\n' "$(recipe)" "$line" >"$STAMP"
  log "root ready in $(($(now) - t0)) s: $line"
}

main() {
  [ "$(id -u)" -eq 0 ] || die "needs root (debootstrap, chroot, unshare)"
  mkdir -p "$(dirname "$LOCK_FILE")"
  exec 9>"$LOCK_FILE"
  flock 9
  if root_is_current; then
    log "QEMU root: cached ($ROOT_DIR; $(sed -n 2p "$STAMP"))"
    return 0
  fi
  ensure_host_packages debootstrap util-linux
  build
}

main "$@"
