--[[
spec/support/rt.lua - helpers of the runtime, host and example specs.

  rt.BIN                       the host executable, ./bin/csock
  rt.q(s)                      s quoted for /bin/sh
  rt.exec(argv [, opts])       runs a command to its end: {status =, out =, err =}
                               opts.stdin: text fed to its standard input (else /dev/null)
                               opts.env: "NAME=value ..." prefix; opts.limit: seconds (20)
  rt.tmppath([suffix])         a fresh temporary path (not created), ending in suffix
  rt.script(text)              writes text to a temporary .lua file, returns its path
  rt.defer(finally, fn)        runs fn at the end of the test; unlike busted's own finally,
                               may be called many times in one test
  rt.start(argv [, opts])      starts a server process and reads its first stdout line:
                               {pid =, line =, port =, path =} (port: the digits after the
                               last ':' of that line)
  rt.stop(proc)                kills it by PID, waits: rest of stdout, its stderr
  rt.loop(fn [, limit])        csock.run(fn, go) under a watchdog: fn runs as a task and gets
                               go(f, ...), a spawn whose tasks are cancelled when fn ends; if fn
                               takes longer than limit seconds (10) it is cancelled and rt.loop
                               raises "loop timed out"; fn's error is raised as is; and if a
                               task started by go() or csock.spawn while fn ran failed,
                               raises "rt.loop: task N failed: <its error>"
  rt.fd_limit()                the soft limit on descriptors (`ulimit -n`), a number
  rt.has_ipv6()                true when ::1 can be bound
  rt.listener([backlog])       a TCP socket listening on 127.0.0.1 (SO_REUSEADDR, backlog 16
                               unless given) and the port it got

Child processes find csock through LUA_PATH/LUA_CPATH pointing into the work tree and run under
timeout(1), so a hung process cannot hang the suite.
]]

local rt = {}

-- `make asan` sets CSOCK_BUILD, so that children run the sanitized build too.
local build = os.getenv("CSOCK_BUILD") or "."
rt.BIN = build .. "/bin/csock"
rt.ENV = "LUA_PATH='./lua/?.lua;./lua/?/init.lua;;' LUA_CPATH='" .. build .. "/?.so;;'"

local function q(s)
  return "'" .. tostring(s):gsub("'", [['\'']]) .. "'"
end
rt.q = q

local function cmdline(argv)
  local t = {}
  for i, a in ipairs(argv) do t[i] = q(a) end
  return table.concat(t, " ")
end

local function slurp(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end

local function spit(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

-- The whole of the file at path; fails the spec when it cannot be read.
function rt.read_file(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

function rt.tmppath(suffix)
  local base = os.tmpname() -- creates the file; only its unique name is wanted
  os.remove(base)
  return base .. (suffix or "")
end

function rt.script(text)
  local path = rt.tmppath(".lua")
  spit(path, text)
  return path
end

-- busted keeps a single `finally` per test, the last one given; rt.defer(finally, fn) chains
-- any number of them, run last in, first out.
local pending_cleanups = setmetatable({}, {__mode = "k"})

function rt.defer(finally, fn)
  local list = pending_cleanups[finally]
  if not list then
    list = {}
    pending_cleanups[finally] = list
    finally(function()
      pending_cleanups[finally] = nil
      for i = #list, 1, -1 do pcall(list[i]) end
    end)
  end
  list[#list + 1] = fn
end

-- Programs not linked with csock (python3, curl, nc) run without the
-- sanitizer runtime that `make asan` preloads: they are not ours to check.
-- CSOCK_PRELOAD keeps it for a csock process such a program starts.
local function foreign(argv)
  local prog = tostring(argv[1])
  return not (prog:find("csock", 1, true) or prog:find("^lua"))
end

function rt.exec(argv, opts)
  opts = opts or {}
  local out, err = os.tmpname(), os.tmpname()
  local input = "/dev/null"
  if opts.stdin then
    input = os.tmpname()
    spit(input, opts.stdin)
  end
  local cmd = string.format("%s%s %s timeout -k 2 %d %s >%s 2>%s <%s",
    foreign(argv) and "CSOCK_PRELOAD=\"$LD_PRELOAD\" env -u LD_PRELOAD " or "", rt.ENV, opts.env or "",
    opts.limit or 20, cmdline(argv), out, err, input)
  local _, how, code = os.execute(cmd)
  local r = {status = code, how = how, out = slurp(out), err = slurp(err), cmd = cmd}
  os.remove(out)
  os.remove(err)
  if opts.stdin then os.remove(input) end
  return r
end

function rt.start(argv, opts)
  opts = opts or {}
  local err = os.tmpname()
  -- `echo $$` names the shell, which exec then turns into timeout(1) with the same PID;
  -- timeout passes our SIGTERM on to the server.
  local cmd = string.format("echo $$; exec env %s timeout -k 2 %d %s 2>%s </dev/null",
    rt.ENV, opts.limit or 60, cmdline(argv), err)
  local pipe = assert(io.popen(cmd, "r"))
  local proc = {pipe = pipe, errfile = err}
  proc.pid = assert(math.tointeger(tonumber(pipe:read("l"))), "no pid")
  proc.line = pipe:read("l")
  if not proc.line then
    pipe:close()
    local text = slurp(err)
    os.remove(err)
    error("server did not start: " .. cmdline(argv) .. "\n" .. text, 2)
  end
  proc.port = math.tointeger(tonumber(proc.line:match(":(%d+)[^:]*$")))
  proc.path = proc.line:match("^listening on (/.*)$")
  return proc
end

function rt.stop(proc)
  if not proc or proc.stopped then return end
  proc.stopped = true
  -- timeout(1) leads its own process group: signal the group too, so that the server cannot
  -- outlive a timeout that went first and keep the pipe (and so this read) open
  os.execute(string.format("kill -- -%d %d 2>/dev/null", proc.pid, proc.pid))
  local rest = proc.pipe:read("a")
  proc.pipe:close()
  local err = slurp(proc.errfile)
  os.remove(proc.errfile)
  return rest, err
end

-- The error of the first task in `tasks` that failed, or nil.
local function first_failure(tasks)
  for _, t in ipairs(tasks) do
    if t:status() == "failed" then
      local _, err = t:join() -- an ended task answers at once
      return string.format("rt.loop: task %d failed: %s", t:id(), tostring(err))
    end
  end
end

--[[ A task that fails only writes its traceback to stderr; the loop goes on.  So that an
assert in a helper task fails the spec, rt.loop keeps the handle of every task started
while fn runs -- by go() and by csock.spawn, which it wraps for that time -- and raises
the error of the first one that failed.  The wrapper calls the original through an
upvalue named `spawn`, so a bad argument still reads "bad argument #1 to 'spawn'". ]]
function rt.loop(fn, limit)
  local csock = require "csock"
  limit = limit or 10
  local started = {}
  local spawn = csock.spawn
  local function recording_spawn(f, ...)
    local t = spawn(f, ...)
    started[#started + 1] = t
    return t
  end
  csock.spawn = recording_spawn
  local res = table.pack(pcall(csock.run, function()
    local tasks = {}
    local function go(f, ...)
      local t = spawn(f, ...)
      tasks[#tasks + 1] = t
      started[#started + 1] = t
      return t
    end
    local main = spawn(fn, go)
    local timed_out = false
    local dog = spawn(function()
      csock.sleep(limit)
      timed_out = true
      main:cancel()
    end)
    local r = table.pack(main:join())
    dog:cancel()
    for _, t in ipairs(tasks) do t:cancel() end
    if timed_out then error("loop timed out after " .. limit .. " s", 0) end
    if not r[1] then error(r[2], 0) end
    return table.unpack(r, 2, r.n)
  end))
  if csock.spawn == recording_spawn then csock.spawn = spawn end
  if not res[1] then error(res[2], 0) end
  local failure = first_failure(started)
  if failure then error(failure, 0) end
  return table.unpack(res, 2, res.n)
end

function rt.fd_limit()
  local p = io.popen("ulimit -n")
  local n = p and p:read("l")
  if p then p:close() end
  if n == "unlimited" then return math.huge end
  return tonumber(n) or 0
end

function rt.has_ipv6()
  local csock = require "csock"
  local ok, s = pcall(csock.socket, csock.AF_INET6, csock.SOCK_STREAM)
  if not ok or not s then return false end
  local bound = s:bind("::1", 0)
  s:close()
  return bound == true
end

function rt.listener(backlog)
  local csock = require "csock"
  local s = assert(csock.socket(csock.AF_INET, csock.SOCK_STREAM))
  assert(s:setsockopt(csock.SOL_SOCKET, csock.SO_REUSEADDR, true))
  assert(s:bind("127.0.0.1", 0))
  assert(s:listen(backlog or 16))
  return s, s:getsockname().port
end

-- A python3 program run to its end with the given arguments; see rt.exec.
function rt.python(code, args, opts)
  local argv = {"python3", "-c", code}
  for _, a in ipairs(args or {}) do argv[#argv + 1] = tostring(a) end
  return rt.exec(argv, opts)
end

return rt
