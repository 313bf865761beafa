-- The list of live tasks (csock.tasks, csock.dump, cancelling every task) comes from the
-- anchors that keep live tasks' handles: it must hold exactly the live tasks of the loop asked
-- about, newest first, also once ended tasks' slots have been taken by new ones.
local csock = require("csock")
local rt = require("spec.support.rt")

local function ids(list)
  local out = {}
  for i, t in ipairs(list) do out[i] = t:id() end
  return out
end

local function nap() csock.sleep(30) end

describe("csock.tasks()", function()
  it("lists every live task newest first after ended tasks' slots were reused", function()
    local got, want = rt.loop(function()
      local t = {}
      for i = 1, 6 do t[i] = csock.spawn(nap) end
      csock.sleep(0)
      t[2]:cancel(); t[4]:cancel(); t[5]:cancel()
      csock.sleep(0) -- they end: their anchor slots are free again
      local n1, n2 = csock.spawn(nap), csock.spawn(nap)
      local listed, mine, me = {}, {}, csock.current():id()
      for _, id in ipairs(ids(csock.tasks())) do
        -- rt.loop's own tasks (its main one, the watchdog) are older than t[1]
        if id >= t[1]:id() then listed[#listed + 1] = id end
        if id == me then mine[#mine + 1] = id end
      end
      local expect = {n2:id(), n1:id(), t[6]:id(), t[3]:id(), t[1]:id()}
      for _, x in ipairs({n1, n2, t[1], t[3], t[6]}) do x:cancel() end
      return {listed, mine}, {expect, {me}}
    end)
    assert.same(want, got)
  end)

  it("lists only the tasks of the loop that runs, not another loop's of the same state", function()
    local a <close> = csock.loop()
    local b <close> = csock.loop()
    local a1, a2 = a:spawn(nap), a:spawn(nap)
    a:step(0)
    local listed
    local b1 = b:spawn(function()
      local b2 = csock.spawn(nap)
      listed = ids(csock.tasks())
      b2:cancel()
    end)
    b:step(0)
    assert.same({b1:id()}, {listed[2]})
    assert.equal(2, #listed)
    a:step(0)
    assert.equal("waiting", a1:status())
    assert.equal("waiting", a2:status())
  end)
end)

describe("loop:close()", function()
  it("cancels its own live tasks, newest first, and leaves another loop's alone", function()
    local other <close> = csock.loop()
    local o = other:spawn(nap)
    other:step(0)
    local log = {}
    local loop = csock.loop()
    for i = 1, 4 do
      loop:spawn(function()
        local _ <close> = setmetatable({}, {__close = function() log[#log + 1] = i end})
        nap()
      end)
    end
    loop:step(0)
    loop:close()
    assert.same({4, 3, 2, 1}, log)
    assert.equal("waiting", o:status())
  end)
end)

describe("a failed main task", function()
  it("cancels the other live tasks newest first", function()
    local script = rt.script([[
      local csock = require("csock")
      csock.run(function()
        for i = 1, 3 do
          csock.spawn(function()
            local _ <close> = setmetatable({}, {__close = function() io.write(i, " ") end})
            csock.sleep(30)
          end)
        end
        csock.sleep(0)
        error("main fails")
      end)
    ]])
    local r = rt.exec({"lua5.4", script}, {env = rt.ENV})
    assert.equal("3 2 1 ", r.out)
    assert.matches("main fails", r.err, 1, true)
  end)
end)
