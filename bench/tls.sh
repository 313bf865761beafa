#!/bin/bash
# bench/tls.sh [SECONDS] - HTTPS "hello world" per server CPU-second: csock
# (bench/servers/csock_https.lua) beside nginx with TLS (1 worker), node https and
# cqueues + luaossl starttls (when installed: Debian lua-cqueues, lua-luaossl), all with
# the same ECDSA P-256 certificate, TLS 1.3, pinned to CPU 0; wrk on CPU 1.
# Tests: keep-alive c100, and Connection: close (a full handshake a request).
# Prints a table and writes it to bench/results/tls-latest.md.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-5}
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT
for c in wrk nginx openssl taskset; do
  command -v "$c" >/dev/null || { echo "bench/tls.sh: $c missing" >&2; exit 1; }
done
[ -x bin/csock ] || { echo "bench/tls.sh: run make first" >&2; exit 1; }

openssl ecparam -name prime256v1 -genkey -noout -out "$tmp/key.pem" 2>/dev/null
openssl req -x509 -new -key "$tmp/key.pem" -subj /CN=localhost -days 1 -out "$tmp/cert.pem" \
  -addext subjectAltName=DNS:localhost,IP:127.0.0.1 2>/dev/null

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# user+system CPU ticks of a process and its children
ticks() {
  local t=0 p
  for p in "$1" $(pgrep -P "$1" || true); do
    t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo "$t"
}

start_nginx() {
  local port=$1
  mkdir -p "$tmp/nginx/logs" "$tmp/nginx/tmp"
  cat > "$tmp/nginx/nginx.conf" <<CONF
daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile 20000;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/logs/error.log warn;
events { worker_connections 16384; multi_accept on; }
http {
  access_log off;
  client_body_temp_path $tmp/nginx/tmp;
  proxy_temp_path $tmp/nginx/tmp;
  fastcgi_temp_path $tmp/nginx/tmp;
  uwsgi_temp_path $tmp/nginx/tmp;
  scgi_temp_path $tmp/nginx/tmp;
  keepalive_requests 100000000;
  server_tokens off;
  server {
    listen 127.0.0.1:$port ssl backlog=4096;
    ssl_certificate $tmp/cert.pem;
    ssl_certificate_key $tmp/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / { default_type text/plain; return 200 "Hello, World!"; }
  }
}
CONF
  taskset -c 0 nginx -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" >/dev/null 2>&1 &
  pid=$!
  pids+=("$pid")
}

start_csock() {
  local port=$1
  LUA_PATH="./lua/?.lua;./lua/?/init.lua;;" taskset -c 0 bin/csock bench/servers/csock_https.lua \
    "$port" "$tmp/cert.pem" "$tmp/key.pem" >/dev/null &
  pid=$!
  pids+=("$pid")
}

# run NAME PID PORT TEST: requests per server CPU-second and per wall second
run() {
  local pid=$1 port=$2 test=$3 hdr=()
  [ "$test" = close ] && hdr=(-H "Connection: close")
  taskset -c 1 wrk -t1 -c100 -d1s "${hdr[@]}" "https://127.0.0.1:$port/" >/dev/null 2>&1 || true
  local t0 t1 out req
  t0=$(ticks "$pid")
  out=$(taskset -c 1 wrk -t1 -c100 -d"${DUR}s" "${hdr[@]}" "https://127.0.0.1:$port/")
  t1=$(ticks "$pid")
  req=$(printf '%s\n' "$out" | awk '/requests in/ {print $1}')
  local hz; hz=$(getconf CLK_TCK)
  awk -v r="$req" -v d="$((t1 - t0))" -v hz="$hz" -v s="$DUR" \
    'BEGIN { cpu = d / hz; printf "%d|%.0f|%.2f\n", r / s, (cpu > 0 ? r / cpu : 0), cpu }'
}

start_node() {
  taskset -c 0 node bench/servers/node_https.js "$1" "$tmp/cert.pem" "$tmp/key.pem" >/dev/null &
  pid=$!
  pids+=("$pid")
}

start_cqueues() {
  taskset -c 0 lua5.4 bench/servers/cqueues_https.lua "$1" "$tmp/cert.pem" "$tmp/key.pem" >/dev/null &
  pid=$!
  pids+=("$pid")
}

SERVERS=(nginx csock)
command -v node >/dev/null && SERVERS+=(node)
lua5.4 -e 'require "cqueues"; require "openssl.ssl.context"' 2>/dev/null && SERVERS+=(cqueues)

declare -A res
for srv in "${SERVERS[@]}"; do
  port=$(free_port)
  "start_$srv" "$port"
  for _ in $(seq 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
  done
  for test in ka close; do res[$srv,$test]=$(run "$pid" "$port" "$test"); done
  kill "$pid"; wait "$pid" 2>/dev/null || true
done

mkdir -p bench/results
{
  echo "| server | test | req/s | req per server CPU-s | server CPU s | vs nginx (per CPU-s) |"
  echo "|---|---|---:|---:|---:|---:|"
  for test in ka close; do
    IFS='|' read -r nr ncpu _ <<<"${res[nginx,$test]}"
    for srv in "${SERVERS[@]}"; do
      IFS='|' read -r r pc c <<<"${res[$srv,$test]}"
      ratio=$(awk -v a="$pc" -v b="$ncpu" 'BEGIN { printf "%.2fx", (b > 0 ? a / b : 0) }')
      label=$([ "$test" = ka ] && echo "keep-alive c100" || echo "Connection: close c100")
      echo "| $srv | $label | $r | $pc | $c | $ratio |"
    done
  done
} | tee bench/results/tls-latest.md
