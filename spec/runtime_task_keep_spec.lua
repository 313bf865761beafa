-- What a task handle keeps -- its results, its error, its name -- outlives a collection
-- and the task, and a handle nobody holds is collected with all of it (loop.c, task.c).
local csock = require "csock"

describe("csock.run's results", function()
  it("survive collections made by tasks that outlive the main task", function()
    local a, b = csock.run(function()
      csock.spawn(function()
        for _ = 1, 3 do
          csock.sleep(0)
          collectgarbage()
        end
      end)
      return "first", {"second"}
    end)
    assert.equal("first", a)
    assert.same({"second"}, b)
  end)
end)

describe("a task handle", function()
  it("keeps its results and its name through collections after the task ended", function()
    local got = csock.run(function()
      local t = csock.spawn(function() return 1, nil, "three" end)
      t:name("worker")
      t:join()
      collectgarbage()
      collectgarbage()
      return {t:name(), tostring(t), table.pack(t:join())}
    end)
    assert.same({"worker", "csock task 2 (worker, done)", {true, 1, nil, "three", n = 4}}, got)
  end)

  it("keeps a failed task's error through collections", function()
    local got = csock.run(function()
      local t = csock.spawn(function() error({code = 7}) end)
      csock.sleep(0)
      collectgarbage()
      local ok, err = t:join()
      return {ok, err.code, t:status()}
    end)
    assert.same({false, 7, "failed"}, got)
  end)

  it("is collected with its results and name once nothing holds it", function()
    local weak = setmetatable({}, {__mode = "v"})
    csock.run(function()
      for i = 1, 3 do
        local t = csock.spawn(function() return {i} end)
        t:name("t" .. i)
        t:join()
        weak[i] = t
      end
      csock.sleep(0)
    end)
    collectgarbage()
    collectgarbage()
    assert.is_nil(next(weak))
  end)

  it("lets a task return its own handle", function()
    local weak = setmetatable({}, {__mode = "v"})
    local ok, same = csock.run(function()
      local t = csock.spawn(function() return csock.current() end)
      local ok, h = t:join()
      weak[1] = t
      return ok, h == t
    end)
    assert.is_true(ok)
    assert.is_true(same)
    collectgarbage()
    collectgarbage()
    assert.is_nil(weak[1])
  end)
end)

describe("a task that waits in a coroutine it resumed", function()
  it("keeps its name and returns its results through collections", function()
    local got = csock.run(function()
      local t = csock.spawn(function()
        local it = coroutine.wrap(function()
          for i = 1, 3 do
            csock.sleep(0)
            collectgarbage()
            coroutine.yield(i)
          end
        end)
        return it() + it() + it(), "done"
      end)
      t:name("nested")
      collectgarbage()
      return {t:name(), table.pack(t:join())}
    end)
    assert.same({"nested", {true, 6, "done", n = 3}}, got)
  end)

  it("closes that coroutine's variables when cancelled, then reports cancelled", function()
    local closed = false
    local got = csock.run(function()
      local t = csock.spawn(function()
        local co = coroutine.wrap(function()
          local _ <close> = setmetatable({}, {__close = function() closed = true end})
          csock.sleep(10)
        end)
        co()
      end)
      csock.sleep(0.01)
      collectgarbage()
      t:cancel()
      return table.pack(t:join())
    end)
    assert.is_true(closed)
    assert.same({false, "cancelled", n = 2}, got)
  end)
end)
