#!/bin/bash
# ir.sh - instructions per request of a server, counted by callgrind: steady
# where CPU time on a shared 2-core machine is not (bench/README.md).
#
#   bash bench/ir.sh [SERVER_CMD]     SERVER_CMD uses {port}; default: csock's bench server
#
# For each test (keep-alive, 10 connections; Connection: close, one request per
# connection) the server runs twice under callgrind, with N1 and N2 requests;
# (Ir(N2) - Ir(N1)) / (N2 - N1) leaves start-up and exit out. Prints one line per
# test: "ir test=ka per_request=NNNN". Loopback only; every run is bounded.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
CMD=${1:-"$ROOT/bin/csock $HERE/servers/csock_http_raw.lua {port} 127.0.0.1"}
N1=${IR_N1:-2000} N2=${IR_N2:-6000}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
export LUA_PATH="$ROOT/lua/?.lua;$ROOT/lua/?/init.lua;;"

# shellcheck source=bench/callgrind_lib.sh
. "$HERE/callgrind_lib.sh"

# count MODE N -> total Ir of the server process for N requests
count() {
  local out="$TMP/cg.$1.$2"
  callgrind_requests "$CMD" "$1" "$2" "$out"
  awk '/^summary:/ {print $2}' "$out"
}

for mode in ka close; do
  a=$(count "$mode" "$N1")
  # the probe connection counts in both runs alike
  b=$(count "$mode" "$N2")
  echo "ir test=$mode per_request=$(( (b - a) / (N2 - N1) ))"
done
