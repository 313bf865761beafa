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
