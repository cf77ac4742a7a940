#!/usr/bin/env bash
# run.sh - builds and runs the soak test against this tree's echosrv: mixed load (plain, TLS,
# raw), a reload every few seconds and a stream of faults, every reply checked byte for byte.
#
#   tests/soak/run.sh [SECONDS [CLIENTS [RELOAD_SECONDS]]]     (default 600 16 5)
#
# Run from a configured and built tree (./quickstart test does both). Not part of make check.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"
make -s tests/soak/soak
export ECHOSRV="$top/server/echosrv" ES_PLUGIN_DIR="$top/plugins" ABS_TOP_SRCDIR="$top"
exec tests/soak/soak -d "${1:-600}" -c "${2:-16}" -r "${3:-5}"
