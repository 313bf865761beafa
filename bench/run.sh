#!/bin/bash
# run.sh - benchmark csock beside its peers (c-epoll, luv, cqueues, copas,
# node-net, node-http, nginx-lua, nginx-static) on loopback, in one run.
#
# Usage: bash bench/run.sh [options]      (or: make bench BENCH_ARGS="...")
#   --rounds N          rounds over all servers, order rotated each round (default 3)
#   --duration S        seconds per wrk measurement (default 5)
#   --echo-seconds S    seconds of echo traffic (default 3)
#   --idle-conns N      idle connections for the memory test (default 10000)
#   --timer-tasks N     sleeping tasks in the timer test (default 100)
#   --only a,b,...      run only these servers (names as listed by --list);
#                       c-epoll, the reference for the ratios, is always added
#   --server NAME=CMD   add (or replace) a server; CMD may use {port} and {mode}
#                       ({mode} is "http" or "echo"; without {mode} the echo
#                       test is skipped for it).  Repeatable.
#   --skip TESTS        comma list of: ka100,ka1000,close,echo,mem,memreq,timer,mw,pairs,ir,redis
#   --redis-gets N      GETs per variant in the client-side redis row (default 100000)
#   --pairs N           paired A/B of csock against c-epoll: N pairs per test (default 5)
#   --quick             1 round, 2 s per wrk run, 1 s echo, 2000 idle conns,
#                       20 timer tasks, 2 pairs (explicit options override these)
#   --no-deps           do not run deps.sh (which apt-installs missing packages)
#   --out DIR           where results go (default: results/ beside this file)
#   --list              print the configured servers and exit
#
# Server on CPU 0, load generator on CPU 1 (taskset); the multi-worker test
# (mw) runs server and load on both CPUs.  Only 127.0.0.1 is used.  Every
# server is started in its own session and killed by its process group at
# the end of each test and on exit.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
CSOCK_BIN=${CSOCK_BIN:-$ROOT/bin/csock}; export CSOCK_BIN
ROUNDS=3 DURATION=5 ECHO_SECS=3 IDLE_N=10000 TIMER_TASKS=100 PAIRS=5 REDIS_GETS=100000 ONLY="" SKIP="" OUT="$HERE/results"
DEPS=1
# This folder may be read-only (a shared copy): then build and write results in a temporary folder.
BUILD="$HERE/build"
if ! { mkdir -p "$BUILD" && [ -w "$BUILD" ]; } 2>/dev/null; then BUILD=$(mktemp -d /tmp/bench-build.XXXXXX); fi
if ! { mkdir -p "$OUT" && [ -w "$OUT" ]; } 2>/dev/null; then OUT=$(mktemp -d /tmp/bench-results.XXXXXX); fi
SERVER_CPU=0 CLIENT_CPU=1
# Servers listen below the ephemeral range: wrk's own connections take ports there, and a
# server cannot bind a port that one of them still holds in TIME_WAIT (EADDRINUSE).
EPHEMERAL_LOW=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
PORT_HIGH=$((EPHEMERAL_LOW - 1))
PORT=$((20000 + RANDOM % (PORT_HIGH - 20000 - 2000)))

NAMES=() ; declare -A CMD CHECK
add_server() { # name cmd [availability check, a shell command]
  local n=$1
  [[ -v CMD[$n] ]] || NAMES+=("$n")
  CMD[$n]=$2
  CHECK[$n]=${3:-}
}
LUA_NEEDS() { echo "lua5.4 -e 'package.path=package.path..\";/usr/share/lua/5.2/?.lua\"; for _,m in ipairs{$1} do require(m) end'"; }
NGX_LUA=/usr/lib/nginx/modules/ngx_http_lua_module.so
add_server c-epoll      "$BUILD/c_epoll {mode} {port}"
add_server csock        "$HERE/servers/csock_server.sh {mode} {port}" "test -x '$CSOCK_BIN'"
# csock.http's hello (examples/http_hello.lua) beside the hand-parsed csock row: http only
add_server csock-http   "env CSOCK_HTTP_SCRIPT=$ROOT/examples/http_hello.lua $HERE/servers/csock_server.sh http {port}" "test -x '$CSOCK_BIN'"
add_server luv          "lua5.4 $HERE/servers/luv_server.lua {mode} {port}" "$(LUA_NEEDS '"luv"')"
add_server cqueues      "lua5.4 $HERE/servers/cqueues_server.lua {mode} {port}" "$(LUA_NEEDS '"cqueues","cqueues.socket"')"
add_server copas        "lua5.4 $HERE/servers/copas_server.lua {mode} {port}" "$(LUA_NEEDS '"socket","copas"')"
add_server node-net     "node $HERE/servers/node_net.js {mode} {port}" "command -v node"
add_server node-http    "node $HERE/servers/node_http.js {port}" "command -v node"
add_server nginx-lua    "$HERE/servers/nginx_run.sh lua {port}" "command -v nginx && test -f $NGX_LUA"
add_server nginx-static "$HERE/servers/nginx_run.sh static {port}" "command -v nginx"

# Multi-worker test (mw): servers on both CPUs, next to the load generator.
# Each row is run when its base server is selected; c-epoll (one process, one
# thread, also unpinned) is the reference for its ratios.
MW_NAMES=(c-epoll csock-w2 node-cluster-w2 nginx-static-w2 nginx-lua-w2)
declare -A MW_CMD=(
  [c-epoll]="$BUILD/c_epoll http {port}"
  [csock-w2]="$HERE/servers/csock_server.sh http {port} 2"
  [node-cluster-w2]="node $HERE/servers/node_cluster.js 2 net {port}"
  [nginx-static-w2]="$HERE/servers/nginx_run.sh static {port} 2"
  [nginx-lua-w2]="$HERE/servers/nginx_run.sh lua {port} 2"
)
declare -A MW_BASE=([c-epoll]=c-epoll [csock-w2]=csock [node-cluster-w2]=node-net
                    [nginx-static-w2]=nginx-static [nginx-lua-w2]=nginx-lua)

LIST=0
for a in "$@"; do   # --quick first, so that explicit options override it
  if [ "$a" = --quick ]; then ROUNDS=1 DURATION=2 ECHO_SECS=1 IDLE_N=2000 TIMER_TASKS=20 PAIRS=2 REDIS_GETS=20000; fi
done
while [ $# -gt 0 ]; do
  case $1 in
    --rounds) ROUNDS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --echo-seconds) ECHO_SECS=$2; shift 2 ;;
    --idle-conns) IDLE_N=$2; shift 2 ;;
    --timer-tasks) TIMER_TASKS=$2; shift 2 ;;
    --pairs) PAIRS=$2; shift 2 ;;
    --redis-gets) REDIS_GETS=$2; shift 2 ;;
    --no-deps) DEPS=0; shift ;;
    --only) ONLY=$2; shift 2 ;;
    --skip) SKIP=$2; shift 2 ;;
    --server)
      [[ $2 == *=* ]] || { echo "--server wants NAME=CMD" >&2; exit 2; }
      add_server "${2%%=*}" "${2#*=}"; shift 2 ;;
    --server=*) v=${1#--server=}; add_server "${v%%=*}" "${v#*=}"; shift ;;
    --quick) shift ;;
    --out) OUT=$2; shift 2 ;;
    --list) LIST=1; shift ;;
    -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ $LIST = 1 ]; then
  for n in "${NAMES[@]}"; do printf '%-16s %s\n' "$n" "${CMD[$n]}"; done
  echo "multi-worker test (mw):"
  for n in "${MW_NAMES[@]}"; do printf '  %-14s %s\n' "$n" "${MW_CMD[$n]}"; done
  exit 0
fi

SELECTED=()
if [ -n "$ONLY" ]; then
  IFS=, read -ra want <<<"$ONLY"
  for n in "${want[@]}"; do
    [[ -v CMD[$n] ]] || { echo "unknown server: $n (see --list)" >&2; exit 2; }
    SELECTED+=("$n")
  done
  # the reference is always measured in the same run, so the ratios compare
  # figures taken under the same machine conditions
  [[ ",$ONLY," == *",c-epoll,"* ]] || SELECTED=(c-epoll "${SELECTED[@]}")
else
  SELECTED=("${NAMES[@]}")
fi
skipped() { [[ ",$SKIP," == *",$1,"* ]]; }

# ---------------------------------------------------------------- setup
[ $DEPS = 1 ] && bash "$HERE/deps.sh" >&2
for t in wrk taskset setsid gcc; do
  command -v $t >/dev/null || { echo "missing tool: $t" >&2; exit 1; }
done
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
NOFILE=$(ulimit -n)
if [ "$NOFILE" -lt $((IDLE_N + 100)) ]; then
  echo "warning: ulimit -n is $NOFILE; idle test lowered to $((NOFILE - 200)) conns" >&2
  IDLE_N=$((NOFILE - 200))
fi

mkdir -p "$BUILD" "$OUT"
build() { # src out
  if [ ! -x "$2" ] || [ "$1" -nt "$2" ]; then
    gcc -O2 -Wall -o "$2" "$1" || { echo "build failed: $1" >&2; exit 1; }
  fi
}
build "$HERE/servers/c_epoll.c" "$BUILD/c_epoll"
build "$HERE/clients/echo_client.c" "$BUILD/echo_client"
build "$HERE/clients/idle_conns.c" "$BUILD/idle_conns"

export BENCH_TMP; BENCH_TMP=$(mktemp -d /tmp/bench-run.XXXXXX)
LOGDIR="$OUT/logs"; rm -rf "$LOGDIR"; mkdir -p "$LOGDIR"
RAW="$OUT/latest-raw.csv"
echo "round,server,metric,value,note" >"$RAW"

SPID=""      # process group of the running server
CPID=""      # running idle client
cleanup() {
  [ -n "$CPID" ] && kill -KILL "$CPID" 2>/dev/null
  [ -n "$SPID" ] && stop_server
  rm -rf "$BENCH_TMP"
}
trap cleanup EXIT
trap 'echo "interrupted" >&2; exit 130' INT TERM

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
record() { echo "$1,$2,$3,$4,${5:-}" >>"$RAW"; }

group_pids() { pgrep -g "$SPID" 2>/dev/null; }
status_sum() { # FIELD: sum of a /proc/PID/status field over the server's process group
  local p sum=0 v
  for p in $(group_pids); do
    v=$(awk -v f="$1:" '$1 == f {print $2}' "/proc/$p/status" 2>/dev/null)
    sum=$((sum + ${v:-0}))
  done
  echo $sum
}
rss_kib() { status_sum VmRSS; } # KiB
sleeps() { status_sum voluntary_ctxt_switches; } # times the server waited
fd_count() {
  local p sum=0 n
  for p in $(group_pids); do
    n=$(ls "/proc/$p/fd" 2>/dev/null | wc -l)
    sum=$((sum + n))
  done
  echo $sum
}

CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() { # utime+stime of the server's process group, in clock ticks
  local p sum=0 v
  for p in $(group_pids); do
    v=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12+$13}')
    sum=$((sum + ${v:-0}))
  done
  echo $sum
}
core_ticks() { # busy and total ticks of one core, from /proc/stat
  awk -v c="cpu$1" '$1==c { t=0; for (i=2;i<=NF;i++) t+=$i; print t-$5-$6, t }' /proc/stat
}
core_pct() { # "busy0 total0" "busy1 total1" -> busy %
  awk -v a="$1" -v b="$2" 'BEGIN{ split(a,x," "); split(b,y," ");
    if (y[2]>x[2]) printf "%.1f", (y[1]-x[1])/(y[2]-x[2])*100 }'
}
other_pct() { # "busy0 total0" "busy1 total1" server% -> CPU busy % not the server's (>= 0)
  awk -v a="$1" -v b="$2" -v s="$3" 'BEGIN{ split(a,x," "); split(b,y," ");
    o = (y[2]>x[2]) ? (y[1]-x[1])/(y[2]-x[2])*100 - s : 0; if (o < 0) o = 0; printf "%.1f", o }'
}
cpu_pct() { awk -v t="$1" -v hz="$CLK_TCK" -v d="$2" 'BEGIN{printf "%.1f", t/hz/d*100}'; }

# start_server NAME MODE [CMD] -> sets SPID, PORT; returns 1 if it never listened.
# CMD defaults to CMD[NAME]; the server runs on the CPUs in $SCPUS (default:
# the server CPU); its output goes to $SOUT (default: its log file).
SCPUS="" SOUT=""
start_server() {
  local name=$1 mode=$2 cmd=${3:-${CMD[$1]}} tries
  for tries in $(seq 1 50); do   # next port that nothing listens on
    PORT=$((PORT + 1)); [ $PORT -gt $PORT_HIGH ] && PORT=20001
    timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT" 2>/dev/null || break
  done
  cmd=${cmd//\{port\}/$PORT}
  cmd=${cmd//\{mode\}/$mode}
  echo "== $(date +%H:%M:%S) $cmd" >>"$LOGDIR/$name.server.log"
  if [ -n "$SOUT" ]; then
    setsid taskset -c "${SCPUS:-$SERVER_CPU}" bash -c "exec $cmd" \
      >"$SOUT" 2>>"$LOGDIR/$name.server.log" </dev/null &
  else
    setsid taskset -c "${SCPUS:-$SERVER_CPU}" bash -c "exec $cmd" \
      >>"$LOGDIR/$name.server.log" 2>&1 </dev/null &
  fi
  SPID=$!
  local i
  for i in $(seq 1 100); do   # up to ~10 s
    if ! kill -0 "$SPID" 2>/dev/null; then
      log "$name ($mode) exited before listening; see $LOGDIR/$name.server.log"
      SPID=""; return 1
    fi
    if timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT" 2>/dev/null; then
      sleep 0.2; return 0
    fi
    sleep 0.1
  done
  log "$name ($mode) did not listen on $PORT within 10 s"
  stop_server; return 1
}

stop_server() {
  [ -n "$SPID" ] || return 0
  kill -TERM -- "-$SPID" 2>/dev/null
  local i
  for i in $(seq 1 30); do
    [ -z "$(group_pids)" ] && break
    sleep 0.1
  done
  kill -KILL -- "-$SPID" 2>/dev/null
  wait "$SPID" 2>/dev/null
  SPID=""
}

server_alive() { [ -n "$SPID" ] && kill -0 "$SPID" 2>/dev/null; }

# the load generator: its CPUs, wrk threads, and the /proc/stat line whose
# busy share is recorded as *_clientcore ("1" = cpu1; "" = the whole machine)
CL_CPUS=$CLIENT_CPU CL_THREADS=1 CL_CORE=$CLIENT_CPU

# wrk NAME ROUND METRIC CONNS [header]
run_wrk() {
  local name=$1 round=$2 metric=$3 conns=$4 hdr=${5:-} out rps errs note=""
  local args=(-t"$CL_THREADS" -c"$conns" -d"${DURATION}s" --timeout 5s)
  [ -n "$hdr" ] && args+=(-H "$hdr")
  local t0 t1 s0 s1
  local k0 k1 z0 z1
  t0=$(cpu_ticks); s0=$(date +%s.%N); k0=$(core_ticks "$CL_CORE"); z0=$(core_ticks $SERVER_CPU)
  out=$(taskset -c "$CL_CPUS" timeout $((DURATION + 20)) wrk "${args[@]}" \
        "http://127.0.0.1:$PORT/" 2>&1)
  t1=$(cpu_ticks); s1=$(date +%s.%N); k1=$(core_ticks "$CL_CORE"); z1=$(core_ticks $SERVER_CPU)
  local cpu; cpu=$(cpu_pct $((t1 - t0)) "$(awk -v a="$s0" -v b="$s1" 'BEGIN{print b-a}')")
  echo "== round $round $metric" >>"$LOGDIR/$name.wrk.log"
  echo "$out" >>"$LOGDIR/$name.wrk.log"
  rps=$(awk '/^Requests\/sec:/{print $2}' <<<"$out")
  errs=$(awk '/Socket errors:/{gsub(",","");print $4+$6+$8+$10}' <<<"$out")
  local non2xx; non2xx=$(awk '/Non-2xx/{print $NF}' <<<"$out")
  [ -n "${errs:-}" ] && [ "$errs" != 0 ] && note="socket_errors=$errs"
  [ -n "${non2xx:-}" ] && note="$note non2xx=$non2xx"
  if ! server_alive; then note="$note server_died"; rps=""; fi
  record "$round" "$name" "$metric" "${rps:-}" "$note"
  local ccpu; ccpu=$(core_pct "$k0" "$k1")
  [ -n "${rps:-}" ] && record "$round" "$name" "${metric}_cpu" "$cpu" &&
    record "$round" "$name" "${metric}_clientcore" "$ccpu"
  # pinned tests: CPU 0 busy beyond the server = other processes on the machine
  [ -n "$CL_CORE" ] && [ -n "${rps:-}" ] && record "$round" "$name" "${metric}_other0" "$(other_pct "$z0" "$z1" "$cpu")"
  log "  $name $metric: ${rps:-FAIL} req/s, server CPU ${cpu}%, client ${CL_CORE:+core }${CL_CORE:-machine} ${ccpu}% busy $note"
}

# memory per idle connection; fresh server each time
run_mem() { # name round metric [request]
  local name=$1 round=$2 metric=$3 req=${4:-} r0 f0 r1 f1 i out note="" acc
  start_server "$name" http || { record "$round" "$name" "$metric" "" "no_start"; return; }
  sleep 0.3
  r0=$(rss_kib); f0=$(fd_count)
  out="$BENCH_TMP/idle.out"; : >"$out"
  # no timeout(1) wrapper here: idle_conns bounds itself (60 s to connect,
  # 90 s hold), and CPID must be the client itself so that killing it
  # closes the connections
  taskset -c $CLIENT_CPU "$BUILD/idle_conns" 127.0.0.1 "$PORT" "$IDLE_N" 90 $req \
    >"$out" 2>>"$LOGDIR/$name.idle.log" &
  CPID=$!
  for i in $(seq 1 650); do  # up to 65 s for connect (+ requests)
    grep -q READY "$out" 2>/dev/null && break
    kill -0 $CPID 2>/dev/null || break
    sleep 0.1
  done
  # wait until the server has accepted them (its fd count rises), <= 20 s
  for i in $(seq 1 200); do
    f1=$(fd_count)
    [ $((f1 - f0)) -ge "$IDLE_N" ] && break
    server_alive || break
    sleep 0.1
  done
  sleep 1
  r1=$(rss_kib); f1=$(fd_count); acc=$((f1 - f0))
  note="$(head -1 "$out" | tr -d '\n') accepted=$acc rss_before=${r0} rss_after=${r1}"
  kill -KILL $CPID 2>/dev/null; wait $CPID 2>/dev/null; CPID=""
  if ! server_alive || [ "$acc" -lt $((IDLE_N * 95 / 100)) ]; then
    record "$round" "$name" "$metric" "" "FAILED $note"
    log "  $name $metric: FAIL ($note)"
  else
    local kib; kib=$(awk -v a="$r0" -v b="$r1" -v n="$acc" 'BEGIN{printf "%.2f", (b-a)/n}')
    record "$round" "$name" "$metric" "$kib" "$note"
    log "  $name $metric: $kib KiB/conn ($note)"
  fi
  stop_server
}

run_http() { # name round [tests (default: ka100 ka1000 close)] [metric prefix]
  local name=$1 round=$2 tests=${3:-ka100 ka1000 close} prefix=${4:-} m
  if ! start_server "$name" http; then
    for m in $tests; do skipped $m || record "$round" "$name" "$prefix$m" "" "no_start"; done
    return
  fi
  # warm-up (JITs, allocators), not recorded
  taskset -c $CLIENT_CPU timeout 15 wrk -t1 -c100 -d1s "http://127.0.0.1:$PORT/" >/dev/null 2>&1
  for m in $tests; do
    skipped $m && continue
    case $m in
      ka100) run_wrk "$name" "$round" "${prefix}ka100" 100 ;;
      ka1000) run_wrk "$name" "$round" "${prefix}ka1000" 1000 ;;
      close) run_wrk "$name" "$round" "${prefix}close" 100 "Connection: close" ;;
    esac
  done
  stop_server
}

run_echo() { # name round [metric]
  local name=$1 round=$2 metric=${3:-echo} out mbs
  if [[ ${CMD[$name]} != *"{mode}"* ]]; then return; fi
  start_server "$name" echo || { record "$round" "$name" echo "" "no_start"; return; }
  taskset -c $CLIENT_CPU timeout 15 "$BUILD/echo_client" 127.0.0.1 "$PORT" 1 >/dev/null 2>&1
  local t0 t1 s0 s1
  local k0 k1 z0 z1
  local w0 w1
  t0=$(cpu_ticks); s0=$(date +%s.%N); k0=$(core_ticks $CLIENT_CPU); z0=$(core_ticks $SERVER_CPU)
  w0=$(sleeps)
  out=$(taskset -c $CLIENT_CPU timeout $((ECHO_SECS + 20)) "$BUILD/echo_client" \
        127.0.0.1 "$PORT" "$ECHO_SECS" 65536 2>&1)
  t1=$(cpu_ticks); s1=$(date +%s.%N); k1=$(core_ticks $CLIENT_CPU); z1=$(core_ticks $SERVER_CPU)
  w1=$(sleeps)
  local cpu; cpu=$(cpu_pct $((t1 - t0)) "$(awk -v a="$s0" -v b="$s1" 'BEGIN{print b-a}')")
  mbs=$(sed -n 's/.*mb_per_s=\([0-9.]*\).*/\1/p' <<<"$out")
  # the regime of the round (bench/README "Session 5"): how often the server slept per GB
  local bytes sleeps_gb=""
  bytes=$(sed -n 's/.*echoed_bytes=\([0-9]*\).*/\1/p' <<<"$out")
  [ -n "${bytes:-}" ] && [ "$bytes" -gt 0 ] &&
    sleeps_gb=$(awk -v n=$((w1 - w0)) -v b="$bytes" 'BEGIN{printf "%.0f", n / (b / 1e9)}')
  echo "== round $round: $out server_sleeps_per_gb=${sleeps_gb:-n/a}" >>"$LOGDIR/$name.echo.log"
  record "$round" "$name" "$metric" "${mbs:-}" "$( [ -z "$mbs" ] && echo "FAILED $out" | tr ',\n' '; ')"
  local ccpu; ccpu=$(core_pct "$k0" "$k1")
  [ -n "${mbs:-}" ] && record "$round" "$name" "${metric}_cpu" "$cpu" &&
    record "$round" "$name" "${metric}_clientcore" "$ccpu" &&
    record "$round" "$name" "${metric}_other0" "$(other_pct "$z0" "$z1" "$cpu")"
  [ -n "$sleeps_gb" ] && record "$round" "$name" "${metric}_sleeps_gb" "$sleeps_gb"
  log "  $name $metric: ${mbs:-FAIL} MB/s, server CPU ${cpu}%, client core ${ccpu}% busy," \
    "server slept ${sleeps_gb:-?} times per GB"
  stop_server
}

# timer precision under load (csock only): timer_load.lua serves HTTP on CPU 0
# while TIMER_TASKS tasks sleep 10 ms over and over; wrk loads it from CPU 1
# in the middle of its run; it prints the lateness percentiles and exits.
run_timer() { # round
  local round=$1 name=csock-timer secs=$((DURATION + 5)) out="$BENCH_TMP/timer.out" i line v m
  local cmd="env LUA_PATH='$ROOT/lua/?.lua;$ROOT/lua/?/init.lua;;' $CSOCK_BIN $HERE/timer_load.lua {port} $TIMER_TASKS $secs 10"
  : >"$out"
  if ! SOUT=$out start_server "$name" http "$cmd"; then
    record "$round" csock timer_loaded_p99 "" "no_start"; return
  fi
  sleep 1   # idle samples first
  run_wrk csock "$round" timer_rps 100
  for i in $(seq 1 $(((secs + 10) * 10))); do   # it ends by itself after secs
    kill -0 "$SPID" 2>/dev/null || break
    sleep 0.1
  done
  stop_server
  line=$(grep '^timer ' "$out" | tail -1)
  echo "== round $round: $line" >>"$LOGDIR/csock.timer.log"
  if [ -z "$line" ]; then
    record "$round" csock timer_loaded_p99 "" "FAILED no output (see logs/$name.server.log)"
    log "  csock timer: FAIL"; return
  fi
  for m in loaded_p50 loaded_p99 loaded_max idle_p50 idle_p99 idle_max; do
    v=$(sed -n "s/.* ${m}_ms=\([-0-9.]*\).*/\1/p" <<<"$line")
    record "$round" csock "timer_$m" "$v" "$( [ "$m" = loaded_p99 ] && sed -E 's/^timer //; s/ (loaded|idle)_[a-z0-9]+_ms=[^ ]*//g' <<<"$line")"
  done
  log "  csock timer: $line"
}

# multi-worker: server and wrk -t2 both on CPUs 0-1 (they share them)
run_mw() { # name round
  local name=$1 round=$2 m
  if ! SCPUS=0,1 start_server "$name" http "${MW_CMD[$name]}"; then
    for m in mw_ka100 mw_ka1000; do record "$round" "$name" $m "" "no_start"; done
    return
  fi
  local o_cpus=$CL_CPUS o_thr=$CL_THREADS o_core=$CL_CORE
  CL_CPUS=0,1 CL_THREADS=2 CL_CORE=""
  taskset -c 0,1 timeout 15 wrk -t2 -c100 -d1s "http://127.0.0.1:$PORT/" >/dev/null 2>&1
  run_wrk "$name" "$round" mw_ka100 100
  run_wrk "$name" "$round" mw_ka1000 1000
  CL_CPUS=$o_cpus CL_THREADS=$o_thr CL_CORE=$o_core
  stop_server
}

is_available() { [ -z "${CHECK[$1]:-}" ] || bash -c "${CHECK[$1]}" >/dev/null 2>&1; }
in_selected() { local n; for n in "${SELECTED[@]}"; do [ "$n" = "$1" ] && return 0; done; return 1; }

# ---------------------------------------------------------------- run
declare -A AVAIL
MISSING=()
for n in "${SELECTED[@]}"; do
  if is_available "$n"; then AVAIL[$n]=1; else AVAIL[$n]=0; MISSING+=("$n"); fi
done
[ ${#MISSING[@]} -gt 0 ] && log "not installed (shown as n/a): ${MISSING[*]}"
# csock's multi-worker mode exists if `csock -h` mentions -w
CSOCK_MW=0
if [ -x "$CSOCK_BIN" ] && timeout 5 "$CSOCK_BIN" -h </dev/null 2>&1 | grep -qE '(^|[[:space:],])-w([[:space:],=]|$)'; then
  CSOCK_MW=1
fi
MWSEL=()
if ! skipped mw; then
  for n in "${MW_NAMES[@]}"; do in_selected "${MW_BASE[$n]}" && MWSEL+=("$n"); done
  [ ${#MWSEL[@]} -le 1 ] && MWSEL=()   # only the reference: nothing to compare
fi
mw_runnable() { # name -> 0 if it can be measured
  [ "${AVAIL[${MW_BASE[$1]}]:-1}" = 1 ] && { [ "$1" != csock-w2 ] || [ $CSOCK_MW = 1 ]; }
}
MW_RUN=0   # run the test only if something beside the reference can run
for n in "${MWSEL[@]}"; do [ "$n" != c-epoll ] && mw_runnable "$n" && MW_RUN=1; done

log "servers: ${SELECTED[*]}; rounds=$ROUNDS duration=${DURATION}s echo=${ECHO_SECS}s idle=$IDLE_N nofile=$NOFILE"
N=${#SELECTED[@]}
for round in $(seq 1 "$ROUNDS"); do
  for k in $(seq 0 $((N - 1))); do
    name=${SELECTED[$(((k + round - 1) % N))]}   # rotate the order each round
    if [ "${AVAIL[$name]}" = 0 ]; then
      record "$round" "$name" ka100 "" "not_installed"; continue
    fi
    log "round $round/$ROUNDS: $name"
    run_http "$name" "$round"
    skipped echo   || run_echo "$name" "$round"
    skipped mem    || run_mem "$name" "$round" idle_kib
    skipped memreq || run_mem "$name" "$round" idlereq_kib request
    if [ "$name" = csock ] && ! skipped timer; then run_timer "$round"; fi
  done
done

# Paired A/B: csock and c-epoll measured back to back, one test at a time, the
# first of the two alternating from pair to pair.  A machine that slows down
# for a minute (other tenants of the VM) then slows both halves of a pair, and
# the report's median of the per-pair ratios is steadier than a ratio of
# medians taken minutes apart.  These are the figures the issue's targets use.
if ! skipped pairs && [ "${PAIRS:-0}" -gt 0 ] && in_selected csock &&
   [ "${AVAIL[csock]}" = 1 ] && [ "${AVAIL[c-epoll]}" = 1 ]; then
  log "paired A/B of csock and c-epoll: $PAIRS pairs per test"
  for p in $(seq 1 "$PAIRS"); do
    order=(c-epoll csock); [ $((p % 2)) = 0 ] && order=(csock c-epoll)
    for t in ka100 ka1000 close echo; do
      skipped $t && continue
      for name in "${order[@]}"; do
        if [ $t = echo ]; then run_echo "$name" "$p" pair_echo; else run_http "$name" "$p" $t pair_; fi
      done
    done
  done
fi

# Instructions per request (ir.sh, callgrind), the figure that stays put while CPU time on a
# shared machine swings: once per server that runs as one process callgrind can follow.
declare -A IR_CMD=(
  [c-epoll]="$BUILD/c_epoll http {port}"
  [csock]="$CSOCK_BIN $HERE/servers/csock_http_raw.lua {port} 127.0.0.1"
  [csock-http]="$CSOCK_BIN $ROOT/examples/http_hello.lua {port} 127.0.0.1"
  [luv]="lua5.4 $HERE/servers/luv_server.lua http {port}"
)
if ! skipped ir && command -v valgrind >/dev/null; then
  for name in c-epoll csock csock-http luv; do
    if ! in_selected "$name" || [ "${AVAIL[$name]}" != 1 ]; then continue; fi
    log "instructions per request (callgrind): $name"
    out=$(timeout 1800 bash "$HERE/ir.sh" "${IR_CMD[$name]}" 2>>"$LOGDIR/$name.ir.log")
    for t in ka close; do
      v=$(sed -n "s/^ir test=$t per_request=\([0-9]*\)$/\1/p" <<<"$out")
      record 1 "$name" "ir_$t" "${v:-}" "$([ -z "$v" ] && echo FAILED)"
      log "  $name ir_$t: ${v:-FAIL} instructions per request"
    done
  done
elif ! skipped ir; then
  log "no valgrind: instructions per request not measured (apt-get install valgrind)"
fi

# The client side (issue 19): redis-lua doing REDIS_GETS GETs against a local redis-server from
# LuaSocket, copas, csock.socket and csock's native sockets (redis_clients.sh), once per round.
# Each variant's GETs per client CPU-second is recorded under the name "redis-client".
if ! skipped redis; then
  if command -v redis-server >/dev/null &&
     lua5.4 -e 'package.path=package.path..";/usr/share/lua/5.3/?.lua" require "redis"' 2>/dev/null; then
    for round in $(seq 1 "$ROUNDS"); do
      log "redis client row, round $round/$ROUNDS ($REDIS_GETS GETs per variant, 50 connections)"
      rows=$(timeout 1800 bash "$HERE/redis_clients.sh" "$REDIS_GETS" 50 2>>"$LOGDIR/redis.log")
      while read -r variant _ _ _ _ rate; do
        [[ $rate =~ ^[0-9]+$ ]] && record "$round" redis-client "redis_$variant" "$rate"
      done <<<"$rows"
    done
  else
    log "redis-server or lua-redis missing: the client-side redis row is n/a"
  fi
fi

NMW=${#MWSEL[@]}
if [ "$NMW" -gt 0 ] && [ $MW_RUN = 0 ]; then
  log "multi-worker test: nothing to compare with c-epoll (csock has no -w / peers missing); shown as n/a"
  for n in "${MWSEL[@]}"; do
    [ "$n" = csock-w2 ] && [ $CSOCK_MW = 0 ] && record 1 "$n" mw_ka100 "" "no_w_option"
  done
elif [ "$NMW" -gt 0 ]; then
  log "multi-worker test (server and load share CPUs 0-1): ${MWSEL[*]}"
  for round in $(seq 1 "$ROUNDS"); do
    for k in $(seq 0 $((NMW - 1))); do
      name=${MWSEL[$(((k + round - 1) % NMW))]}
      base=${MW_BASE[$name]}
      if [ "${AVAIL[$base]}" = 0 ]; then record "$round" "$name" mw_ka100 "" "not_installed"; continue; fi
      if [ "$name" = csock-w2 ] && [ $CSOCK_MW = 0 ]; then
        record "$round" "$name" mw_ka100 "" "no_w_option"; continue
      fi
      log "mw round $round/$ROUNDS: $name"
      run_mw "$name" "$round"
    done
  done
fi

# ---------------------------------------------------------------- report
{
  echo "ROUNDS=$ROUNDS DURATION=$DURATION ECHO_SECS=$ECHO_SECS IDLE_N=$IDLE_N TIMER_TASKS=$TIMER_TASKS PAIRS=${PAIRS:-0}"
  echo "SERVER_CPU=$SERVER_CPU CLIENT_CPU=$CLIENT_CPU CSOCK_MW=$CSOCK_MW"
  printf 'SERVERS=%q\n' "${SELECTED[*]}"
  printf 'MW_SERVERS=%q\n' "${MWSEL[*]}"
  printf 'MISSING=%q\n' "${MISSING[*]}"
  printf 'SKIP=%q\n' "$SKIP"
  printf 'HOST_INFO=%q\n' "$(uname -srm), $(nproc) CPUs, $(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo)"
} >"$OUT/latest-meta.env"
echo
"$HERE/report.sh" "$OUT"
