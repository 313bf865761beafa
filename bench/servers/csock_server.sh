#!/bin/bash
# csock_server.sh MODE PORT [WORKERS] - run one of csock's example servers for
# the benchmark, listening on 127.0.0.1:PORT, in the foreground (exec, so the
# caller's PID is csock's).
#   MODE     http -> bench/servers/csock_http_raw.lua    echo -> examples/echo_server.lua
#   WORKERS  if given and > 1: csock -w WORKERS (multi-worker mode)
# The csock executable is $CSOCK_BIN if set, else bin/csock of this checkout.
# The in-tree Lua modules (lua/) come first on LUA_PATH.  CSOCK_HTTP_SCRIPT replaces the http
# script (the row csock-http: examples/http_hello.lua, on csock.http).
set -euo pipefail
mode=${1:?http|echo} port=${2:?PORT} workers=${3:-1}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CSOCK=${CSOCK_BIN:-$ROOT/bin/csock}
[ -x "$CSOCK" ] || { echo "csock_server.sh: no executable $CSOCK (run make)" >&2; exit 1; }
case $mode in
  http) script=${CSOCK_HTTP_SCRIPT:-$ROOT/bench/servers/csock_http_raw.lua} ;;
  echo) script=$ROOT/examples/echo_server.lua ;;
  *) echo "csock_server.sh: mode must be http or echo" >&2; exit 2 ;;
esac
[ -f "$script" ] || { echo "csock_server.sh: no $script yet" >&2; exit 1; }
export LUA_PATH="$ROOT/lua/?.lua;$ROOT/lua/?/init.lua;${LUA_PATH:-;}"
opts=()
[ "$workers" -gt 1 ] && opts=(-w "$workers")
# argument order of the examples: PORT [HOST]
exec "$CSOCK" "${opts[@]}" "$script" "$port" 127.0.0.1
