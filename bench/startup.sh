#!/bin/bash
# startup.sh [--server NAME=CMD]... - process start-up cost of each runtime
# (interpreter + networking library load, then exit), with hyperfine, pinned
# to CPU 0; csock (bin/csock) is included when it is built.
# Writes results/startup.md. ~1 minute.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT="$HERE/results"; mkdir -p "$OUT"
command -v hyperfine >/dev/null || { echo "hyperfine not installed" >&2; exit 1; }
C52='package.path=package.path..";/usr/share/lua/5.2/?.lua"'
cmds=(
  "lua5.4 -e ''"
  "lua5.4 -e 'require\"luv\"'"
  "lua5.4 -e 'require\"cqueues\"; require\"cqueues.socket\"'"
  "lua5.4 -e '$C52; require\"socket\"; require\"copas\"'"
  "node -e ''"
  "node -e 'require(\"net\"); require(\"http\")'"
)
ROOT=$(cd "$HERE/.." && pwd)
CSOCK_BIN=${CSOCK_BIN:-$ROOT/bin/csock}
[ -x "$CSOCK_BIN" ] && cmds+=("$CSOCK_BIN -e ''" "$CSOCK_BIN -e 'require\"csock\"'")
while [ $# -gt 0 ]; do
  case $1 in
    --server) cmds+=("${2#*=}"); shift 2 ;;
    *) echo "usage: $0 [--server NAME=CMD]..." >&2; exit 2 ;;
  esac
done
timeout 300 taskset -c 0 hyperfine -N --warmup 5 --runs 50 --time-unit millisecond \
  --export-markdown "$OUT/startup.md" "${cmds[@]}"
