-- The runtime's tasks: csock.run, csock.spawn and task handles (SPEC "Runtime", "Details").
local csock = require "csock"
local rt = require "support.rt"

-- A to-be-closed value that records that it was closed.
local function closer(log, name)
  return setmetatable({}, {__close = function() log[#log + 1] = name end})
end

describe("csock.run", function()
  it("returns the results of fn, nils and count included", function()
    local n, a, b, c = (function(...) return select("#", ...), ... end)(
      csock.run(function() return 1, nil, "three" end))
    assert.equal(3, n)
    assert.same({1, nil, "three"}, {a, b, c})
  end)

  it("passes its extra arguments to fn", function()
    local got = table.pack(csock.run(function(...) return select("#", ...), ... end, "x", nil, 3))
    assert.same({3, "x", nil, 3, n = 4}, got)
  end)

  it("raises fn's error as is", function()
    local ok, err = pcall(csock.run, function() error("plain failure", 0) end)
    assert.is_false(ok)
    assert.equal("plain failure", err)
    local obj = {}
    local ok2, err2 = pcall(csock.run, function() error(obj) end)
    assert.is_false(ok2)
    assert.equal(obj, err2)
  end)

  it("raises fn's error with its position", function()
    local ok, err = pcall(csock.run, function() error("where am I") end)
    assert.is_false(ok)
    assert.matches("runtime_task_spec.lua:%d+: where am I", err)
  end)

  it("waits for every task before it returns", function()
    local log = {}
    csock.run(function()
      csock.spawn(function()
        csock.sleep(0.05)
        log[#log + 1] = "late task"
      end)
      log[#log + 1] = "fn returns"
    end)
    assert.same({"fn returns", "late task"}, log)
  end)

  it("cancels the other tasks and closes their to-be-closed variables when fn raises", function()
    local log = {}
    local started = csock.now()
    local ok, err = pcall(csock.run, function()
      csock.spawn(function()
        local _ <close> = closer(log, "sleeper closed")
        csock.sleep(2)
        log[#log + 1] = "sleeper woke"
      end)
      csock.sleep(0.01)
      error("fn failed", 0)
    end)
    assert.is_false(ok)
    assert.equal("fn failed", err)
    assert.same({"sleeper closed"}, log)
    assert.is_true(csock.now() - started < 1, "run waited for the sleeper")
  end)

  it("can run again after it returned or raised", function()
    assert.equal(1, csock.run(function() return 1 end))
    pcall(csock.run, function() error("x") end)
    assert.equal(2, csock.run(function()
      local t = csock.spawn(function() csock.sleep(0.01) return 2 end)
      return select(2, t:join())
    end))
  end)

  it("refuses to run inside run", function()
    local ok, err = csock.run(function()
      return pcall(csock.run, function() end)
    end)
    assert.is_false(ok)
    assert.is_string(err)
    assert.matches("run", err)
  end)

  it("refuses a non-function", function()
    assert.has_error(function() csock.run(42) end, "bad argument #1 to 'run' (function expected, got number)")
  end)
end)

describe("csock.spawn", function()
  it("raises outside run", function()
    local ok, err = pcall(csock.spawn, function() end)
    assert.is_false(ok)
    assert.is_string(err)
    assert.matches("spawn", err)
  end)

  it("refuses a non-function", function()
    local ok, err = csock.run(function() return pcall(function() csock.spawn("nope") end) end)
    assert.is_false(ok)
    assert.equal("bad argument #1 to 'spawn' (function expected, got string)", (err:gsub("^[^:]+:%d+: ", "")))
  end)

  it("passes its extra arguments to the task", function()
    local got = csock.run(function()
      local t = csock.spawn(function(...) return table.pack(...) end, "a", nil, 3)
      return select(2, t:join())
    end)
    assert.same({"a", nil, 3, n = 3}, got)
  end)

  it("runs a thousand tasks to their end", function()
    local done = 0
    csock.run(function()
      for _ = 1, 1000 do
        csock.spawn(function()
          csock.sleep(0.01)
          done = done + 1
        end)
      end
    end)
    assert.equal(1000, done)
  end)

  it("lets a task spawn further tasks", function()
    local log = {}
    csock.run(function()
      csock.spawn(function()
        csock.spawn(function() log[#log + 1] = "grandchild" end)
        log[#log + 1] = "child"
      end)
    end)
    table.sort(log)
    assert.same({"child", "grandchild"}, log)
  end)
end)

describe("a task error", function()
  it("ends that task alone; the others and run go on", function()
    local log = {}
    local ok, r = pcall(csock.run, function()
      local bad = csock.spawn(function()
        csock.sleep(0.01)
        error("task blew up", 0)
      end)
      local good = csock.spawn(function()
        csock.sleep(0.05)
        log[#log + 1] = "good finished"
        return "fine"
      end)
      local okb, errb = bad:join()
      local okg, resg = good:join()
      return {okb, errb, okg, resg, bad:status(), good:status()}
    end)
    assert.is_true(ok)
    assert.same({false, "task blew up", true, "fine", "failed", "done"}, r)
    assert.same({"good finished"}, log)
  end)

  it("closes the failed task's to-be-closed variables", function()
    local log = {}
    csock.run(function()
      local t = csock.spawn(function()
        local _ <close> = closer(log, "closed")
        csock.sleep(0)
        error("boom", 0)
      end)
      t:join()
    end)
    assert.same({"closed"}, log)
  end)

  it("closes the failed task's sockets declared <close>", function()
    local a, b = csock.socketpair()
    csock.run(function()
      local t = csock.spawn(function()
        local _ <close> = a
        csock.sleep(0)
        error("boom", 0)
      end)
      t:join()
    end)
    assert.matches("closed", tostring(a))
    assert.equal("", b:recv(10)) -- the peer sees end of stream
    b:close()
  end)
end)

describe("task handles", function()
  it("join returns true and the task's results", function()
    local r = table.pack(csock.run(function()
      local t = csock.spawn(function() csock.sleep(0.01) return 1, nil, "x" end)
      return t:join()
    end))
    assert.same({true, 1, nil, "x", n = 4}, r)
  end)

  it("join of a task that already ended returns at once", function()
    local r = table.pack(csock.run(function()
      local t = csock.spawn(function() return "quick" end)
      csock.sleep(0.02)
      assert.equal("done", t:status())
      return t:join()
    end))
    assert.same({true, "quick", n = 2}, r)
  end)

  it("join returns false and the error of a failed task", function()
    local ok, err = csock.run(function()
      return csock.spawn(function() error({code = 7}) end):join()
    end)
    assert.is_false(ok)
    assert.same({code = 7}, err)
  end)

  it("cancel ends a sleeping task; join gives false, 'cancelled'", function()
    local log = {}
    local r = table.pack(csock.run(function()
      local t = csock.spawn(function()
        csock.sleep(30)
        log[#log + 1] = "woke"
      end)
      csock.sleep(0.01)
      t:cancel()
      local ok, err = t:join()
      return ok, err, t:status()
    end))
    assert.same({false, "cancelled", "cancelled", n = 3}, r)
    assert.same({}, log)
  end)

  it("cancel closes the task's to-be-closed variables", function()
    local log = {}
    csock.run(function()
      local t = csock.spawn(function()
        local _ <close> = closer(log, "closed")
        csock.sleep(30)
      end)
      csock.sleep(0.01)
      t:cancel()
      t:join()
      log[#log + 1] = "joined"
    end)
    assert.same({"closed", "joined"}, log)
  end)

  it("cancel wakes a task blocked on a socket, leaving the socket usable", function()
    local a, b = csock.socketpair()
    local r = table.pack(csock.run(function()
      local t = csock.spawn(function() return a:recv(10) end)
      csock.sleep(0.01)
      t:cancel()
      local ok, err = t:join()
      b:send("after")
      return ok, err, a:recv(10)
    end))
    a:close()
    b:close()
    assert.same({false, "cancelled", "after", n = 3}, r)
  end)

  it("cancel before the task's first wait point keeps it from going past it", function()
    local ran = false
    local r = table.pack(csock.run(function()
      local t = csock.spawn(function()
        csock.sleep(0)
        ran = true
      end)
      t:cancel()
      return t:join()
    end))
    assert.is_false(r[1])
    assert.equal("cancelled", r[2])
    assert.is_false(ran)
  end)

  it("cancel of a task that has ended changes nothing", function()
    local r = table.pack(csock.run(function()
      local t = csock.spawn(function() return "kept" end)
      csock.sleep(0.01)
      t:cancel()
      return t:status(), t:join()
    end))
    assert.same({"done", true, "kept", n = 3}, r)
  end)

  it("status tells running, waiting, done, failed and cancelled apart", function()
    local seen = csock.run(function()
      local seen = {}
      local self
      self = csock.spawn(function()
        csock.sleep(0) -- `self` is assigned by now, however eagerly spawn starts the task
        seen.self = self:status()
        csock.sleep(0.05)
      end)
      local bad = csock.spawn(function() error("x") end)
      local good = csock.spawn(function() end)
      local victim = csock.spawn(function() csock.sleep(30) end)
      csock.sleep(0.01)
      seen.sleeping = self:status()
      victim:cancel()
      self:join()
      bad:join()
      good:join()
      victim:join()
      seen.done, seen.failed, seen.cancelled = good:status(), bad:status(), victim:status()
      return seen
    end)
    assert.same({self = "running", sleeping = "waiting", done = "done", failed = "failed",
      cancelled = "cancelled"}, seen)
  end)

  it("name sets and gets a name", function()
    local r = table.pack(csock.run(function()
      local t = csock.spawn(function() csock.sleep(0.01) end)
      local ret = t:name("worker")
      return ret, t:name()
    end))
    assert.equal("worker", r[2])
  end)

  it("a task can join another task that is waiting on a socket", function()
    local a, b = csock.socketpair()
    local r = table.pack(csock.run(function()
      local reader = csock.spawn(function() return a:read("l") end)
      csock.spawn(function()
        csock.sleep(0.02)
        b:write("line\n")
      end)
      return reader:join()
    end))
    a:close()
    b:close()
    assert.same({true, "line", n = 2}, r)
  end)
end)

describe("task lifetime", function()
  it("a task whose handle was dropped still runs to its end across collections", function()
    local done = csock.run(function()
      local done = false
      csock.spawn(function()
        csock.sleep(0.05)
        collectgarbage()
        done = true
      end)
      for _ = 1, 5 do
        collectgarbage()
        csock.sleep(0.02)
      end
      return done
    end)
    assert.is_true(done)
  end)

  it("a task may cancel itself; it ends at its next wait point", function()
    local log = {}
    local r = table.pack(csock.run(function()
      local t
      t = csock.spawn(function()
        csock.sleep(0)
        t:cancel()
        log[#log + 1] = "before the wait"
        csock.sleep(0)
        log[#log + 1] = "after the wait"
      end)
      return t:join()
    end))
    assert.same({false, "cancelled", n = 2}, r)
    assert.same({"before the wait"}, log)
  end)

  it("a task cannot join itself", function()
    local ok, err = csock.run(function()
      local t
      t = csock.spawn(function()
        csock.sleep(0)
        return pcall(t.join, t)
      end)
      return select(2, t:join())
    end)
    assert.is_false(ok)
    assert.matches("itself", err)
  end)

  it("several tasks can join the same task and all get its results", function()
    local r = table.pack(csock.run(function()
      local t = csock.spawn(function() csock.sleep(0.02) return 7 end)
      local j1 = csock.spawn(function() return t:join() end)
      local j2 = csock.spawn(function() return t:join() end)
      return select(3, j1:join()), select(3, j2:join())
    end))
    assert.same({7, 7, n = 2}, r)
  end)

  it("cancelling a task that waits in join leaves the joined task running", function()
    local r = table.pack(csock.run(function()
      local long = csock.spawn(function() csock.sleep(0.05) return "long" end)
      local joiner = csock.spawn(function() return long:join() end)
      csock.sleep(0.01)
      joiner:cancel()
      local jok, jerr = joiner:join()
      return jok, jerr, long:join()
    end))
    assert.same({false, "cancelled", true, "long", n = 4}, r)
  end)

  it("a to-be-closed handler run by cancel may itself wait", function()
    local r = table.pack(csock.run(function()
      local log = {}
      local t = csock.spawn(function()
        local _ <close> = setmetatable({}, {__close = function()
          csock.sleep(0.01)
          log[#log + 1] = "closed after a wait"
        end})
        csock.sleep(30)
      end)
      csock.sleep(0.01)
      t:cancel()
      local ok, err = t:join()
      return ok, err, log[1]
    end))
    assert.same({false, "cancelled", "closed after a wait", n = 3}, r)
  end)

  -- csock reuses the threads of tasks that returned; nothing of one task may reach the next.
  it("a task that returned leaves a dead coroutine and nothing behind for the next task", function()
    local r = table.pack(csock.run(function()
      local first_co, hooked
      local first = csock.spawn(function()
        first_co = coroutine.running()
        debug.sethook(function() hooked = true end, "r") -- left set when the task returns
        return "first"
      end)
      first:join()
      hooked = false
      local second = csock.spawn(function(...)
        local locals = select("#", ...)
        csock.sleep(0)
        return locals, debug.gethook(), coroutine.status(first_co)
      end)
      local _, nargs, hook, status = second:join()
      return nargs, hook, status, hooked, select(2, first:join())
    end))
    assert.same({0, nil, "dead", false, "first", n = 5}, r)
  end)

  it("a thousand short tasks in turn each get only their own arguments", function()
    local bad = csock.run(function()
      local wrong = 0
      for i = 1, 1000 do
        local t = csock.spawn(function(n, ...)
          local extra = select("#", ...)
          csock.sleep(0)
          return n == i and extra == 0 and coroutine.status(coroutine.running()) == "running"
        end, i)
        if not select(2, t:join()) then wrong = wrong + 1 end
      end
      return wrong
    end)
    assert.equal(0, bad)
  end)
end)

describe("rt.loop (the specs' own watchdog)", function()
  it("cancels a hung task and reports the timeout", function()
    local started = csock.now()
    local ok, err = pcall(rt.loop, function() csock.sleep(30) end, 0.1)
    assert.is_false(ok)
    assert.matches("timed out", err)
    assert.is_true(csock.now() - started < 5)
  end)
end)
