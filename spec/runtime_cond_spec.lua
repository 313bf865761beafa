-- csock.cond(): tasks wait on a condition until another task signals it (docs/runtime.md
-- "Conditions").  No mutex goes with it: tasks never run at the same time.
local csock = require "csock"
local rt = require "support.rt"

describe("csock.cond()", function()
  it("suspends a waiting task until signal() wakes it, the longest waiting first", function()
    local log = rt.loop(function(go)
      local c = csock.cond()
      local log = {}
      for i = 1, 3 do
        go(function()
          assert.is_true(c:wait())
          log[#log + 1] = i
        end)
      end
      csock.sleep(0) -- all three wait now
      assert.matches("^csock cond 0x%x+ %(3 waiting%)$", tostring(c))
      assert.matches("cond " .. tostring(c):match("0x%x+"), csock.dump(), 1, true)
      assert.is_true(c:signal())
      csock.sleep(0)
      assert.same({1}, log)
      assert.is_true(c:signal())
      assert.is_true(c:signal())
      csock.sleep(0)
      return log
    end)
    assert.same({1, 2, 3}, log)
  end)

  it("broadcast() wakes every waiter, oldest first, and says how many", function()
    local woken, log = rt.loop(function(go)
      local c = csock.cond()
      local log = {}
      for i = 1, 4 do
        go(function()
          c:wait()
          log[#log + 1] = i
        end)
      end
      csock.sleep(0)
      local n = c:broadcast()
      csock.sleep(0)
      return n, log
    end)
    assert.equal(4, woken)
    assert.same({1, 2, 3, 4}, log)
  end)

  it("loses a signal nobody waits for (signal() is false, broadcast() is 0)", function()
    local signalled, broadcast, got = rt.loop(function(go)
      local c = csock.cond()
      local s, b = c:signal(), c:broadcast()
      local t = go(function() return c:wait(0.05) end)
      return s, b, table.pack(select(2, t:join()))
    end)
    assert.is_false(signalled)
    assert.equal(0, broadcast)
    assert.same({n = 3, nil, "timeout", csock.ETIMEDOUT}, got)
  end)

  it("wait(timeout) gives nil, 'timeout', ETIMEDOUT; wait(0) gives it at once", function()
    local late, now = rt.loop(function()
      local c = csock.cond()
      local t0 = csock.now()
      assert.same({nil, "timeout", csock.ETIMEDOUT}, {c:wait(0.05)})
      local late = csock.now() - t0
      t0 = csock.now()
      assert.same({nil, "timeout", csock.ETIMEDOUT}, {c:wait(0)})
      return late, csock.now() - t0
    end)
    assert.is_true(late >= 0.05)
    assert.is_true(now < 0.05)
  end)

  it("a signal before the timeout wins, and the timer is gone with it", function()
    local got = rt.loop(function(go)
      local c = csock.cond()
      local t = go(function() return c:wait(0.5) end)
      csock.sleep(0.01)
      c:signal()
      local ok, first = t:join()
      assert.is_true(ok)
      csock.sleep(0.6) -- past the old deadline: nothing fires for the finished wait
      return first
    end)
    assert.is_true(got)
  end)

  it("a cancelled waiter leaves the condition at once", function()
    local status, after, signalled = rt.loop(function(go)
      local c = csock.cond()
      local closed = false
      local t = go(function()
        local _ <close> = setmetatable({}, {__close = function() closed = true end})
        c:wait()
      end)
      csock.sleep(0)
      t:cancel()
      csock.sleep(0)
      assert.is_true(closed)
      return t:status(), tostring(c), c:signal()
    end)
    assert.equal("cancelled", status)
    assert.matches("^csock cond 0x%x+ %(0 waiting%)$", after)
    assert.is_false(signalled)
  end)

  it("waits inside a coroutine the task resumed (coroutine.wrap)", function()
    local got = rt.loop(function(go)
      local c = csock.cond()
      local gen = coroutine.wrap(function()
        c:wait()
        coroutine.yield("after the signal")
      end)
      go(function()
        csock.sleep(0.01)
        c:signal()
      end)
      return gen()
    end)
    assert.equal("after the signal", got)
  end)

  it("hands lines from a reader task to writer tasks (server and client roles)", function()
    local received = rt.loop(function(go)
      local server <close> = rt.listener()
      local port = server:getsockname().port
      local queue, ready, done = {}, csock.cond(), false
      -- server role: one connection feeds lines, two others get each of them
      go(function()
        local feeder <close> = assert(server:accept())
        for _ = 1, 2 do
          local out = assert(server:accept())
          go(function()
            local c <close> = out
            local sent = 0
            while true do
              while sent < #queue do
                sent = sent + 1
                c:write(queue[sent], "\n")
              end
              if done then return end
              ready:wait()
            end
          end)
        end
        for line in feeder:lines() do
          queue[#queue + 1] = line
          ready:broadcast()
        end
        done = true
        ready:broadcast()
      end)
      -- client role
      local feeder <close> = assert(csock.tcp_connect("127.0.0.1", port, 5))
      local outs = {}
      for i = 1, 2 do
        outs[i] = assert(csock.tcp_connect("127.0.0.1", port, 5))
        outs[i]:settimeout(5)
      end
      csock.sleep(0.05) -- both writers are waiting
      feeder:write("one\ntwo\n")
      csock.sleep(0.02)
      feeder:write("three\n")
      feeder:close()
      local received = {}
      for i = 1, 2 do
        received[i] = outs[i]:read("a")
        outs[i]:close()
      end
      return received
    end)
    assert.same({"one\ntwo\nthree\n", "one\ntwo\nthree\n"}, received)
  end)

  it("raises when waited on outside a task, and on bad arguments naming the method", function()
    local c = csock.cond()
    assert.has_error(function() c:wait() end, "wait: must be called from a task")
    assert.has_error(function() c:wait(-1) end, "bad argument #2 to 'wait' (timeout must not be negative)")
    assert.has_error(function() c.signal({}) end, "bad argument #1 to 'signal' (csock.cond expected, got table)")
    assert.has_error(function() c.wait(io.stdout) end, "bad argument #1 to 'wait' (csock.cond expected, got FILE*)")
  end)

  it("ends csock.run with a deadlock error when only waiters are left", function()
    assert.has_error(function()
      csock.run(function() csock.cond():wait() end)
    end, "csock.run: deadlock (every task waits for another task or a condition)")
  end)
end)
