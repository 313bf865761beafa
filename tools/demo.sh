#!/bin/sh
# The main job: run examples/http_hello.lua with the csock host and let real
# clients (curl, then examples/client.lua against examples/server.lua) talk to it.
set -e
cd "$(dirname "$0")/.."
PORT=${PORT:-8080}
# plain lua5.4 finds the in-tree module (the csock host has it built in)
export LUA_PATH="./lua/?.lua;./lua/?/init.lua;;" LUA_CPATH="./?.so;;"
LOG=$(mktemp)
trap 'kill $SRV 2>/dev/null; rm -f "$LOG"' EXIT INT TERM
./bin/csock examples/http_hello.lua "$PORT" 127.0.0.1 >"$LOG" 2>&1 &
SRV=$!
i=0
until curl -s -o /dev/null "http://127.0.0.1:$PORT/" 2>/dev/null; do
  i=$((i + 1)); [ $i -gt 50 ] && { cat "$LOG"; echo "server did not start" >&2; exit 1; }
  sleep 0.1
done
echo "== csock examples/http_hello.lua on 127.0.0.1:$PORT; curl, two requests on one connection:"
curl -sv "http://127.0.0.1:$PORT/" "http://127.0.0.1:$PORT/again" 2>&1 | grep -E '^(< HTTP|\* Re-using|Hello)|Hello' || true
echo
kill $SRV; wait $SRV 2>/dev/null || true
echo "== the tutorial: examples/server.lua says hello, examples/client.lua answers"
lua5.4 examples/server.lua 3490 > "$LOG" 2>&1 &
SRV=$!
i=0
until grep -q "waiting" "$LOG" 2>/dev/null; do
  i=$((i + 1)); [ $i -gt 50 ] && { cat "$LOG"; echo "tutorial server did not start" >&2; exit 1; }
  sleep 0.1
done
lua5.4 examples/client.lua 127.0.0.1 3490
sleep 0.2
cat "$LOG"
