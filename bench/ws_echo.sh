#!/bin/bash
# ws_echo.sh - WebSocket echo of small messages: csock.http's websocket against node with the
# npm `ws` package, in messages per server CPU-second (issue 20's target: csock >= 1.5x node).
#
# Usage: bash bench/ws_echo.sh [--seconds S] [--conns N] [--size BYTES] [--rounds R] [--load c|node]
#   defaults: 3 s of traffic, 100 connections, 64-byte messages, 1 round, the C load
#
# The server runs on CPU 0 and the load on CPU 1: bench/clients/ws_client.c (C, epoll; the
# default, light enough to keep the server busy) or bench/clients/ws_load.js (node + ws).
# Each connection sends a message and waits for its echo.  The server's CPU time (utime + stime from
# /proc) is read when the load starts measuring and when it stops.  npm installs `ws` into
# bench/build/ (or a temporary folder) the first time.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
CSOCK_BIN=${CSOCK_BIN:-$ROOT/bin/csock}
SECS=3 CONNS=100 SIZE=64 ROUNDS=1 LOAD=c
while [ $# -gt 0 ]; do
  case $1 in
    --seconds) SECS=$2; shift 2 ;;
    --conns) CONNS=$2; shift 2 ;;
    --size) SIZE=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --load) LOAD=$2; shift 2 ;;
    *) echo "ws_echo.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
BUILD="$HERE/build"
if ! { mkdir -p "$BUILD" && [ -w "$BUILD" ]; } 2>/dev/null; then BUILD=$(mktemp -d /tmp/bench-build.XXXXXX); fi
[ -x "$CSOCK_BIN" ] || { echo "ws_echo.sh: no $CSOCK_BIN (run make)" >&2; exit 1; }
command -v node >/dev/null || { echo "ws_echo.sh: node is missing" >&2; exit 1; }
if [ ! -f "$BUILD/node_modules/ws/package.json" ]; then
  (cd "$BUILD" && npm install --no-audit --no-fund --no-save ws >/dev/null) || { echo "ws_echo.sh: npm install ws failed" >&2; exit 1; }
fi
export NODE_PATH="$BUILD/node_modules"
if [ "$LOAD" = c ]; then
  cc -O2 -Wall -o "$BUILD/ws_client" "$HERE/clients/ws_client.c" || exit 1
fi
load() { # port
  if [ "$LOAD" = c ]; then
    taskset -c 1 "$BUILD/ws_client" "$1" "$CONNS" "$SECS" "$SIZE"
  else
    taskset -c 1 node "$HERE/clients/ws_load.js" "ws://127.0.0.1:$1/" "$CONNS" "$SECS" "$SIZE"
  fi
}
export LUA_PATH="$ROOT/lua/?.lua;$ROOT/lua/?/init.lua;${LUA_PATH:-;}"
TICK=$(getconf CLK_TCK)

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }

SERVER_PID=""
stop_server() { [ -n "$SERVER_PID" ] && kill -- -"$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null; SERVER_PID=""; }
trap stop_server EXIT

# run NAME CMD...: prints "NAME messages cpu_seconds messages_per_cpu_second"
run() {
  local name=$1; shift
  local fifo; fifo=$(mktemp -u /tmp/ws_echo.XXXXXX); mkfifo "$fifo"
  setsid taskset -c 0 "$@" >"$fifo" 2>/dev/null &
  SERVER_PID=$!
  local line port
  read -r line <"$fifo"; rm -f "$fifo"
  port=${line##*:}
  # the server's own pid: setsid execs, so $! is it (csock and node both exec)
  local pid=$SERVER_PID c0="" c1="" msgs=""
  while read -r out; do
    case $out in
      started) c0=$(cpu_ticks "$pid") ;;
      messages*) c1=$(cpu_ticks "$pid"); msgs=${out#messages } ;;
    esac
  done < <(load "$port")
  stop_server
  if [ -z "$msgs" ] || [ -z "$c0" ]; then echo "$name failed"; return; fi
  awk -v n="$name" -v m="$msgs" -v t="$((c1 - c0))" -v hz="$TICK" \
    'BEGIN { s = t / hz; printf "%-8s %10d msgs %6.2f cpu-s %10.0f msgs/cpu-s\n", n, m, s, (s > 0 ? m / s : 0) }'
}

for _ in $(seq "$ROUNDS"); do
  run csock "$CSOCK_BIN" "$HERE/servers/ws_echo.lua" 0
  run node-ws node "$HERE/servers/node_ws.js" 0
done
