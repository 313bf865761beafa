-- spec/support/rt.lua's rt.loop: a helper task that fails fails the spec (issue 15).
local csock = require "csock"
local rt = require "support.rt"

describe("rt.loop", function()
  it("raises the error of a task started by go() that failed", function()
    local id
    local ok, err = pcall(rt.loop, function(go)
      id = go(function() error("helper broke", 0) end):id()
      csock.sleep(0.01)
    end)
    assert.is_false(ok)
    assert.equal(string.format("rt.loop: task %d failed: helper broke", id), err)
  end)

  it("raises the error of a task started by csock.spawn that failed on an assert", function()
    local id
    local line = debug.getinfo(1, "l").currentline + 3
    local ok, err = pcall(rt.loop, function()
      id = csock.spawn(function()
        assert(1 == 2, "one is not two")
      end):id()
      csock.sleep(0.01)
    end)
    assert.is_false(ok)
    assert.equal(string.format("rt.loop: task %d failed: spec/rt_helper_spec.lua:%d: one is not two", id, line), err)
  end)

  it("raises the main function's own error before a helper's", function()
    local ok, err = pcall(rt.loop, function(go)
      go(function() error("helper broke", 0) end)
      csock.sleep(0.01)
      error("main broke", 0)
    end)
    assert.is_false(ok)
    assert.equal("main broke", err)
  end)

  it("returns fn's results when every helper task ended well or was cancelled", function()
    local r = table.pack(rt.loop(function(go)
      local t = go(function() return "fine" end)
      go(function() csock.sleep(5) end) -- cancelled when fn ends
      local sleeper = csock.spawn(function() csock.sleep(5) end)
      csock.sleep(0.01)
      sleeper:cancel()
      return select(2, t:join()), nil, 3
    end))
    assert.same({"fine", nil, 3, n = 3}, r)
  end)

  -- The wrapper's frame stands between the caller and spawn: the position in a message
  -- spawn raises points into rt.lua, the rest reads the same.
  it("puts csock.spawn back, and spawn's errors name 'spawn' inside it too", function()
    local spawn = csock.spawn
    local function bad_spawn() return select(2, pcall(function() csock.spawn("nope") end)) end
    local inside = rt.loop(bad_spawn)
    assert.equal(spawn, csock.spawn)
    local plain = csock.run(bad_spawn)
    local unplaced = "bad argument #1 to 'spawn' (function expected, got string)"
    assert.equal(unplaced, (inside:gsub("^[^:]+:%d+: ", "")))
    assert.equal(unplaced, (plain:gsub("^[^:]+:%d+: ", "")))
  end)
end)
