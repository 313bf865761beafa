#!/bin/bash
# static_file.sh - large-file downloads from static file servers, in MB per server CPU-second
# (issue 20: csock's static example >= 0.9x nginx static): nginx (sendfile on), csock's
# examples/static.lua (res:sendfile, so sendfile(2)), the same server copying through Lua
# (servers/csock_static_copy.lua: f:read + res:write), and node (fs.createReadStream piped).
#
# Usage: bash bench/static_file.sh [--seconds S] [--rounds R] [--only a,b] [--out FILE]
#   defaults: 3 s per run, 3 rounds (medians), every server; the table also goes to FILE
#
# Two loads, by wrk -t1 on CPU 1 (the server runs on CPU 0): a 64 MiB file over 1 connection,
# and a 1 MiB file over 8 keep-alive connections.  The server's CPU time (utime + stime of
# every process in its process group, from /proc) is read before and after wrk; wrk's own
# (bash's time) is reported too, since on loopback the kernel's TCP work for a transfer is
# charged to whichever task runs on the CPU that does it, often the client's.  Run it under
# the shared lock: flock /tmp/csock-bench.lock bash bench/static_file.sh
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
CSOCK_BIN=${CSOCK_BIN:-$ROOT/bin/csock}
SECS=3 ROUNDS=3 ONLY="" OUTFILE=""
while [ $# -gt 0 ]; do
  case $1 in
    --seconds) SECS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --only) ONLY=$2; shift 2 ;;
    --out) OUTFILE=$2; shift 2 ;;
    *) echo "static_file.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
for t in wrk taskset setsid nginx node curl; do
  command -v "$t" >/dev/null || { echo "static_file.sh: $t is missing" >&2; exit 1; }
done
[ -x "$CSOCK_BIN" ] || { echo "static_file.sh: no $CSOCK_BIN (run make)" >&2; exit 1; }
export LUA_PATH="$ROOT/lua/?.lua;$ROOT/lua/?/init.lua;${LUA_PATH:-;}"
TICK=$(getconf CLK_TCK)

WORK=$(mktemp -d /tmp/static_file.XXXXXX)
SERVER_PID=""
stop_server() { [ -n "$SERVER_PID" ] && kill -- -"$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null; SERVER_PID=""; }
cleanup() { stop_server; rm -rf "$WORK"; }
trap cleanup EXIT
mkdir -p "$WORK/www" "$WORK/nginx/logs" "$WORK/nginx/tmp"
head -c $((64 * 1024 * 1024)) /dev/urandom >"$WORK/www/big.bin"
head -c $((1024 * 1024)) /dev/urandom >"$WORK/www/one.bin"
chmod 755 "$WORK" "$WORK/www" # nginx's workers run as another user (nobody, www-data)
chmod 644 "$WORK/www/big.bin" "$WORK/www/one.bin"

# A port below the ephemeral range, for nginx, which cannot print the one it got.
EPHEMERAL_LOW=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
NGINX_PORT=$((20000 + RANDOM % (EPHEMERAL_LOW - 22000)))
cat >"$WORK/nginx/nginx.conf" <<CONF
daemon off;
master_process on;
worker_processes 1;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/logs/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx/tmp;
  proxy_temp_path $WORK/nginx/tmp;
  fastcgi_temp_path $WORK/nginx/tmp;
  uwsgi_temp_path $WORK/nginx/tmp;
  scgi_temp_path $WORK/nginx/tmp;
  default_type application/octet-stream;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  server_tokens off;
  server {
    listen 127.0.0.1:$NGINX_PORT;
    root $WORK/www;
  }
}
CONF

declare -A CMD
NAMES=(nginx csock-sendfile csock-copy node)
CMD[nginx]="nginx -p $WORK/nginx -c $WORK/nginx/nginx.conf"
CMD[csock-sendfile]="$CSOCK_BIN $ROOT/examples/static.lua $WORK/www 0"
CMD[csock-copy]="$CSOCK_BIN $HERE/servers/csock_static_copy.lua $WORK/www 0"
CMD[node]="node $HERE/servers/node_static.js $WORK/www 0"

cpu_group() { # pgid: CPU ticks of every process in the group
  local t=0 p
  for p in $(pgrep -g "$1"); do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0))); done
  echo "$t"
}

# start NAME: starts the server in its own session on CPU 0 (SERVER_PID); sets PORT
# (not a subshell's output: SERVER_PID must reach the caller)
start() {
  local name=$1 line port=""
  if [ "$name" = nginx ]; then
    setsid taskset -c 0 ${CMD[$name]} >/dev/null 2>&1 &
    SERVER_PID=$!
    port=$NGINX_PORT
  else
    local fifo; fifo=$(mktemp -u /tmp/static_file.XXXXXX); mkfifo "$fifo"
    setsid taskset -c 0 ${CMD[$name]} >"$fifo" 2>/dev/null &
    SERVER_PID=$!
    read -r -t 10 line <"$fifo"; rm -f "$fifo"
    port=${line##*:}
  fi
  for _ in $(seq 50); do
    curl -sf -o /dev/null "http://127.0.0.1:$port/one.bin" && break
    sleep 0.1
  done
  # a server that does not send the file byte for byte is not measured
  if ! curl -sf "http://127.0.0.1:$port/one.bin" | cmp -s - "$WORK/www/one.bin"; then
    echo "static_file.sh: $name does not serve one.bin correctly" >&2
    PORT=""
    return
  fi
  PORT=$port
}

# bytes N UNIT: wrk's "1.86GB" as MiB
mib() { awk -v s="$1" 'BEGIN { n = s + 0; u = s; sub(/^[0-9.]+/, "", u);
  f = (u == "GB") ? 1024 : (u == "MB") ? 1 : (u == "KB") ? 1 / 1024 : 1 / 1048576; printf "%.1f", n * f }'; }

RAW="$WORK/raw"
: >"$RAW"
# measure NAME TEST PATH CONNS
measure() {
  local name=$1 test=$2 path=$3 conns=$4 port c0 c1 out read secs
  start "$name"
  port=$PORT
  if [ -z "$port" ]; then stop_server; return 0; fi
  c0=$(cpu_group "$SERVER_PID")
  local TIMEFORMAT='%U %S' client
  client=$( { time timeout $((SECS + 15)) taskset -c 1 wrk -t1 -c"$conns" -d"${SECS}s" \
    "http://127.0.0.1:$port$path" >"$WORK/wrk.out" 2>&1; } 2>&1 | awk '{print $1 + $2}')
  c1=$(cpu_group "$SERVER_PID")
  out=$(cat "$WORK/wrk.out")
  stop_server
  read=$(echo "$out" | sed -n 's/.* requests in \([0-9.]*\)\([a-z]*\), \([0-9.]*[KMG]*B\) read.*/\3/p')
  secs=$(echo "$out" | sed -n 's/.* requests in \([0-9.]*\)\(m*s\),.*/\1 \2/p' | awk '{print ($2 == "ms") ? $1 / 1000 : $1}')
  if [ -z "$read" ] || echo "$out" | grep -q "Socket errors\|Non-2xx"; then
    echo "$name $test: wrk reported a failure:" >&2; echo "$out" >&2
  fi
  [ -n "$read" ] || return 0
  awk -v n="$name" -v t="$test" -v mb="$(mib "$read")" -v s="$secs" -v ticks="$((c1 - c0))" -v hz="$TICK" \
    -v cl="$client" 'BEGIN { cpu = ticks / hz; both = cpu + cl
      printf "%s\t%s\t%.1f\t%.1f\t%.2f\t%.2f\t%.1f\n", n, t, mb / s, (cpu > 0 ? mb / cpu : 0), cpu, cl,
        (both > 0 ? mb / both : 0) }' >>"$RAW"
}

for r in $(seq "$ROUNDS"); do
  for name in "${NAMES[@]}"; do
    if [ -n "$ONLY" ] && [[ ",$ONLY," != *",$name,"* ]]; then continue; fi
    measure "$name" "64 MiB file, c1" /big.bin 1
    measure "$name" "1 MiB files, c8" /one.bin 8
  done
  echo "round $r done" >&2
done

# The table: medians per server and test; ratio to nginx per CPU-second.
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) print 0; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
table() {
  echo "| server | test | MiB/s | MiB per server CPU-s | server CPU s | vs nginx (per CPU-s) | client (wrk) CPU s | MiB per server+client CPU-s |"
  echo "|---|---|---:|---:|---:|---:|---:|---:|"
  local test name rate per cpu base cl both
  for test in "64 MiB file, c1" "1 MiB files, c8"; do
    base=$(awk -F'\t' -v t="$test" '$1 == "nginx" && $2 == t {print $4}' "$RAW" | median)
    for name in "${NAMES[@]}"; do
      grep -q "^$name	$test	" "$RAW" || continue
      rate=$(awk -F'\t' -v n="$name" -v t="$test" '$1 == n && $2 == t {print $3}' "$RAW" | median)
      per=$(awk -F'\t' -v n="$name" -v t="$test" '$1 == n && $2 == t {print $4}' "$RAW" | median)
      cpu=$(awk -F'\t' -v n="$name" -v t="$test" '$1 == n && $2 == t {print $5}' "$RAW" | median)
      cl=$(awk -F'\t' -v n="$name" -v t="$test" '$1 == n && $2 == t {print $6}' "$RAW" | median)
      both=$(awk -F'\t' -v n="$name" -v t="$test" '$1 == n && $2 == t {print $7}' "$RAW" | median)
      awk -v n="$name" -v t="$test" -v r="$rate" -v p="$per" -v c="$cpu" -v b="$base" -v cl="$cl" -v bo="$both" \
        'BEGIN { printf "| %s | %s | %.0f | %.0f | %.2f | %s | %.2f | %.0f |\n", n, t, r, p, c,
          (b > 0 ? sprintf("%.2fx", p / b) : "-"), cl, bo }'
    done
  done
  echo
  echo "Medians of $ROUNDS round(s); wrk -t1 for ${SECS}s per run on CPU 1, the server on CPU 0;"
  echo "$(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(uname -r)."
}
table | tee "${OUTFILE:-/dev/null}"
echo >&2; echo "raw:" >&2; cat "$RAW" >&2
