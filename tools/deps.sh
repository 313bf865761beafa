#!/bin/sh
# Installs the Debian packages csock needs to build and test, when missing.
# Used by `make deps` (and so by `make test`, `make run`) and by .ci/run.
# CSOCK_DEPS replaces the list (e.g. the lint or fuzz tools).
set -e
BUILD="lua5.4 liblua5.4-dev lua-busted luarocks gcc make pkg-config libssl-dev"
# real peers the specs talk to: LuaSocket's own modules, redis-lua, servers and clients
PEERS="python3 netcat-openbsd curl valgrind lua-check openssl lua-socket lua-redis lua-luv redis-server nginx wrk"
PKGS="${CSOCK_DEPS:-$BUILD $PEERS}"
# node (for the npm `ws` peer) may come from elsewhere than Debian; only add Debian's when absent
if [ -z "${CSOCK_DEPS:-}" ] && ! command -v node >/dev/null 2>&1; then PKGS="$PKGS nodejs npm"; fi
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$(echo "$missing" | tr -d ' ')" ] && exit 0
echo "deps: installing$missing" >&2
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
# Servers installed here (redis-server, nginx) must not start as system services:
# the specs start their own on loopback ports.  policy-rc.d 101 = "do not start".
rcd=/usr/sbin/policy-rc.d
made_rcd=""
if [ ! -e "$rcd" ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$rcd" >/dev/null && $SUDO chmod 755 "$rcd" && made_rcd=1
fi
$SUDO apt-get update -qq >&2 || true
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >&2 || st=$?
[ -n "$made_rcd" ] && $SUDO rm -f "$rcd"
exit "${st:-0}"
