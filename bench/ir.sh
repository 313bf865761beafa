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

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# count MODE N -> total Ir of the server process for N requests
count() {
  local mode=$1 n=$2 port out pid
  port=$(free_port)
  out="$TMP/cg.$mode.$n"
  # shellcheck disable=SC2086
  timeout 600 valgrind --tool=callgrind --callgrind-out-file="$out" -q ${CMD//\{port\}/$port} >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 200); do
    python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$port),1).close()" 2>/dev/null && break
    sleep 0.1
  done
  timeout 600 python3 "$HERE/clients/http_count.py" "$port" "$n" "$mode" >/dev/null
  kill -INT "$pid" 2>/dev/null || true
  # lua5.4's SIGINT handler acts only when Lua code runs next, so a server waiting in its
  # poller (luv) stays up: it gets SIGTERM after 10 s, and callgrind still writes its counts
  for _ in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  awk '/^summary:/ {print $2}' "$out"
}

for mode in ka close; do
  a=$(count "$mode" "$N1")
  # the probe connection counts in both runs alike
  b=$(count "$mode" "$N2")
  echo "ir test=$mode per_request=$(( (b - a) / (N2 - N1) ))"
done
