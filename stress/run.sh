#!/bin/sh
# stress/run.sh - the reliability stress cases of issue 6, loopback only and
# bounded in count and time.  Run from the repository root (make stress).
# Prints one table: case | what was tried | count | result; exits 1 if any
# case failed.  STRESS_CYCLES sets the leak cycles (default 100000; the
# blocking run does as many); STRESS_TLS_CYCLES the TLS ones (20000).
set -u
cd "$(dirname "$0")/.." || exit 2
CYCLES=${STRESS_CYCLES:-100000}
TLS_CYCLES=${STRESS_TLS_CYCLES:-20000} # a handshake each: about 1,200 a second
LIMIT=${STRESS_LIMIT:-300}   # seconds any one script may run
BIN=./bin/csock
LUA=${LUA:-lua5.4}

rows=$(mktemp)
status=0
trap 'rm -f "$rows"' EXIT

run() { # name, command...
  name=$1; shift
  out=$(timeout -k 5 "$LIMIT" "$@")
  rc=$?
  printf '%s\n' "$out" | grep '^ROW|' >>"$rows"
  if ! printf '%s\n' "$out" | grep -q '^ROW|'; then
    echo "ROW|$name|(script)|-|FAIL exited with status $rc and no result" >>"$rows"
  fi
  [ "$rc" -eq 0 ] || status=1
}

run "leak (loop)"     "$BIN" stress/leak_loop.lua "$CYCLES"
run "leak (blocking)" "$LUA" stress/leak_blocking.lua "$CYCLES"
run "leak (TLS)"      "$BIN" stress/leak_tls.lua "$TLS_CYCLES"
run "EMFILE"          "$LUA" stress/emfile.lua
run "slow peers"      "$BIN" stress/slow_peers.lua
run "broken peers"    "$BIN" stress/broken_peers.lua

awk -F'|' '
  { for (i = 2; i <= 5; i++) { cell[NR, i] = $i; if (length($i) > w[i]) w[i] = length($i) } }
  END {
    split("case|what was tried|count|result", h, "|")
    for (i = 2; i <= 5; i++) if (length(h[i-1]) > w[i]) w[i] = length(h[i-1])
    printf "%-*s | %-*s | %*s | %s\n", w[2], h[1], w[3], h[2], w[4], h[3], h[4]
    printf "%s-+-%s-+-%s-+-%s\n", sprintf("%*s", w[2], "") , sprintf("%*s", w[3], ""), sprintf("%*s", w[4], ""), "------"
    for (r = 1; r <= NR; r++)
      printf "%-*s | %-*s | %*s | %s\n", w[2], cell[r,2], w[3], cell[r,3], w[4], cell[r,4], cell[r,5]
  }' "$rows" | sed '2s/ /-/g'
if grep -q '|FAIL' "$rows"; then status=1; fi
exit $status
