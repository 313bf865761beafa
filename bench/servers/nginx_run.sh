#!/bin/bash
# nginx_run.sh lua|static PORT [WORKERS] - run nginx (WORKERS worker
# processes, default 1; foreground) with a generated config in a private temp
# prefix; exec's nginx so that the caller's PID is nginx's master process.
#   lua:    content_by_lua_block (libnginx-mod-http-lua, LuaJIT) answers
#   static: "return 200" from the config, no Lua at all
set -euo pipefail
kind=${1:?lua|static} port=${2:?PORT} workers=${3:-1}
prefix=$(mktemp -d "${BENCH_TMP:-/tmp}/nginx.XXXXXX")
mkdir -p "$prefix/logs" "$prefix/tmp"
if [ "$kind" = lua ]; then
  modules='load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;'
  body='content_by_lua_block {
        ngx.header["Content-Length"] = 13
        ngx.print("Hello, World!")
      }'
else
  modules=''
  body='return 200 "Hello, World!";'
fi
cat > "$prefix/nginx.conf" <<CONF
$modules
daemon off;
master_process on;
worker_processes $workers;
worker_rlimit_nofile 20000;
pid $prefix/nginx.pid;
error_log $prefix/logs/error.log warn;
events { worker_connections 16384; multi_accept on; }
http {
  access_log off;
  client_body_temp_path $prefix/tmp;
  proxy_temp_path $prefix/tmp;
  fastcgi_temp_path $prefix/tmp;
  uwsgi_temp_path $prefix/tmp;
  scgi_temp_path $prefix/tmp;
  default_type text/plain;
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  tcp_nodelay on;
  server_tokens off;
  server {
    listen 127.0.0.1:$port backlog=4096;
    location / {
      $body
    }
  }
}
CONF
exec nginx -p "$prefix" -c "$prefix/nginx.conf"
