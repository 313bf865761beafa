-- Time in the runtime: csock.sleep and csock.now (SPEC "Module functions", "Runtime", "Details").
-- Bounds are generous (50 ms) so a loaded machine does not fail them; the order is exact.
local csock = require "csock"
local rt = require "support.rt"

local SLACK = 0.5 -- late wake-ups are measured by make bench; here only gross errors fail

describe("csock.now", function()
  it("is a float number of seconds that never goes back", function()
    local t0 = csock.now()
    assert.equal("float", math.type(t0))
    local prev = t0
    for _ = 1, 10000 do
      local t = csock.now()
      assert.is_true(t >= prev)
      prev = t
    end
  end)

  it("advances with real time", function()
    local t0, c0 = csock.now(), os.time()
    csock.sleep(0.2)
    local dt = csock.now() - t0
    assert.is_true(dt >= 0.19 and dt < 0.2 + SLACK * 4, "elapsed " .. dt)
    assert.is_true(os.time() - c0 <= 1)
  end)
end)

describe("csock.sleep outside the loop", function()
  it("blocks the thread for the time asked", function()
    local t0 = csock.now()
    csock.sleep(0.1)
    local dt = csock.now() - t0
    assert.is_true(dt >= 0.099 and dt < 0.1 + SLACK, "slept " .. dt)
  end)

  it("returns at once for 0", function()
    local t0 = csock.now()
    csock.sleep(0)
    assert.is_true(csock.now() - t0 < SLACK)
  end)

  it("rejects a non-number argument", function()
    assert.has_error(function() csock.sleep("soon") end, "bad argument #1 to 'sleep' (number expected, got string)")
  end)
end)

describe("csock.sleep in a task", function()
  it("wakes tasks in deadline order, not spawn order", function()
    local log = rt.loop(function()
      local log = {}
      local ts = {}
      for _, d in ipairs({0.05, 0.01, 0.04, 0.02, 0.03}) do
        ts[#ts + 1] = csock.spawn(function()
          csock.sleep(d)
          log[#log + 1] = d
        end)
      end
      for _, t in ipairs(ts) do t:join() end
      return log
    end)
    assert.same({0.01, 0.02, 0.03, 0.04, 0.05}, log)
  end)

  it("wakes tasks with equal delays in the order they went to sleep", function()
    local log = rt.loop(function()
      local log = {}
      local ts = {}
      for i = 1, 20 do
        ts[i] = csock.spawn(function()
          csock.sleep(0.02)
          log[#log + 1] = i
        end)
      end
      for _, t in ipairs(ts) do t:join() end
      return log
    end)
    local want = {}
    for i = 1, 20 do want[i] = i end
    assert.same(want, log)
  end)

  it("wakes after the deadline, never before it (how soon: make bench)", function()
    local lateness = rt.loop(function()
      local res = {}
      local ts = {}
      for i, d in ipairs({0.01, 0.05, 0.1, 0.2}) do
        ts[i] = csock.spawn(function()
          local t0 = csock.now()
          csock.sleep(d)
          res[i] = csock.now() - t0 - d
        end)
      end
      for _, t in ipairs(ts) do t:join() end
      return res
    end)
    for i, late in ipairs(lateness) do
      assert.is_true(late >= -0.001 and late < SLACK, ("sleeper %d off by %.4f s"):format(i, late))
    end
  end)

  it("suspends only its task: sleepers overlap", function()
    local elapsed = rt.loop(function()
      local t0 = csock.now()
      local ts = {}
      for i = 1, 100 do ts[i] = csock.spawn(csock.sleep, 0.1) end
      for _, t in ipairs(ts) do t:join() end
      return csock.now() - t0
    end)
    assert.is_true(elapsed >= 0.099 and elapsed < 0.1 + SLACK * 2, "100 sleeps took " .. elapsed)
  end)

  it("wakes in time while other tasks keep the loop busy", function()
    local a, b = csock.socketpair()
    local late = rt.loop(function(go)
      -- 200 tasks that are always ready, and a socket ping-pong between two more
      for _ = 1, 200 do
        go(function()
          while true do csock.sleep(0) end
        end)
      end
      go(function()
        while true do
          a:send("x")
          a:recv(1)
        end
      end)
      go(function()
        while true do b:send(b:recv(1)) end
      end)
      local worst = 0
      for _, d in ipairs({0.02, 0.05, 0.1}) do
        local t0 = csock.now()
        csock.sleep(d)
        worst = math.max(worst, csock.now() - t0 - d)
      end
      return worst -- rt.loop cancels the busy tasks
    end)
    a:close()
    b:close()
    assert.is_true(late < SLACK, ("woke %.4f s late under load"):format(late))
  end)

  it("sleep(0) lets every other ready task run before it returns", function()
    local log = rt.loop(function()
      local log = {}
      for i = 1, 5 do
        csock.spawn(function() log[#log + 1] = "task" .. i end)
      end
      csock.sleep(0)
      log[#log + 1] = "main"
      return log
    end)
    assert.equal(6, #log)
    assert.equal("main", log[6])
  end)

  it("sleep(0) takes turns between tasks that are both ready", function()
    local log = rt.loop(function()
      local log = {}
      local function turn(name)
        for _ = 1, 5 do
          log[#log + 1] = name
          csock.sleep(0)
        end
      end
      local a, b = csock.spawn(turn, "a"), csock.spawn(turn, "b")
      a:join()
      b:join()
      return log
    end)
    assert.equal(10, #log)
    for i = 2, #log do
      assert.are_not.equal(log[i - 1], log[i], "no task went twice in a row: " .. table.concat(log, " "))
    end
  end)

  it("sleep(0) does not wait for the clock", function()
    local elapsed = rt.loop(function()
      local t0 = csock.now()
      for _ = 1, 1000 do csock.sleep(0) end
      return csock.now() - t0
    end)
    assert.is_true(elapsed < 5, "1000 sleep(0) took " .. elapsed)
  end)
end)
