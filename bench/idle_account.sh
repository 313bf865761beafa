#!/bin/bash
# idle_account.sh [N] - what an idle connection holds in csock: N (default 2000) loopback
# connections from clients/idle_conns.c, each served by a task blocked in read("l") as in
# servers/csock_http_raw.lua.  Two runs of servers/idle_account.lua: under bin/csock (its
# allocator; RSS as bench/run.sh measures it) and under clients/lua_alloc_count.c, which lists
# the blocks per connection by kind and size (7 userdata, 8 thread, 0 stacks and call records...).
# Loopback only; each run is bounded by timeout(1).  Needs make (bin/csock, csock/core.so).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
N=${1:-2000}
BUILD=$(mktemp -d)
trap 'rm -rf "$BUILD"' EXIT
gcc -O2 -Wall -o "$BUILD/idle_conns" "$HERE/clients/idle_conns.c"
gcc -O2 -Wall -I/usr/include/lua5.4 -o "$BUILD/lua_alloc_count" "$HERE/clients/lua_alloc_count.c" \
  -llua5.4 -lm -Wl,-E
export LUA_PATH="$ROOT/lua/?.lua;$ROOT/lua/?/init.lua;;" LUA_CPATH="$ROOT/?.so;;"
ulimit -n $((N + 200)) 2>/dev/null || true

run() { # HOST: the server under HOST, N idle connections, its report on stderr
  local port
  coproc SERVER { timeout 120 "$1" "$HERE/servers/idle_account.lua" "$N"; }
  read -r port <&"${SERVER[0]}"
  timeout 120 "$BUILD/idle_conns" 127.0.0.1 "$port" "$N" 60 >/dev/null &
  local client=$!
  wait "$SERVER_PID" || true
  kill "$client" 2>/dev/null || true
  wait "$client" 2>/dev/null || true
}
echo "== bin/csock"
run "$ROOT/bin/csock" 2>&1
echo "== blocks by kind and size (lua_alloc_count)"
run "$BUILD/lua_alloc_count" 2>&1
