#!/bin/sh
# fuzz/run.sh SECONDS - runs each libFuzzer harness of build-fuzz/ for its
# share of SECONDS (make fuzz builds them).  The committed seeds in
# fuzz/corpus/<harness>/ are read, never written: new inputs go to
# build-fuzz/corpus-<harness>/, a crash to build-fuzz/crash-<harness>-*.
# Exits 1 if any harness found a crash or a broken invariant.
set -u
cd "$(dirname "$0")/.." || exit 2
TOTAL=${1:-60}
HARNESSES="fuzz_read fuzz_addr fuzz_http fuzz_ws fuzz_tls"
n=$(echo $HARNESSES | wc -w)
each=$(( TOTAL / n )); [ "$each" -ge 1 ] || each=1
status=0
for h in $HARNESSES; do
  mkdir -p "build-fuzz/corpus-$h"
  dict=""; [ -f "fuzz/$h.dict" ] && dict="-dict=fuzz/$h.dict"
  log="build-fuzz/$h.log"
  echo "== $h: $each s"
  # -timeout: one input may not take a second (timeouts are 0 in the harness)
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "build-fuzz/$h" -max_total_time="$each" -max_len=8192 -timeout=10 -rss_limit_mb=4096 \
      -print_final_stats=1 $dict -artifact_prefix="build-fuzz/crash-$h-" \
      "build-fuzz/corpus-$h" "fuzz/corpus/$h" >"$log" 2>&1
  rc=$?
  runs=$(sed -n "s/^stat::number_of_executed_units: *//p" "$log" | tail -1)
  rate=$(sed -n "s/^stat::average_exec_per_sec: *//p" "$log" | tail -1)
  if [ "$rc" -eq 0 ]; then
    echo "   ok: ${runs:-?} runs, ${rate:-?} exec/s"
  else
    status=1
    echo "   FAILED (status $rc): ${runs:-?} runs, ${rate:-?} exec/s; log $log"
    grep -a -E 'fuzz_(read|addr|http|ws|tls):|runtime error|ERROR: AddressSanitizer|ERROR: libFuzzer|SUMMARY' "$log" | head -5 | sed 's/^/   /'
    ls build-fuzz/crash-"$h"-* 2>/dev/null | tail -1 | sed 's/^/   input: /'
  fi
done
exit $status
