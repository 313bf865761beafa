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
  function() return fmt("M(%d, 'accept', %s)", sock(), pick { "false", "true", "nil", "0", "'x'" }) end,
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

-- The newer parts of the API (see "Statements on the newer API" below), each
-- a list of statement makers, chosen by stmt with its weight.
local tls_ops, http_ops, ls_ops, sendfile_ops, cond_ops, internal_ops = {}, {}, {}, {}, {}, {}

-- One statement: socket ops most often.  Each kind has a weight; a kind left out
-- (FUZZ_WITHOUT) gives its share to the socket ops.
local KINDS = {
  { 0.38, socket_ops }, { 0.10, gc_ops }, { 0.04, resolve_ops, "resolve" },
  { 0.06, tls_ops, "tls" }, { 0.08, http_ops, "http" }, { 0.09, ls_ops, "luasocket" },
  { 0.03, sendfile_ops, "sendfile" }, { 0.04, cond_ops, "cond" }, { 0.03, internal_ops, "internals" },
}
local function stmt(depth)
  local r = random()
  for _, k in ipairs(KINDS) do
    if r < k[1] then
      if k[3] and not on(k[3]) then return pick(socket_ops)(depth) end
      return pick(k[2])(depth)
    end
    r = r - k[1]
  end
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

-- Statements on the newer API: TLS, csock.http and its websockets, csock.socket
-- (LuaSocket's API), sendfile, conditions, and the internal methods those modules
-- call.  Their helpers (TLSCTX, HSERVER, LSM, ...) are in the prologue.
local function into(list, makers)
  for _, f in ipairs(makers) do list[#list + 1] = f end
end
local NUMS = {
  "nil", "0", "1", "-1", "5", "100", "70000", "1e308", "0/0", "'x'", "math.maxinteger",
  "math.mininteger", "2^53", "-0.0", "1.5", "'10'", "{}", "true",
}
local function num() return pick(NUMS) end

-- TLS: contexts good (the run's certificate, made by fuzz/lua_api.sh) and bad;
-- CTX[1] is meant as a server, CTX[2] as a client, but any may be anything.
local TLS_OPTS = {
  "{mode = 'server', certificate = CERT, key = KEY}",
  "{mode = 'server', certificate = CERT, key = KEY}",
  "{mode = 'server', certificate = CERT, key = KEY, alpn = {'http/1.1', 'x'}}",
  "{mode = 'server', certificate = CERT, key = KEY, verify = true, cafile = CERT}",
  "{mode = 'server', certificate = CERT, key = KEY, servers = {localhost = CTX[1], [''] = CTX[2]}}",
  "{mode = 'server', certificate = CERT, key = KEY, servers = {x = 1}}",
  "{mode = 'server', certificate = CERT, key = KEY, min_version = 'tls1.3', ciphersuites = 'TLS_AES_128_GCM_SHA256'}",
  "{mode = 'server', certificate = CERT}", "{mode = 'server', certificate = KEY, key = CERT}",
  "{mode = 'server', certificate = CERT, key = KEY2}", "{mode = 'server'}",
  "{mode = 'client', insecure = true}", "{mode = 'client', insecure = true}",
  "{mode = 'client', insecure = true, alpn = {'x', 'http/1.1'}}",
  "{mode = 'client', cafile = CERT}", "{mode = 'client', cafile = CERT, certificate = CERT, key = KEY}",
  "{mode = 'client', capath = '/nonexistent'}", "{mode = 'client', verify = false}", "{}", "nil",
  "{mode = 'x'}", "{certificate = '/nonexistent', key = '/nonexistent'}", "{min_version = 'tls1.1'}",
  "{ciphers = 'NOPE'}", "{alpn = {1, {}}}", "{alpn = {('a'):rep(300)}}", "{alpn = 'x'}", "{alpn = {}}",
  "{alpn = {''}}", "{insecure = 'yes'}", "{x = 1}", "{servers = CTX}", "{mode = 'server', servers = {}}",
  "{[1] = 2}", "'x'", "{mode = 'client', cafile = '/'}", "{certificate = CERT .. '\\0x'}",
}
local TLS_HOSTS = { "nil", "'localhost'", "'localhost'", "'127.0.0.1'", "'::1'", "''", "'a.b'", "('h'):rep(300)",
  "'\\0x'", "42", "{}" }
local function ctx() return random(0, 4) end -- 0 and 4: usually nil
local function objexpr()
  return pick { "S[" .. sock() .. "]", "CTX[" .. ctx() .. "]", "CVS[" .. random(3) .. "]", "LP[1]",
    "TK[" .. slot() .. "]",
    "HS[1]", "WSS[1]", "LS[" .. random(4) .. "]", "FH" }
end
into(tls_ops, {
  function() return fmt("TLSCTX(%d, %s)", random(4), pick(TLS_OPTS)) end,
  function() return fmt("TLSCTX(%d, %s)", random(2), TLS_OPTS[random(2) == 1 and 1 or 12]) end,
  function() return fmt("M(%d, 'starttls', CTX[%d], %s)", sock(), ctx(), pick(TLS_HOSTS)) end,
  function() return fmt("TLSPAIR(%d, %d, %d, %s)", random(7), pick { 1, 1, 1, ctx() }, pick { 2, 2, 2, ctx() },
    pick(TLS_HOSTS)) end,
  function() return fmt("TLSPAIR(%d, %d, %d, %s)", random(7), pick { 1, 1, 1, ctx() }, pick { 2, 2, 2, ctx() },
    pick(TLS_HOSTS)) end,
  function() return fmt("TLSPAIR(%d, 1, 2, 'localhost')", random(7)) end,
  function() return fmt("SCENE_TLS(%d, %d, %d, {%s})", random(7), pick { 1, ctx() }, pick { 2, ctx() },
    formats():sub(3)) end,
  function() return fmt("M(%d, 'tlsinfo')", sock()) end,
  function() return fmt("MJ('tlsinfo', %s)", pick { junk(), objexpr() }) end,
  function() return fmt("MJ('starttls', %s, CTX[%d])", pick { junk(), objexpr() }, ctx()) end,
  function() return fmt("TLSDROP(%d, %s)", ctx(), tostring(chance(0.5))) end,
  function() return fmt("METAGC(%s, %s)", objexpr(), pick { "'__gc'", "'__close'", "'__gc'" }) end,
  function()
    return fmt("TLSCONNECT(%s, {timeout = %s, context = CTX[%d], insecure = %s, alpn = %s})", pick { "PORT",
      "HPORT[1]", "HPORT[2]" },
      pick { "0.1", "0.1", "0", "-1", "'x'" }, ctx(), pick { "nil", "true", "1" }, pick { "nil", "{'x'}", "'x'", "{}" })
  end,
  function() return fmt("P(csock.tls_connect, %s, %s, %s)", junk(), junk(), junk()) end,
  function() return fmt("P(csock.tls_context, %s)", junk()) end,
})

-- csock.http: servers (up to two) whose handlers misuse req and res, clients
-- with odd requests, raw requests, websockets on both sides.
local CODES = { "200", "204", "304", "101", "100", "99", "1000", "'x'", "404", "500", "nil", "1.5", "999" }
local HNAMES = { "'X-A'", "'Content-Length'", "'Transfer-Encoding'", "'Connection'", "'bad name'", "''", "'x\\r\\n'",
  "5", "{}", "nil", "('n'):rep(9000)" }
local HVALUES = { "'v'", "'5'", "'0'", "'close'", "'chunked'", "'a\\r\\nb'", "'\\0'", "7", "-1", "{}", "nil",
  "('v'):rep(70000)" }
local GRACES = { "nil", "0", "0.01", "0.05", "-1", "0/0", "'x'", "{}", "1e308", "math.huge", "-0.0" }
local SRV_OPTS = {
  "nil", "nil", "{}", "{max_line = 64}", "{max_header_bytes = 10, max_headers = 1}", "{max_body = 3}",
  "{header_timeout = 0.05, idle_timeout = 0.05, body_timeout = 0.05}", "{tls = CTX[1]}", "{tls = CTX[1]}",
  "{tls = CTX[2]}", "{tls = CTX[1], header_timeout = 0.1}", "{max_body = -1}", "{header_timeout = 'x'}",
  "{tls = 5}", "{max_line = 0/0}", "{max_body = 1e308}", "{x = 1}", "{body_timeout = 0}", "'x'",
}
local METHODS = {
  "nil", "'GET'", "'HEAD'", "'POST'", "'PUT'", "'DELETE'", "'OPTIONS'", "'PATCH'", "'TRACE'", "'CONNECT'", "'BREW'",
  "'get'", "''", "'G T'", "'GET / HTTP/1.1\\r\\nX: y'", "('M'):rep(9000)", "5", "{}",
}
local REQ_HEADERS = {
  "nil", "{}", "{['x-a'] = 'b'}", "{['Content-Length'] = '5'}", "{['Transfer-Encoding'] = 'chunked'}",
  "{Expect = '100-continue'}", "{Connection = 'close'}", "{x = {'1', '2'}}", "{['bad name'] = 'v'}",
  "{x = 'a\\r\\nb'}", "{x = 5}", "{x = {}}", "{[1] = 'x'}", "{x = ('v'):rep(70000)}", "{Host = ''}", "'x'",
  "{Upgrade = 'websocket', Connection = 'Upgrade', ['Sec-WebSocket-Key'] = 'dGhlIHNhbXBsZSBub25jZQ==', "
    .. "['Sec-WebSocket-Version'] = '13'}",
}
local BODIES = {
  "nil", "nil", "''", "'hello'", "('b'):rep(100000)", "BODYFN(3)", "BODYFN(0)",
    "function() error('body failed on purpose') end",
  "function() return 5 end", "function() return {} end", "BODYFN(3, '')", "function() csock.sleep(0.01) end",
  "function() return false end", "5", "{}", "function() coroutine.yield() end",
    "function() return ('c'):rep(70000) end",
}
local PATHS = { "'/'", "'/'", "'/a?b=c'", "''", "'/' .. ('p'):rep(9000)", "'/%zz'", "'/\\r\\n'", "' /'", "'/#f'",
  "'?'", "'/\\0'" }
local UPGRADE = "'GET / HTTP/1.1\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\n"
  .. "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\\r\\nSec-WebSocket-Version: 13\\r\\n\\r\\n"
local RAWS = {
  "'GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n'", "'POST / HTTP/1.1\\r\\nContent-Length: 5\\r\\n\\r\\nab'",
  "'POST / HTTP/1.1\\r\\nTransfer-Encoding: chunked\\r\\n\\r\\n5\\r\\nabcde\\r\\n0\\r\\nX: y\\r\\n\\r\\n'",
  "'POST / HTTP/1.1\\r\\nTransfer-Encoding: chunked\\r\\n\\r\\nzz\\r\\n'",
    "'POST / HTTP/1.1\\r\\nTransfer-Encoding: chunked\\r\\n\\r\\n3\\r\\nab'",
  "'GET / HTTP/1.1\\r\\n\\r\\nGET / HTTP/1.1\\r\\n\\r\\nHEAD / HTTP/1.0\\r\\n\\r\\n'",
  "'GET / HTTP/1.1\\r\\nExpect: 100-continue\\r\\nContent-Length: 3\\r\\n\\r\\n'", "'GET / HTTP/2.0\\r\\n\\r\\n'",
  "'\\22\\3\\1\\0\\5hello'", "('G'):rep(10000)", "''",
    "'GET / HTTP/1.1\\r\\nContent-Length: 99999999999999999999\\r\\n\\r\\n'",
  UPGRADE .. "\\129\\133\\0\\0\\0\\0hello\\136\\128\\0\\0\\0\\0'",
  UPGRADE .. "\\1\\255\\255\\255\\255\\255\\255\\255\\255\\255'",
}
local WS_OPTS = {
  "nil", "{timeout = 0.2}", "{timeout = 0.2}", "{timeout = 0.05, max_message = 10}",
    "{timeout = 0.2, max_frame = 1, close_timeout = 0.01}",
  "{timeout = 0.2, protocols = {'a', 'b'}}", "{timeout = 0.2, headers = {x = 'y'}, origin = 'o'}",
  "{timeout = 0.2, insecure = true, tls = CTX[2]}", "{timeout = -1}", "{timeout = 'x'}",
    "{max_message = 0/0, timeout = 0.1}",
  "{timeout = 0.1, protocols = 5}", "{timeout = 0.1, close_timeout = 0.2}", "{timeout = 0.1, max_message = -1}", "'x'",
}
local WS_DATA = { "'hi'", "''", "('m'):rep(70000)", "'\\255\\254'", "5", "{}", "nil", "('p'):rep(126)" }
local WS_KINDS = { "nil", "'text'", "'binary'", "'ping'", "'x'", "5" }
local function ws_op()
  local w = random(3)
  return pick {
    fmt("WSOP(%d, 'send', %s, %s)", w, pick(WS_DATA), pick(WS_KINDS)),
    fmt("WSOP(%d, 'receive')", w), fmt("WSOP(%d, 'receive')", w),
    fmt("WSOP(%d, 'ping', %s)", w, pick(WS_DATA)),
    fmt("WSOP(%d, 'close', %s, %s)", w, pick { "nil", "1000", "1005", "999", "5000", "'x'", "4000" }, pick(WS_DATA)),
    fmt("WSOP(%d, 'settimeout', %s)", w, pick { "0", "0.01", "0.1", "-1", "'x'", "nil" }),
    fmt("P(function() return WSS[%d].sock:close() end)", w),
  }
end
local FILES = {
  "FH", "FH", "FILE", "io.stdout", "io.stdin", "CLOSEDF", "'/'", "'/nonexistent'", "'/dev/zero'", "DIRF", "0", "-1",
  "99999", "2^53", "{}", "nil", "TMPF", "FILE .. '\\0x'", "1.5",
}
local function sendfile_args() return fmt("%s, %s, %s", pick(FILES), num(), num()) end

local handler_ops = {
  function() return fmt("R(req, 'read'%s)", formats()) end,
  function() return "R(req, 'body')" end,
  function() return fmt("R(res, 'status', %s)", pick(CODES)) end,
  function() return fmt("R(res, 'header', %s, %s)", pick(HNAMES), pick(HVALUES)) end,
  function() return fmt("R(res, 'write', %s, %s)", data(), data()) end,
  function() return fmt("R(res, 'write', %s)", junk()) end,
  function() return fmt("R(res, 'finish'%s)", pick { "", ", 'done'", ", " .. data(), ", " .. junk() }) end,
  function() return fmt("R(res, 'sendfile', %s)", sendfile_args()) end,
  function() return "R(res, 'detach')" end,
  function() return "P(function() req.socket:close() end)" end,
  function() return fmt("HCLOSE(%d, %s)", random(2), pick(GRACES)) end,
  function() return fmt("WSACCEPT(%d, req, res, %s)", random(3), pick(WS_OPTS)) end,
  function() return fmt("WSACCEPT(%d, req, res, %s)", random(3), pick(WS_OPTS)) end,
  ws_op,
  function()
    return "P(function() return req.method, req.path, req.query, req.version, req.headers.host, req.headers[1], "
      .. "req.rawheaders[1] end)"
  end,
  function() return fmt("P(function() %s[%d] = %s end)", pick { "req", "res" }, random(0, 8), junk()) end,
  function(depth) return stmt(depth) end,
  function() return "P(csock.sleep, 0.01)" end,
}
local HANDLER_ENDS = {
  "", "", "", "error('handler failed on purpose')", "return 1, 'x', {}", "P(CV.wait, CV)", "P(csock.sleep, 30)",
    "coroutine.yield()",
}
local function handler()
  local t = {}
  -- a websocket server a third of the time: the upgrade first, then anything
  if on("http") and chance(0.33) then t[1] = fmt("WSACCEPT(%d, req, res, %s)", random(3), pick(WS_OPTS)) end
  for _ = 1, random(1, 6) do t[#t + 1] = pick(handler_ops)(3) end
  t[#t + 1] = pick(HANDLER_ENDS)
  return "function(req, res) " .. table.concat(t, "; ") .. " end"
end
local TIMEOUTS_HTTP = { "0.2", "0.2", "0.05", "0", "-1", "'x'" }
local client_ops = {
  function(k)
    return fmt("HREQ(%d, %s, {method = %s, headers = %s, body = %s, timeout = %s, redirects = %s, tls = %s}, %d, {%s})",
      k or random(2), pick(PATHS), pick(METHODS), pick(REQ_HEADERS), pick(BODIES), pick(TIMEOUTS_HTTP),
      pick { "nil", "0", "1", "-1", "'x'" }, pick { "nil", "nil", "CTX[2]", "CTX[" .. ctx() .. "]" }, random(4),
      formats():sub(3))
  end,
  function(k)
    return fmt("HREQ(%d, '/', {timeout = 0.2, tls = %s}, %d, {%s})", k or random(2), pick { "nil", "CTX[2]" },
      random(4), formats():sub(3))
  end,
  function(k) return fmt("HRAW(%d, %s, %s)", k or random(2), pick(RAWS), tostring(chance(0.3))) end,
  function(k)
    return fmt("WSCONNECT(%d, %d, %s, %s); %s; %s", random(3), k or random(2), pick(PATHS), pick(WS_OPTS), ws_op(),
      ws_op())
  end,
}
-- A client in a task of its own: a request, a raw request or a websocket.
local function client(k) return fmt("SPAWN(%d, function() %s end)", slot(), pick(client_ops)(k)) end
into(http_ops, client_ops)
into(http_ops, {
  function() return fmt("HSERVER(%d, %s, %s)", random(2), handler(), pick(SRV_OPTS)) end,
  function() return fmt("HSERVER(%d, %s, %s)", random(2), handler(), pick(SRV_OPTS)) end,
  function() return fmt("HCLOSE(%d, %s)", random(2), pick(GRACES)) end,
  ws_op, ws_op, function() return client() end, function() return client() end,
  function() return "P(http.close_idle)" end,
  function() return fmt("P(http.request, %s, %s)", junk(), junk()) end,
  function() return fmt("P(http.server, %s, %s, %s)", junk(), pick { junk(), "print" }, junk()) end,
  function() return fmt("P(http.websocket, %s, %s)", junk(), junk()) end,
  function() return fmt("P(http.websocket_connect, %s, %s)", pick { junk(), "'ws://'", "'ws://[::1'",
    "'wss://x:99999/'" }, "{timeout = 0.1}") end,
})

-- csock.socket: objects LS[1..4] of every class, their methods on each other,
-- select, setfd/getfd, and native reads on the socket beneath.
local PATTERNS = { "'*l'", "'*a'", "'l'", "'a'", "'*L'", "0", "1", "5", "100", "-1", "1.5", "2^53", "0/0", "'x'",
  "'5'", "{}", "nil", "math.maxinteger" }
local PREFIXES = { "nil", "nil", "''", "'pre'", "5", "{}", "('p'):rep(5000)", "true" }
local LS_PLAIN = {
  "'getfd'", "'dirty'", "'close'", "'getsockname'", "'getpeername'", "'getstats'", "'getfamily'", "'gettimeout'",
  "'listen'", "'accept'", "'receivefrom'", "'shutdown'", "'getoption'",
}
local LS_ARGS = {
  "'setfd'", "'shutdown'", "'listen'", "'receivefrom'", "'getoption'", "'setoption'", "'setstats'", "'bind'",
    "'connect'",
  "'setpeername'", "'setsockname'", "'sendto'", "'send'", "'receive'", "'settimeout'",
}
local SELECT_SETS = {
  "nil", "{}", "{LS[1], LS[1], LS[2]}", "{LS[1], S[1], 5, 'x', {}}", "5",
  "{LS[3], LS[4], setmetatable({}, {__index = function() error('x') end})}", "{ {getfd = function() return 3 end} }",
  "{ {getfd = function() return LS[1] and LS[1]:getfd() end, dirty = function() return true end} }",
  "{LS[2], LS[3], LS[4], LS[1]}", "{n = 3, LS[2]}", "{ {getfd = function() error('getfd failed') end} }",
}
into(ls_ops, {
  function() return fmt("LSNEW(%d, %d)", random(4), random(6)) end,
  function() return fmt("LSNEW(%d, 4)", random(4)) end,
  function() return fmt("LSM(%d, 'receive', %s, %s)", random(4), pick(PATTERNS), pick(PREFIXES)) end,
  function() return fmt("LSM(%d, 'receive', %s, %s)", random(4), pick(PATTERNS), pick(PREFIXES)) end,
  function() return fmt("LSM(%d, 'send', %s, %s, %s)", random(4), data(), pick(SEND_I), pick(SEND_J)) end,
  function()
    return fmt("LSM(%d, 'settimeout', %s, %s)", random(4), pick { "nil", "0", "0.01", "0.05", "-1", "'x'", "0/0" },
      pick { "nil", "'b'", "'t'", "'r'", "'x'", "5" })
  end,
  function() return fmt("LSM(%d, %s)", random(4), pick(LS_PLAIN)) end,
  function() return fmt("LSM(%d, %s, %s, %s, %s)", random(4), pick(LS_ARGS), junk(), junk(), junk()) end,
  function() return fmt("LSM(%d, 'setfd', %s)", random(4), pick { "-1", "0", "1e308", "'x'", "{}", "nil", "99",
    "'-1'" }) end,
  function()
    return fmt("LSM(%d, 'setoption', %s, %s)", random(4), pick { "'keepalive'", "'reuseaddr'", "'tcp-nodelay'",
      "'linger'", "'ip-multicast-ttl'", "'x'", "5" },
      pick { "true", "false", "{on = true, timeout = 1}", "{on = 'x'}", "5", "nil", "-1" })
  end,
  function() return fmt("LSM(%d, 'connect', %s, %s)", random(4), pick { "'127.0.0.1'", "'localhost'", "'::1'",
    "nil" }, pick { "PORT", "HPORT[1]", "0", "-1", "'x'" }) end,
  function()
    return fmt("LSWRONG(%d, %s, %s, %s)", random(4), pick { "'receive'", "'send'", "'accept'", "'connect'", "'close'",
      "'getfd'", "'setfd'", "'dirty'", "'settimeout'", "'receivefrom'", "'sendto'", "'setpeername'", "'getstats'" },
      pick { "LS[1]", "LS[2]", "LS[3]", "LS[4]", "S[1]", "{}", "io.stdout", "nil", "5", "LSSOCK(1)",
        "setmetatable({}, getmetatable(LS[2] or {}))" }, junk())
  end,
  function() return fmt("LSNATIVE(%d, 'read'%s)", random(4), formats()) end,
  function() return fmt("LSNATIVE(%d, %s, %s)", random(4), pick { "'write'", "'recv'", "'send'", "'settimeout'",
    "'setmaxline'", "'close'", "'shutdown'" }, pick { data(), "1", "0.01", "nil" }) end,
  function() return fmt("LSNATIVE(%d, 'starttls', CTX[%d], %s)", random(4), ctx(), pick(TLS_HOSTS)) end,
  function() return fmt("SCENE_LS(%d, %s, {%s})", random(4), pick(PATTERNS), formats():sub(3)) end,
  function() return fmt("LSSELECT(%s, %s, %s)", pick(SELECT_SETS), pick(SELECT_SETS), pick { "0", "0.01", "nil", "-1",
    "'x'", "0/0", "1e308" }) end,
  function() return fmt("P(lsocket.sleep, %s)", pick { "0", "0.001", "-1", "'x'", "0/0", "{}" }) end,
  function() return fmt("P(function() local src = lsocket.source(%s, LS[%d], %s); return src() end)",
    pick { "'by-length'", "'until-closed'", "'x'", "5" }, random(4), num()) end,
  function() return fmt("P(function() local snk = lsocket.sink(%s, LS[%d]); return snk(%s) end)",
    pick { "'keep-open'", "'close-when-done'", "'x'" }, random(4), pick { "nil", "'x'", "5" }) end,
  function() return fmt("P(lsocket.connect, %s, %s, %s, %s)", junk(), junk(), junk(), junk()) end,
  function() return fmt("P(lsocket.bind, %s, %s, %s)", junk(), junk(), junk()) end,
})

-- sendfile: files of every kind, offsets and counts of every type, the file or
-- the socket closed while the call waits.
into(sendfile_ops, {
  function() return fmt("M(%d, 'sendfile', %s)", sock(), sendfile_args()) end,
  function() return fmt("M(%d, 'sendfile', FH, %s, %s)", sock(), num(), num()) end,
  function() return fmt("SCENE_SENDFILE(%d, %d)", random(7), random(4)) end,
  function() return fmt("MJ('sendfile', %s, FH)", pick { junk(), objexpr() }) end,
})

-- Conditions: CVS[1..3], waits with every kind of timeout, waiters cancelled,
-- conditions dropped while tasks wait on them.
local CWAITS = { "nil", "0", "0.001", "0.02", "-1", "0/0", "'x'", "1e308", "math.huge", "-0.0", "{}",
  "math.mininteger" }
into(cond_ops, {
  function() return fmt("R(CVS[%d], 'wait', %s)", random(3), pick(CWAITS)) end,
  function() return fmt("R(CVS[%d], '%s')", random(3), pick { "signal", "broadcast" }) end,
  function() return fmt("CWAITER(%d, %d, %s)", slot(), random(3), pick(CWAITS)) end,
  function() return fmt("SCENE_COND(%d, %d)", random(3), random(4)) end,
  function() return fmt("CVS[%d] = %s", random(3), pick { "csock.cond()", "nil" }) end,
  function() return fmt("P(CV.%s, %s, %s)", pick { "wait", "signal", "broadcast" }, junk(), junk()) end,
  function() return fmt("P(tostring, CVS[%d])", random(3)) end,
})

-- The internal methods and functions behind csock.socket, csock.http and the
-- websockets, called with junk: they are reachable from any script.
local function junk_or_num() return chance(0.5) and junk() or num() end
into(internal_ops, {
  function() return fmt("M(%d, '_lsrecv', %s, %s)", sock(), pick(PATTERNS), pick(PREFIXES)) end,
  function() return fmt("M(%d, '_lssend', %s, %s, %s)", sock(), data(), num(), num()) end,
  function() return fmt("M(%d, '_lsfd')", sock()) end,
  function()
    return fmt("M(%d, '%s', %s, %s, %s, %s, %s)", sock(), pick { "_httpreq", "_httpres", "_httpchunk" },
      junk_or_num(), junk_or_num(), junk_or_num(), junk_or_num(), junk_or_num())
  end,
  function() return fmt("M(%d, '%s', nil, 0.01)", sock(), pick { "_httpreq", "_httpres" }) end,
  function() return fmt("M(%d, '_httpchunk', 0.01, %s, %s, %s, %s)", sock(), pick { "true", "false" }, num(), num(),
    num()) end,
  function() return fmt("M(%d, '_accept')", sock()) end,
  function() return fmt("P(CORE.http.fields, %s, %s)", pick { "'a: b\\r\\n'", "''", junk() }, pick { "{}",
    junk() }) end,
  function()
    return fmt("P(CORE.ws.%s, %s, %s, %s)", pick { "accept_key", "sha1", "new_key", "unmask", "frame", "utf8" },
      pick { junk(), "'abc'", "('\\200'):rep(9)", "129" }, junk_or_num(), junk_or_num())
  end,
})

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
emit("%s", [[
-- The newer API (see fuzz/gen.lua).  Files: the run's certificate and key, made
-- by fuzz/lua_api.sh, a second key that matches nothing, a data file to send.
local http, lsocket = require "csock.http", require "csock.socket"
local CORE = require "csock.core"
local CERT = os.getenv("FUZZ_CERT") or "build-fuzz/cert.pem"
local KEY = os.getenv("FUZZ_KEY") or "build-fuzz/key.pem"
local KEY2 = os.getenv("FUZZ_KEY2") or "build-fuzz/key2.pem"
local FILE = os.getenv("FUZZ_FILE") or "/etc/passwd"
local FH = io.open(FILE, "rb")
local CLOSEDF = io.open(FILE, "rb"); if CLOSEDF then CLOSEDF:close() end
local DIRF = io.open(".", "rb")
local TMPF = io.tmpfile(); if TMPF then TMPF:write(("t"):rep(1000)) end
local CTX, CVS, HS, HPORT, WSS, LS = {}, {csock.cond(), csock.cond(), csock.cond()}, {}, {}, {}, {}
local function R(o, name, ...) -- o:name(...), whatever o is
  if o == nil then return end
  return pcall(function(...) return o[name](o, ...) end, ...)
end
local function MJ(name, self, ...) -- a socket method on anything
  local s = S[1] or S[2] or S[3]
  if s == nil then return end
  return pcall(s[name], self, ...)
end
local function METAGC(o, name) -- a finalizer called by hand, before the collector's
  return pcall(function() return getmetatable(o)[name](o) end)
end
local function TLSCTX(k, opts)
  local ok, c = pcall(csock.tls_context, opts)
  if ok then CTX[k] = c end
end
local function TLSDROP(k, full)
  CTX[k] = nil
  if full then collectgarbage(); collectgarbage() end
end
local function TLSPAIR(i, a, b, host) -- a handshake from both ends at once
  local s, p = S[i], S[PEER[i] or 0]
  if not (s and p) then return end
  pcall(csock.spawn, function() pcall(s.starttls, s, CTX[a], host) end)
  pcall(p.starttls, p, CTX[b], host)
  pcall(csock.sleep, 0)
end
local function SCENE_TLS(i, a, b, fmts) -- starttls while another task reads and writes
  local s, p = S[i], S[PEER[i] or 0]
  if not (s and p) then return end
  pcall(csock.spawn, function() pcall(s.read, s, table.unpack(fmts)) end)
  pcall(csock.spawn, function() pcall(p.write, p, ("w"):rep(100000)) end)
  pcall(csock.spawn, function() pcall(p.starttls, p, CTX[b], "localhost") end)
  pcall(s.starttls, s, CTX[a])
  pcall(s.write, s, "after\n")
  pcall(p.read, p, "l")
end
local function TLSCONNECT(port, opts)
  if port then return pcall(csock.tls_connect, "127.0.0.1", port, opts) end
end
local function HSERVER(k, handler, opts)
  local ok, l = pcall(csock.tcp_listen, "127.0.0.1", 0)
  if not (ok and l) then return end
  local port = l:getsockname().port
  local ok2, srv = pcall(http.server, l, handler, opts)
  if ok2 then HS[k], HPORT[k] = srv, port else pcall(l.close, l) end
end
local function HCLOSE(k, grace) return R(HS[k], "close", grace) end
-- A body reader that gives piece n times, then ends.  (One that never ends
-- with "" spins without yielding, as it would with any HTTP client.)
local function BODYFN(n, piece)
  return function()
    if n <= 0 then return nil end
    n = n - 1
    return piece or "piece"
  end
end
local function HREQ(k, path, opts, rd, fmts) -- a client request, its body read one way or another
  local port = HPORT[k]
  if not port then return end
  local scheme = opts.tls and "https" or "http"
  local ok, r = pcall(http.request, scheme .. "://127.0.0.1:" .. port .. path, opts)
  if not (ok and r) then return end
  if rd == 1 then R(r, "read", table.unpack(fmts))
  elseif rd == 2 then R(r, "body")
  elseif rd == 3 then R(r, "close") end
end
local function HRAW(k, data, keep) -- raw bytes to a server; the connection kept in the pool
  local port = HPORT[k]
  if not port then return end
  local ok, c = pcall(csock.tcp_connect, "127.0.0.1", port, 0.2)
  if not (ok and c) then return end
  c:settimeout(0.1)
  pcall(c.write, c, data)
  if keep then S[9] = c return end
  pcall(c.read, c, "a")
  pcall(c.close, c)
end
local function WSACCEPT(w, req, res, opts)
  local ok, ws = pcall(http.websocket, req, res, opts)
  if ok and ws then WSS[w] = ws end
end
local function WSCONNECT(w, k, path, opts)
  local port = HPORT[k]
  if not port then return end
  if type(opts) == "table" and opts.timeout == nil then opts.timeout = 0.2 end
  local scheme = type(opts) == "table" and opts.tls and "wss" or "ws"
  local ok, ws = pcall(http.websocket_connect, scheme .. "://127.0.0.1:" .. port .. path, opts)
  if ok and ws then WSS[w] = ws end
end
local function WSOP(w, name, ...) return R(WSS[w], name, ...) end
local function LSNEW(k, kind)
  local ok, a, b = pcall(function()
    if kind == 1 then return lsocket.tcp() end
    if kind == 2 then return lsocket.udp() end
    if kind == 3 then return lsocket.connect("127.0.0.1", HPORT[1] or PORT) end
    if kind == 4 then -- a connected pair
      local srv = assert(lsocket.bind("127.0.0.1", 0))
      srv:settimeout(0.2)
      local c = assert(lsocket.tcp())
      c:settimeout(0.2)
      local _, port = srv:getsockname()
      c:connect("127.0.0.1", port)
      local acc = srv:accept()
      srv:close()
      return acc, c
    end
    if kind == 5 then
      local u = assert(lsocket.udp())
      u:setsockname("127.0.0.1", 0); u:setpeername("127.0.0.1", PORT6)
      return u
    end
    return lsocket.tcp6()
  end)
  if ok and a then
    LS[k] = a
    if b then LS[k % 4 + 1] = b end
  end
end
-- Outside a task nothing may block for long: no new timeouts there.
local function LSM(k, name, ...)
  local o = LS[k]
  if o == nil or (name == "settimeout" and csock.current() == nil) then return end
  return pcall(function(...) return o[name](o, ...) end, ...)
end
local function LSWRONG(k, name, target, ...) -- a method of LS[k]'s class on something else
  local o = LS[k]
  if o == nil or (name == "settimeout" and csock.current() == nil) then return end
  return pcall(function(...) return o[name](target, ...) end, ...)
end
local function LSSOCK(k) return LS[k] and LS[k].sock end
local function LSNATIVE(k, name, ...) -- a method of the csock socket beneath
  local s = LSSOCK(k)
  if s == nil or (name == "settimeout" and csock.current() == nil) then return end
  return pcall(function(...) return s[name](s, ...) end, ...)
end
local function SCENE_LS(k, pattern, fmts) -- receive and a native read of one socket at once
  local o, p = LS[k], LS[k % 4 + 1]
  if o == nil then return end
  pcall(csock.spawn, function() LSM(k, "receive", pattern) end)
  pcall(csock.spawn, function() LSNATIVE(k, "read", table.unpack(fmts)) end)
  if p then LSM(k % 4 + 1, "send", "one\r\ntwo\nthree 4\n") end
  pcall(csock.sleep, 0.002)
  LSM(k, "receive", pattern)
end
local function LSSELECT(r, w, t)
  if csock.current() == nil and not (type(t) == "number" and t >= 0 and t <= 0.05) then t = 0.01 end
  return pcall(lsocket.select, r, w, t)
end
local function SCENE_SENDFILE(i, how) -- the file or the socket closed while sendfile waits
  local s, p = S[i], S[PEER[i] or 0]
  if s == nil then return end
  local ok, f = pcall(io.open, FILE, "rb")
  if not (ok and f) then return end
  pcall(csock.spawn, function() pcall(s.sendfile, s, f, 0) end)
  pcall(csock.sleep, 0.002)
  if how == 1 then pcall(f.close, f)
  elseif how == 2 then pcall(s.close, s)
  elseif how == 3 and p then pcall(p.read, p, 1000)
  elseif how == 4 then f = nil; collectgarbage(); collectgarbage() end
  pcall(csock.sleep, 0.002)
end
local function CWAITER(k, c, timeout)
  SPAWN(k, function() R(CVS[c], "wait", timeout) end)
end
local function SCENE_COND(c, how) -- waiters cancelled, signalled, dropped
  local cv = CVS[c]
  if cv == nil then return end
  local ws = {}
  for j = 1, 3 do
    local ok, t = pcall(csock.spawn, function() R(cv, "wait", j == 2 and 0.01 or nil) end)
    if ok then ws[j] = t end
  end
  pcall(csock.sleep, 0)
  if ws[2] and how <= 2 then ws[2]:cancel() end
  if how == 1 then R(cv, "signal") elseif how == 2 then R(cv, "broadcast") end
  if how == 3 then CVS[c], cv = nil, nil; collectgarbage(); collectgarbage() end
  if how == 4 and ws[1] then R(CO[1] and ws[1], "cancel"); R(cv, "signal"); R(cv, "signal") end
  pcall(csock.sleep, 0.005)
end
-- Before each statement outside the loop: short timeouts on everything.
local function SHORT()
  for i = 1, 9 do local s = S[i]; if s then pcall(s.settimeout, s, 0.01) end end
  for k = 1, 4 do local s = LSSOCK(k); if s then pcall(s.settimeout, s, 0.01) end end
  for w = 1, 3 do local ws = WSS[w]; if ws then pcall(function() ws.sock:settimeout(0.01) end) end end
end
]])

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
-- TLS contexts and csock.socket objects ready before the first statement, often.
if on("tls") and chance(0.8) then emit("TLSCTX(1, %s); TLSCTX(2, %s)", TLS_OPTS[1], TLS_OPTS[12]) end
-- and two of any options, good or bad: each option's check runs often enough
if on("tls") then emit("TLSCTX(3, %s); TLSCTX(4, %s)", pick(TLS_OPTS), pick(TLS_OPTS)) end
if on("luasocket") and chance(0.8) then emit("LSNEW(1, 4); LSNEW(3, %d)", pick { 4, 4, random(6) }) end

-- Top-level statements run outside any loop: the pool's sockets get a short
-- timeout first, so that nothing there can block for long.
local function top_stmts(n)
  for _ = 1, n do
    emit("SHORT()")
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
-- The stage a loop's first task sets, so that the newer statements find a
-- server to talk to more often than by chance: HTTP servers (plain or TLS).
local function stage()
  local t, servers = {}, {}
  for k, p in ipairs { 0.5, 0.3 } do
    if on("http") and chance(p) then
      t[#t + 1] = fmt("HSERVER(%d, %s, %s)", k, handler(), pick(SRV_OPTS))
      servers[#servers + 1] = k
    end
  end
  if #servers > 0 then
    for _ = 1, random(1, 4) do t[#t + 1] = client(pick(servers)) end
    local websocket = client_ops[#client_ops]
    if chance(0.5) then t[#t + 1] = fmt("SPAWN(%d, function() %s end)", slot(), websocket(pick(servers))) end
  end
  return table.concat(t, "; ")
end

local function run_driver()
  emit("local main_result = table.pack(pcall(csock.run, function(...)")
  emit("  CO_SELF()")
  emit("  csock.spawn(REAPER)")
  emit("  %s", stage())
  for _ = 1, random(2, 10) do emit("  %s", stmt(0)) end
  -- Time for the other tasks (a client and its server's handler) to get on.
  emit("  P(csock.sleep, %s)", pick { "0", "0.02", "0.1", "0.3" })
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
  emit("LOOPSPAWN(1, %d, function() %s end)", slot(), stage())
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
