#!/bin/bash
# bench/tls_alloc.sh [N] - where the memory of an idle TLS connection goes: the
# servers of bench/tls_idle.sh (csock, and nginx with TLS 1.2 and 1.3, 1 worker,
# same certificate) run under bench/tls_alloc_shim.c, which counts OpenSSL's
# live allocations by call site; N python3 ssl clients (default 1000) make a
# request each and stay open.  Prints, per connection: the heap in use
# (mallinfo2, less the shim's own 16-byte headers), OpenSSL's bytes and blocks,
# the rest (the server's own memory and malloc's per-block overhead), then
# OpenSSL's call sites side by side.  Counts, not timings: it needs no quiet
# machine, but run it under the bench lock like the other scripts.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000}
ulimit -n $((N * 2 + 100)) 2>/dev/null || ulimit -n "$(ulimit -Hn)"
tmp=$(mktemp -d)
chmod 755 "$tmp" # nginx's worker runs as another user and writes its counts here
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT
cc -O2 -shared -fPIC -o "$tmp/shim.so" bench/tls_alloc_shim.c -lcrypto -pthread
openssl ecparam -name prime256v1 -genkey -noout -out "$tmp/key.pem" 2>/dev/null
openssl req -x509 -new -key "$tmp/key.pem" -subj /CN=localhost -days 1 -out "$tmp/cert.pem" 2>/dev/null
mkdir -p "$tmp/counts" && chmod 777 "$tmp/counts"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.1; done; }

clients() { # port: N idle TLS connections after a request each; prints "ready <versions>"
  python3 - "$1" "$N" <<'PY'
import socket, ssl, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
conns, versions = [], set()
for _ in range(n):
    t = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)))
    t.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    t.recv(4096)
    versions.add(t.version())
    conns.append(t)
print("ready", ",".join(sorted(versions)), flush=True)
time.sleep(600)
PY
}

# name pid port: the counts of process pid before and after N connections, as $tmp/<name>.{0,1}
profile() {
  local trig="$tmp/counts/trig" cl
  wait_port "$3"
  sleep 0.3
  touch "$trig"; sleep 0.5
  clients "$3" >"$tmp/ready" 2>"$tmp/clients.err" &
  cl=$!
  for _ in $(seq 1200); do grep -q ready "$tmp/ready" 2>/dev/null && break; sleep 0.1; done
  grep -q ready "$tmp/ready" || { cat "$tmp/clients.err" >&2; kill "$cl"; return 1; }
  sleep 0.5
  touch "$trig"; sleep 0.5
  mv "$tmp/counts/trig.$2.0" "$tmp/$1.0"
  mv "$tmp/counts/trig.$2.1" "$tmp/$1.1"
  awk '{print $2}' "$tmp/ready" >"$tmp/$1.version"
  kill "$cl"; wait "$cl" 2>/dev/null || true
  rm -f "$tmp/ready"
}

nginx_profile() { # name protocols
  local port master worker
  port=$(free_port)
  rm -rf "$tmp/ngx" && mkdir -p "$tmp/ngx/logs"
  cat >"$tmp/ngx/nginx.conf" <<CONF
daemon off; master_process on; worker_processes 1; worker_rlimit_nofile 20000;
pid $tmp/ngx/nginx.pid; error_log $tmp/ngx/logs/error.log warn;
events { worker_connections 20000; }
http { access_log off; client_body_temp_path $tmp/ngx; proxy_temp_path $tmp/ngx;
  fastcgi_temp_path $tmp/ngx; uwsgi_temp_path $tmp/ngx; scgi_temp_path $tmp/ngx;
  keepalive_timeout 300s;
  server { listen 127.0.0.1:$port ssl; ssl_certificate $tmp/cert.pem; ssl_certificate_key $tmp/key.pem;
    ssl_protocols $2;
    location / { return 200 "Hello, World!"; } } }
CONF
  TLS_ALLOC_DUMP="$tmp/counts/trig" LD_PRELOAD="$tmp/shim.so" \
    nginx -p "$tmp/ngx" -c "$tmp/ngx/nginx.conf" >/dev/null 2>&1 &
  master=$!
  pids+=("$master")
  sleep 1
  worker=$(pgrep -P "$master")
  profile "$1" "$worker" "$port"
  kill "$master"; wait "$master" 2>/dev/null || true
}

nginx_profile nginx-tls1.2 "TLSv1.2"
nginx_profile nginx "TLSv1.2 TLSv1.3"
port=$(free_port)
TLS_ALLOC_DUMP="$tmp/counts/trig" LD_PRELOAD="$tmp/shim.so" LUA_PATH="./lua/?.lua;./lua/?/init.lua;;" \
  bin/csock bench/servers/csock_https.lua "$port" "$tmp/cert.pem" "$tmp/key.pem" >/dev/null &
pids+=($!)
profile csock "$!" "$port"

python3 - "$tmp" "$N" nginx-tls1.2 nginx csock <<'PY'
import sys
tmp, n, names = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
def load(path):
    lines = open(path).read().splitlines()
    heap = int(lines[0].split()[1])
    sites = {}
    for l in lines[1:]:
        b, k, s = l.split(None, 2)
        sites[s] = (int(b), int(k))
    return heap, sites
per, totals = {}, {}
for name in names:
    (h0, a), (h1, b) = load(f"{tmp}/{name}.0"), load(f"{tmp}/{name}.1")
    d = {}
    for s in set(a) | set(b):
        db = b.get(s, (0, 0))[0] - a.get(s, (0, 0))[0]
        dk = b.get(s, (0, 0))[1] - a.get(s, (0, 0))[1]
        if db or dk:
            d[s] = (db / n, dk / n)
    ob = sum(v[0] for v in d.values()); ok = sum(v[1] for v in d.values())
    heap = (h1 - h0) / n - 16 * ok  # the shim's headers are no server's
    per[name] = d
    totals[name] = (open(f"{tmp}/{name}.version").read().strip(), heap, ob, ok, heap - ob)
print(f"{n} idle TLS connections; bytes per connection\n")
print("| server | TLS | heap in use | OpenSSL bytes | OpenSSL blocks | the rest |")
print("|---|---|---:|---:|---:|---:|")
for name in names:
    v, heap, ob, ok, rest = totals[name]
    print(f"| {name} | {v} | {heap:.0f} | {ob:.0f} | {ok:.1f} | {rest:.0f} |")
print("\nOpenSSL's live allocations per connection (bytes / blocks) by call site:\n")
print("| site | " + " | ".join(names) + " |")
print("|---|" + "---:|" * len(names))
sites = sorted(set().union(*per.values()), key=lambda s: -max(per[x].get(s, (0, 0))[0] for x in names))
for s in sites:
    cells = [per[x].get(s, (0, 0)) for x in names]
    if max(abs(c[0]) for c in cells) < 8:
        continue
    print(f"| {s} | " + " | ".join(f"{c[0]:.0f} / {c[1]:.2f}" for c in cells) + " |")
PY
