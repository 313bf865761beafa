#!/bin/bash
# versions.sh - print the versions of the peers and tools, one per line.
v() { printf -- '- %s: %s\n' "$1" "$(eval "$2" 2>&1 | head -1)"; }
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CSOCK_BIN=${CSOCK_BIN:-$ROOT/bin/csock}
dpkgv() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo "not installed"; }
v "kernel"        "uname -r"
v "cpu"           "awk -F': ' '/model name/{print \$2; exit}' /proc/cpuinfo"
v "gcc"           "gcc --version"
v "csock"         "if [ -x '$CSOCK_BIN' ]; then '$CSOCK_BIN' -v; echo; else echo 'not built'; fi; git -C '$ROOT' rev-parse --short HEAD 2>/dev/null | sed 's/^/commit /'"
v "wrk"           "wrk -v 2>&1 | head -1"
v "lua5.4"        "lua5.4 -v"
v "luv"           "lua5.4 -e 'local uv=require\"luv\"; print(\"libuv \"..uv.version_string()..\", lua-luv deb \"..\"$(dpkgv lua-luv)\")'"
v "cqueues"       "lua5.4 -e 'local c=require\"cqueues\"; print(c.VERSION..\", lua-cqueues deb $(dpkgv lua-cqueues)\")'"
v "luasocket"     "lua5.4 -e 'print(require\"socket\"._VERSION..\", lua-socket deb $(dpkgv lua-socket)\")'"
v "copas"         "lua5.4 -e 'package.path=package.path..\";/usr/share/lua/5.2/?.lua\"; print(require\"copas\"._VERSION..\", lua-copas deb $(dpkgv lua-copas) (files for Lua 5.1/5.2 only)\")'"
v "node"          "echo \$(node -v), nodejs deb $(dpkgv nodejs)"
v "nginx"         "nginx -v 2>&1"
v "nginx lua mod" "echo libnginx-mod-http-lua $(dpkgv libnginx-mod-http-lua), LuaJIT $(dpkgv libluajit2-5.1-2 | grep -v 'not' || dpkgv libluajit-5.1-2)"
