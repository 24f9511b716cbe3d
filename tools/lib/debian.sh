# debian.sh: helpers every tier that prepares Debian peers shares (sourced, never run).
# The sourcing script sets LOG_TAG first (its name in log lines); paths stay with each tier.

log() { printf '[%s %s] %s\n' "${LOG_TAG:-vmmkit}" "$(date +%T)" "$*" >&2; }
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

# debootstrap_into DIR SUITE MIRROR PACKAGES LOGFILE: a fresh minbase root of SUITE (with the
# comma-separated PACKAGES) in DIR, which is emptied first. Callers build into a temporary folder
# and rename it when complete, so an interrupted run never leaves a half root under the final name.
debootstrap_into() {
  local dir=$1 suite=$2 mirror=$3 packages=$4 logfile=$5
  rm -rf "$dir"
  mkdir -p "$(dirname "$dir")"
  debootstrap --variant=minbase ${packages:+--include="$packages"} "$suite" "$dir" "$mirror" >"$logfile" 2>&1 \
    || { tail -n 20 "$logfile" >&2; die "debootstrap failed (log: $logfile)"; }
}

# add_backports DIR SUITE MIRROR: let the root's apt see SUITE-backports (nothing is installed from
# it unless asked for with -t SUITE-backports).
add_backports() {
  echo "deb $3 $2-backports main" >"$1/etc/apt/sources.list.d/backports.list"
}
