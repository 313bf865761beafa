#!/bin/sh
# fuzz/lua_api.sh SECONDS [SEED] - the Lua-API fuzzer (issue 15): runs programs made
# by fuzz/gen.lua, seeds SEED, SEED+1, ..., one after the other for SECONDS, each
# under lua5.4 with the ASan+UBSan build (build-asan/, `make asan-build`) and
# timeout(1).  SEED defaults to the clock; it is printed, so a run can be replayed.
#
# Each program ends one of these ways:
#   ok         status 0
#   lua error  status 1 with lua5.4's message: a deliberate bad call that no pcall caught
#   hang       killed by timeout after FUZZ_PROGRAM_SECONDS (default 10)
#   crash      a sanitizer report, a death by signal, or any other status
# A crash or a hang is kept as build-fuzz/lua/<kind>-SEED.lua (with .err, its stderr).
# Exits 1 if any program crashed (or hung, with FUZZ_HANG_FAILS=1).
set -u
cd "$(dirname "$0")/.." || exit 2
TOTAL=${1:-60}
SEED=${2:-$(date +%s)}
LIMIT=${FUZZ_PROGRAM_SECONDS:-10}
CC=${CC:-cc}
OUT=build-fuzz/lua
mkdir -p "$OUT"
if [ ! -f build-asan/csock/core.so ]; then
  echo "lua_api: build-asan/csock/core.so is missing (make asan-build)" >&2
  exit 2
fi
# What the programs' TLS, HTTP and sendfile statements use, made once per run: a
# certificate for localhost and its key, a key of no certificate, a file to send.
if [ ! -f build-fuzz/cert.pem ] || [ ! -f build-fuzz/key2.pem ] || [ ! -f build-fuzz/sendfile.dat ]; then
  mkdir -p build-fuzz
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
    -keyout build-fuzz/key.pem -out build-fuzz/cert.pem 2>/dev/null &&
    openssl genpkey -algorithm ec -pkeyopt ec_paramgen_curve:prime256v1 -out build-fuzz/key2.pem 2>/dev/null &&
    head -c 300000 /dev/zero | tr '\0' 'f' >build-fuzz/sendfile.dat || {
    echo "lua_api: cannot make build-fuzz/cert.pem (openssl)" >&2
    exit 2
  }
fi
export FUZZ_CERT="$PWD/build-fuzz/cert.pem" FUZZ_KEY="$PWD/build-fuzz/key.pem"
export FUZZ_KEY2="$PWD/build-fuzz/key2.pem" FUZZ_FILE="$PWD/build-fuzz/sendfile.dat"
# lua5.4 is not instrumented: the sanitizer runtimes are preloaded, as `make asan` does
RT="$($CC -print-file-name=libasan.so) $($CC -print-file-name=libubsan.so)"
SAN_REPORT='ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|UndefinedBehaviorSanitizer|AddressSanitizer:DEADLYSIGNAL'

# What a crash is, in one line: the sanitizer's error kind and the first frame in
# src/ (else the first frame), or the status.
signature() {
  what=$(grep -a -o -E 'ERROR: AddressSanitizer: [A-Za-z-]+( [a-z-]+)?|runtime error: .*|ERROR: LeakSanitizer' "$1" | head -1 | sed 's/ on$//')
  where=$(grep -a -E '^ *#[0-9]+ 0x[0-9a-f]+ in [^ ]+ [^ ]*src/' "$1" | grep -v libsanitizer | head -1 |
    sed -E 's/.* in ([^ ]+) [^ ]*(src\/[^ ]+).*/\1 \2/')
  [ -n "$where" ] || where=$(grep -a -E '^ *#0 ' "$1" | head -1 | sed -E 's/^ *#0 0x[0-9a-f]+ //')
  echo "${what:-status $2} ${where:--}"
}

echo "== lua_api: $TOTAL s from seed $SEED (replay: sh fuzz/lua_api.sh $TOTAL $SEED)"
[ -z "${FUZZ_WITHOUT:-}" ] || echo "   without: $FUZZ_WITHOUT"
: >"$OUT/signatures"
end=$(($(date +%s) + TOTAL))
n=0 ok=0 luaerr=0 hangs=0 crashes=0
while [ "$(date +%s)" -lt "$end" ]; do
  seed=$((SEED + n))
  n=$((n + 1))
  prog="$OUT/prog.lua"
  lua5.4 fuzz/gen.lua "$seed" >"$prog" || exit 2
  LD_PRELOAD="$RT" ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
    LSAN_OPTIONS="suppressions=$PWD/tools/lsan.supp:print_suppressions=0" \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    LUA_PATH='./lua/?.lua;./lua/?/init.lua;;' LUA_CPATH='./build-asan/?.so;;' \
    timeout -k 2 "$LIMIT" lua5.4 "$prog" >"$OUT/out" 2>"$OUT/err" </dev/null
  rc=$?
  kind=""
  if grep -a -q -E "$SAN_REPORT" "$OUT/err"; then
    kind=crash
  elif [ "$rc" -eq 0 ]; then
    ok=$((ok + 1))
  elif [ "$rc" -eq 1 ] && grep -a -q '^lua5.4: ' "$OUT/err"; then
    luaerr=$((luaerr + 1))
  elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    kind=hang
  else
    kind=crash
  fi
  [ -n "$kind" ] || continue
  cp "$prog" "$OUT/$kind-$seed.lua"
  cp "$OUT/err" "$OUT/$kind-$seed.err"
  if [ "$kind" = hang ]; then
    hangs=$((hangs + 1))
    echo "   hang: seed $seed (over $LIMIT s): $OUT/hang-$seed.lua"
  else
    crashes=$((crashes + 1))
    sig=$(signature "$OUT/err" "$rc")
    printf '%s\t%s\n' "$sig" "$seed" >>"$OUT/signatures"
    echo "   CRASH: seed $seed, status $rc: $sig"
  fi
done
echo "   $n programs: $ok ok, $luaerr ended by a Lua error, $hangs hung, $crashes crashed"
if [ "$crashes" -gt 0 ]; then
  echo "   distinct crashes (count, signature, first seed; programs in $OUT/):"
  sort -t "$(printf '\t')" -k1,1 -s "$OUT/signatures" |
    awk -F '\t' '{ if ($1 != last) { if (n) printf "   %4d  %s  (seed %s)\n", n, last, first; last = $1; first = $2; n = 0 } n++ }
      END { if (n) printf "   %4d  %s  (seed %s)\n", n, last, first }'
fi
[ "$crashes" -eq 0 ] || exit 1
[ "$hangs" -eq 0 ] || [ "${FUZZ_HANG_FAILS:-0}" != 1 ] || exit 1
exit 0
