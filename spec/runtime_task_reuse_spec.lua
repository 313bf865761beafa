-- Tasks run on coroutines that finished tasks leave behind (loop.c, co_take / co_put):
-- none of that may show through the tasks' behaviour.
local csock = require "csock"

-- Runs n tasks one after another, each fn(i), and returns the join results of each.
local function run_in_turn(n, fn)
  return csock.run(function()
    local got = {}
    for i = 1, n do got[i] = table.pack(csock.spawn(fn, i):join()) end
    return got
  end)
end

describe("a task on a reused coroutine", function()
  it("gets exactly its own arguments and returns its own results", function()
    local got = run_in_turn(50, function(i) return i, select("#", i), nil end)
    for i = 1, 50 do assert.same({true, i, 1, nil, n = 4}, got[i]) end
  end)

  it("starts with no frames of the task before it", function()
    local got = run_in_turn(20, function()
      local depth = 0
      while debug.getinfo(depth + 1, "l") do depth = depth + 1 end
      return depth
    end)
    for i = 2, 20 do assert.equal(got[1][2], got[i][2]) end
  end)

  it("closes its to-be-closed variables when it returns", function()
    local log = {}
    run_in_turn(10, function(i)
      local _ <close> = setmetatable({}, {__close = function() log[#log + 1] = i end})
    end)
    assert.same({1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, log)
  end)

  it("does not inherit a hook the task before it set on itself", function()
    local got = run_in_turn(4, function(i)
      local before = debug.gethook()
      if i == 1 then debug.sethook(function() end, "c") end
      return before == nil
    end)
    for i = 1, 4 do assert.same({true, true, n = 2}, got[i]) end
  end)
end)

describe("coroutine.running in a task", function()
  it("returns the task's coroutine, not the main one", function()
    local got = table.pack(csock.run(function()
      local _, me, main, status2 = csock.spawn(function()
        local c, m = coroutine.running()
        return c, m, coroutine.status(c)
      end):join()
      return type(me), main, status2
    end))
    assert.same({"thread", false, "running", n = 3}, got)
  end)

  it("hands out a coroutine that stays dead once its task has ended", function()
    local statuses = csock.run(function()
      local _, held = csock.spawn(function() return (coroutine.running()) end):join()
      local seen = {}
      for i = 1, 30 do
        seen[i] = select(2, csock.spawn(function() return coroutine.status(held) end):join())
      end
      seen[#seen + 1] = coroutine.status(held)
      return seen
    end)
    assert.equal(31, #statuses)
    for _, s in ipairs(statuses) do assert.equal("dead", s) end
  end)

  it("still refuses to resume or close another live task's coroutine", function()
    local got = table.pack(csock.run(function()
      for _ = 1, 5 do csock.spawn(function() end):join() end -- fill the pool
      local cond = csock.cond()
      local co
      local t = csock.spawn(function()
        co = coroutine.running()
        cond:wait()
      end)
      csock.sleep(0)
      local r1 = table.pack(coroutine.resume(co))
      local r2 = table.pack(pcall(coroutine.close, co))
      cond:signal()
      t:join()
      return r1[1], r1[2], r2[1], r2[2]
    end))
    assert.same({false, "cannot resume non-suspended coroutine", false,
      "cannot close a running coroutine", n = 4}, got)
  end)
end)

describe("a task that waited inside a coroutine of its own", function()
  it("returns its results to join afterwards", function()
    local got = table.pack(csock.run(function()
      local t = csock.spawn(function()
        local step = coroutine.wrap(function()
          csock.sleep(0.001)
          return "woke"
        end)
        return step(), "done"
      end)
      return t:join()
    end))
    assert.same({true, "woke", "done", n = 3}, got)
  end)

  it("fails with its own error for join", function()
    local got = table.pack(csock.run(function()
      local t = csock.spawn(function()
        coroutine.wrap(function() csock.sleep(0.001) end)()
        error({code = 7})
      end)
      local ok, err = t:join()
      return ok, type(err), err.code
    end))
    assert.same({false, "table", 7, n = 3}, got)
  end)
end)
