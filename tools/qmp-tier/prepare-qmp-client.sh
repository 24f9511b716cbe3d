#!/usr/bin/env bash
# Prepare Debian's QMP client library (python3-qemu-qmp 0.0.6, QEMU's own, architecture-independent)
# for the QMP tier, from Debian packages only: the .deb is downloaded from trixie-backports with this
# host's apt, pointed at a private sources list and cache (the host's apt configuration and
# installed packages are untouched), and unpacked with dpkg -x under the cache directory.
#
# Needs: apt-get and dpkg (any Debian), python3 >= 3.8 (the package's Requires-Python; bookworm has
# 3.11), and deb.debian.org (or VMMKIT_QMP_TIER_MIRROR) reachable the first time.
# Prints the directory to put on PYTHONPATH.
set -euo pipefail

CACHE=${VMMKIT_QMP_TIER_CACHE:-$HOME/.cache/vmmkit-qmp-tier}
MIRROR=${VMMKIT_QMP_TIER_MIRROR:-http://deb.debian.org/debian}
SUITE=trixie-backports
PACKAGE=python3-qemu-qmp
VERSION_WANTED=0.0.6
SITE="$CACHE/root/usr/lib/python3/dist-packages"

die() { echo "prepare-qmp-client: $*" >&2; exit 1; }

if [ -f "$CACHE/ready" ] && [ "$(cat "$CACHE/ready")" = "$VERSION_WANTED" ] && [ -d "$SITE/qemu/qmp" ]; then
  echo "$SITE"
  exit 0
fi

for tool in apt-get dpkg python3; do command -v "$tool" >/dev/null || die "needs $tool (a Debian host)"; done
python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 8) else 1)' || die "needs python3 >= 3.8 ($PACKAGE's Requires-Python)"

rm -rf "$CACHE"
mkdir -p "$CACHE/apt/lists/partial" "$CACHE/apt/archives/partial" "$CACHE/debs"
echo "deb $MIRROR $SUITE main" >"$CACHE/apt/sources.list"
APT_OPTS=(
  -o "Dir::Etc::SourceList=$CACHE/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
  -o "Dir::State::Lists=$CACHE/apt/lists" -o "Dir::Cache::archives=$CACHE/apt/archives"
  -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache=
  # A private cache: no lock on the host's, and no download as _apt into a directory it cannot write.
  -o Debug::NoLocking=1 -o APT::Sandbox::User="$(id -un)"
)
echo "prepare-qmp-client: fetching the $SUITE package list from $MIRROR" >&2
apt-get -q "${APT_OPTS[@]}" update >&2 || die "apt-get update of $SUITE failed (is $MIRROR reachable?)"
version=$(apt-cache "${APT_OPTS[@]}" show "$PACKAGE/$SUITE" 2>/dev/null | sed -n 's/^Version: //p' | head -n1)
[ -n "$version" ] || die "$PACKAGE is not in $SUITE"
case "$version" in "$VERSION_WANTED"-*) ;; *) die "$SUITE has $PACKAGE $version, the tier is written for $VERSION_WANTED" ;; esac
(cd "$CACHE/debs" && apt-get -q "${APT_OPTS[@]}" download "$PACKAGE/$SUITE" >&2) || die "downloading $PACKAGE failed"
dpkg -x "$CACHE/debs/${PACKAGE}_"*_all.deb "$CACHE/root"
PYTHONPATH="$SITE" python3 -c 'import qemu.qmp' || die "the unpacked $PACKAGE does not import"
rm -rf "$CACHE/apt"
echo "$VERSION_WANTED" >"$CACHE/ready"
echo "prepare-qmp-client: $PACKAGE $version ready in $SITE" >&2
echo "$SITE"
