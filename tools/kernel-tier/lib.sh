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

LOG_TAG=kernel-tier
source "$TIER_DIR/../lib/debian.sh"
