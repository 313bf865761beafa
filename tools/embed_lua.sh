#!/bin/sh
# Writes the C header the host embeds its Lua modules from: lua/csock/init.lua
# as csock_init_lua, and every other module under lua/csock/ in
# csock_lua_modules[] ({module name, source}), which main.c puts in
# package.preload so that `bin/csock` finds csock.http & co. wherever it runs.
# Usage: sh tools/embed_lua.sh > build/init_lua.h
set -eu
cd "$(dirname "$0")/.."
cstring() { # file -> a C string literal, line by line
  sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/"/' -e 's/$/\\n"/' "$1"
}
echo 'static const char csock_init_lua[] ='
cstring lua/csock/init.lua
echo ';'
echo 'static const struct { const char *name, *chunk, *source; } csock_lua_modules[] = {'
find lua/csock -name '*.lua' ! -path lua/csock/init.lua | LC_ALL=C sort | while read -r f; do
  mod=$(echo "${f#lua/}" | sed -e 's/\.lua$//' -e 's#/init$##' -e 's#/#.#g')
  printf '  {"%s", "@%s",\n' "$mod" "$f"
  cstring "$f"
  echo '  },'
done
echo '  {0, 0, 0},'
echo '};'
