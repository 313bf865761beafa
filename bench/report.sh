#!/bin/bash
# report.sh [RESULTS_DIR] - turn RESULTS_DIR/latest-raw.csv (+ latest-meta.env,
# both written by run.sh) into latest.md and latest.csv, with timestamped
# copies in RESULTS_DIR/runs/.  run.sh calls it at the end; it can be rerun by
# hand on the same data (NO_COPY=1 leaves out the timestamped copies).
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=${1:-$HERE/results}
RAW="$OUT/latest-raw.csv"
[ -f "$RAW" ] || { echo "no $RAW" >&2; exit 1; }
# meta: ROUNDS DURATION ECHO_SECS IDLE_N TIMER_TASKS PAIRS SERVER_CPU CLIENT_CPU
#       CSOCK_MW SERVERS MW_SERVERS MISSING SKIP HOST_INFO
TIMER_TASKS="" PAIRS=0 CSOCK_MW="" MW_SERVERS="" MISSING="" SKIP=""
# shellcheck disable=SC1091
. "$OUT/latest-meta.env"
read -ra SELECTED <<<"$SERVERS"
read -ra MWSEL <<<"$MW_SERVERS"
REF=c-epoll

METRICS=(ka100 ka1000 close echo idle_kib idlereq_kib ka100_cpu ka1000_cpu close_cpu echo_cpu
         ka100_clientcore ka1000_clientcore close_clientcore echo_clientcore)
MAIN=(ka100 ka1000 close echo idle_kib idlereq_kib)
HEAD=("keep-alive c100 req/s" "keep-alive c1000 req/s" "Connection: close c100 req/s"
      "echo MB/s" "KiB per idle conn" "KiB per idle conn after 1 req")
CPUM=(ka100 ka1000 close echo)
TIMERM=(timer_loaded_p50 timer_loaded_p99 timer_loaded_max timer_idle_p50 timer_idle_p99
        timer_idle_max timer_rps timer_rps_cpu)
MWM=(mw_ka100 mw_ka1000 mw_ka100_cpu mw_ka1000_cpu mw_ka100_clientcore mw_ka1000_clientcore)

values() { awk -F, -v s="$1" -v m="$2" '$2==s && $3==m && $4!="" {print $4}' "$RAW" | sort -g; }
median() {
  values "$1" "$2" | awk '{a[NR]=$1} END{ if (NR==0) print ""; else if (NR%2) print a[(NR+1)/2];
                                         else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2 }'
}
vmin() { values "$1" "$2" | head -1; }
vmax() { values "$1" "$2" | tail -1; }
count() { values "$1" "$2" | wc -l; }
note_of() { awk -F, -v s="$1" -v m="$2" '$2==s && $3==m && $5!="" {n=$5} END{print n}' "$RAW"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (a!="" && b!="" && b>0) printf "%.2f", a/b }'; }
fmt() { awk -v v="$1" 'BEGIN{ if (v=="") {print "n/a"; exit}
          if (v>=1000) { s=sprintf("%.0f", v); o=""; while (length(s)>3) { o="," substr(s,length(s)-2) o; s=substr(s,1,length(s)-3) } print s o }
          else if (v>=100) printf "%.0f\n", v; else printf "%.2f\n", v }'; }
fmtms() { [ -z "$1" ] && { echo n/a; return; }; awk -v v="$1" 'BEGIN{printf "%.2f", v}'; }
eff() { awk -v v="$1" -v c="$2" 'BEGIN{ if (v!="" && c!="" && c>0) printf "%.2f", v/(c/100) }'; }
label() { # server name, marked when it was not installed / could not run
  local s=$1
  [[ " $MISSING " == *" $s "* ]] && { echo "$s (not installed)"; return; }
  [ "$(note_of "$s" mw_ka100)" = no_w_option ] && { echo "$s (csock has no -w)"; return; }
  echo "$s"
}

declare -A MED EFF
for s in "${SELECTED[@]}"; do
  for m in "${METRICS[@]}"; do MED[$s,$m]=$(median "$s" "$m"); done
  for m in "${CPUM[@]}"; do EFF[$s,$m]=$(eff "${MED[$s,$m]}" "${MED[$s,${m}_cpu]}"); done
done
for s in "${SELECTED[@]}"; do for m in "${TIMERM[@]}" ir_ka ir_close; do MED[$s,$m]=$(median "$s" "$m"); done; done
for s in "${MWSEL[@]}"; do
  for m in "${MWM[@]}"; do MED[mw:$s,$m]=$(median "$s" "$m"); done
  for m in mw_ka100 mw_ka1000; do EFF[mw:$s,$m]=$(eff "${MED[mw:$s,$m]}" "${MED[mw:$s,${m}_cpu]}"); done
done

# Paired A/B (run.sh's pairs phase): per pair, csock / c-epoll of the rate and of
# the work per server CPU-second; prints "pairs rate_median eff_median eff_min eff_max".
pair_stats() { # test
  awk -F, -v m="pair_$1" '
    function median(v, n,   i, j, t) {
      for (i = 2; i <= n; i++) { t = v[i]; for (j = i - 1; j >= 1 && v[j] > t; j--) v[j+1] = v[j]; v[j+1] = t }
      return n % 2 ? v[(n+1)/2] : (v[n/2] + v[n/2+1]) / 2
    }
    NR > 1 && $4 != "" {
      if ($3 == m) rate[$2, $1] = $4
      else if ($3 == (m "_cpu")) cpu[$2, $1] = $4
      seen[$1] = 1
    }
    END {
      n = 0
      for (p in seen) {
        a = rate["csock", p]; b = rate["c-epoll", p]; ca = cpu["csock", p]; cb = cpu["c-epoll", p]
        if (a == "" || b == "" || ca == "" || cb == "" || b <= 0 || ca <= 0 || cb <= 0) continue
        n++; rr[n] = a / b; er[n] = (a / ca) / (b / cb)
        if (n == 1 || er[n] < lo) lo = er[n]
        if (n == 1 || er[n] > hi) hi = er[n]
      }
      if (n == 0) { print 0; exit }
      printf "%d %.2f %.2f %.2f %.2f\n", n, median(rr, n), median(er, n), lo, hi
    }' "$RAW"
}
PAIR_TESTS=(ka100 ka1000 close echo)
PAIR_NAMES=("keep-alive c100" "keep-alive c1000" "Connection: close c100" "echo 64 KiB")
# issue 17: Connection: close >= 0.90x; keep-alive and echo must not fall below
# the figures the issue started from (0.90, 0.85, 0.82)
PAIR_TARGETS=(0.90 0.85 0.90 0.82)
declare -A PAIR
for t in "${PAIR_TESTS[@]}"; do PAIR[$t]=$(pair_stats "$t"); done

STAMP=$(date +%Y%m%d-%H%M%S)
CSV="$OUT/latest.csv" MD="$OUT/latest.md"
{
  echo "server,metric,median,ratio_to_$REF,min,max,n_values,rounds"
  for s in "${SELECTED[@]}"; do for m in "${METRICS[@]}" "${TIMERM[@]}"; do
    v=${MED[$s,$m]}
    [ -z "$v" ] && [[ $m == timer* ]] && continue
    r=""; [[ $m != timer* ]] && r=$(ratio "$v" "${MED[$REF,$m]:-}")
    echo "$s,$m,$v,$r,$(vmin "$s" "$m"),$(vmax "$s" "$m"),$(count "$s" "$m"),$ROUNDS"
  done; done
  for s in "${SELECTED[@]}"; do for m in "${CPUM[@]}"; do
    v=${EFF[$s,$m]}
    echo "$s,${m}_per_cpu_s,$v,$(ratio "$v" "${EFF[$REF,$m]:-}"),,,,$ROUNDS"
  done; done
  for s in "${MWSEL[@]}"; do
    for m in "${MWM[@]}"; do
      v=${MED[mw:$s,$m]}
      r=""; [[ $m != *_c* ]] && r=$(ratio "$v" "${MED[mw:$REF,$m]:-}")
      echo "$s,$m,$v,$r,$(vmin "$s" "$m"),$(vmax "$s" "$m"),$(count "$s" "$m"),$ROUNDS"
    done
    for m in mw_ka100 mw_ka1000; do
      v=${EFF[mw:$s,$m]}
      echo "$s,${m}_per_cpu_s,$v,$(ratio "$v" "${EFF[mw:$REF,$m]:-}"),,,,$ROUNDS"
    done
  done
  for t in "${PAIR_TESTS[@]}"; do
    read -r n rr er lo hi <<<"${PAIR[$t]}"
    [ "${n:-0}" -gt 0 ] || continue
    echo "csock,pair_${t}_rate,$rr,$rr,,,$n,$n"
    echo "csock,pair_${t}_per_cpu_s,$er,$er,$lo,$hi,$n,$n"
  done
} >"$CSV"

{
  echo "# csock benchmark results ($STAMP)"
  echo
  echo "Medians of $ROUNDS round(s); wrk -t1, ${DURATION}s per run; echo ${ECHO_SECS}s of 64 KiB chunks;"
  echo "memory = (VmRSS after - before) / $IDLE_N idle connections. Server on CPU $SERVER_CPU, client on CPU $CLIENT_CPU."
  echo "Ratios (x) are server / $REF measured in the same run (rates only: $REF keeps ~24 bytes of user-space"
  echo "state per connection, so memory is compared in KiB, not as a ratio; kernel socket memory is not in RSS)."
  [ -n "$SKIP" ] && echo "Tests skipped: $SKIP."
  echo "Host: $HOST_INFO"
  echo
  printf '| server |'; for h in "${HEAD[@]}"; do printf ' %s |' "$h"; done; echo
  printf '|---|'; for h in "${HEAD[@]}"; do printf -- '---:|'; done; echo
  for s in "${SELECTED[@]}"; do
    printf '| %s |' "$(label "$s")"
    for m in "${MAIN[@]}"; do
      v=${MED[$s,$m]} ref=${MED[$REF,$m]:-}
      cell=$(fmt "$v")
      if [ -n "$v" ] && [ -n "$ref" ] && [ "$s" != "$REF" ] && [[ $m != *kib ]]; then
        cell="$cell ($(ratio "$v" "$ref")x)"
      fi
      n=$(count "$s" "$m")
      [ -n "$v" ] && [ "$n" -lt "$ROUNDS" ] && cell="$cell [$n/$ROUNDS ok]"
      printf ' %s |' "$cell"
    done
    echo
  done
  echo
  echo "Server CPU use during each test (median %, 100 = one core), and work per server CPU-second"
  echo "(median rate / (median CPU/100)), with its ratio to $REF. A server below ~95% CPU was not the"
  echo "bottleneck: the single-threaded client on the other core was, so its rate understates what the"
  echo "server could do, and the per-CPU-second figure is the better ranking."
  echo
  echo "CPU% cells: server process-group CPU (client core busy %, from /proc/stat)."
  echo
  echo "| server | CPU% ka c100 | CPU% ka c1000 | CPU% close | CPU% echo | req per CPU-s ka c100 | req per CPU-s ka c1000 | req per CPU-s close | MB per CPU-s echo |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
  for s in "${SELECTED[@]}"; do
    printf '| %s |' "$s"
    for m in "${CPUM[@]}"; do
      v=${MED[$s,${m}_cpu]} c=${MED[$s,${m}_clientcore]}
      if [ -n "$v" ]; then
        printf ' %.0f (%s) |' "$v" "$( [ -n "$c" ] && printf '%.0f' "$c" || echo n/a)"
      else printf ' n/a |'; fi
    done
    for m in "${CPUM[@]}"; do
      e=${EFF[$s,$m]} r=${EFF[$REF,$m]:-}
      cell=$(fmt "$e")
      [ -n "$e" ] && [ -n "$r" ] && [ "$s" != "$REF" ] && cell="$cell ($(ratio "$e" "$r")x)"
      printf ' %s |' "$cell"
    done
    echo
  done
  echo

  # ---- paired A/B
  any_pair=0
  for t in "${PAIR_TESTS[@]}"; do [ "${PAIR[$t]%% *}" != 0 ] && any_pair=1; done
  if [ $any_pair = 1 ]; then
    echo "Paired A/B, the figures the performance targets are checked against: csock and $REF run"
    echo "back to back, one test at a time, the first of the two alternating from pair to pair; each"
    echo "pair gives csock / $REF of the rate and of the work per server CPU-second, and the table"
    echo "shows the medians of those per-pair ratios (pairs taken seconds apart share the machine's"
    echo "state, which a ratio of medians taken minutes apart does not)."
    echo
    echo "| test | pairs | rate, csock / $REF | per server CPU-s, csock / $REF | per CPU-s, min - max | target |"
    echo "|---|---:|---:|---:|---:|---:|"
    for i in "${!PAIR_TESTS[@]}"; do
      read -r n rr er lo hi <<<"${PAIR[${PAIR_TESTS[$i]}]}"
      [ "${n:-0}" -gt 0 ] || continue
      met=$(awk -v e="$er" -v g="${PAIR_TARGETS[$i]}" 'BEGIN{print (e >= g) ? "met" : "not met"}')
      echo "| ${PAIR_NAMES[$i]} | $n | ${rr}x | **${er}x** | ${lo}x - ${hi}x | >= ${PAIR_TARGETS[$i]}x ($met) |"
    done
    echo
  fi

  # ---- timer precision under load (csock)
  if [[ ",$SKIP," != *",timer,"* ]] && in_sel=$(printf '%s\n' "${SELECTED[@]}" | grep -x csock); then
    s=csock
    echo "Timer precision under load (csock): ${TIMER_TASKS:-?} tasks each sleep 10 ms over and over in the"
    echo "process that serves HTTP (bench/timer_load.lua, CPU $SERVER_CPU) while wrk -c100 loads it for ${DURATION}s"
    echo "from CPU $CLIENT_CPU. Lateness = actual sleep - 10 ms, in ms; \"idle\" = samples with no connection open."
    echo "Medians over rounds of each round's percentile."
    echo
    echo "| server | loaded p50 ms | loaded p99 ms | loaded max ms | idle p50 ms | idle p99 ms | idle max ms | req/s meanwhile | server CPU% |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    printf '| %s |' "$(label $s)"
    for m in timer_loaded_p50 timer_loaded_p99 timer_loaded_max timer_idle_p50 timer_idle_p99 timer_idle_max; do
      printf ' %s |' "$(fmtms "${MED[$s,$m]}")"
    done
    printf ' %s | %s |\n' "$(fmt "${MED[$s,timer_rps]}")" \
      "$( [ -n "${MED[$s,timer_rps_cpu]}" ] && printf '%.0f' "${MED[$s,timer_rps_cpu]}" || echo n/a)"
    tn=$(note_of csock timer_loaded_p99); [ -n "$tn" ] && { echo; echo "Last round: $tn"; }
    echo
  fi

  # ---- multi-worker
  if [ ${#MWSEL[@]} -gt 0 ]; then
    echo "Multi-worker (2 worker processes; c-epoll = one process, for reference): server and load"
    echo "generator (wrk -t2) SHARE both CPUs here, so the rates are lower than a machine with separate"
    echo "client cores would show and depend on how the scheduler splits the CPUs. Server CPU% is of one"
    echo "core (up to 200); machine busy % (both cores) in parentheses."
    [ "$CSOCK_MW" = 0 ] && [[ " ${MWSEL[*]} " == *" csock-w2 "* ]] && echo "csock-w2: n/a, \`csock -h\` does not list a -w option."
    echo
    echo "| server | ka c100 req/s | ka c1000 req/s | CPU% ka c100 | CPU% ka c1000 | req per CPU-s ka c100 | req per CPU-s ka c1000 |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
    for s in "${MWSEL[@]}"; do
      printf '| %s |' "$(label "$s")"
      for m in mw_ka100 mw_ka1000; do
        v=${MED[mw:$s,$m]} ref=${MED[mw:$REF,$m]:-}
        cell=$(fmt "$v")
        [ -n "$v" ] && [ -n "$ref" ] && [ "$s" != "$REF" ] && cell="$cell ($(ratio "$v" "$ref")x)"
        printf ' %s |' "$cell"
      done
      for m in mw_ka100 mw_ka1000; do
        v=${MED[mw:$s,${m}_cpu]} c=${MED[mw:$s,${m}_clientcore]}
        if [ -n "$v" ]; then
          printf ' %.0f (%s) |' "$v" "$( [ -n "$c" ] && printf '%.0f' "$c" || echo n/a)"
        else printf ' n/a |'; fi
      done
      for m in mw_ka100 mw_ka1000; do
        e=${EFF[mw:$s,$m]} r=${EFF[mw:$REF,$m]:-}
        cell=$(fmt "$e")
        [ -n "$e" ] && [ -n "$r" ] && [ "$s" != "$REF" ] && cell="$cell ($(ratio "$e" "$r")x)"
        printf ' %s |' "$cell"
      done
      echo
    done
    echo
  fi

  if [ -n "${MED[$REF,ir_ka]:-}${MED[csock,ir_ka]:-}" ]; then
    echo "Instructions per request, user space (bench/ir.sh: callgrind, (Ir at 6,000 requests - Ir at"
    echo "2,000) / 4,000; keep-alive over 10 connections, Connection: close one request each): steady to"
    echo "a few percent where the CPU figures above are not, but blind to the kernel's share."
    echo
    echo "| server | keep-alive | Connection: close |"
    echo "|---|---:|---:|"
    for s in "${SELECTED[@]}"; do
      [ -n "${MED[$s,ir_ka]}${MED[$s,ir_close]}" ] || continue
      printf '| %s |' "$s"
      for m in ir_ka ir_close; do
        v=${MED[$s,$m]} r=$(ratio "${MED[$s,$m]}" "${MED[$REF,$m]}")
        if [ -n "$v" ] && [ "$s" != "$REF" ] && [ -n "$r" ]; then printf ' %s (%sx) |' "$(fmt "$v")" "$r"
        else printf ' %s |' "$(fmt "$v")"; fi
      done
      echo
    done
    echo
  fi

  redis_variants=$(awk -F, '$2=="redis-client" && $3 ~ /^redis_/ && !seen[$3]++ {sub(/^redis_/,"",$3); print $3}' "$RAW")
  if [ -n "$redis_variants" ]; then
    echo "Client side (issue 19): redis-lua doing GETs of one key against a local redis-server"
    echo "(bench/redis_clients.sh, 50 connections or tasks; luasocket uses one), in GETs per client"
    echo "CPU-second (user + system of the client process), median of the rounds. The ratios are"
    echo "medians of per-round ratios: each round runs every variant within a minute."
    echo
    echo "| variant | GETs per client CPU-s | rounds |"
    echo "|---|---:|---:|"
    for v in $redis_variants; do
      printf '| %s | %s | %s |\n' "$v" "$(fmt "$(median redis-client "redis_$v")")" "$(count redis-client "redis_$v")"
    done
    echo
    for pair in csock/copas:2 csock/native:0.85; do # issue 19's targets
      target=${pair#*:} pair=${pair%:*}
      a=${pair%/*} b=${pair#*/}
      r=$(awk -F, -v a="redis_$a" -v b="redis_$b" '$2=="redis-client" && $3==a {x[$1]=$4}
            $2=="redis-client" && $3==b {y[$1]=$4}
            END { n=0; for (k in x) if ((k in y) && y[k] > 0) r[++n]=x[k]/y[k]
                  if (n==0) exit
                  for (i=2; i<=n; i++) { v=r[i]; for (j=i-1; j>0 && r[j]>v; j--) r[j+1]=r[j]; r[j+1]=v }
                  m = (n%2) ? r[(n+1)/2] : (r[n/2]+r[n/2+1])/2
                  printf "%.2fx (%.2f-%.2f, %d rounds)", m, r[1], r[n], n }' "$RAW")
      [ -n "$r" ] && echo "- $a / $b: $r; target >= ${target}x"
    done
    echo
  fi

  echo "Spread over rounds (min - max) of the rates:"
  echo
  echo "| server | ka c100 | ka c1000 | close | echo MB/s |"
  echo "|---|---:|---:|---:|---:|"
  for s in "${SELECTED[@]}"; do
    printf '| %s |' "$s"
    for m in "${CPUM[@]}"; do
      lo=$(vmin "$s" "$m") hi=$(vmax "$s" "$m")
      if [ -n "$lo" ]; then printf ' %s - %s |' "$(fmt "$lo")" "$(fmt "$hi")"; else printf ' n/a |'; fi
    done
    echo
  done
  echo
  # other processes on the server's CPU during the pinned tests (noise)
  busy=$(awk -F, 'NR>1 && $3 ~ /_other0$/ && $4 > 15 {m=$3; sub(/_other0$/,"",m); printf "%s%s %s %.0f%%", sep, $2, m, $4; sep="; "}' "$RAW")
  if [ -n "$busy" ]; then
    echo "**Noise warning:** other processes used more than 15 % of CPU $SERVER_CPU (beyond the server) during: $busy."
    echo "Figures from those tests understate the servers; rerun on a quiet machine."
    echo
  fi
  notes=$(awk -F, 'NR>1 && $5!="" && ($5 ~ /FAIL|no_start|died|errors|non2xx/) {print "- round " $1 ", " $2 ", " $3 ": " $5}' "$RAW")
  if [ -n "$notes" ]; then echo "Notes (failures, wrk socket errors):"; echo; echo "$notes"; echo; fi
  [ -n "$MISSING" ] && { echo "Not installed (n/a): $MISSING. \`bash bench/deps.sh\` installs the packages."; echo; }
  echo "Raw values: latest-raw.csv; logs: logs/ (git-ignored)"
  echo
  echo "Versions:"
  echo
  "$HERE/versions.sh"
} >"$MD"
if [ "${NO_COPY:-0}" != 1 ]; then
  mkdir -p "$OUT/runs"
  cp "$MD" "$OUT/runs/$STAMP.md"; cp "$CSV" "$OUT/runs/$STAMP.csv"; cp "$RAW" "$OUT/runs/$STAMP-raw.csv"
fi
cat "$MD"
