-- luacheck configuration of csock (`make lint`): Debian's lua-check, Lua 5.4 everywhere.
std = "lua54"
max_line_length = 120

-- Specs run under busted; helper.lua and support/ are loaded by them.
files["spec"] = { std = "+busted" }

-- Generated or third-party trees that may sit in a work tree.
exclude_files = {
  "lua_modules/**",
  "build/**",
  "build-*/**",
  "bench/build/**",
  "bench/results/**",
}
