#!/usr/bin/env bash
# npm run test:qmp: Debian's QMP client (python3-qemu-qmp, prepared by prepare-qmp-client.sh)
# drives `vmmkit run --sim` processes over their QMP sockets through hot-plug and live migrations:
# completed, cancelled, and refused by the destination.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)

site=$("$here/prepare-qmp-client.sh")
echo "test:qmp: building vmmkit" >&2
(cd "$repo" && npx tsc -b)
PYTHONPATH="$site" VMMKIT_BIN="$repo/examples/bin/vmmkit.js" exec python3 "$here/qmp_tier.py"
