#!/bin/bash
# callgrind_lib.sh - sourced by ir.sh and ir_profile.sh: one run of a server under callgrind.
#
#   callgrind_requests CMD MODE N OUT
#
# Starts CMD ({port} replaced by a free loopback port) under callgrind, writing its counts to
# OUT; once it accepts, sends N requests with clients/http_count.py in MODE ("ka" or "close");
# then stops it.  Variables set for the call (e.g. LD_LIBRARY_PATH=...) reach the server.
# Every step is bounded by timeout(1).
CALLGRIND_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

callgrind_requests() {
  local cmd=$1 mode=$2 n=$3 out=$4 port pid
  port=$(free_port)
  # shellcheck disable=SC2086
  timeout 600 valgrind --tool=callgrind --callgrind-out-file="$out" -q ${cmd//\{port\}/$port} >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 200); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1',$port),1).close()" 2>/dev/null && break
    sleep 0.1
  done
  timeout 600 python3 "$CALLGRIND_LIB_DIR/clients/http_count.py" "$port" "$n" "$mode" >/dev/null
  kill -INT "$pid" 2>/dev/null || true
  # lua5.4's SIGINT handler acts only when Lua code runs next, so a server waiting in its
  # poller (luv) stays up: it gets SIGTERM after 10 s, and callgrind still writes its counts
  for _ in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
