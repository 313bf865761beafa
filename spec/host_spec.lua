-- The host executable bin/csock, run as a separate process (SPEC "Host executable", "Details").
local csock = require "csock"
local rt = require "support.rt"
local helper = require "helper"

local BIN = rt.BIN

local function csock_run(args, opts)
  local argv = {BIN}
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  return rt.exec(argv, opts)
end

describe("csock -v", function()
  it("prints csock._VERSION and exits 0", function()
    local r = csock_run({"-v"})
    assert.equal(0, r.status, r.err)
    assert.matches("^csock %d+%.%d+%.%d+", csock._VERSION)
    assert.equal(csock._VERSION, (r.out .. r.err):match("^(.-)%s*$"))
  end)
end)

describe("csock -h", function()
  it("prints a usage text and exits 0", function()
    local r = csock_run({"-h"})
    assert.equal(0, r.status, r.err)
    local text = r.out .. r.err
    assert.matches("usage", text:lower())
    for _, opt in ipairs({"-e", "-l", "-v", "-h"}) do
      assert.is_truthy(text:find(opt, 1, true), "usage mentions " .. opt)
    end
  end)
end)

describe("an unknown option", function()
  it("fails with a message and a nonzero status", function()
    local r = csock_run({"-Z"})
    assert.are_not.equal(0, r.status)
    assert.matches("-Z", r.err)
  end)
end)

describe("csock -e", function()
  it("finds the module in the global csock, the table require returns", function()
    local r = csock_run({"-e", "print(csock._VERSION, csock == require 'csock')"})
    assert.equal(0, r.status, r.err)
    assert.equal(csock._VERSION .. "\ttrue\n", r.out)
  end)

  it("runs a chunk", function()
    local r = csock_run({"-e", "print(1 + 1)"})
    assert.equal(0, r.status, r.err)
    assert.equal("2\n", r.out)
  end)

  it("runs several chunks in order", function()
    local r = csock_run({"-e", "x = 20", "-e", "print(x + 1)"})
    assert.equal(0, r.status, r.err)
    assert.equal("21\n", r.out)
  end)

  it("runs inside the loop: it may spawn and block", function()
    local r = csock_run({"-e", [[
      local csock = require "csock"
      local a, b = csock.socketpair()
      a:settimeout(5)
      csock.spawn(function() csock.sleep(0.02) b:write("from a task\n") end)
      print(a:read("l"))
    ]]})
    assert.equal(0, r.status, r.err)
    assert.equal("from a task\n", r.out)
  end)

  it("exits 1 with 'csock: ' and the message when the chunk raises", function()
    local r = csock_run({"-e", "error('bad chunk')"})
    assert.equal(1, r.status)
    assert.matches("^csock: ", r.err)
    assert.matches("bad chunk", r.err)
  end)

  it("shows the __tostring of an error object", function()
    local r = csock_run({"-e", "error(setmetatable({}, {__tostring = function() return 'custom' end}))"})
    assert.equal(1, r.status)
    assert.matches("^csock: custom", r.err)
  end)

  it("exits 1 on a syntax error", function()
    local r = csock_run({"-e", "this is not lua"})
    assert.equal(1, r.status)
    assert.matches("^csock: ", r.err)
  end)
end)

describe("csock -l", function()
  it("requires a module into a global of another name with g=mod", function()
    local r = csock_run({"-l", "cs=csock", "-e", "print(cs._VERSION)"})
    assert.equal(0, r.status, r.err)
    assert.equal(csock._VERSION .. "\n", r.out)
  end)

  it("requires a module into a global of its name", function()
    local r = csock_run({"-l", "csock", "-e", "print(type(csock.spawn), csock._VERSION)"})
    assert.equal(0, r.status, r.err)
    assert.equal("function\t" .. csock._VERSION .. "\n", r.out)
  end)

  -- Writes module `name` with `source` into a fresh folder; returns the env that finds it.
  local function user_module(name, source)
    local dir = rt.tmppath()
    assert(os.execute("mkdir " .. rt.q(dir)))
    rt.defer(finally, function() os.execute("rm -rf " .. rt.q(dir)) end)
    local f = assert(io.open(dir .. "/" .. name .. ".lua", "w"))
    f:write(source)
    f:close()
    return {env = "LUA_PATH=" .. rt.q(dir .. "/?.lua;./lua/?.lua;./lua/?/init.lua;;")}
  end

  it("loads a user module, which runs inside the loop", function()
    local opts = user_module("spawner", [[
      local csock = require "csock"
      csock.spawn(function() csock.sleep(0.01) print("module task ran") end)
      return {loaded = true}
    ]])
    local r = csock_run({"-l", "spawner", "-e", "print(spawner.loaded)"}, opts)
    assert.equal(0, r.status, r.err)
    assert.equal("true\nmodule task ran\n", r.out)
  end)

  it("runs the module's body in the loop: a wait there lets other tasks run", function()
    local opts = user_module("waiter", [[
      local csock = require "csock"
      csock.spawn(function() print("another task ran") end)
      csock.sleep(0.05) -- suspends this step, not the thread
      print("module body done")
      return {ok = true}
    ]])
    local r = csock_run({"-l", "w=waiter", "-e", "print(w.ok, package.loaded.waiter == w)"}, opts)
    assert.equal(0, r.status, r.err)
    assert.equal("another task ran\nmodule body done\ntrue\ttrue\n", r.out)
  end)

  it("exits 1 when the module is missing", function()
    local r = csock_run({"-l", "no_such_module_here"})
    assert.equal(1, r.status)
    assert.matches("^csock: ", r.err)
    assert.matches("module 'no_such_module_here' not found:", r.err, 1, true)
    assert.matches("no field package.preload['no_such_module_here']", r.err, 1, true)
  end)
end)

describe("a script", function()
  local script
  before_each(function()
    script = rt.script([[
      print(select("#", ...), ...)
      local t = {}
      for i = -3, #arg do t[#t + 1] = i .. "=" .. tostring(arg[i]) end
      print(table.concat(t, " "))
    ]])
  end)
  after_each(function() os.remove(script) end)

  it("gets its arguments in arg and ...", function()
    local r = csock_run({script, "one", "two words"})
    assert.equal(0, r.status, r.err)
    local lines = {}
    for l in r.out:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.equal("2\tone\ttwo words", lines[1])
    assert.equal(("-3=nil -2=nil -1=%s 0=%s 1=one 2=two words"):format(BIN, script), lines[2])
  end)

  it("sees options and the executable at negative indices of arg", function()
    local r = csock_run({"-e", "x=1", script, "a"})
    assert.equal(0, r.status, r.err)
    local second = r.out:match("\n([^\n]+)")
    assert.equal(("-3=%s -2=-e -1=x=1 0=%s 1=a"):format(BIN, script), second)
  end)

  it("runs as the first task: it blocks on sockets and spawns directly", function()
    local s = rt.script([[
      local csock = require "csock"
      local server = csock.socket(csock.AF_INET, csock.SOCK_STREAM)
      assert(server:bind("127.0.0.1", 0))
      assert(server:listen())
      local port = server:getsockname().port
      csock.spawn(function()
        local c = csock.socket(csock.AF_INET, csock.SOCK_STREAM)
        assert(c:connect("127.0.0.1", port))
        assert(c:write("hi from the client task\n"))
        c:close()
      end)
      server:settimeout(5)
      local c = assert(server:accept())
      c:settimeout(5)
      print(c:read("l"))
    ]])
    rt.defer(finally, function() os.remove(s) end)
    local r = csock_run({s})
    assert.equal(0, r.status, r.err)
    assert.equal("hi from the client task\n", r.out)
  end)

  it("ends when its last task ends, not when the script returns", function()
    local s = rt.script([[
      local csock = require "csock"
      csock.spawn(function() csock.sleep(0.1) print("last task") end)
      print("script returns")
    ]])
    rt.defer(finally, function() os.remove(s) end)
    local r = csock_run({s})
    assert.equal(0, r.status, r.err)
    assert.equal("script returns\nlast task\n", r.out)
  end)

  it("exits 1 with 'csock: ' and a traceback on an uncaught error", function()
    local s = rt.script([[
      local function inner() error("script failed") end
      inner()
    ]])
    rt.defer(finally, function() os.remove(s) end)
    local r = csock_run({s})
    assert.equal(1, r.status)
    assert.equal("", r.out)
    assert.matches("^csock: ", r.err)
    assert.matches("script failed", r.err)
    assert.matches("stack traceback", r.err)
  end)

  it("exits 1 at once on an error, with other tasks still sleeping", function()
    local s = rt.script([[
      local csock = require "csock"
      csock.spawn(function() csock.sleep(30) print("never") end)
      csock.sleep(0.01)
      error("main failed")
    ]])
    rt.defer(finally, function() os.remove(s) end)
    local t0 = csock.now()
    local r = csock_run({s}, {limit = 5}) -- status 124 if it waits for the sleeper
    assert.equal(1, r.status)
    assert.is_true(csock.now() - t0 < 5)
    assert.equal("", r.out)
    assert.matches("main failed", r.err)
  end)

  it("exits 0 when only a spawned task fails", function()
    local s = rt.script([[
      local csock = require "csock"
      csock.spawn(function() error("only a task") end)
    ]])
    rt.defer(finally, function() os.remove(s) end)
    local r = csock_run({s})
    assert.equal(0, r.status)
    assert.matches("csock: task", r.err)
    assert.matches("only a task", r.err)
  end)

  it("exits with the status given to os.exit", function()
    local r = csock_run({"-e", "os.exit(3)"})
    assert.equal(3, r.status)
  end)

  it("exits with the status given to os.exit(code, true), which closes the state", function()
    local r = csock_run({"-e", [[
      local t = setmetatable({}, {__gc = function() io.stdout:write("collected\n") end})
      os.exit(4, true)
    ]]})
    assert.equal(4, r.status)
    assert.equal("collected\n", r.out)
  end)

  it("exits 1 with 'csock: ' when the script does not exist", function()
    local r = csock_run({"/nonexistent/script.lua"})
    assert.equal(1, r.status)
    assert.matches("^csock: ", r.err)
    assert.matches("/nonexistent/script.lua", r.err, 1, true)
  end)
end)

describe("warnings", function()
  it("are off by default, as in lua5.4", function()
    local r = csock_run({"-e", "warn('quiet')"})
    assert.equal(0, r.status, r.err)
    assert.equal("", r.err)
  end)

  it("are on with -W and come out whole on stderr", function()
    local r = csock_run({"-W", "-e", "warn('two ', 'pieces')"})
    assert.equal(0, r.status, r.err)
    assert.equal("Lua warning: two pieces\n", r.err)
  end)

  it("follow warn('@on') and warn('@off')", function()
    local r = csock_run({"-e", "warn('@on') warn('shown') warn('@off') warn('hidden')"})
    assert.equal(0, r.status, r.err)
    assert.equal("Lua warning: shown\n", r.err)
  end)
end)

describe("the host's memory", function()
  -- bin/csock gives Lua a pooled allocator; objects of every size come and go through it.
  it("keeps strings, tables and userdata of every size intact as they are freed and reused", function()
    local r = csock_run({"-e", [[
      local csock = require "csock"
      local bad = 0
      for round = 1, 30 do
        local keep = {}
        for n = 1, 1200, 7 do
          local s = string.rep(string.char(65 + n % 26), n)
          local t = {}
          for i = 1, n % 40 do t[i] = i end
          keep[#keep + 1] = {s = s, t = t, n = n, sock = (n % 50 == 1) and csock.socket("inet", "stream") or nil}
        end
        collectgarbage()
        for _, k in ipairs(keep) do
          if #k.s ~= k.n or k.s:sub(-1) ~= string.char(65 + k.n % 26) or #k.t ~= k.n % 40 then
            bad = bad + 1
          end
          if k.sock then k.sock:close() end
        end
        local grow = {}
        for i = 1, 2000 + round do grow[i] = i end -- a table that resizes through the classes
        if grow[2000] ~= 2000 then bad = bad + 1 end
      end
      print(bad)
    ]]})
    assert.equal(0, r.status, r.err)
    assert.equal("0\n", r.out)
  end)
end)

describe("the host's received strings", function()
  -- bin/csock lets recv(2) write straight into the memory of the string it returns.
  it("are the bytes sent, at every size, and stay so while later reads come in", function()
    local r = csock_run({"-e", [[
      local csock = require "csock"
      local a, b = csock.socketpair()
      local sizes = {1, 40, 41, 1000, 1025, 4095, 4096, 4097, 5000, 30000, 65535, 65536, 65537, 100000}
      local sent, pieces = {}, {}
      csock.spawn(function()
        for round = 1, 40 do
          for k, n in ipairs(sizes) do
            local piece = string.rep(string.char(33 + (round * 7 + k) % 90), n)
            sent[#sent + 1] = piece
            a:write(piece)
          end
        end
        a:close()
      end)
      local k = 0
      while true do
        k = k % #sizes + 1
        local data = assert(b:recv(sizes[k]))
        if data == "" then break end
        pieces[#pieces + 1] = data
        if #pieces % 16 == 0 then collectgarbage() end
      end
      local want = table.concat(sent)
      local long = 0
      for _, p in ipairs(pieces) do if #p >= 4096 then long = long + 1 end end
      print(table.concat(pieces) == want, #want, long > 100)
    ]]}, {limit = 60})
    assert.equal(0, r.status, r.err)
    assert.equal("true\t13840120\ttrue\n", r.out)
  end)

  it("do not share memory: two reads of the same size are two strings", function()
    local r = csock_run({"-e", [[
      local csock = require "csock"
      local a, b = csock.socketpair()
      a:send(string.rep("x", 20000))
      local first = b:recv(20000)
      a:send(string.rep("y", 20000))
      local second = b:recv(20000)
      print(first == string.rep("x", #first), second == string.rep("y", #second), #first + #second)
    ]]})
    assert.equal(0, r.status, r.err)
    assert.equal("true\ttrue\t40000\n", r.out)
  end)
end)

describe("the host's collector pace", function()
  it("lets a small heap grow about ten times (pause 1020, Lua's largest) before a cycle", function()
    local r = csock_run({"-e", [[
      local csock = require "csock"
      csock.sleep(0.01) -- a turn of the loop sets the pace
      print(collectgarbage("count") < 100, collectgarbage("setpause", 200))
    ]]})
    assert.equal(0, r.status, r.err)
    assert.equal("true\t1020\n", r.out)
  end)

  it("gives a heap of a few hundred KiB 1 MiB of room, not four times its size", function()
    local r = csock_run({"-e", [[
      local csock = require "csock"
      local keep = {}
      for i = 1, 8000 do keep[i] = {i} end -- about 600 KiB live
      collectgarbage()
      csock.sleep(0.01)
      local kb = collectgarbage("count")
      local pause = collectgarbage("setpause", 200)
      local want = 100 * (kb + 1024) / kb
      print(kb > 400 and kb < 1000, pause > 200 and pause < 1020, math.abs(pause - want) <= 12, #keep)
    ]]})
    assert.equal(0, r.status, r.err)
    assert.equal("true\ttrue\ttrue\t8000\n", r.out)
  end)

  it("keeps Lua's pause 200 for a heap over 1 MiB", function()
    local r = csock_run({"-e", [[
      local csock = require "csock"
      local big = {}
      for i = 1, 200000 do big[i] = {i} end
      csock.sleep(0.01)
      print(collectgarbage("count") > 8192, collectgarbage("setpause", 200), #big)
    ]]})
    assert.equal(0, r.status, r.err)
    assert.equal("true\t200\t200000\n", r.out)
  end)

  it("keeps the heap bounded in a loop that opens and closes sockets", function()
    -- Sockets have __gc, and garbage with a finalizer survives the cycle that finds it; under a
    -- plain pause 400 each cycle's survivors raised the next threshold and this heap grew past 8 MiB.
    local r = csock_run({"-e", [[
      local csock = require "csock"
      local peak = 0
      for i = 1, 30000 do
        local a, b = csock.socketpair()
        a:write("x")
        b:read(1)
        a:close()
        b:close()
        if i % 100 == 0 then
          csock.sleep(0)
          peak = math.max(peak, collectgarbage("count"))
        end
      end
      print(peak < 4096, peak > 0)
    ]]}, {limit = 60})
    assert.equal(0, r.status, r.err)
    assert.equal("true\ttrue\n", r.out)
  end)

  it("keeps the memory of collected strings for the next ones, not faulting it in again", function()
    -- 3,000 chunks of 64 KiB through a socketpair. When glibc trimmed its heap after each cycle,
    -- the next strings faulted their pages in again: 17,211 minor faults (12,000 with pause 1020).
    local r = csock_run({"-e", [[
      local csock = require "csock"
      local function faults()
        local f <close> = assert(io.open("/proc/self/stat"))
        return tonumber(f:read("a"):match("^%d+ %b() %S+" .. (" %S+"):rep(6) .. " (%d+)"))
      end
      local a, b = csock.socketpair()
      local chunk = string.rep("x", 65536)
      csock.spawn(function()
        for _ = 1, 3000 do a:write(chunk) end
        a:close()
      end)
      local before, got = faults(), 0
      while true do
        local data = b:recv(65536)
        if data == "" then break end
        got = got + #data
      end
      local taken = faults() - before
      print(got, taken < 3000 or taken)
    ]]})
    assert.equal(0, r.status, r.err)
    if os.getenv("CSOCK_BUILD") then -- make asan: the sanitizer's allocator, which quarantines
      assert.matches("^196608000\t", r.out) -- what is freed, replaces glibc's
    else
      assert.equal("196608000\ttrue\n", r.out)
    end
  end)

  it("leaves a script's own pause alone", function()
    local r = csock_run({"-e", [[
      local csock = require "csock"
      collectgarbage("setpause", 160)
      for _ = 1, 5 do csock.sleep(0.002) end
      print(collectgarbage("setpause", 160))
    ]]})
    assert.equal(0, r.status, r.err)
    assert.equal("160\n", r.out)
  end)
end)

describe("csock --", function()
  it("stops option handling: the next word is the script", function()
    local s = rt.script("print('dash script', ...)")
    rt.defer(finally, function() os.remove(s) end)
    local r = csock_run({"--", s, "-e"})
    assert.equal(0, r.status, r.err)
    assert.equal("dash script\t-e\n", r.out)
  end)
end)

describe("standard input", function()
  it("runs with '-'", function()
    local r = csock_run({"-"}, {stdin = "print('from stdin', ...)\n"})
    assert.equal(0, r.status, r.err)
    assert.equal("from stdin\n", r.out)
  end)

  it("passes the arguments after '-'", function()
    local r = csock_run({"-", "x", "y"}, {stdin = "print(arg[0], ...)\n"})
    assert.equal(0, r.status, r.err)
    assert.equal("-\tx\ty\n", r.out)
  end)

  it("runs when there is no script and stdin is not a terminal", function()
    local r = csock_run({}, {stdin = [[
      local csock = require "csock"
      csock.sleep(0.01)
      print("piped in")
    ]]})
    assert.equal(0, r.status, r.err)
    assert.equal("piped in\n", r.out)
  end)

  it("exits 1 with 'csock: ' when the chunk on stdin raises", function()
    local r = csock_run({"-"}, {stdin = "error('stdin failed')\n"})
    assert.equal(1, r.status)
    assert.matches("^csock: ", r.err)
    assert.matches("stdin failed", r.err)
  end)
end)

describe("the host's own modules", function()
  it("finds csock.http, csock.websocket and csock.socket from any directory, with no LUA_PATH", function()
    local bin = helper.ROOT .. "/" .. BIN
    local r = rt.exec({"/bin/sh", "-c", "cd / && env -u LUA_PATH -u LUA_PATH_5_4 " .. bin .. [[ -e '
      local http, ws, socket = require "csock.http", require "csock.websocket", require "csock.socket"
      print(type(http.serve), type(ws.connect), socket._VERSION, type(require("csock.socket.https").request))']]})
    assert.equal(0, r.status, r.err)
    assert.equal("function\tfunction\tLuaSocket 3.1.0\tfunction\n", r.out)
  end)
end)
