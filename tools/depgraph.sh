#!/bin/sh
# Prints which src/ file calls which (from the symbols each object file
# defines and uses) and fails when the graph has a cycle: the layers of
# README's "Layout" must only call downwards.  `make lint` runs it.
# Usage: sh tools/depgraph.sh [cc flags...]
set -eu
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for c in src/*.c; do
  cc -c -std=gnu11 -D_GNU_SOURCE -Ibuild "$@" -o "$tmp/$(basename "$c" .c).o" "$c"
done
for o in "$tmp"/*.o; do
  f=$(basename "$o" .o)
  nm --defined-only "$o" | awk -v f="$f" '$2 ~ /^[TDBR]$/ { print $3, f }'
done | sort >"$tmp/defs"
for o in "$tmp"/*.o; do
  f=$(basename "$o" .o)
  nm --undefined-only "$o" | awk -v f="$f" '{ print $2, f }'
done | sort >"$tmp/uses"
# caller callee, for every symbol defined in another src/ file
join "$tmp/uses" "$tmp/defs" | awk '$2 != $3 { print $2, $3 }' | sort -u >"$tmp/edges"
awk '{ printf "%-14s -> %s\n", $1, $2 }' "$tmp/edges"
if ! tsort "$tmp/edges" >/dev/null 2>"$tmp/tsort"; then
  echo "depgraph: the calls between src/ files form a cycle:" >&2
  grep -v 'input contains a loop' "$tmp/tsort" | sed 's/^tsort: /  /' >&2
  exit 1
fi
echo "depgraph: no cycle"
