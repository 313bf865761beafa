#!/bin/bash
# bench/tls_idle.sh [N] - memory per idle TLS connection: N python3 ssl clients
# finish a handshake and send a request each, then stay open; the server's RSS
# (all its processes) before and after, per connection.  csock
# (bench/servers/csock_https.lua) beside nginx with TLS, 1 worker, same
# ECDSA P-256 certificate and the same protocols as bench/tls.sh (nginx 1.22
# offers no TLS 1.3 unless told: its state after a TLS 1.2 handshake is
# smaller).  The table says which version each server negotiated.  Default N = 2000.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-2000}
ulimit -n $((N * 2 + 100)) 2>/dev/null || ulimit -n "$(ulimit -Hn)"
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT
openssl ecparam -name prime256v1 -genkey -noout -out "$tmp/key.pem" 2>/dev/null
openssl req -x509 -new -key "$tmp/key.pem" -subj /CN=localhost -days 1 -out "$tmp/cert.pem" 2>/dev/null
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rss_kib() { # the RSS of a process and its children, in KiB
  local t=0 p
  for p in "$1" $(pgrep -P "$1" || true); do
    t=$((t + $(awk '/^VmRSS/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)))
  done
  echo "$t"
}
wait_port() { for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.1; done; }

clients() { # port: N idle TLS connections, each after one request and its answer
  python3 - "$1" "$N" <<'PY'
import socket, ssl, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
conns = []
versions = set()
for _ in range(n):
    t = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)))
    t.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    t.recv(4096)
    versions.add(t.version())
    conns.append(t)
print("ready", ",".join(sorted(versions)), flush=True)
import time
time.sleep(600)
PY
}

measure() { # name pid port
  local before after cl
  wait_port "$3"
  sleep 0.3
  before=$(rss_kib "$2")
  clients "$3" >"$tmp/ready" 2>"$tmp/clients.err" &
  cl=$!
  for _ in $(seq 600); do grep -q ready "$tmp/ready" 2>/dev/null && break; sleep 0.1; done
  grep -q ready "$tmp/ready" || { cat "$tmp/clients.err" >&2; kill "$cl"; return 1; }
  sleep 0.5
  after=$(rss_kib "$2")
  version=$(awk '{print $2}' "$tmp/ready")
  kill "$cl"; wait "$cl" 2>/dev/null || true
  rm -f "$tmp/ready"
  awk -v n="$N" -v a="$before" -v b="$after" -v s="$1" -v v="$version" \
    'BEGIN { printf "| %s | %s | %d | %d | %d | %.1f |\n", s, v, n, a, b, (b - a) / n }'
}

echo "| server | TLS | idle TLS connections | RSS before KiB | RSS after KiB | KiB per connection |"
echo "|---|---|---:|---:|---:|---:|"
port=$(free_port)
mkdir -p "$tmp/ngx/logs"
cat > "$tmp/ngx/nginx.conf" <<CONF
daemon off; master_process on; worker_processes 1; worker_rlimit_nofile 20000;
pid $tmp/ngx/nginx.pid; error_log $tmp/ngx/logs/error.log warn;
events { worker_connections 20000; }
http { access_log off; client_body_temp_path $tmp/ngx; proxy_temp_path $tmp/ngx;
  fastcgi_temp_path $tmp/ngx; uwsgi_temp_path $tmp/ngx; scgi_temp_path $tmp/ngx;
  keepalive_timeout 300s;
  server { listen 127.0.0.1:$port ssl; ssl_certificate $tmp/cert.pem; ssl_certificate_key $tmp/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / { return 200 "Hello, World!"; } } }
CONF
nginx -p "$tmp/ngx" -c "$tmp/ngx/nginx.conf" >/dev/null 2>&1 &
pids+=($!)
measure nginx "$!" "$port"
port=$(free_port)
LUA_PATH="./lua/?.lua;./lua/?/init.lua;;" bin/csock bench/servers/csock_https.lua "$port" \
  "$tmp/cert.pem" "$tmp/key.pem" >/dev/null &
pids+=($!)
measure csock "$!" "$port"
