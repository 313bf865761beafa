-- Embedding csock in another program's main loop: csock.loop(), loop:spawn, loop:step, loop:fd,
-- loop:close (docs/runtime.md "Embedding csock in another loop", docs/reference.md "Loop objects").
-- Every outer loop here is bounded by a deadline; sockets are on 127.0.0.1 port 0.
local csock = require "csock"
local helper = require "helper"
local rt = require "support.rt"

local LIMIT = 10 -- seconds any outer loop may run

-- true when descriptor fd of this process is an epoll instance (a closed descriptor's number
-- may be reused at once, by the pipe helper.fds reads its listing from, say)
local function is_epoll(fd)
  return (helper.fds()[fd] or ""):find("eventpoll", 1, true) ~= nil
end

-- Steps `loop` with `timeout` until it has no live task; raises past the deadline.
-- Returns the number of steps taken.
local function drive(loop, timeout, limit)
  local deadline = csock.now() + (limit or LIMIT)
  local steps = 0
  while true do
    steps = steps + 1
    if loop:step(timeout) == 0 then return steps end
    if csock.now() > deadline then error("outer loop timed out after " .. steps .. " steps", 2) end
  end
end

-- A to-be-closed value that records that it was closed.
local function closer(log, name)
  return setmetatable({}, {__close = function() log[#log + 1] = name end})
end

-- A server task (uppercases one line) and a client task on `loop`; returns both handles.
local function server_and_client(loop, message)
  local server = assert(csock.tcp_listen("127.0.0.1", 0))
  local port = server:getsockname().port
  local st = loop:spawn(function()
    local srv <close> = server
    local c <close> = assert(srv:accept())
    c:settimeout(5)
    local line = assert(c:read("l"))
    assert(c:write(line:upper(), "\n"))
    return "served " .. line
  end)
  local ct = loop:spawn(function()
    local c <close> = assert(csock.tcp_connect("127.0.0.1", port, 5))
    assert(c:write(message, "\n"))
    return (assert(c:read("l")))
  end)
  return st, ct
end

describe("csock.loop()", function()
  it("returns a loop object whose fd() is an open epoll descriptor", function()
    local loop <close> = csock.loop()
    local fd = loop:fd()
    assert.is_true(math.type(fd) == "integer" and fd > 2)
    assert.is_true(is_epoll(fd))
  end)

  it("step() with no task returns 0 at once", function()
    local loop <close> = csock.loop()
    local t0 = csock.now()
    assert.equal(0, loop:step())
    assert.equal(0, loop:step(0))
    assert.is_true(csock.now() - t0 < 0.5)
  end)
end)

describe("loop:spawn", function()
  it("returns a task handle that first runs at the next step", function()
    local loop <close> = csock.loop()
    local ran = false
    local t = loop:spawn(function(a, b) ran = true; return a + b end, 2, 3)
    assert.equal("userdata", type(t))
    assert.is_false(ran)
    assert.equal(0, loop:step())
    assert.is_true(ran)
    assert.equal("done", t:status())
    assert.same({true, 5}, {t:join()})
  end)

  it("returns handles that can be named and carry ids", function()
    local loop <close> = csock.loop()
    local t = loop:spawn(function() end):name("embedded")
    assert.equal("embedded", t:name())
    assert.equal("integer", math.type(t:id()))
    drive(loop, 0.01)
  end)
end)

describe("loop:step", function()
  it("returns the number of live tasks", function()
    local loop <close> = csock.loop()
    local a, b = assert(csock.socketpair())
    finally(function() a:close(); b:close() end)
    loop:spawn(function() end)
    loop:spawn(function() return a:read("l") end)
    loop:spawn(function() csock.sleep(0.02) end)
    assert.equal(2, loop:step())
  end)

  it("drives a server task and a client task to completion from a plain while loop", function()
    local loop <close> = csock.loop()
    local st, ct = server_and_client(loop, "hello embedded")
    local steps = drive(loop, 0.01)
    assert.is_true(steps >= 2)
    assert.same({true, "served hello embedded"}, {st:join()})
    assert.same({true, "HELLO EMBEDDED"}, {ct:join()})
    assert.equal("done", st:status())
    assert.equal("done", ct:status())
  end)

  it("drives tasks with step() (no wait) in a busy outer loop", function()
    local loop <close> = csock.loop()
    local st, ct = server_and_client(loop, "busy")
    local other_work = 0
    local deadline = csock.now() + LIMIT
    while loop:step() > 0 do
      other_work = other_work + 1 -- the application's own work between steps
      assert(csock.now() < deadline, "outer loop timed out")
    end
    assert.is_true(other_work > 0)
    assert.same({true, "BUSY"}, {ct:join()})
    assert.is_true((st:join()))
  end)

  it("wakes sleeping tasks and socket timeouts on later steps", function()
    local loop <close> = csock.loop()
    local a, b = assert(csock.socketpair())
    finally(function() a:close(); b:close() end)
    local t0 = csock.now()
    local slept = loop:spawn(function() csock.sleep(0.05); return csock.now() - t0 end)
    local timed = loop:spawn(function() a:settimeout(0.05); return a:read("l") end)
    drive(loop, 0.01)
    local ok, dt = slept:join()
    assert.is_true(ok)
    assert.is_true(dt >= 0.05 and dt < 2, "slept " .. tostring(dt))
    local ok2, v, msg, code = timed:join()
    assert.is_true(ok2)
    assert.same({nil, "timeout", csock.ETIMEDOUT}, {v, msg, code})
  end)

  it("waits up to timeout seconds for I/O, and no longer", function()
    local loop <close> = csock.loop()
    local a, b = assert(csock.socketpair())
    finally(function() a:close(); b:close() end)
    loop:spawn(function() return a:read("l") end)
    assert.equal(1, loop:step())
    local t0 = csock.now()
    assert.equal(1, loop:step(0.1))
    local waited = csock.now() - t0
    assert.is_true(waited >= 0.08 and waited < 2, "waited " .. waited)
    t0 = csock.now()
    assert.equal(1, loop:step())
    assert.is_true(csock.now() - t0 < 0.5, "step() must not wait")
    b:write("done\n")
    assert.equal(0, loop:step(1))
  end)

  it("never waits past the nearest timer deadline", function()
    local loop <close> = csock.loop()
    loop:spawn(function() csock.sleep(0.03) end)
    assert.equal(1, loop:step())
    local t0 = csock.now()
    drive(loop, 5)
    assert.is_true(csock.now() - t0 < 2, "a 0.03 s sleep held step(5) for " .. (csock.now() - t0))
  end)

  it("lets csock.spawn, csock.current and csock.tasks work inside a task", function()
    local loop <close> = csock.loop()
    local log = {}
    local outer = loop:spawn(function()
      local me = csock.current()
      local child = csock.spawn(function(x)
        csock.sleep(0.01)
        log[#log + 1] = "child " .. x
        return x * 2
      end, 21)
      log[#log + 1] = "tasks " .. #csock.tasks()
      local ok, v = child:join()
      log[#log + 1] = "joined " .. tostring(ok) .. " " .. v
      return me ~= nil and me ~= child
    end)
    drive(loop, 0.01)
    assert.same({true, true}, {outer:join()})
    assert.same({"tasks 2", "child 21", "joined true 42"}, log)
  end)

  it("goes on when a task raises, and join reports the error", function()
    -- run in a child process: the failing task's traceback goes to stderr
    local ok, out, err = helper.run_lua([[
      local csock = require "csock"
      local loop = csock.loop()
      local bad = loop:spawn(function() csock.sleep(0.01); error("boom in task") end):name("bad")
      local good = loop:spawn(function() csock.sleep(0.03); return "fine" end)
      local deadline = csock.now() + 10
      while loop:step(0.01) > 0 do assert(csock.now() < deadline) end
      print(bad:status(), select(2, bad:join()) ~= nil, good:join())
      loop:close()
    ]])
    assert.is_true(ok, err)
    assert.equal("failed\ttrue\ttrue\tfine\n", out)
    assert.matches("csock: task %d+ %(bad%):.-boom in task", err)
  end)

  it("raises when called inside csock.run", function()
    local loop <close> = csock.loop()
    local ok, err = pcall(csock.run, function() return loop:step() end)
    assert.is_false(ok)
    assert.matches("a loop is already running", err)
  end)

  it("raises when called from one of its own tasks", function()
    local loop <close> = csock.loop()
    local t = loop:spawn(function() return pcall(function() return loop:step() end) end)
    drive(loop, 0.01)
    local _, ok, err = t:join()
    assert.is_false(ok)
    assert.matches("a loop is already running", err)
  end)

  it("does not disturb a later csock.run", function()
    local loop = csock.loop()
    local _, ct = server_and_client(loop, "first")
    drive(loop, 0.01)
    loop:close()
    assert.same({true, "FIRST"}, {ct:join()})
    assert.equal("after", rt.loop(function() csock.sleep(0.01); return "after" end))
  end)
end)

describe("loop:fd", function()
  it("becomes readable when a socket event is pending (seen through luv)", function()
    local has_luv, uv = pcall(require, "luv")
    if not has_luv then pending("luv not installed"); return end
    local loop <close> = csock.loop()
    local a, b = assert(csock.socketpair())
    finally(function() a:close(); b:close() end)
    local reader = loop:spawn(function() return a:read("l") end)
    assert.equal(1, loop:step()) -- the task now waits on a
    local fired = nil
    local poll = uv.new_poll(loop:fd())
    local guard = uv.new_timer()
    poll:start("r", function() fired = "readable"; poll:stop(); guard:stop() end)
    guard:start(2000, 0, function() fired = "timeout"; poll:stop() end)
    assert(b:write("ping\n"))
    uv.run()
    poll:close(); guard:close(); uv.run("nowait")
    assert.equal("readable", fired)
    assert.equal(0, loop:step())
    assert.same({true, "ping"}, {reader:join()})
  end)

  it("drives a server, a client and a sleeper from a luv loop with a poll handle on fd() alone", function()
    local has_luv, uv = pcall(require, "luv")
    if not has_luv then pending("luv not installed"); return end
    local loop <close> = csock.loop()
    local st, ct = server_and_client(loop, "via luv")
    local sleeper = loop:spawn(function() csock.sleep(0.05); return "woke" end) -- the timerfd wakes it
    local polls, result = 0, nil
    local poll, guard = uv.new_poll(loop:fd()), uv.new_timer()
    local function finish(how)
      result = how
      poll:stop(); guard:stop()
    end
    poll:start("r", function()
      polls = polls + 1
      if loop:step() == 0 then finish("done") end
    end)
    guard:start(LIMIT * 1000, 0, function() finish("timeout") end)
    uv.run()
    poll:close(); guard:close(); uv.run("nowait")
    assert.equal("done", result)
    assert.is_true(polls > 0, "the poll handle never fired")
    assert.same({true, "VIA LUV"}, {ct:join()})
    assert.is_true((st:join()))
    assert.same({true, "woke"}, {sleeper:join()})
  end)

  it("becomes readable when a sleep is due, with no socket event", function()
    local has_luv, uv = pcall(require, "luv")
    if not has_luv then pending("luv not installed"); return end
    local loop <close> = csock.loop()
    local sleeper = loop:spawn(function() csock.sleep(0.1); return "woke" end)
    assert.equal(1, loop:step()) -- the task now sleeps
    local fired, t0 = nil, csock.now()
    local poll, guard = uv.new_poll(loop:fd()), uv.new_timer()
    poll:start("r", function() fired = csock.now() - t0; poll:stop(); guard:stop() end)
    guard:start(5000, 0, function() fired = "never"; poll:stop() end)
    uv.run()
    poll:close(); guard:close(); uv.run("nowait")
    assert.is_number(fired)
    assert.is_true(fired >= 0.09, "readable " .. tostring(fired) .. " s after a 0.1 s sleep began")
    assert.equal(0, loop:step())
    assert.same({true, "woke"}, {sleeper:join()})
  end)
end)

describe("loop:timeout", function()
  it("is nil with no task and no timer", function()
    local loop <close> = csock.loop()
    assert.is_nil(loop:timeout())
  end)

  it("is 0 when a task is ready to run", function()
    local loop <close> = csock.loop()
    loop:spawn(function() end)
    assert.equal(0, loop:timeout())
    assert.equal(0, loop:step())
    assert.is_nil(loop:timeout())
  end)

  it("is the time left to the nearest sleep", function()
    local loop <close> = csock.loop()
    loop:spawn(function() csock.sleep(30) end)
    loop:spawn(function() csock.sleep(0.5) end)
    assert.equal(2, loop:step())
    local left = loop:timeout()
    assert.is_true(left > 0.3 and left <= 0.5, "timeout() = " .. tostring(left))
  end)

  it("is the time left to a socket timeout, and nil while tasks wait for I/O alone", function()
    local loop <close> = csock.loop()
    local a, b = assert(csock.socketpair())
    finally(function() a:close(); b:close() end)
    loop:spawn(function() return a:read("l") end)
    assert.equal(1, loop:step())
    assert.is_nil(loop:timeout())
    local c, d = assert(csock.socketpair())
    finally(function() c:close(); d:close() end)
    c:settimeout(2)
    loop:spawn(function() return c:read("l") end)
    assert.equal(2, loop:step())
    local left = loop:timeout()
    assert.is_true(left > 1 and left <= 2, "timeout() = " .. tostring(left))
  end)

  it("raises on a closed loop", function()
    local loop = csock.loop()
    loop:close()
    local ok, err = pcall(loop.timeout, loop)
    assert.is_false(ok)
    assert.equal("bad argument #1 to 'timeout' (loop is closed)", err)
  end)
end)

describe("loop:close", function()
  it("cancels live tasks, closing their to-be-closed variables", function()
    local loop = csock.loop()
    local a, b = assert(csock.socketpair())
    finally(function() a:close(); b:close() end)
    local log = {}
    local reader = loop:spawn(function()
      local _ <close> = closer(log, "reader")
      return a:read("l")
    end)
    local sleeper = loop:spawn(function()
      local _ <close> = closer(log, "sleeper")
      csock.sleep(60)
    end)
    local quick = loop:spawn(function()
      local _ <close> = closer(log, "never")
    end)
    assert.equal(2, loop:step())
    assert.same({"never"}, log)
    assert.equal("done", quick:status())
    loop:close()
    table.sort(log)
    assert.same({"never", "reader", "sleeper"}, log)
    assert.equal("cancelled", reader:status())
    assert.equal("cancelled", sleeper:status())
    assert.same({false, "cancelled"}, {reader:join()})
    assert.same({false, "cancelled"}, {sleeper:join()})
  end)

  it("cancels tasks that never ran", function()
    local loop = csock.loop()
    local ran = false
    local t = loop:spawn(function() ran = true end)
    loop:close()
    assert.is_false(ran)
    assert.same({false, "cancelled"}, {t:join()})
  end)

  it("releases the epoll descriptor, is harmless twice, and later calls raise", function()
    local loop = csock.loop()
    local fd = loop:fd()
    assert.is_true(is_epoll(fd))
    loop:close()
    assert.is_false(is_epoll(fd))
    loop:close()
    assert.has_error(function() loop:step() end, "bad argument #1 to 'step' (loop is closed)")
    assert.has_error(function() loop:fd() end, "bad argument #1 to 'fd' (loop is closed)")
    assert.has_error(function() loop:spawn(function() end) end)
  end)

  it("is run by a <close> variable going out of scope", function()
    local log, fd = {}
    do
      local loop <close> = csock.loop()
      fd = loop:fd()
      loop:spawn(function()
        local _ <close> = closer(log, "task")
        csock.sleep(60)
      end)
      assert.equal(1, loop:step())
    end
    assert.same({"task"}, log)
    assert.is_false(is_epoll(fd))
  end)

  it("is run by the garbage collector", function()
    local fd
    do
      local loop = csock.loop()
      fd = loop:fd()
      loop:spawn(function() csock.sleep(60) end)
      loop:step()
    end
    collectgarbage(); collectgarbage()
    assert.is_false(is_epoll(fd))
  end)

  it("is run by the garbage collector even while csock.run is running", function()
    local fd
    rt.loop(function()
      do
        local loop = csock.loop()
        fd = loop:fd()
        loop:spawn(function() csock.sleep(60) end)
      end
      collectgarbage(); collectgarbage()
    end)
    collectgarbage(); collectgarbage()
    assert.is_false(is_epoll(fd), "the epoll descriptor of a collected loop leaked")
  end)

  it("called from one of the loop's own tasks does not crash the process", function()
    -- in a child process: a crash must not take the suite down
    local ok, out, err = helper.run_lua([[
      local csock = require "csock"
      local loop = csock.loop()
      loop:spawn(function() csock.sleep(0.01) end)
      loop:spawn(function() print("close in task", (pcall(function() loop:close() end))) end)
      print("step", (pcall(function() return loop:step() end)))
      loop:close()
      print("alive")
    ]])
    assert.is_true(ok, "the process died: " .. err)
    assert.matches("alive\n$", out)
  end)

  it("called from the loop's only task leaves step without an internal epoll error", function()
    local ok, out, err = helper.run_lua([[
      local csock = require "csock"
      local loop = csock.loop()
      loop:spawn(function() pcall(function() loop:close() end) end)
      local ok, res = pcall(function() return loop:step() end)
      print(ok, res)
      loop:close()
    ]])
    assert.is_true(ok, err)
    assert.is_falsy(out:find("epoll_wait", 1, true), out)
  end)

  it("leaves no descriptor behind after a served connection", function()
    local before = helper.fd_count()
    do
      local loop <close> = csock.loop()
      server_and_client(loop, "count")
      drive(loop, 0.01)
    end
    collectgarbage(); collectgarbage()
    assert.equal(before, helper.fd_count())
  end)
end)

describe("examples/embed_poll.lua", function()
  local function check(r)
    assert.equal(0, r.status, r.err)
    local lines = {}
    for l in r.out:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.matches("^listening on 127%.0%.0%.1:%d+$", lines[1])
    assert.same({"echo: hello", "echo: from the client task", "echo: of an embedded loop"},
      {lines[2], lines[3], lines[4]})
    local frames, work = r.out:match("app: (%d+) frames, (%d+) units of work, every csock task ended")
    assert.is_truthy(frames, r.out)
    assert.is_true(tonumber(frames) > 0 and tonumber(work) > 0)
  end

  it("compiles", function()
    assert.is_function(loadfile("examples/embed_poll.lua"))
  end)

  it("runs with plain lua5.4 from the work tree and serves its echo connection", function()
    local ok, code, out, err = helper.spawn("exec " .. helper.LUA .. " examples/embed_poll.lua </dev/null"):wait()
    assert.is_true(ok, err)
    check({status = code, out = out, err = err})
  end)

  it("runs with csock's package paths set (as installed)", function()
    check(rt.exec({helper.LUA, "examples/embed_poll.lua"}))
  end)
end)

describe("a program that requires csock", function()
  -- The host paces the collector for its own scripts (docs/runtime.md "Memory"); a program that
  -- only requires csock keeps its collector as it set it.
  it("keeps its collector's pause while csock's loop runs", function()
    local before = collectgarbage("setpause", 200)
    collectgarbage("setpause", before)
    local loop <close> = csock.loop()
    loop:spawn(function() csock.sleep(0.005) end)
    drive(loop, 0.01)
    csock.run(function() csock.sleep(0.005) end)
    assert.equal(before, collectgarbage("setpause", before))
  end)
end)
