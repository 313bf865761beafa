#!/bin/bash
# ir_profile.sh - where a server's instructions per request go, function by function,
# Lua's own functions included: bench/ir.sh says how many, this says which.
#
#   bash bench/ir_profile.sh [ka|close] [SERVER_CMD]    (default: close, csock's bench server)
#
# Debian's liblua5.4 is stripped, so callgrind sees Lua's interpreter as addresses.  This
# script builds the same Lua (Debian's lua5.4 source package, 5.4.4) once with symbols into
# bench/build/lua-syms/ and runs the server against it (LD_LIBRARY_PATH) under callgrind
# twice, with N1 and N2 requests.  The difference / (N2 - N1) leaves start-up and exit out.
# Prints the top functions per request, inclusive (a function and what it calls) and
# exclusive.  The build is a profiling aid only: csock is never built or tested against it.
# Loopback only; every run is bounded by timeout(1).  Needs valgrind, gcc and network access
# to Debian's source mirror the first time.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
MODE=${1:-close}
CMD=${2:-"$ROOT/bin/csock $HERE/servers/csock_http_raw.lua {port} 127.0.0.1"}
N1=${IR_N1:-2000} N2=${IR_N2:-6000} TOP=${IR_TOP:-40}
SYMS="$HERE/build/lua-syms"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
export LUA_PATH="$ROOT/lua/?.lua;$ROOT/lua/?/init.lua;;"

build_lua() { # Debian's lua5.4 source, compiled as liblua5.4.so.0 with -g
  [ -f "$SYMS/liblua5.4.so.0" ] && return
  mkdir -p "$SYMS/src"
  # a deb-src list beside the system's, used for this one download only
  sed 's/^Types: deb$/Types: deb deb-src/' /etc/apt/sources.list.d/debian.sources >"$SYMS/src.sources"
  local apt=(-o Dir::Etc::SourceList="$SYMS/src.sources" -o Dir::Etc::SourceParts=/dev/null
             -o Dir::State::Lists="$SYMS/lists" -o Dir::Cache="$SYMS/cache")
  mkdir -p "$SYMS/lists/partial" "$SYMS/cache/archives/partial"
  apt-get "${apt[@]}" update >/dev/null
  (cd "$SYMS/src" && apt-get "${apt[@]}" source --download-only lua5.4 >/dev/null 2>&1)
  tar -xzf "$SYMS"/src/lua5.4_*.orig.tar.gz -C "$SYMS/src"
  local src=() f
  for f in "$SYMS"/src/lua-5.4*/src/*.c; do
    case $f in */lua.c | */luac.c) ;; *) src+=("$f") ;; esac # the library, not the programs
  done
  gcc -O2 -g -fPIC -DLUA_COMPAT_5_3 -DLUA_USE_LINUX -shared -Wl,-soname,liblua5.4.so.0 \
    -o "$SYMS/liblua5.4.so.0" "${src[@]}" -lm -ldl
}

# shellcheck source=bench/callgrind_lib.sh
. "$HERE/callgrind_lib.sh"

table() { # OUT yes|no -> "count<TAB>function" per function
  callgrind_annotate --inclusive="$2" --threshold=100 "$1" 2>/dev/null |
    awk '/=>/ {next} /^ *[0-9,]+ .*\[/ {n=$1; gsub(/,/, "", n); $1=""; sub(/^ *\( *[0-9.]+%\) */, "");
         sub(/ \[.*$/, ""); sub(/^.*\/src\//, ""); sub(/^\?\?\?:/, ""); sub(/'"'"'[0-9]+/, ""); print n "\t" $0}'
}

diff_top() { # A B per-request
  awk -F'\t' -v n="$3" -v top="$TOP" 'FNR==NR {a[$2]+=$1; next} {b[$2]+=$1}
    END { for (k in b) { d=(b[k]-a[k])/n; if (d >= 1) printf "%8.0f  %s\n", d, k } }' "$1" "$2" |
    sort -rn | head -n "$TOP"
}

build_lua
LD_LIBRARY_PATH="$SYMS" callgrind_requests "$CMD" "$MODE" "$N1" "$TMP/a"
LD_LIBRARY_PATH="$SYMS" callgrind_requests "$CMD" "$MODE" "$N2" "$TMP/b"
for kind in yes no; do
  table "$TMP/a" $kind >"$TMP/a.$kind"
  table "$TMP/b" $kind >"$TMP/b.$kind"
done
echo "== $MODE: instructions per request, inclusive (a function and its callees)"
diff_top "$TMP/a.yes" "$TMP/b.yes" $((N2 - N1))
echo
echo "== $MODE: instructions per request, exclusive"
diff_top "$TMP/a.no" "$TMP/b.no" $((N2 - N1))
