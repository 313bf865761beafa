#!/bin/sh
# Installs the Debian packages csock needs to build and test, when missing.
# Used by `make deps` (and so by `make test`, `make run`) and by .ci/run.
set -e
PKGS="${CSOCK_DEPS:-lua5.4 liblua5.4-dev lua-busted luarocks gcc make pkg-config python3 netcat-openbsd curl valgrind lua-check libssl-dev openssl nginx nodejs npm}"
missing=""
for p in $PKGS; do
  # nodesource's nodejs carries npm (and conflicts with Debian's): a working npm will do
  [ "$p" = npm ] && command -v npm >/dev/null 2>&1 && continue
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "deps: installing$missing" >&2
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >&2 || true
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >&2
