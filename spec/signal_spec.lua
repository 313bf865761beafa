-- Signals and the task dump: csock.signal, SIGPIPE, SIGQUIT and csock.dump (docs/reference.md
-- "csock.signal", "csock.dump"; docs/runtime.md "Signals", "Task dump").
--
-- Signals are sent to child processes only: a script run by the host bin/csock (or by plain
-- lua5.4) prints "ready PID ..." first, PID being its own process id; the spec then signals that
-- PID and synchronises on the lines the script prints, never on fixed sleeps.
local csock = require "csock"
local helper = require "helper"
local rt = require "support.rt"

-- Prepended to every child script: line-buffered stdout and the process' own pid.
local PRELUDE = [[
local csock = require "csock"
io.stdout:setvbuf("line")
local function mypid()
  local f = assert(io.open("/proc/self/stat"))
  local pid = f:read("n")
  f:close()
  return math.tointeger(pid)
end
]]

local function kill(sig, pid)
  return os.execute(string.format("kill -%s %d 2>/dev/null", sig, pid))
end

--[[ Starts `text` (PRELUDE first) with bin/csock (opts.lua: with plain lua5.4); reads its
first line, which must be "ready PID [PORT]". opts.merge sends its stderr to the stdout pipe.
Returns a proc: proc.pid (the script's process), proc.port, proc:line(), proc:finish() -> rest
of stdout, stderr text, exit code (or 128 + signal). Stopped by PID in `finally`. ]]
local Proc = {}
Proc.__index = Proc

function Proc:line()
  return self.pipe:read("l")
end

function Proc:finish()
  if self.done then return table.unpack(self.done) end
  local rest = self.pipe:read("a")
  local _, how, code = self.pipe:close()
  if how == "signal" then code = 128 + code end
  local f = io.open(self.errfile)
  local err = f and f:read("a") or ""
  if f then f:close() end
  os.remove(self.errfile)
  os.remove(self.script)
  self.done = {rest, err, code}
  return rest, err, code
end

local function start(finally, text, opts)
  opts = opts or {}
  local script = rt.script(PRELUDE .. text)
  local errfile = os.tmpname()
  local runner = opts.lua and (helper.LUA .. " -e " .. rt.q(helper.LUA_PRELUDE)) or rt.BIN
  local cmd = string.format("echo $$; exec env %s timeout -k 2 %d %s %s 2>%s </dev/null",
    rt.ENV, opts.limit or 30, runner, rt.q(script), opts.merge and "&1" or rt.q(errfile))
  local proc = setmetatable({pipe = assert(io.popen(cmd)), errfile = errfile, script = script}, Proc)
  proc.timeout_pid = assert(math.tointeger(tonumber(proc.pipe:read("l"))), "no pid")
  rt.defer(finally, function()
    if not proc.done then
      if proc.pid then kill("KILL", proc.pid) end
      kill("TERM", proc.timeout_pid)
      proc:finish()
    end
  end)
  local ready = proc:line()
  if not ready then
    local _, err = proc:finish()
    error("script did not start:\n" .. err, 2)
  end
  proc.ready = ready
  local pid, port = ready:match("^ready (%d+) ?(%d*)")
  assert(pid, "unexpected first line: " .. ready)
  proc.pid = math.tointeger(tonumber(pid))
  proc.port = tonumber(port)
  return proc
end

-- A blocking client socket (outside the loop) with a timeout.
local function connect(port)
  local s = assert(csock.socket(csock.AF_INET, csock.SOCK_STREAM))
  s:settimeout(15)
  local ok, err = s:connect("127.0.0.1", port)
  if not ok then s:close(); return nil, err end
  return s
end

-- 4 MiB of numbered 8-byte lines: a lost, repeated or reordered chunk shows.
local BIG = 4 * 1024 * 1024
local function big_body()
  local t = {}
  for i = 0, BIG // 8 - 1 do t[#t + 1] = string.format("%07d\n", i) end
  return table.concat(t)
end

describe("csock.signal arguments", function()
  it("raises on bad signal numbers: 0, SIGKILL, SIGSTOP, 99, a string, a negative", function()
    local why = {x = "number expected, got string", [1.5] = "number has no integer representation"}
    for _, bad in ipairs({0, 9, 19, 99, -1, "x", 1.5}) do
      assert.has_error(function() csock.signal(bad, function() end) end,
        "bad argument #1 to 'signal' (" .. (why[bad] or "invalid signal number") .. ")")
    end
  end)

  it("raises on numbers that only a cast to a C int would bring into range", function()
    for _, bad in ipairs({(1 << 32) + 15, (1 << 40) + 10, math.mininteger + 15}) do
      assert.has_error(function() csock.signal(bad, function() end) end,
        "bad argument #1 to 'signal' (invalid signal number)")
    end
  end)

  it("raises when the handler is neither a function nor nil", function()
    assert.has_error(function() csock.signal(csock.SIGUSR2, 42) end)
    assert.has_error(function() csock.signal(csock.SIGUSR2, "f") end)
  end)

  it("has the signal constants with their Linux numbers", function()
    assert.same({1, 2, 3, 10, 12, 15, 17, 13, 14, 28},
      {csock.SIGHUP, csock.SIGINT, csock.SIGQUIT, csock.SIGUSR1, csock.SIGUSR2, csock.SIGTERM,
       csock.SIGCHLD, csock.SIGPIPE, csock.SIGALRM, csock.SIGWINCH})
  end)

  it("returns true when installing and when restoring the default", function()
    -- SIGWINCH's default is to ignore it, so this is harmless to the spec process
    assert.is_true(csock.signal(csock.SIGWINCH, function() end))
    assert.is_true(csock.signal(csock.SIGWINCH, nil))
  end)
end)

describe("csock.signal handlers", function()
  it("run fn(signo) as a new task each time: SIGUSR1 twice, two tasks", function()
    local p = start(finally, [[
      local seen = {}
      local main = csock.current()
      local stop = false
      csock.signal(csock.SIGUSR1, function(signo)
        local me = csock.current()
        seen[#seen + 1] = me:id()
        print(("usr1 %d signo=%d task=%s main=%s"):format(#seen, signo, tostring(me ~= nil),
          tostring(me == main)))
        if #seen == 2 then stop = true end
      end)
      print("ready " .. mypid())
      while not stop do csock.sleep(0.01) end
      print("distinct " .. tostring(seen[1] ~= seen[2]))
    ]])
    kill("USR1", p.pid)
    assert.equal("usr1 1 signo=10 task=true main=false", p:line())
    kill("USR1", p.pid)
    assert.equal("usr1 2 signo=10 task=true main=false", p:line())
    local rest, err, code = p:finish()
    assert.equal("distinct true\n", rest)
    assert.equal(0, code, err)
  end)

  it("may block, sleep and use sockets like any task", function()
    local p = start(finally, [[
      local a, b = csock.socketpair()
      csock.signal(csock.SIGHUP, function()
        csock.sleep(0.01)
        b:write("from the handler\n")
      end)
      print("ready " .. mypid())
      a:settimeout(20)
      print(a:read("l"))
    ]])
    kill("HUP", p.pid)
    local rest, err, code = p:finish()
    assert.equal("from the handler\n", rest)
    assert.equal(0, code, err)
  end)

  it("restores the default action with csock.signal(signo, nil)", function()
    local p = start(finally, [[
      csock.signal(csock.SIGUSR2, function() print("handled") end)
      csock.signal(csock.SIGUSR2, nil)
      print("ready " .. mypid())
      csock.sleep(20)
      print("not killed")
    ]])
    kill("USR2", p.pid)
    local rest, _, code = p:finish()
    assert.equal("", rest)
    assert.equal(128 + csock.SIGUSR2, code)
  end)

  it("run under csock.run in plain lua5.4, a signal received before the loop included", function()
    local p = start(finally, [[
      local log = {}
      csock.signal(csock.SIGUSR1, function(n) log[#log + 1] = "handler " .. n end)
      print("ready " .. mypid())
      -- signal ourselves before any loop runs: it waits for the next one
      os.execute("kill -USR1 " .. mypid())
      print("before run: " .. #log)
      csock.run(function()
        local deadline = csock.now() + 10
        while #log == 0 and csock.now() < deadline do csock.sleep(0.01) end
      end)
      print(table.concat(log, ","))
    ]], {lua = true})
    local rest, err, code = p:finish()
    assert.equal("before run: 0\nhandler 10\n", rest)
    assert.equal(0, code, err)
  end)

  it("run under loop:step of an embedded loop", function()
    local p = start(finally, [[
      local log = {}
      csock.signal(csock.SIGUSR1, function(n) log[#log + 1] = n end)
      local loop = csock.loop()
      local waiter = loop:spawn(function()
        while #log == 0 do csock.sleep(0.01) end
        return log[1]
      end)
      print("ready " .. mypid())
      os.execute("kill -USR1 " .. mypid())
      local deadline = os.time() + 10
      while loop:step(0.01) > 0 and os.time() < deadline do end
      print(waiter:join())
      loop:close()
    ]], {lua = true})
    local rest, err, code = p:finish()
    assert.equal("true\t10\n", rest)
    assert.equal(0, code, err)
  end)

  it("run under loop:step of a loop made before the first csock.signal call", function()
    local p = start(finally, [[
      local loop = csock.loop()           -- before any csock.signal in this process
      local log = {}
      csock.signal(csock.SIGUSR1, function(n) log[#log + 1] = n end)
      local waiter = loop:spawn(function()
        local deadline = csock.now() + 2
        while #log == 0 and csock.now() < deadline do csock.sleep(0.01) end
        return #log
      end)
      print("ready " .. mypid())
      os.execute("kill -USR1 " .. mypid())
      while loop:step(0.01) > 0 do end
      print(waiter:join())
      loop:close()
    ]], {lua = true})
    local rest, err, code = p:finish()
    assert.equal("true\t1\n", rest, "the handler never ran")
    assert.equal(0, code, err)
  end)
end)

describe("a graceful shutdown on SIGTERM", function()
  it("closes the listener and lets an in-flight 4 MiB response finish; exit status 0", function()
    local p = start(finally, [[
      local BIG = 4 * 1024 * 1024
      local t = {}
      for i = 0, BIG // 8 - 1 do t[#t + 1] = string.format("%07d\n", i) end
      local body = table.concat(t)
      local server = assert(csock.tcp_listen("127.0.0.1", 0))
      csock.signal(csock.SIGTERM, function(signo)
        print("signal " .. signo)
        server:close()
      end)
      print(("ready %d %d"):format(mypid(), server:getsockname().port))
      while true do
        local c = server:accept()
        if not c then break end
        csock.spawn(function()
          local cl <close> = c
          cl:settimeout(20)
          -- small kernel buffers: 4 MiB cannot all be queued, the write stays in flight
          cl:setsockopt(csock.SOL_SOCKET, csock.SO_SNDBUF, 32768)
          assert(cl:read("l"))
          print("writing")
          local ok, err, code, sent = cl:write(body)
          print(ok and ("wrote " .. #body) or ("failed " .. tostring(err) .. " " .. tostring(sent)))
        end)
      end
      print("accept loop ended")
    ]])
    local body = big_body()
    local s <close> = assert(csock.socket(csock.AF_INET, csock.SOCK_STREAM))
    s:setsockopt(csock.SOL_SOCKET, csock.SO_RCVBUF, 32768)
    s:settimeout(15)
    assert(s:connect("127.0.0.1", p.port))
    assert(s:write("GET /big\n"))
    assert.equal("writing", p:line())
    -- the response is now in flight: take a first part, then ask the server to stop
    local first = assert(s:read(65536))
    assert.equal(65536, #first)
    assert(kill("TERM", p.pid))
    assert.equal("signal 15", p:line())
    assert.equal("accept loop ended", p:line())
    -- no new connection once the listener is closed
    local late, err = connect(p.port)
    if late then late:close() end
    assert.is_nil(late, "a connection was accepted after SIGTERM")
    assert.matches("refused", err)
    local rest = assert(s:read("a"))
    assert.equal(BIG, #first + #rest, "the client got only part of the response")
    assert.is_true(first .. rest == body, "the response was corrupted")
    local out, stderr, code = p:finish()
    assert.equal("wrote " .. BIG .. "\n", out)
    assert.equal(0, code, stderr)
  end)
end)

describe("a host script whose tasks all wait on each other", function()
  it("ends with the deadlock error and status 1 (the SIGQUIT dump handler cannot wake them)",
    function()
      local p = start(finally, [[
        print(("ready %d"):format(mypid()))
        local me = csock.current()
        local other = csock.spawn(function() me:join() end)
        local c = csock.cond()
        csock.spawn(function() c:wait() end)
        other:join()
      ]])
      local rest, err, code = p:finish()
      assert.equal("", rest)
      assert.matches("csock.run: deadlock (every task waits for another task or a condition)", err,
        1, true)
      assert.equal(1, code)
    end)

  it("keeps waiting while a handler of its own may still wake a task (SIGTERM signals it)",
    function()
      local p = start(finally, [[
        local stop = csock.cond()
        csock.signal(csock.SIGTERM, function() print("term") stop:signal() end)
        print(("ready %d"):format(mypid()))
        print("woken", stop:wait())
      ]])
      assert(kill("TERM", p.pid))
      local rest, err, code = p:finish()
      assert.equal("term\nwoken\ttrue\n", rest)
      assert.equal(0, code, err)
    end)
end)

describe("SIGPIPE", function()
  it("never kills the host: a write to a client that closed early returns nil, msg, EPIPE", function()
    local p = start(finally, [[
      local server = assert(csock.tcp_listen("127.0.0.1", 0))
      print(("ready %d %d"):format(mypid(), server:getsockname().port))
      local chunk = string.rep("x", 65536)
      for i = 1, 2 do
        local c <close> = assert(server:accept())
        c:settimeout(20)
        local req = c:read("l")
        if req == "big" then
          print("writing")
          local total = 0
          while true do
            local ok, err, code, sent = c:write(chunk)
            if not ok then
              print(("write failed: %s errno=%d sent=%s"):format(err, code, tostring(sent)))
              break
            end
            total = total + #chunk
            if total > 512 * 1024 * 1024 then print("never failed") break end
          end
        else
          c:write("pong ", tostring(req), "\n")
        end
      end
      print("server done")
    ]])
    -- a client that asks for a lot, half-closes (the server sees the end of its requests),
    -- reads a little and closes with data unread
    local s = assert(connect(p.port))
    assert(s:write("big\n"))
    s:shutdown("w")
    assert.equal("writing", p:line())
    assert.equal(65536, #assert(s:read(65536)))
    s:close()
    local line = p:line()
    assert.is_string(line, "the server died")
    local errno = line:match("^write failed: .- errno=(%d+)")
    assert.is_truthy(errno, line)
    assert.equal(csock.EPIPE, tonumber(errno), line)
    -- the server goes on
    local s2 <close> = assert(connect(p.port))
    assert(s2:write("ping\n"))
    assert.equal("pong ping", s2:read("l"))
    local rest, err, code = p:finish()
    assert.equal("server done\n", rest)
    assert.equal(0, code, err)
  end)

  it("never kills plain lua5.4 either: writing to a closed socketpair returns EPIPE", function()
    local ok, out, err = helper.run_lua([[
      local csock = require "csock"
      local a, b = csock.socketpair()
      b:close()
      print(select("#", a:write("x")), select(3, a:write("x")) == csock.EPIPE)
      print(select(3, a:send("x")) == csock.EPIPE)
      print("alive")
    ]])
    assert.is_true(ok, err)
    assert.equal("4\ttrue\ntrue\nalive\n", out)
  end)
end)

describe("the task dump", function()
  it("SIGQUIT prints every live task to stderr and the process goes on", function()
    local p = start(finally, [[
      local a, b = csock.socketpair()
      local server = assert(csock.tcp_listen("127.0.0.1", 0))
      local reader = csock.spawn(function() return a:read("l") end):name("reader")
      local sleeper = csock.spawn(function() csock.sleep(25) end):name("sleeper")
      local joiner = csock.spawn(function() return reader:join() end):name("joiner")
      csock.signal(csock.SIGUSR1, function()
        print("usr1: still running")
        b:write("line\n")
        sleeper:cancel()
        server:close()
      end)
      csock.sleep(0)
      print(("ready %d %d fd=%d listen=%d reader=%d joiner=%d"):format(mypid(),
        server:getsockname().port, a:fileno(), server:fileno(), reader:id(), joiner:id()))
      server:accept()
      print("main done")
    ]], {merge = true})
    local fd, lfd, rid, jid = p.ready:match("fd=(%d+) listen=(%d+) reader=(%d+) joiner=(%d+)")
    assert(kill("QUIT", p.pid))
    -- the dump ends with the main task's traceback, whose last Lua frame is the main chunk
    local lines = {}
    repeat
      local l = p:line()
      lines[#lines + 1] = l
    until l == nil or l:match("in main chunk")
    local dump = table.concat(lines, "\n")
    -- the process goes on: it still handles a signal and then ends normally
    assert(kill("USR1", p.pid))
    local rest, _, code = p:finish()
    assert.matches("^csock: 5 live tasks\n", dump)
    assert.matches("running: this task asked for the dump", dump, 1, true)
    assert.matches("\ntask " .. rid .. " %(reader%): waiting, read fd " .. fd .. "\nstack traceback:\n", dump)
    assert.matches("\ntask %d+ %(sleeper%): waiting, sleep, deadline in [%d.]+ s\nstack traceback:\n", dump)
    assert.matches("\ntask " .. jid .. " %(joiner%): waiting, join task " .. rid .. "\nstack traceback:\n", dump)
    assert.matches("\ntask 1: waiting, read fd " .. lfd .. "\nstack traceback:\n", dump)
    assert.matches("in method 'read'", dump, 1, true)
    assert.matches("in method 'accept'", dump, 1, true)
    assert.matches("usr1: still running\n", rest)
    assert.matches("main done\n", rest)
    assert.equal(0, code, dump .. rest)
  end)

  it("SIGQUIT twice prints two dumps; the handler task is not left behind", function()
    local p = start(finally, [[
      local a, b = csock.socketpair()
      csock.signal(csock.SIGUSR1, function() b:write("x\n") end)
      print("ready " .. mypid())
      a:read("l")
      print("done")
    ]])
    assert(kill("QUIT", p.pid))
    assert(kill("QUIT", p.pid))
    assert(kill("USR1", p.pid))
    local rest, err, code = p:finish()
    assert.equal("done\n", rest)
    assert.equal(0, code, err)
    local n = 0
    for count in err:gmatch("csock: (%d+) live tasks") do
      n = n + 1
      assert.is_true(count == "2" or count == "3", err) -- main + this dump (+ a pending one)
    end
    assert.is_true(n >= 1, err)
  end)

  it("csock.dump() inside csock.run returns the text: named tasks, read fd N, tracebacks", function()
    local text, fd, rid, jid = rt.loop(function(go)
      local a, b = assert(csock.socketpair())
      local reader = go(function() return a:read("l") end):name("reader")
      local sleeper = go(function() csock.sleep(30) end):name("sleeper")
      local joiner = go(function() return reader:join() end):name("joiner")
      csock.sleep(0)
      local dump, n = csock.dump(), a:fileno()
      b:write("done\n")
      assert(joiner:join())
      sleeper:cancel()
      a:close(); b:close()
      return dump, n, reader:id(), joiner:id()
    end)
    assert.is_string(text)
    assert.matches("^csock: %d+ live tasks\n", text)
    assert.matches("running: this task asked for the dump", text, 1, true)
    assert.matches("\ntask " .. rid .. " %(reader%): waiting, read fd " .. fd .. "\nstack traceback:\n", text)
    assert.matches("\ntask %d+ %(sleeper%): waiting, sleep, deadline in [%d.]+ s\nstack traceback:\n", text)
    assert.matches("\ntask " .. jid .. " %(joiner%): waiting, join task " .. rid .. "\n", text)
    assert.matches("in method 'read'", text, 1, true)
  end)

  it("csock.dump() lists unnamed tasks by id and shows a socket timeout's deadline", function()
    local text, id, fd = rt.loop(function(go)
      local a, b = assert(csock.socketpair())
      a:settimeout(20)
      local t = go(function() return a:read("l") end)
      csock.sleep(0)
      local dump, n = csock.dump(), a:fileno()
      b:write("x\n")
      assert(t:join())
      a:close(); b:close()
      return dump, t:id(), n
    end)
    assert.matches("\ntask " .. id .. ": waiting, read fd " .. fd .. ", deadline in [%d.]+ s\n", text)
  end)

  it("csock.dump() outside a loop says no loop is running", function()
    assert.equal("csock: no loop is running", (csock.dump():gsub("\n$", "")))
  end)
end)
