#!/bin/bash
# pool.sh OUT_DIR RAW.csv... - pool the rounds of several runs (their
# latest-raw.csv files, as written by run.sh) into OUT_DIR/latest-raw.csv,
# renumbering rounds, and write OUT_DIR/latest.md and latest.csv with
# report.sh.  The runs must have used the same settings; give them with
# DURATION=, ECHO_SECS=, IDLE_N= in the environment if not the defaults.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[ $# -ge 2 ] || { echo "usage: $0 OUT_DIR RAW.csv..." >&2; exit 2; }
out=$1; shift
mkdir -p "$out"
off=0
{
  echo "round,server,metric,value,note"
  for f in "$@"; do
    awk -F, -v OFS=, -v off=$off 'NR>1 { $1 = $1 + off; print }' "$f"
    off=$((off + $(awk -F, 'NR>1 && $1>m {m=$1} END{print m+0}' "$f")))
  done
} >"$out/latest-raw.csv.tmp"
mv "$out/latest-raw.csv.tmp" "$out/latest-raw.csv"
servers=$(awk -F, 'NR>1 && !seen[$2]++ {printf "%s%s", sep, $2; sep=" "}' "$out/latest-raw.csv")
{
  echo "ROUNDS=$off DURATION=${DURATION:-5} ECHO_SECS=${ECHO_SECS:-3} IDLE_N=${IDLE_N:-10000}"
  echo "SERVER_CPU=0 CLIENT_CPU=1"
  printf 'SERVERS=%q\n' "$servers"
  printf 'HOST_INFO=%q\n' "$(uname -srm), $(nproc) CPUs; pooled from: $(for f in "$@"; do basename "$f"; done | tr '\n' ' ')"
} >"$out/latest-meta.env"
NO_COPY=1 "$HERE/report.sh" "$out" >/dev/null   # no timestamped copies here
echo "wrote $out/latest.md"
