# lib.sh: settings shared by the vfio-user tier's scripts (sourced, never run). The cache layout
# is written down here once; the TypeScript side reads the same defaults (support/paths.ts).

TIER_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PROJECT_DIR=$(cd "$TIER_DIR/../.." && pwd)

# Everything in the cache can be rebuilt, so deleting it is always safe.
CACHE_DIR=${VMMKIT_VFIO_USER_TIER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vmmkit-vfio-user-tier}
ROOT_DIR=$CACHE_DIR/root              # Debian trixie root with QEMU from trixie-backports
STAMP=$ROOT_DIR/.vmmkit-vfio-user-root
LOCK_FILE=$CACHE_DIR.lock             # beside the cache, so deleting the cache never races a holder

DEBIAN_SUITE=trixie
DEBIAN_MIRROR=${VMMKIT_VFIO_USER_TIER_MIRROR:-http://deb.debian.org/debian}
QEMU_SUITE=trixie-backports
# The oldest QEMU with the vfio-user client (vfio-user-pci came in 10.1).
QEMU_MIN_VERSION=10.1

LOG_TAG=vfio-user-tier
source "$TIER_DIR/../lib/debian.sh"
