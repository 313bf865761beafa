--[[
fuzz/gen.lua SEED - writes a random csock program to stdout (issue 15's Lua-API fuzzer).

The same seed gives the same program (math.randomseed of lua5.4), so a run is
replayed with `lua5.4 fuzz/gen.lua SEED > p.lua`.  The program is meant to be run
by lua5.4 with the ASan+UBSan build (fuzz/lua_api.sh): it may raise, print task
tracebacks and end with status 1 -- deliberate bad calls do that -- but it must
never crash, hang or make a sanitizer report.

What a program does, all on a small pool of shared sockets (two socketpairs, a
connected loopback TCP pair, a listener, a UDP socket) so that tasks collide:
  - one driver: csock.run with a main task, or two embedded loops (csock.loop())
    stepped by hand, or both one after the other; a few programs start with
    csock.workers(1) and run the rest in the worker;
  - tasks (spawned from the main chunk, from tasks, on either embedded loop) that
    read (every format, several at once), recv, recvfrom, write, send, close,
    settimeout, setmaxline, shutdown, sleep, cancel and join each other (across
    loops too), coroutine.close / coroutine.resume each other's coroutines,
    getaddrinfo("localhost") and connect to "localhost";
  - collectgarbage("step") and full collections, an aggressive collector for the
    whole program, and tables whose __gc closes a socket of the pool;
  - spawn(f, table.unpack(T200)) and tasks that return 200 values;
  - calls with arguments of the wrong type, on closed sockets and from outside a task.
Every call is made through pcall, so a raised error ends the statement, not the program;
a few are left bare so that tasks fail too.
]]

local seed = math.tointeger(tonumber(arg[1] or "")) or error("usage: lua5.4 fuzz/gen.lua SEED")
math.randomseed(seed)

local random = math.random
local out = {}
local function emit(fmt, ...) out[#out + 1] = string.format(fmt, ...) end

local NSOCK = 9 -- the pool: see the prologue below
local NTASK = 12 -- slots of TK[] and CO[], the tasks' handles and coroutines

local function pick(t) return t[random(#t)] end
local function chance(p) return random() < p end
local function sock() return random(NSOCK) end
local function slot() return random(NTASK) end

-- Arguments of any type, for bad calls and odd values.
local JUNK = {
  "nil", "true", "false", "0", "-1", "1.5", "0/0", "1e308", "math.mininteger", "math.maxinteger",
  "2^53", "2^63", "-0.0", "''", "'l'", "'x'", "('\\0'):rep(3)", "('y'):rep(300)", "{}",
  "print", "S[1]", "S[5]", "TK[1]", "CV", "LP[1]", "coroutine.create(print)", "io.stdout",
  "T200", "'localhost'", "'*'", "-2^31", "65536", "70000",
}
local function junk() return pick(JUNK) end

local READ_FORMATS = {
  "'l'", "'L'", "'a'", "'n'", "'*l'", "'*a'", "'*n'", "0", "1", "2", "5", "17", "100", "4096",
  "16384", "20000", "65536", "'x'", "-1", "1.5", "{}",
}
local function formats()
  local n = random(0, 4)
  local t = {}
  for i = 1, n do t[i] = ", " .. pick(READ_FORMATS) end
  return table.concat(t)
end

local DATA = {
  "'hello'", "'x'", "'line\\n'", "'a\\nb\\nc\\n'", "'12 34\\n'", "'  0x1F '", "'3.5e2\\n'",
  "('z'):rep(5000)", "('w'):rep(70000)", "('\\n'):rep(50)", "''", "42", "1.25", "('q'):rep(100) .. '\\n'",
  "'   '",
}
local function data() return pick(DATA) end

local TIMEOUTS = { "nil", "0", "0.001", "0.01", "0.05", "0.2" }

-- FUZZ_WITHOUT="manyargs,loops,..." leaves out what finds a known bug, to look past it:
--   manyargs    spawn with 200 arguments        manyresults  tasks that return 200 values
--   mixread     recv/recvfrom/lines beside read  finalizers   __gc that closes a socket
--   coclose     coroutine.close/resume of a task's coroutine
--   loops       the embedded loops              crossjoin    a join of another loop's task
--   resolve     getaddrinfo and connect by name  workers      csock.workers(1)
--   badargs     calls with arguments of the wrong type
local without = {}
for w in (os.getenv("FUZZ_WITHOUT") or ""):gmatch("[%w_]+") do without[w] = true end
local function on(feature) return not without[feature] end

local function fmt(...) return string.format(...) end
local RECV_SIZES = { "1", "3", "5", "100", "65536", "0", "-1", "nil" }
local SEND_I, SEND_J = { "nil", "1", "2", "-1", "0" }, { "nil", "-1", "3", "100" }
local MAXLINES = { "1", "3", "10", "65536", "0", "-5" }
local SHUTDOWNS = { "'r'", "'w'", "'rw'", "nil", "'q'" }
local ANY_METHOD = { "'read'", "'recv'", "'write'", "'settimeout'", "'connect'", "'bind'", "'setsockopt'", "'send'" }
local ANY_FUNCTION = {
  "csock.socketpair", "csock.socket", "csock.getaddrinfo", "csock.spawn", "csock.run",
  "csock.loop", "csock.cond", "csock.signal",
}
local HOSTS = { "'localhost'", "'127.0.0.1'", "'::1'", "'nosuchcaa.invalid'", "nil" }
local SERVICES = { "PORT", "'http'", "nil", "0" }
local CONNECT_HOSTS = { "'localhost'", "'localhost'", "'127.0.0.1'", "'nosuchcaa.invalid'" }
-- (no huge ones: outside the loop a sleep blocks the thread, and nothing ends it)
local SLEEPS = { "0", "0", "0.001", "0.01", "0.03", "-1", "0/0", "'x'", "{}", "nil", "-0.0" }

-- Statements on the socket pool. Each returns one line of Lua.
local socket_ops = {
  function() return fmt("M(%d, 'read'%s)", sock(), formats()) end,
  function() return fmt("M(%d, 'read'%s)", sock(), formats()) end,
  function() return fmt("M(%d, 'write', %s)", sock(), data()) end,
  function() return fmt("M(%d, 'write', %s, %s, %s)", sock(), data(), data(), data()) end,
  function() return fmt("M(%d, 'send', %s, %s, %s)", sock(), data(), pick(SEND_I), pick(SEND_J)) end,
  function() return fmt("M(%d, 'sendto', %s, '127.0.0.1', PORT6)", sock(), data()) end,
  function() return fmt("M(%d, 'close')", sock()) end,
  function() return fmt("M(%d, 'settimeout', %s)", sock(), pick(TIMEOUTS)) end,
  function() return fmt("M(%d, 'setmaxline', %s)", sock(), pick(MAXLINES)) end,
  function() return fmt("M(%d, 'shutdown', %s)", sock(), pick(SHUTDOWNS)) end,
  function() return fmt("M(%d, 'accept')", sock()) end,
  function() return fmt("M(%d, 'getpeername')", sock()) end,
  function() return fmt("NEWSOCK(%d, %d)", sock(), random(3)) end,
}
if on("mixread") then
  socket_ops[#socket_ops + 1] = function()
    return fmt("SCENE_RECV(%d, %d, %d, %s)", random(7), random(1, 9), random(1, 9), pick { "'recv'", "'recvfrom'" })
  end
  socket_ops[#socket_ops + 1] = function() return fmt("M(%d, 'recv', %s)", sock(), pick(RECV_SIZES)) end
  socket_ops[#socket_ops + 1] = function() return fmt("M(%d, 'recvfrom', %s)", sock(), pick(RECV_SIZES)) end
  socket_ops[#socket_ops + 1] = function() return fmt("M(%d, 'lines_once'%s)", sock(), formats()) end
end
if on("badargs") then
  socket_ops[#socket_ops + 1] = function()
    return fmt("M(%d, %s, %s, %s, %s)", sock(), pick(ANY_METHOD), junk(), junk(), junk())
  end
  socket_ops[#socket_ops + 1] = function() return fmt("P(%s, %s, %s)", pick(ANY_FUNCTION), junk(), junk()) end
end

local gc_ops = {
  function() return "collectgarbage('step')" end,
  function() return "collectgarbage('step', " .. random(0, 64) .. ")" end,
  function() return "collectgarbage()" end,
  function() return "collectgarbage('incremental', 100, 100, 0)" end,
  function() return "collectgarbage('generational')" end,
}
if on("finalizers") then
  gc_ops[#gc_ops + 1] = function() return fmt("FINALIZERS(%d, %d)", sock(), random(1, 30)) end
  gc_ops[#gc_ops + 1] = function()
    return fmt("SCENE_GC(%d, %d, {%s})", random(7), random(1, 30), formats():sub(3))
  end
end

local resolve_ops = {
  function() return "P(csock.getaddrinfo, 'localhost', PORT)" end,
  function() return fmt("P(csock.getaddrinfo, %s, %s)", pick(HOSTS), pick(SERVICES)) end,
  function() return fmt("CONNECT(%d, %s)", sock(), pick(CONNECT_HOSTS)) end,
}

local body -- forward: a task body of random statements

local task_ops = {
  function(depth) return fmt("SPAWN(%d, function(...) %s end)", slot(), body(depth + 1)) end,
  function() return fmt("P(csock.sleep, %s)", pick(SLEEPS)) end,
  function() return fmt("TASK(%d, 'cancel')", slot()) end,
  function() return fmt("TASK(%d, 'join')", slot()) end,
  function() return fmt("TASK(%d, 'status')", slot()) end,
  function() return fmt("P(coroutine.wrap(function() %s end))", body(3)) end,
  function() return "P(CV.wait, CV, " .. pick { "nil", "0", "0.01" } .. ")" end,
  function() return "P(CV." .. pick { "signal", "broadcast" } .. ", CV)" end,
  function() return "P(csock.tasks)" end,
}
if on("manyargs") then
  task_ops[#task_ops + 1] = function(depth)
    return fmt("SPAWN(%d, function(...) %s end, table.unpack(T200))", slot(), body(depth + 1))
  end
end
if on("coclose") then
  task_ops[#task_ops + 1] = function()
    return fmt("P(coroutine.close, CO[%d] or coroutine.create(print))", slot())
  end
  task_ops[#task_ops + 1] = function()
    return fmt("P(coroutine.resume, CO[%d] or coroutine.create(print), %s)", slot(), junk())
  end
end
if on("loops") then
  task_ops[#task_ops + 1] = function()
    return fmt("LOOPSPAWN(%d, %d, function(...) %s end)", random(2), slot(), body(3))
  end
  task_ops[#task_ops + 1] = function() return fmt("LOOPSTEP(%d, %s)", random(2), pick { "0", "0.001", "0.02" }) end
end

-- One statement: socket ops most often.
local function stmt(depth)
  local r = random()
  if r < 0.50 then return pick(socket_ops)(depth) end
  if r < 0.62 then return pick(gc_ops)(depth) end
  if r < 0.67 and on("resolve") then return pick(resolve_ops)(depth) end
  if depth >= 3 then return pick(socket_ops)(depth) end
  return pick(task_ops)(depth)
end

function body(depth)
  local n = random(1, depth >= 3 and 3 or 8)
  local t = { "CO_SELF()" }
  for _ = 1, n do t[#t + 1] = stmt(depth) end
  if chance(0.1) then t[#t + 1] = "error('task failed on purpose')" end
  if on("manyresults") and chance(0.1) then t[#t + 1] = "return table.unpack(T200)" end
  return table.concat(t, "; ")
end

-- The prologue: the pool and the helpers every statement uses.
emit([[
-- generated by fuzz/gen.lua %d
local csock = require "csock"
local T200 = {}
for i = 1, 200 do T200[i] = i end
local S, TK, CO, LP = {}, {}, {}, {}
local CV = csock.cond()
local PORT, PORT6 = 9, 9
local function P(f, ...) return pcall(f, ...) end
local function M(i, name, ...)
  local s = S[i]
  if s == nil then return end
  if name == "lines_once" then return pcall(function(...) return s:lines(...)() end, ...) end
  return pcall(s[name], s, ...)
end
local function NEWSOCK(i, kind)
  local ok, a, b = pcall(function()
    if kind == 1 then return csock.socketpair() end
    if kind == 2 then return csock.socket("inet", "stream") end
    local u = csock.socket("inet", "dgram"); u:bind("127.0.0.1", 0); return u
  end)
  if ok and a then
    S[i] = a; a:settimeout(0.05)
    if b then S[(i %% #S) + 1] = b; b:settimeout(0.05) end
  end
end
-- Run as a task of csock.run: whatever still waits after 2 s is woken and cancelled,
-- so that a program whose main task waits for nothing (a read with no timeout, a
-- condition nobody signals) still ends; a program that hangs past it is a finding.
local function REAPER()
  csock.sleep(2)
  for i = 1, #S do local s = S[i]; if s then pcall(s.close, s) end end
  for _, t in ipairs(csock.tasks()) do if t ~= csock.current() then t:cancel() end end
end
local function CONNECT(i, host)
  local s = S[i]
  if s == nil then return end
  return pcall(function()
    local c = csock.socket("inet", "stream")
    c:settimeout(0.2)
    S[i] = c
    return c:connect(host, PORT)
  end)
end
local function FINALIZERS(i, n)
  for _ = 1, n do
    setmetatable({}, {__gc = function() local s = S[i]; if s then pcall(s.close, s) end end})
  end
end
-- Scenes: the shapes of issue 15's first two bugs, with random sizes, so that the
-- fuzzer meets them and their neighbours more often than by chance.
local PEER = {2, 1, 4, 3, nil, 7, 6}
local function SCENE_RECV(i, n, k, how) -- a read under way, a recv beside it, then more bytes
  local s, p = S[i], S[PEER[i] or 0]
  if not (s and p) then return end
  pcall(csock.spawn, function() pcall(s.read, s, n, "l") end)
  pcall(p.write, p, ("h"):rep(n))
  pcall(csock.sleep, 0.002)
  pcall(s[how], s, k)
  pcall(p.write, p, "x\n")
  pcall(csock.sleep, 0.002)
end
local function SCENE_SHARED(i) -- a socket shared with another process, closed after a wait
  local s, p = S[i], S[PEER[i] or 0]
  if not (s and p) then return end
  pcall(csock.spawn, function() pcall(s.read, s, 1) end)
  pcall(csock.sleep, 0.002) -- the reader waits: the socket is in the epoll set
  pcall(p.write, p, "a")
  pcall(csock.sleep, 0.002) -- the reader has its byte and has ended
  pcall(s.close, s)
  S[i], s = nil, nil
  collectgarbage(); collectgarbage()
  pcall(p.write, p, "wake\n")
  pcall(csock.sleep, 0.002)
end
local function SCENE_GC(i, n, fmts) -- finalizers close the socket while a read allocates
  local s, p = S[i], S[PEER[i] or 0]
  if not (s and p) then return end
  collectgarbage("stop") -- the finalizers are due, not yet run
  FINALIZERS(i, n)
  collectgarbage("incremental", 100, 100, 0)
  collectgarbage("restart")
  local t0 = csock.now()
  for _ = 1, 50 do
    if not pcall(p.write, p, "one\ntwo\n3 4\n") or not pcall(s.read, s, table.unpack(fmts)) then break end
    if csock.now() - t0 > 0.3 then break end
  end
end
local nco = 0
local function CO_SELF() -- each task notes its coroutine, for others to close or resume
  nco = nco %% 12 + 1
  CO[nco] = coroutine.running()
end
local DOM = setmetatable({}, {__mode = "k"}) -- task handle -> the loop it runs in
local CROSSJOIN = %s
local function SPAWN(k, f, ...)
  local ok, t = pcall(csock.spawn, f, ...)
  if ok then
    TK[k] = t
    local cur = csock.current()
    DOM[t] = cur and DOM[cur] or 0
  end
end
local function TASK(k, what)
  local t = TK[k]
  if t == nil then return end
  if what == "join" and not CROSSJOIN then
    local cur = csock.current()
    if cur == nil or DOM[t] ~= DOM[cur] then return end
  end
  return pcall(t[what], t)
end
local function LOOPSPAWN(i, k, f, ...)
  local l = LP[i]
  if l == nil then return end
  local ok, t = pcall(l.spawn, l, f, ...)
  if ok then TK[k] = t; DOM[t] = i end
end
local function LOOPSTEP(i, timeout)
  local l = LP[i]
  if l then return pcall(l.step, l, timeout) end
end
]], seed, tostring(on("crossjoin")))

-- The pool: 1-2 and 3-4 socketpairs, 5 a listener, 6-7 a TCP pair, 8 UDP, 9 a
-- spare socketpair end.
emit([[
do
  S[1], S[2] = assert(csock.socketpair())
  S[3], S[4] = assert(csock.socketpair())
  S[5] = assert(csock.tcp_listen("127.0.0.1", 0))
  PORT = S[5]:getsockname().port
  S[6] = assert(csock.socket("inet", "stream"))
  S[6]:settimeout(1)
  assert(S[6]:connect("127.0.0.1", PORT))
  S[5]:settimeout(1)
  S[7] = assert(S[5]:accept())
  S[8] = assert(csock.socket("inet", "dgram"))
  assert(S[8]:bind("127.0.0.1", 0))
  PORT6 = S[8]:getsockname().port
  S[9] = assert(csock.socketpair())
  for i = 1, %d do S[i]:settimeout(%s) end
end
]], NSOCK, pick { "0.01", "0.05", "0.05", "0.1" })

if chance(0.3) then emit("collectgarbage('incremental', 100, 100, 0)") end

-- Top-level statements run outside any loop: the pool's sockets get a short
-- timeout first, so that nothing there can block for long.
local function top_stmts(n)
  for _ = 1, n do
    emit("for i = 1, %d do local s = S[i]; if s then pcall(s.settimeout, s, 0.01) end end", NSOCK)
    emit("%s", stmt(3))
  end
end

local workers = on("workers") and chance(0.1)
if workers then
  emit([[
do
  local id = csock.workers(1)
  if not id then return end
end]])
  -- In the worker every socket of the pool is shared with the master: a close
  -- does not take the file out of epoll (issue 15's bug 5), so close some that a
  -- task waited on, collect them, and make them readable.
  socket_ops[#socket_ops + 1] = function() return fmt("SCENE_SHARED(%d)", random(4)) end
end

top_stmts(random(0, 3))

local driver = on("loops") and random(4) or 1
local NARGS = on("manyargs") and 200 or 3
local NRESULTS = on("manyresults") and 200 or 3
local function run_driver()
  emit("local main_result = table.pack(pcall(csock.run, function(...)")
  emit("  CO_SELF()")
  emit("  csock.spawn(REAPER)")
  for _ = 1, random(2, 10) do emit("  %s", stmt(0)) end
  -- The end of main: nothing may stay blocked forever.
  emit([[
  for _ = 1, 3 do
    for i = 1, %d do local s = S[i]; if s and %s then pcall(s.close, s) end end
    for _, t in ipairs(csock.tasks()) do if t ~= csock.current() then t:cancel() end end
    csock.sleep(0)
  end
  return table.unpack(T200, 1, %d)
end, table.unpack(T200, 1, %d)))]], NSOCK, pick { "true", "true", "i % 2 == 0" }, NRESULTS, NARGS)
end

local function embed_driver()
  emit("LP[1], LP[2] = csock.loop(), csock.loop()")
  for _ = 1, random(1, 6) do
    emit("LOOPSPAWN(%d, %d, function(...) %s end, table.unpack(T200, 1, %d))",
      random(2), slot(), body(1), pick { 0, 3, NARGS })
  end
  for _ = 1, random(2, 12) do
    local r = random()
    if r < 0.5 then
      emit("LOOPSTEP(%d, %s)", random(2), pick { "0", "0", "0.001", "0.01" })
    elseif r < 0.75 then
      emit("LOOPSPAWN(%d, %d, function(...) %s end)", random(2), slot(), body(1))
    else
      top_stmts(1)
    end
  end
  local ending = random(4)
  if ending == 1 then
    -- close both loops: their tasks are cancelled
    emit("pcall(LP[1].close, LP[1]); pcall(LP[2].close, LP[2])")
  elseif ending == 2 then
    -- leave them to the collector and the end of the script
    emit("LP[1], LP[2] = nil, nil")
  elseif ending == 3 then
    -- step both until they are idle, but not forever
    emit([[
for i = 1, 2 do local s = S[i]; if s then pcall(s.close, s) end end
for _ = 1, 20 do
  local _, a = LOOPSTEP(1, 0.005)
  local _, b = LOOPSTEP(2, 0.005)
  if a == 0 and b == 0 then break end
end
for _, l in ipairs(LP) do pcall(l.close, l) end]])
  end
  -- ending 4: nothing; the script ends with both loops live
end

if driver == 1 then
  run_driver()
elseif driver == 2 then
  embed_driver()
else
  if chance(0.5) then run_driver() end
  embed_driver()
  if chance(0.5) then run_driver() end
end

local ending = random(10)
if ending == 1 then
  emit("os.exit(0, true)")
elseif ending == 2 then
  emit("collectgarbage(); collectgarbage()")
elseif ending == 3 then
  emit("for i = 1, %d do local s = S[i]; if s then pcall(s.close, s) end end", NSOCK)
end

io.write(table.concat(out, "\n"), "\n")
