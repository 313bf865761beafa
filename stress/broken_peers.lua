-- stress/broken_peers.lua - run by bin/csock: peers that reset, vanish, shut
-- one side down, refuse or never answer.  Each case must give its documented
-- result, and a ticker task must keep running through all of them.
package.path = "./stress/?.lua;" .. package.path
local csock = require "csock"
local S = require "lib"

local ticks = 0
local ticker = csock.spawn(function()
  while true do
    csock.sleep(0.01)
    ticks = ticks + 1
  end
end)

local function listener(backlog)
  local srv = assert(csock.socket(csock.AF_INET, csock.SOCK_STREAM))
  assert(srv:bind("127.0.0.1", 0))
  assert(srv:listen(backlog or 16))
  return srv, srv:getsockname().port
end

local function connect(port, timeout)
  local c = assert(csock.socket(csock.AF_INET, csock.SOCK_STREAM))
  c:settimeout(timeout or 5)
  local ok, err, code = c:connect("127.0.0.1", port)
  return c, ok, err, code
end

local function reset(c) -- close with SO_LINGER 0: the kernel sends RST
  assert(c:setsockopt(csock.SOL_SOCKET, csock.SO_LINGER, {onoff = true, linger = 0}))
  c:close()
end

local function pair(backlog)
  local srv, port = listener(backlog)
  local c = connect(port)
  local a = assert(srv:accept())
  a:settimeout(5)
  srv:close()
  return a, c
end

local function name(code)
  for k, v in pairs(csock) do
    if v == code and type(k) == "string" and k:match("^E[A-Z]+$") and k ~= "EWOULDBLOCK" then
      return k
    end
  end
  return tostring(code)
end

local function case(label, tried, fn)
  local t0, k0 = csock.now(), ticks
  local ok, pass, result = pcall(fn)
  local dt = csock.now() - t0
  local alive = ticks > k0 or dt < 0.02
  if not ok then pass, result = false, "raised: " .. tostring(pass) end
  S.row(label, tried, 1, pass and alive,
    string.format("%s (%.2f s; loop %s)", result, dt, alive and "ran on" or "STALLED"))
end

case("RST mid-read", "read(1e6) gets 100 bytes then RST (SO_LINGER 0)", function()
  local a, c = pair()
  local reader = csock.spawn(function() return a:read(1000000) end)
  c:write(string.rep("r", 100))
  csock.sleep(0.05)
  reset(c)
  local _, data, err, code = reader:join()
  local rest = a:read("a")
  a:close()
  return data == nil and code == csock.ECONNRESET,
    string.format("nil, %q, %s; then read('a') gave %d buffered bytes", tostring(err),
      name(code), rest and #rest or -1)
end)

case("RST mid-write", "write(8 MiB) while peer reads 1 KiB then resets", function()
  local a, c = pair()
  local writer = csock.spawn(function() return a:write(string.rep("w", 8 << 20)) end)
  c:read(1024)
  reset(c)
  local _, r, err, code, sent = writer:join()
  a:close()
  return r == nil and (code == csock.ECONNRESET or code == csock.EPIPE)
    and math.type(sent) == "integer" and sent > 0 and sent < 8 << 20,
    string.format("nil, %q, %s, sent=%s", tostring(err), name(code), tostring(sent))
end)

case("EPIPE", "peer closed; server writes until the kernel refuses", function()
  local a, c = pair()
  c:close()
  local r, err, code
  for _ = 1, 50 do
    r, err, code = a:write("data\n")
    if not r then break end
    csock.sleep(0.01)
  end
  a:close()
  return r == nil and code == csock.EPIPE,
    string.format("nil, %q, %s; no SIGPIPE", tostring(err), name(code))
end)

case("half-close c->s", "client shutdown('w'); server read('a'), answers", function()
  local a, c = pair()
  c:write("request")
  assert(c:shutdown("w"))
  local got = a:read("a")
  a:write("response")
  a:close()
  local back = c:read("a")
  c:close()
  return got == "request" and back == "response",
    string.format("server read %q, client read %q", tostring(got), tostring(back))
end)

case("half-close s->c", "server shutdown('w'); client reads EOF, still writes", function()
  local a, c = pair()
  a:write("hello\n")
  assert(a:shutdown("w"))
  local l1, l2 = c:read("l", "l")
  c:write("after\n")
  local got = a:read("l")
  a:close()
  c:close()
  return l1 == "hello" and l2 == nil and got == "after",
    string.format("client read %q then %s; server read %q", tostring(l1), tostring(l2),
      tostring(got))
end)

case("ECONNREFUSED", "connect to a bound port nobody listens on", function()
  local holder = assert(csock.socket(csock.AF_INET, csock.SOCK_STREAM))
  assert(holder:bind("127.0.0.1", 0)) -- keeps the port ours, not listening
  local c, ok, err, code = connect(holder:getsockname().port)
  c:close()
  holder:close()
  return ok == nil and code == csock.ECONNREFUSED,
    string.format("nil, %q, %s", tostring(err), name(code))
end)

case("connect timeout", "listener backlog 0, queue filled, never accepts; timeout 0.5 s",
  function()
  local srv, port = listener(0)
  local fillers, ok, err, code = {}, nil, nil, nil
  local dt
  for i = 1, 4 do -- the queue holds backlog + 1; then SYNs are dropped
    local t0 = csock.now()
    local c
    c, ok, err, code = connect(port, 0.5)
    dt = csock.now() - t0
    fillers[i] = c
    if not ok then break end
  end
  for _, f in ipairs(fillers) do f:close() end
  srv:close()
  return ok == nil and code == csock.ETIMEDOUT and dt >= 0.45 and dt < 1.5,
    string.format("after %d queued: nil, %q, %s in %.2f s", #fillers - 1, tostring(err),
      name(code), dt or -1)
end)

ticker:cancel()
S.exit()
