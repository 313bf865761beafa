#!/bin/bash
# redis_clients.sh - the client-side row of the benchmark (issue 19): redis-lua doing N GETs
# against a local redis-server from
#   luasocket     (a) plain LuaSocket, 1 connection                       (lua5.4)
#   copas         (b) copas 1.2 + LuaSocket, C connections                (lua5.4)
#   csock         (c) csock.socket, C tasks                               (lua5.4)
#   native        (d) csock's native sockets through a 4-method adapter   (lua5.4)
#   csock-host, native-host   (c) and (d) under csock's host bin/csock (its allocator and
#                 collector pacing: how a csock user runs a script)
#   resp-by-hand  reference, not an issue row: native sockets, the GET written and read by
#                 hand, no redis-lua                                       (lua5.4)
# Targets (issue 19): csock >= 2x copas per client CPU-second, and >= 0.85x native.
#
# Usage: bash bench/redis_clients.sh [N [C]]     (or: make bench-redis BENCH_REDIS_ARGS="N C")
#   N   GETs per variant (default 100000)      C   connections / tasks (default 50)
#
# Needs redis-server, lua-redis, lua-socket; lua-copas for the copas row (n/a without it).
# redis-server runs on CPU 0 and the client on CPU 1 when taskset is there.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$HERE/.." || exit 1
N=${1:-100000} C=${2:-50}

# redis-server cannot bind port 0: take a free port from the kernel, then let it go.
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
PIN_SERVER="" PIN_CLIENT=""
if command -v taskset >/dev/null; then PIN_SERVER="taskset -c 0" PIN_CLIENT="taskset -c 1"; fi
$PIN_SERVER timeout 3600 redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no \
  --loglevel warning >/dev/null &
RPID=$!
trap 'kill $RPID 2>/dev/null; wait $RPID 2>/dev/null' EXIT
for _ in $(seq 100); do
  python3 -c "import socket; socket.create_connection(('127.0.0.1', $PORT))" 2>/dev/null && break
  sleep 0.05
done

printf '%-13s %8s %5s %8s %8s %10s\n' variant requests conns wall_s cpu_s req/cpu_s
for v in luasocket copas csock native csock-host native-host resp-by-hand; do
  if [ "$v" = copas ] && ! lua5.4 -e 'package.path=package.path..";/usr/share/lua/5.2/?.lua" require "copas"' 2>/dev/null; then
    printf '%-13s n/a (lua-copas is not installed)\n' "$v"
    continue
  fi
  case $v in
    *-host) run=(bin/csock bench/clients/redis_get.lua "${v%-host}") ;;
    *) run=(lua5.4 bench/clients/redis_get.lua "$v") ;;
  esac
  $PIN_CLIENT timeout 600 "${run[@]}" "$PORT" "$N" "$C" || printf '%-13s failed\n' "$v"
done
