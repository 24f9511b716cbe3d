# lib.sh: settings and helpers shared by the kernel-tier scripts (sourced, never run).
# Every path the tier uses is derived here, so that the cache layout is written down once.

TIER_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PROJECT_DIR=$(cd "$TIER_DIR/../.." && pwd)

# The cache survives between runs; everything in it can be rebuilt, so deleting it is always safe.
CACHE_DIR=${VMMKIT_KERNEL_TIER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vmmkit-kernel-tier}
ROOTFS_DIR=$CACHE_DIR/rootfs          # Debian trixie root with Node.js, shared read-only into the guest
KERNEL_DIR=$CACHE_DIR/kernel          # bzImage + its .config, built from linux-source-$KERNEL_SERIES
BUILD_DIR=$CACHE_DIR/kernel-build     # unpacked source and object tree (kept for incremental rebuilds)

DEBIAN_SUITE=trixie
DEBIAN_MIRROR=${VMMKIT_KERNEL_TIER_MIRROR:-http://deb.debian.org/debian}
KERNEL_SERIES=${VMMKIT_KERNEL_TIER_SERIES:-7.2}
KERNEL_SUITE=${VMMKIT_KERNEL_TIER_KERNEL_SUITE:-trixie-backports}

log() { printf '[kernel-tier %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Seconds since the epoch, to report how long each step took.
now() { date +%s; }

# Install Debian packages on this host that are not installed yet (apt-get update only if needed).
ensure_host_packages() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" -eq 0 ] || die "needs root to install ${missing[*]} (apt-get)"
  log "installing host packages: ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
}

# The content hash of files, to tell whether a cached artefact was built from the same inputs.
inputs_hash() { cat "$@" | sha256sum | cut -c1-16; }
