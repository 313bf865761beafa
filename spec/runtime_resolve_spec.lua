-- Host names inside the loop: looked up on a helper thread while the task waits, so the other
-- tasks run meanwhile (docs/runtime.md "What blocks the loop").  The slow and failing names come
-- from a getaddrinfo shim preloaded into a child csock: real DNS is neither fast nor reachable
-- everywhere the specs run.
local csock = require "csock"
local rt = require "support.rt"

local listener = rt.listener

describe("a host name inside a task", function()
  it("getaddrinfo returns what it returns outside the loop", function()
    local outside = assert(csock.getaddrinfo("localhost", 8080, {family = csock.AF_INET}))
    local inside = rt.loop(function()
      return assert(csock.getaddrinfo("localhost", 8080, {family = csock.AF_INET}))
    end)
    assert.same(outside, inside)
    assert.equal("127.0.0.1", inside[1].addr)
  end)

  it("connect and bind take it (server and client tasks)", function()
    local got = rt.loop(function(go)
      local server <close> = csock.socket(csock.AF_INET, csock.SOCK_STREAM)
      assert(server:setsockopt(csock.SOL_SOCKET, csock.SO_REUSEADDR, true))
      assert.is_true(server:bind("localhost", 0))
      assert(server:listen(4))
      local me = server:getsockname()
      go(function()
        local c <close> = assert(server:accept())
        c:write("hello ", me.addr, "\n")
      end)
      local client <close> = csock.socket(csock.AF_INET, csock.SOCK_STREAM)
      client:settimeout(5)
      assert.is_true(client:connect("localhost", me.port))
      return client:read("l")
    end)
    assert.equal("hello 127.0.0.1", got)
  end)

  it("sendto takes it (UDP)", function()
    local got = rt.loop(function()
      local rx <close> = csock.socket(csock.AF_INET, csock.SOCK_DGRAM)
      assert(rx:bind("127.0.0.1", 0))
      rx:settimeout(5)
      local tx <close> = csock.socket(csock.AF_INET, csock.SOCK_DGRAM)
      assert.equal(4, tx:sendto("ping", "localhost", rx:getsockname().port))
      return rx:recvfrom(16)
    end)
    assert.equal("ping", got)
  end)

  it("a task that cancelled itself ends at its lookup; closing the socket later is harmless",
    function()
      local s = csock.socket(csock.AF_INET, csock.SOCK_STREAM)
      local ended = false
      csock.run(function()
        csock.spawn(function() -- its handle is dropped at once
          local _ <close> = setmetatable({}, {__close = function() ended = true end})
          csock.current():cancel()
          s:connect("localhost", 9) -- the task ends here
          error("not reached")
        end)
        csock.sleep(0.02)
        collectgarbage()
        collectgarbage() -- the task is gone: nothing may point at it any more
        s:close()
      end)
      assert.is_true(ended)
      assert.matches("closed", tostring(s))
    end)

  it("fails with EMFILE, at once, when no descriptor is left for the lookup", function()
    local script = rt.script([[
local tcp = csock.socket(csock.AF_INET, csock.SOCK_STREAM)
local held = {}
while true do
  local s = csock.socket(csock.AF_INET, csock.SOCK_DGRAM)
  if not s then break end
  held[#held + 1] = s
end
print(csock.getaddrinfo("localhost", 80))
print(tcp:connect("localhost", 80))
for i = 1, 4 do held[i]:close() end
print(assert(csock.getaddrinfo("localhost", 80, {family = csock.AF_INET}))[1].addr)
]])
    -- the shell lowers the limit, then hands the sanitizer's preload (if any) back to csock
    local r = rt.exec({"sh", "-c", 'ulimit -n 64 && LD_PRELOAD="$CSOCK_PRELOAD" exec "$0" "$1"',
      rt.BIN, script})
    os.remove(script)
    assert.equal(0, r.status, r.err)
    local emfile = ("nil\tToo many open files\t%d\n"):format(csock.EMFILE)
    assert.equal(emfile .. emfile .. "127.0.0.1\n", r.out)
  end)

  it("tcp_connect takes it", function()
    local server, port = listener()
    local line = rt.loop(function(go)
      go(function()
        local c <close> = assert(server:accept())
        c:write("hi\n")
      end)
      local c <close> = assert(csock.tcp_connect("localhost", port, 5))
      return c:read("l")
    end)
    server:close()
    assert.equal("hi", line)
  end)
end)

-- The shim: "slow.csock.test" answers 127.0.0.1 after 300 ms, "nowhere.csock.test" fails with
-- EAI_NONAME after 100 ms; other names go to the real resolver.  With CSOCK_SHIM_LOG set, each
-- lookup of the slow name adds a line to that file.
local SHIM = [[
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
typedef int (*gai_fn)(const char *, const char *, const struct addrinfo *, struct addrinfo **);
static void note(const char *node) {
  const char *path = getenv("CSOCK_SHIM_LOG");
  FILE *f = path ? fopen(path, "a") : NULL;
  if (f) {
    fprintf(f, "%s\n", node);
    fclose(f);
  }
}
int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **res) {
  gai_fn real = (gai_fn)dlsym(RTLD_NEXT, "getaddrinfo");
  if (node && strcmp(node, "slow.csock.test") == 0) {
    note(node);
    usleep(300000);
    return real("127.0.0.1", service, hints, res);
  }
  if (node && strcmp(node, "nowhere.csock.test") == 0) {
    usleep(100000);
    return EAI_NONAME;
  }
  return real(node, service, hints, res);
}
]]

local function build_shim()
  local src = rt.tmppath(".c")
  local so = rt.tmppath(".so")
  local f = assert(io.open(src, "w"))
  f:write(SHIM)
  f:close()
  local r = rt.exec({"cc", "-shared", "-fPIC", "-o", so, src, "-ldl"})
  os.remove(src)
  assert(r.status == 0, "cannot build the getaddrinfo shim: " .. r.err)
  return so
end

-- Runs a host script with the shim preloaded (after whatever is preloaded already: make asan's
-- sanitizer runtime must stay first).
local function run_with_shim(so, text, env)
  local script = rt.script(text)
  local r = rt.exec({rt.BIN, script}, {env = "LD_PRELOAD=\"$LD_PRELOAD " .. so .. "\" " .. (env or "")})
  os.remove(script)
  return r
end

describe("a slow name lookup inside a task", function()
  local so
  setup(function() so = build_shim() end)
  teardown(function() if so then os.remove(so) end end)

  it("lets the other tasks run while it waits", function()
    local r = run_with_shim(so, [[
local ticks = 0
local ticker = csock.spawn(function()
  while true do csock.sleep(0.01); ticks = ticks + 1 end
end)
local t0 = csock.now()
local list = assert(csock.getaddrinfo("slow.csock.test", 80, {family = csock.AF_INET}))
print(list[1].addr, list[1].port, csock.now() - t0 >= 0.25, ticks >= 10)
ticker:cancel()
]])
    assert.equal(0, r.status, r.err)
    assert.equal("127.0.0.1\t80\ttrue\ttrue\n", r.out)
  end)

  it("serves a client task's connect to a name while the server task accepts", function()
    local r = run_with_shim(so, [[
local server <close> = csock.socket(csock.AF_INET, csock.SOCK_STREAM)
assert(server:bind("127.0.0.1", 0))
assert(server:listen(4))
local port = server:getsockname().port
csock.spawn(function()
  local c <close> = assert(server:accept())
  c:write("welcome\n")
end)
local client <close> = csock.socket(csock.AF_INET, csock.SOCK_STREAM)
client:settimeout(5)
print(client:connect("slow.csock.test", port), client:read("l"), client:getpeername().addr)
]])
    assert.equal(0, r.status, r.err)
    assert.equal("true\twelcome\t127.0.0.1\n", r.out)
  end)

  it("reports a name that does not resolve as nil, message, EAI code", function()
    local r = run_with_shim(so, [[
local list, msg, code = csock.getaddrinfo("nowhere.csock.test", 80)
print(list, type(msg), code == csock.EAI_NONAME)
local s <close> = csock.socket(csock.AF_INET, csock.SOCK_STREAM)
local ok, msg2, code2 = s:connect("nowhere.csock.test", 80)
print(ok, msg == msg2, code2 == csock.EAI_NONAME)
]])
    assert.equal(0, r.status, r.err)
    assert.equal("nil\tstring\ttrue\nnil\ttrue\ttrue\n", r.out)
  end)

  it("counts against the socket's timeout, and a later lookup still works", function()
    local r = run_with_shim(so, [[
local s <close> = csock.socket(csock.AF_INET, csock.SOCK_STREAM)
s:settimeout(0.05)
local t0 = csock.now()
local ok, msg, code = s:connect("slow.csock.test", 9)
print(ok, msg, code == csock.ETIMEDOUT, csock.now() - t0 < 0.25)
csock.sleep(0.4) -- the abandoned lookup ends meanwhile
print(assert(csock.getaddrinfo("slow.csock.test", 80, {family = csock.AF_INET}))[1].addr)
]])
    assert.equal(0, r.status, r.err)
    assert.equal("nil\ttimeout\ttrue\ttrue\n127.0.0.1\n", r.out)
  end)

  it("ends with 'socket closed' as soon as another task closes the socket", function()
    local r = run_with_shim(so, [[
local s = csock.socket(csock.AF_INET, csock.SOCK_STREAM)
csock.spawn(function() csock.sleep(0.05); s:close() end)
local t0 = csock.now()
local ok, msg, code = s:connect("slow.csock.test", 9)
print(ok, msg, code == csock.EBADF, csock.now() - t0 < 0.25) -- at the close, not at the answer
csock.sleep(0.4)
local s2 <close> = csock.socket(csock.AF_INET, csock.SOCK_STREAM)
csock.spawn(function() csock.sleep(0.05); s2:close() end)
print(s2:sendto("x", "slow.csock.test", 9))
]])
    assert.equal(0, r.status, r.err)
    assert.equal("nil\tsocket closed\ttrue\ttrue\nnil\tsocket closed\t9\n", r.out)
  end)

  it("may be cancelled: the task ends at once, the loop goes on", function()
    local r = run_with_shim(so, [[
local t = csock.spawn(function() return csock.getaddrinfo("slow.csock.test", 80) end)
csock.sleep(0.02)
local t0 = csock.now()
t:cancel()
csock.sleep(0)
print(t:status(), csock.now() - t0 < 0.1)
csock.sleep(0.4)
print(#assert(csock.getaddrinfo("localhost", 80)) >= 1)
]])
    assert.equal(0, r.status, r.err)
    assert.equal("cancelled\ttrue\ntrue\n", r.out)
  end)

  it("runs many at once on at most 16 helper threads, queueing the rest", function()
    local r = run_with_shim(so, [[
local function threads()
  for line in io.lines("/proc/self/status") do
    local n = line:match("^Threads:%s*(%d+)")
    if n then return tonumber(n) end
  end
end
local before = threads() -- 1, or more under a sanitizer's runtime
local most, answered = 0, 0
local sampler = csock.spawn(function()
  while true do most = math.max(most, threads()); csock.sleep(0.005) end
end)
local t0 = csock.now()
local tasks = {}
for i = 1, 40 do
  tasks[i] = csock.spawn(function()
    local list = assert(csock.getaddrinfo("slow.csock.test", i, {family = csock.AF_INET}))
    if list[1].addr == "127.0.0.1" and list[1].port == i then answered = answered + 1 end
  end)
end
for _, t in ipairs(tasks) do assert(t:join()) end
sampler:cancel()
-- 40 lookups of 300 ms, 16 at a time: three rounds, so at least 0.6 s
print(answered, most > before and most - before <= 16, csock.now() - t0 >= 0.6)
]])
    assert.equal(0, r.status, r.err)
    assert.equal("40\ttrue\ttrue\n", r.out)
  end)

  it("drops a queued lookup whose task was cancelled, without looking it up", function()
    local log = rt.tmppath(".log")
    local r = run_with_shim(so, [[
local function lookup() return csock.getaddrinfo("slow.csock.test", 80) end
local busy, queued = {}, {}
for i = 1, 16 do busy[i] = csock.spawn(lookup) end
csock.sleep(0.05) -- every helper is looking a name up
for i = 1, 10 do queued[i] = csock.spawn(lookup) end
csock.sleep(0) -- their lookups are queued
for _, t in ipairs(queued) do t:cancel() end
for _, t in ipairs(busy) do assert(t:join()) end
csock.sleep(0.1) -- the helpers go through the queue
print(#assert(csock.getaddrinfo("localhost", 80)) >= 1)
]], "CSOCK_SHIM_LOG=" .. log)
    local looked_up = 0
    for _ in io.lines(log) do looked_up = looked_up + 1 end
    os.remove(log)
    assert.equal(0, r.status, r.err)
    assert.equal("true\n", r.out)
    assert.equal(16, looked_up)
  end)

  it("under way at csock.workers: lost in the worker (EAI_AGAIN), kept by the master", function()
    local r = run_with_shim(so, [[
local t = csock.spawn(function()
  return csock.getaddrinfo("slow.csock.test", 80, {family = csock.AF_INET})
end)
csock.sleep(0.02) -- the lookup is under way
local id = csock.workers(1)
local ok, list, msg, code = t:join()
if not id then -- the master, its worker done: the lookup was its own
  print("master", ok, list[1].addr)
else
  print("worker", ok, list, type(msg), code == csock.EAI_AGAIN)
end
]])
    assert.equal(0, r.status, r.err)
    assert.equal("worker\ttrue\tnil\tstring\ttrue\nmaster\ttrue\t127.0.0.1\n", r.out)
  end)

  it("blocks in plain Lua outside the loop, and answers the same", function()
    local script = rt.script([[
local csock = require "csock"
local list = assert(csock.getaddrinfo("slow.csock.test", 80, {family = csock.AF_INET}))
print(list[1].addr)
]])
    local r = rt.exec({"lua5.4", script}, {env = "LD_PRELOAD=\"$LD_PRELOAD " .. so .. "\""})
    os.remove(script)
    assert.equal(0, r.status, r.err)
    assert.equal("127.0.0.1\n", r.out)
  end)
end)
