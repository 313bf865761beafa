-- The read buffer and the read under way (issue 17): the buffer's bookkeeping lives in its
-- block, which grows, compacts and goes back to the pool, and a socket no longer points at
-- the task reading it, so a close finds that task by itself.
local csock = require "csock"
local rt = require "support.rt"

-- A connected pair, closed when the test ends.
local function pair()
  local a, b = assert(csock.socketpair())
  finally(function()
    a:close()
    b:close()
  end)
  return a, b
end

describe("the read buffer", function()
  it("keeps a line longer than its first block, then the short lines after it", function()
    local a, b = pair()
    a:setmaxline(200000)
    local long = ("x"):rep(100000)
    local got = rt.loop(function(go)
      go(function() assert(b:write(long, "\nshort\n", "tail")) end)
      local first, second = a:read("l", "l")
      local third = a:read(4)
      return { #first, first == long, second, third }
    end)
    assert.are.same({ 100000, true, "short", "tail" }, got)
  end)

  it("moves what is left to the front of its block when a count needs the room", function()
    local a, b = pair()
    local got = rt.loop(function()
      assert(b:write(("a"):rep(10000), "\n", ("b"):rep(9000)))
      local line = a:read("l") -- leaves 9,000 bytes near the block's end
      assert(b:write(("c"):rep(9000)))
      local rest = a:read(18000) -- more than the block holds past them
      return { #line, rest == ("b"):rep(9000) .. ("c"):rep(9000) }
    end)
    assert.are.same({ 10000, true }, got)
  end)

  it("gives every byte back to the next read after a read that timed out part-way", function()
    local a, b = pair()
    a:settimeout(0.05)
    local got = rt.loop(function()
      assert(b:write("partial"))
      local r1 = table.pack(a:read("l"))
      assert(b:write(" line\n"))
      return { r1[1], r1[2], r1[3] == csock.ETIMEDOUT, a:read("l") }
    end)
    assert.are.same({ nil, "timeout", true, "partial line" }, got)
  end)

  it("shows the bytes read('n') left to csock.pending and recv", function()
    local a, b = pair()
    local got = rt.loop(function()
      assert(b:write("42 rest"))
      local n = a:read("n")
      return { n, csock.pending(a), a:recv(10) }
    end)
    assert.are.same({ 42, 5, " rest" }, got)
  end)
end)

describe("a read whose socket closes", function()
  it("fails with 'socket closed' when closed by a task that runs first after its wake-up", function()
    local a, b = pair()
    local c, d = pair()
    local got = rt.loop(function(go)
      local res
      -- the reader waits on a; the closer waits on c and closes a when woken
      local reader = go(function() res = table.pack(a:read("l")) end)
      go(function() assert(c:recv(1)); a:close() end)
      csock.sleep(0.02)
      -- both become readable before the loop polls: c first, so the closer runs
      -- while the reader is woken and queued but has not run yet
      assert(d:write("x"))
      assert(b:write("line\n"))
      reader:join()
      return { res[1], res[2], res[3] == csock.EBADF }
    end)
    assert.are.same({ nil, "socket closed", true }, got)
  end)

  it("leaves a socket read by another task free for that task's next read", function()
    local a, b = pair()
    local got = rt.loop(function(go)
      local t = go(function() return a:read("l") end)
      csock.sleep(0.02)
      t:cancel()
      t:join()
      assert(b:write("after\n"))
      local first = a:read("l")
      assert(b:write("again\n"))
      return { first, a:read("l") }
    end)
    assert.are.same({ "after", "again" }, got)
  end)
end)

describe("an operation's deadline", function()
  -- A socket keeps no deadline: a continuation finds its operation's where the last wait left it.
  local helper = require "helper"

  it("holds across the pause accept makes when descriptors run out", function()
    local child = helper.spawn("ulimit -n 64; " .. helper.lua_cmd([[
      local csock = require "csock"
      local srv = assert(csock.socket("inet", "stream"))
      assert(srv:bind("127.0.0.1", 0))
      assert(srv:listen())
      local cli = assert(csock.socket("inet", "stream"))
      assert(cli:connect("127.0.0.1", srv:getsockname().port))
      srv:settimeout(0.4)
      csock.run(function()
        local keep = {} -- every descriptor the loop left
        while true do
          local s = csock.socket("inet", "stream")
          if not s then break end
          keep[#keep + 1] = s
        end
        local t = csock.spawn(function()
          local t0 = csock.now()
          local r = table.pack(srv:accept()) -- EMFILE: pauses, then finds the queue empty
          return csock.now() - t0, r[1], r[2], r[3] == csock.ETIMEDOUT
        end)
        csock.sleep(0.01)
        table.remove(keep):close()
        local c = assert(srv:accept()) -- takes the connection while the first accept pauses
        c:close()
        local _, waited, a, msg, timedout = t:join()
        print(waited > 0.3, waited < 2, a, msg, timedout)
      end)
    ]]))
    local ok, _, out, err = child:wait()
    assert.is_true(ok, err)
    assert.are.equal("true\ttrue\tnil\ttimeout\ttrue\n", out)
  end)

  it("holds across the waits of a write that goes out in parts", function()
    local a, b = pair()
    a:settimeout(0.3)
    local got = rt.loop(function(go)
      go(function()
        -- the reader takes a little at a time, so the write waits several times
        for _ = 1, 3 do
          csock.sleep(0.05)
          assert(b:recv(65536))
        end
      end)
      local t0 = csock.now()
      local r = table.pack(a:write(("x"):rep(8 * 1024 * 1024)))
      local waited = csock.now() - t0
      return { r[1], r[2], r[3] == csock.ETIMEDOUT, waited > 0.25, waited < 1 }
    end)
    assert.are.same({ nil, "timeout", true, true, true }, got)
  end)
end)
