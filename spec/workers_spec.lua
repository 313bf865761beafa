-- Worker processes: `csock -w N` and csock.workers(n) fork N workers that share one port
-- (SO_REUSEPORT), a master that supervises them, and csock.worker() for the worker number.
-- Loopback only; every process started here is stopped by PID in `finally`.
local csock = require "csock"
local helper = require "helper"
local rt = require "support.rt"

-- A free TCP port on 127.0.0.1: bind port 0, read the port the kernel chose, close.
local function free_port()
  local s = assert(csock.socket(csock.AF_INET, csock.SOCK_STREAM))
  assert(s:bind("127.0.0.1", 0))
  local port = s:getsockname().port
  s:close()
  return port
end

-- The text of /proc/<pid>/stat, or nil when the process is gone.
local function proc_stat(pid)
  local f <close> = io.open("/proc/" .. pid .. "/stat")
  return f and f:read("a")
end

-- The parent pid of `pid` (field 4 of /proc/<pid>/stat), or nil when it is gone.
local function ppid(pid)
  local s = proc_stat(pid)
  return s and math.tointeger(tonumber(s:match("%)%s+%S+%s+(%d+)")))
end

-- True while `pid` exists as a running (not zombie) process.
local function alive(pid)
  local s = proc_stat(pid)
  return s ~= nil and s:match("%)%s+(%S+)") ~= "Z"
end

-- True once `pid` has ended, waiting up to 2 s: a process closes its descriptors (which ends
-- the pipe the spec reads) a moment before it stops running.
local function gone(pid)
  for _ = 1, 200 do
    if not alive(pid) then return true end
    csock.sleep(0.01)
  end
  return false
end

-- Sends `sig` to `pid` only while it is still the child of `parent`, so that a recycled pid
-- is never hit.
local function kill_child(pid, parent, sig)
  if pid and parent and ppid(pid) == parent then
    os.execute(string.format("kill -%s %d 2>/dev/null", sig, pid))
  end
end

-- The server each worker runs: binds the fixed port arg[1], prints "ready <worker> <pid>", then
-- answers every connection with "<worker> <pid>\n".
local SERVER = [[
local csock = require "csock"
local port = math.tointeger(tonumber(arg[1]))
local f = assert(io.open("/proc/self/stat"))
local pid = f:read("l"):match("^(%d+)")
f:close()
local server = assert(csock.tcp_listen("127.0.0.1", port))
io.stdout:write("ready ", tostring(csock.worker()), " ", pid, "\n")
io.stdout:flush()
while true do
  local c = server:accept()
  if c then
    c:write(tostring(csock.worker()), " ", pid, "\n")
    c:close()
  end
end
]]

local function parse_ready(line)
  assert.is_string(line, "expected a readiness line")
  local id, pid = line:match("^ready (%S+) (%d+)$")
  assert.is_truthy(id, "bad readiness line: " .. line)
  return id, math.tointeger(tonumber(pid))
end

-- Starts `csock -w n SERVER port` and waits for the n readiness lines.  Returns the process
-- (rt.start's, plus .port, .master and .workers = {[worker number] = pid}); everything is
-- stopped by PID at the end of the test.
local function start_workers(finally, n)
  local port = free_port()
  local script = rt.script(SERVER)
  rt.defer(finally, function() os.remove(script) end)
  local proc = rt.start({rt.BIN, "-w", tostring(n), script, tostring(port)}, {limit = 30})
  proc.port = port
  proc.workers = {}
  rt.defer(finally, function() rt.stop(proc) end)
  rt.defer(finally, function()
    -- Runs before rt.stop: the master first, then any worker it left behind.
    kill_child(proc.master, proc.pid, "TERM")
    for _, pid in pairs(proc.workers) do kill_child(pid, proc.master, "KILL") end
  end)
  local line = proc.line
  for i = 1, n do
    if i > 1 then line = proc.pipe:read("l") end
    local id, pid = parse_ready(line)
    assert.is_nil(proc.workers[id], "worker " .. id .. " started twice")
    proc.workers[id] = pid
    local parent = ppid(pid)
    assert.is_truthy(parent, "worker " .. pid .. " is gone")
    proc.master = proc.master or parent
    assert.equal(proc.master, parent, "the workers have one master")
  end
  assert.equal(proc.pid, ppid(proc.master), "the master is the csock process")
  return proc
end

-- Connects to 127.0.0.1:port up to `max` times, one connection at a time; each answer
-- "<worker> <pid>" goes to seen(id, pid), and the loop stops when it returns true.
-- Returns the number of connections made.
local function ask(port, max, seen)
  return rt.loop(function()
    for i = 1, max do
      local c = assert(csock.tcp_connect("127.0.0.1", port, 2))
      c:settimeout(2)
      local line = assert(c:read("l"))
      c:close()
      local id, pid = line:match("^(%S+) (%d+)$")
      assert.is_truthy(id, "bad answer: " .. line)
      if seen(id, math.tointeger(tonumber(pid))) then return i end
    end
    return max
  end, 20)
end

describe("csock -w 2", function()
  it("runs two workers on one port, and connections reach both", function()
    local proc = start_workers(finally, 2)
    assert.same({"1", "2"}, (function()
      local ids = {}
      for id in pairs(proc.workers) do ids[#ids + 1] = id end
      table.sort(ids)
      return ids
    end)())
    assert.are_not.equal(proc.workers["1"], proc.workers["2"])

    local ids, pids = {}, {}
    ask(proc.port, 200, function(id, pid)
      ids[id] = true
      pids[pid] = id
      return ids["1"] and ids["2"]
    end)
    assert.is_true(ids["1"] and ids["2"] or false, "both workers answered within 200 connections")
    -- Each answering pid is the worker that announced that number.
    for pid, id in pairs(pids) do assert.equal(proc.workers[id], pid) end
    local distinct = 0
    for _ in pairs(pids) do distinct = distinct + 1 end
    assert.equal(2, distinct)
  end)

  it("ends both workers and exits 0 on SIGTERM to the master", function()
    local proc = start_workers(finally, 2)
    local master, w1, w2 = proc.master, proc.workers["1"], proc.workers["2"]
    assert.is_true(alive(w1) and alive(w2))
    assert.is_true(os.execute("kill -TERM " .. master))
    -- Every holder of the stdout pipe (master, workers) has to end for it to reach its end.
    proc.pipe:read("a")
    local _, how, code = proc.pipe:close()
    proc.stopped = true
    local err = proc.errfile and io.open(proc.errfile)
    local text = err and err:read("a") or ""
    if err then err:close() end
    os.remove(proc.errfile)
    assert.equal("exit", how, text)
    assert.equal(0, code, text)
    assert.is_true(gone(w1), "worker 1 is gone")
    assert.is_true(gone(w2), "worker 2 is gone")
    assert.is_true(gone(master), "the master is gone")
  end)

  it("ends the workers when the master is killed with SIGKILL (PR_SET_PDEATHSIG)", function()
    local proc = start_workers(finally, 2)
    local w1, w2 = proc.workers["1"], proc.workers["2"]
    assert.is_true(os.execute("kill -KILL " .. proc.master))
    -- The pipe reaches its end only when the workers, which hold it too, have ended.
    proc.pipe:read("a")
    proc.pipe:close()
    proc.stopped = true
    os.remove(proc.errfile)
    assert.is_true(gone(w1), "worker 1 is gone")
    assert.is_true(gone(w2), "worker 2 is gone")
  end)

  it("restarts a worker killed with SIGKILL under the same number", function()
    local proc = start_workers(finally, 2)
    local old = proc.workers["1"]
    assert.is_true(os.execute("kill -KILL " .. old))
    -- The restarted worker runs the script again and announces itself.
    local id, pid = parse_ready(proc.pipe:read("l"))
    assert.equal("1", id)
    assert.are_not.equal(old, pid)
    assert.equal(proc.master, ppid(pid), "the master restarted it")
    proc.workers["1"] = pid
    assert.is_true(gone(old), "the killed worker is gone")

    local answered
    ask(proc.port, 200, function(wid, wpid)
      assert.are_not.equal(old, wpid, "the killed worker answered")
      if wpid == pid then answered = wid end
      return answered ~= nil
    end)
    assert.equal("1", answered, "the new pid answers as worker 1")
    assert.is_true(alive(proc.workers["2"]), "worker 2 went on")

    local _, err = rt.stop(proc)
    assert.matches("worker 1 %(pid " .. old .. "%) died; restarting it", err)
  end)
end)

describe("csock -w 1", function()
  -- csock.1: "-w 1 runs the script in a single process" -- no master, no worker number.
  it("runs the script in a single process: csock.worker() is nil", function()
    local r = rt.exec({rt.BIN, "-w", "1", "-e",
      "print(require('csock').worker(), os.getenv('CSOCK_WORKER'))"}, {limit = 10})
    assert.equal(0, r.status, r.err)
    assert.equal("nil\tnil\n", r.out)
  end)
end)

describe("csock.worker()", function()
  it("is nil in a plain Lua process", function()
    assert.is_nil(os.getenv("CSOCK_WORKER"), "the suite does not run as a worker")
    assert.is_nil(csock.worker())
    local ok, out, err = helper.run_lua([[print(select("#", require("csock").worker()),
      require("csock").worker())]])
    assert.is_true(ok, err)
    assert.equal("1\tnil\n", out)
  end)

  it("is nil in the host without -w", function()
    local r = rt.exec({rt.BIN, "-e", "print(require('csock').worker())"}, {limit = 10})
    assert.equal(0, r.status, r.err)
    assert.equal("nil\n", r.out)
  end)
end)

describe("csock.workers(n)", function()
  it("returns the worker number in each worker and nil, 0 in the master", function()
    local ok, out, err = helper.run_lua([[
      local csock = require "csock"
      local id, status = csock.workers(2)
      if id then
        print("worker " .. id .. " " .. tostring(csock.worker()) .. " "
          .. tostring(os.getenv("CSOCK_WORKER")))
        return
      end
      print("master " .. tostring(id) .. " " .. tostring(status) .. " "
        .. tostring(csock.worker()))
    ]])
    assert.is_true(ok, err)
    local lines = {}
    for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.equal(3, #lines, out)
    -- The master returns only after every worker has ended, so it prints last.
    assert.equal("master nil 0 nil", lines[3])
    local workers = {lines[1], lines[2]}
    table.sort(workers)
    assert.same({"worker 1 1 1", "worker 2 2 2"}, workers)
  end)

  it("does not restart a worker that exits with status 0", function()
    local ok, out, err = helper.run_lua([[
      local id, status = require("csock").workers(2)
      if id then print("worker " .. id) os.exit(0) end
      print("master " .. tostring(id) .. " " .. tostring(status))
    ]])
    assert.is_true(ok, err)
    local count = select(2, out:gsub("worker %d", ""))
    assert.equal(2, count, out)
    assert.is_nil(err:find("restarting", 1, true), err)
    assert.matches("master nil 0\n$", out)
  end)

  it("gives the master its own handlers back: SIGTERM ends a master that goes on", function()
    local script = rt.script([[
local id = csock.workers(1)
if id then return end -- the worker ends at once
print("master goes on")
io.stdout:flush()
csock.sleep(30)
]])
    local proc = rt.start({rt.BIN, script}, {limit = 20})
    local t0 = csock.now()
    rt.stop(proc) -- SIGTERM (timeout(1) would add SIGKILL 2 s later), then waits for the end
    os.remove(script)
    assert.equal("master goes on", proc.line)
    assert.is_true(csock.now() - t0 < 1.5, "the master outlived SIGTERM")
  end)

  it("gives up on a worker that keeps failing: nil, 1 in the master", function()
    local ok, out, err = helper.run_lua([[
      local id, status = require("csock").workers(1)
      if id then os.exit(3) end
      print("master " .. tostring(id) .. " " .. tostring(status))
    ]])
    assert.is_true(ok, err)
    assert.equal("master nil 1\n", out)
    assert.matches("worker 1 keeps failing", err)
    assert.matches("restarting it", err)
  end)
end)
