--[[
spec/helper.lua - small, generic helpers shared by the csock specs.

busted loads this file before the specs (see .busted); specs get the same
table with `local helper = require "helper"`.  Nothing here depends on
csock itself, so a broken build still lets the helpers load.

  helper.ROOT                 the repository root (busted runs there)
  helper.CPATH                where children find csock/core.so (honours CSOCK_BUILD)
  helper.LUA                  the interpreter used for child processes
  helper.pid()                this process' id
  helper.tmpname([tag])       a fresh path in /tmp for a unix socket (not created)
  helper.remove(path)         os.remove that ignores a missing file
  helper.fds()                {[fd] = link target} of this process (/proc/self/fd)
  helper.fd_count()           number of open descriptors of this process
  helper.shell_quote(s)       s quoted for /bin/sh
  helper.spawn(cmd [, opts])  runs a shell command with stdout piped back: a child
                              (opts.foreign: a program not linked with csock; it
                              runs without the sanitizer's LD_PRELOAD)
  helper.spawn_lua(code, ...) runs `lua5.4 -e code` (with csock's package paths;
                              the extra arguments are in the chunk's arg[1..n])
  helper.spawn_python(code, ...) runs `python3 -c code`
  helper.run_lua(code, ...)   spawn_lua and wait: ok, stdout, stderr
  helper.lua_cmd(code, ...)   the shell command spawn_lua runs, to prefix or pipe
  helper.has(cmd)             true when the command is on PATH
  helper.SLOW                 true under `make valgrind` (CSOCK_SLOW=1): every
                              instruction costs ~50x, so load-shaped specs scale down
  helper.scaled(n, slow_n)    n, or slow_n under helper.SLOW
  helper.has_python3()        true when python3 can import socket

A child (from spawn*) has:
  child:line()   the next line of its stdout (nil at its end)
  child:read(f)  as file:read on its stdout
  child:wait()   waits for it: ok, exit code, rest of stdout, its stderr

Every child runs under `timeout`, so a hung peer cannot hang the suite.
]]

local helper = {}

helper.LUA = os.getenv("LUA") or "lua5.4"
helper.TIMEOUT = 30 -- seconds any child process may live
helper.SLOW = (os.getenv("CSOCK_SLOW") or "") ~= ""

-- A count for a load-shaped spec (1,000 connections, 20,000 cycles): the same
-- behaviour is checked under valgrind with fewer of them.
function helper.scaled(n, slow_n)
  return helper.SLOW and slow_n or n
end

do
  local p = assert(io.popen("pwd"))
  helper.ROOT = p:read("l")
  p:close()
end

function helper.pid()
  local f = assert(io.open("/proc/self/stat"))
  local pid = f:read("n")
  f:close()
  return math.tointeger(pid)
end

-- busted reloads this module for each spec file, so the counter alone
-- would repeat names within one process; the random part keeps them apart.
local counter, salt = 0, math.random(1 << 30)

function helper.tmpname(tag)
  counter = counter + 1
  local path = string.format("/tmp/csock-spec-%d-%d-%d-%s.sock", helper.pid(),
    salt, counter, tag or "u")
  os.remove(path)
  return path
end

function helper.remove(path)
  if path then os.remove(path) end
end

function helper.shell_quote(s)
  return "'" .. tostring(s):gsub("'", [['\'']]) .. "'"
end
local q = helper.shell_quote

--[[ The descriptors of this process, read from /proc/<pid>/fd by find(1).
The pipe of the popen that reads the listing is counted too, the same way
on every call, so differences between two calls are exact. ]]
function helper.fds()
  local p = assert(io.popen(string.format(
    "find /proc/%d/fd -mindepth 1 -maxdepth 1 -printf '%%f %%l\\n' 2>/dev/null",
    helper.pid())))
  local t = {}
  for line in p:lines() do
    local fd, target = line:match("^(%d+) (.*)$")
    if fd then t[math.tointeger(tonumber(fd))] = target end
  end
  p:close()
  return t
end

function helper.fd_count()
  local n = 0
  for _ in pairs(helper.fds()) do n = n + 1 end
  return n
end

local Child = {}
Child.__index = Child

function Child:line()
  return self.out:read("l")
end

function Child:read(...)
  return self.out:read(...)
end

function Child:wait()
  if self.done then return table.unpack(self.done, 1, 4) end
  local rest = self.out:read("a")
  local ok, _, code = self.out:close()
  local f = io.open(self.errfile)
  local err = f and f:read("a") or ""
  if f then f:close() end
  os.remove(self.errfile)
  self.done = { ok == true, code, rest, err }
  return ok == true, code, rest, err
end

--[[ Starts a shell command; its stdout comes back through a pipe, its
stderr goes to a temporary file that wait() returns.  Under `make asan`
LD_PRELOAD carries the sanitizer runtime, which csock's children need and
python3 or curl do not survive: opts.foreign drops it. ]]
function helper.spawn(cmd, opts)
  local errfile = os.tmpname()
  local env = (opts and opts.foreign) and "env -u LD_PRELOAD " or ""
  local full = string.format("cd %s && exec %stimeout %d sh -c %s 2>%s",
    q(helper.ROOT), env, helper.TIMEOUT, q(cmd), q(errfile))
  local out = assert(io.popen(full, "r"))
  return setmetatable({ out = out, errfile = errfile, cmd = cmd }, Child)
end

local function quote_args(...)
  local args = {}
  for i = 1, select("#", ...) do args[i] = q(select(i, ...)) end
  return table.concat(args, " ")
end

-- `make asan` sets CSOCK_BUILD=build-asan; children then load that build too.
helper.CPATH = os.getenv("CSOCK_BUILD") and ("./" .. os.getenv("CSOCK_BUILD") .. "/?.so;")
  or "./?.so;"

helper.LUA_PRELUDE = 'package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path; '
  .. 'package.cpath = "' .. helper.CPATH .. '" .. package.cpath; '
  .. 'io.stdout:setvbuf("line"); '

--[[ Runs `code` in a child lua5.4 at the repository root, where
require "csock" finds the in-place build.  Extra arguments go to the chunk
in `arg[1..n]` (-e chunks get no `...`). ]]
function helper.lua_cmd(code, ...)
  return string.format("%s -e %s -e %s - %s </dev/null",
    helper.LUA, q(helper.LUA_PRELUDE), q(code), quote_args(...))
end

function helper.spawn_lua(code, ...)
  return helper.spawn(helper.lua_cmd(code, ...))
end

function helper.run_lua(code, ...)
  local ok, _, out, err = helper.spawn_lua(code, ...):wait()
  return ok, out, err
end

function helper.spawn_python(code, ...)
  return helper.spawn(string.format("python3 -u -c %s %s </dev/null",
    q(code), quote_args(...)), { foreign = true })
end

function helper.has(cmd)
  return os.execute("env -u LD_PRELOAD sh -c " .. q("command -v " .. q(cmd))
    .. " >/dev/null 2>&1") == true
end

function helper.has_python3()
  return os.execute("env -u LD_PRELOAD python3 -c 'import socket' >/dev/null 2>&1") == true
end

return helper
