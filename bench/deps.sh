#!/bin/bash
# deps.sh - install what the benchmark needs, where it is missing (Debian/apt).
#
#   bash bench/deps.sh            install missing packages (needs root)
#   bash bench/deps.sh --check    only list what is missing; exit 0 all the same
#
# Tools the runner cannot work without: gcc wrk util-linux (taskset, setsid)
# lua5.4.  Peers (a peer whose package is missing shows n/a in the table):
# lua-luv lua-cqueues lua-socket lua-copas nodejs nginx libnginx-mod-http-lua.
# hyperfine is used by startup.sh only.  Each package is installed on its
# own, so one that is unavailable does not stop the others; this script always
# exits 0 (run.sh itself reports a missing required tool).
set -uo pipefail

PKGS=(gcc wrk util-linux lua5.4 lua-luv lua-cqueues lua-luaossl lua-socket lua-copas nodejs
      nginx libnginx-mod-http-lua hyperfine)

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
# nodejs may come from elsewhere than Debian (e.g. a nodesource build): a
# working `node` counts as installed.
have() {
  case $1 in
    nodejs) command -v node >/dev/null && return 0 ;;
    util-linux) command -v taskset >/dev/null && command -v setsid >/dev/null && return 0 ;;
  esac
  installed "$1"
}

missing=()
for p in "${PKGS[@]}"; do have "$p" || missing+=("$p"); done
if [ ${#missing[@]} -eq 0 ]; then echo "deps: all bench packages present"; exit 0; fi
echo "deps: missing: ${missing[*]}"
[ "${1:-}" = --check ] && exit 0
if ! command -v apt-get >/dev/null; then echo "deps: no apt-get; install them by hand" >&2; exit 0; fi
if [ "$(id -u)" != 0 ]; then echo "deps: not root; install them by hand (apt-get install ${missing[*]})" >&2; exit 0; fi

export DEBIAN_FRONTEND=noninteractive
# Keep package scripts from starting services (the nginx package would start a
# system nginx on port 80 where invoke-rc.d works): a temporary policy-rc.d
# that forbids it, removed again afterwards if we created it.
POLICY=/usr/sbin/policy-rc.d made_policy=0
if [ ! -e "$POLICY" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$POLICY" && chmod 755 "$POLICY" && made_policy=1
fi
trap '[ $made_policy = 1 ] && rm -f "$POLICY"' EXIT

timeout 300 apt-get update -qq >/dev/null 2>&1 || echo "deps: apt-get update failed; trying with the cached lists" >&2
for p in "${missing[@]}"; do
  if timeout 600 apt-get install -y -qq --no-install-recommends "$p" >/dev/null 2>&1; then
    echo "deps: installed $p"
  else
    echo "deps: could not install $p (its rows will show n/a)" >&2
  fi
done
exit 0
