-- systemd socket activation: csock.listeners() (docs/reference.md "csock.listeners()",
-- docs/runtime.md "systemd socket activation").
--
-- The tests do what systemd does: a parent process (python3) owns a listening TCP socket and a
-- listening unix socket, puts them at descriptors 3 and 4 of a child, sets LISTEN_FDS,
-- LISTEN_FDNAMES and LISTEN_PID (the child's own pid: `sh -c 'LISTEN_PID=$$; exec ...'` keeps the
-- pid across exec) and then connects to the sockets it owns; the child takes them with
-- csock.listeners() and answers. The sockets listen before the child starts, so there is nothing
-- to wait for: the connections queue in the backlog until the child accepts them.
local csock = require "csock"
local helper = require "helper"
local rt = require "support.rt"

--[[ The parent. argv: unix path, LISTEN_FDNAMES, LISTEN_PID ("self": the child's own pid),
"client" (ask both sockets) / "web" (only the TCP one) / "noclient", "term" (then SIGTERM the
child) / "wait", the child's shell command. Prints "port N", then per
socket "web-answer: ..." / "ctl-answer: ..." (what came back until end of stream), then the
child's stdout lines prefixed "child: ", then "status N" (negative: killed by signal -N); the
child's stderr goes to the parent's stderr. ]]
local PARENT = [[
import fcntl, os, signal, socket, subprocess, sys
upath, names, pid, client, term, cmd = sys.argv[1:7]
tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
tcp.bind(("127.0.0.1", 0))
tcp.listen(16)
port = tcp.getsockname()[1]
ux = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
ux.bind(upath)
ux.listen(16)
# Park both above 3 and 4, then place them there (dup2 leaves them inheritable).
t = fcntl.fcntl(tcp.fileno(), fcntl.F_DUPFD_CLOEXEC, 20)
u = fcntl.fcntl(ux.fileno(), fcntl.F_DUPFD_CLOEXEC, 20)
tcp.close(); ux.close()
os.dup2(t, 3); os.dup2(u, 4)
os.close(t); os.close(u)
print("port %d" % port, flush=True)
env = dict(os.environ, LISTEN_FDS="2", LISTEN_FDNAMES=names)
env.pop("LISTEN_PID", None)
if os.environ.get("CSOCK_PRELOAD"):  # make asan: the csock child needs the sanitizer back
    env["LD_PRELOAD"] = os.environ["CSOCK_PRELOAD"]
setpid = "LISTEN_PID=$$" if pid == "self" else "LISTEN_PID=" + pid
child = subprocess.Popen(["sh", "-c", setpid + "; export LISTEN_PID; exec " + cmd],
                         pass_fds=(3, 4), env=env, stdout=subprocess.PIPE)
os.close(3); os.close(4)   # the child holds them now
def ask(family, addr, msg):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(15)
    s.connect(addr)
    s.sendall(msg)
    s.shutdown(socket.SHUT_WR)
    got = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        got += d
    s.close()
    return got.decode()
try:
    if client in ("client", "web"):
        print("web-answer: " + ask(socket.AF_INET, ("127.0.0.1", port), b"hello web\n").rstrip("\n"), flush=True)
    if client == "client":
        print("ctl-answer: " + ask(socket.AF_UNIX, upath, b"hello ctl\n").rstrip("\n"), flush=True)
    if term == "term":
        child.send_signal(signal.SIGTERM)
    out, _ = child.communicate(timeout=15)
finally:
    if child.poll() is None:
        child.kill()
        child.wait()
for line in out.decode().splitlines():
    print("child: " + line)
print("status %d" % child.returncode)
]]

-- The child: reports what csock.listeners() gave, then serves one connection on each socket.
local CHILD = [[
local csock = require "csock"
io.stdout:setvbuf("line")
local function fdflags(fd)
  local f = io.open("/proc/self/fdinfo/" .. fd)
  if not f then return "closed" end
  local flags = tonumber(f:read("a"):match("flags:%s*(%d+)"), 8)
  f:close()
  return ((flags & 04000 ~= 0) and "nonblock" or "block") .. "," ..
    ((flags & 02000000 ~= 0) and "cloexec" or "inherit")
end
local l = csock.listeners()
print("count " .. #l)
print("kinds " .. tostring(l[1]) .. " | " .. tostring(l[2]))
print("named " .. tostring(l.web ~= nil and l.web == l[1]) .. " " .. tostring(l.ctl ~= nil and l.ctl == l[2]))
print("fds " .. (l[1] and l[1]:fileno() or "-") .. " " .. (l[2] and l[2]:fileno() or "-"))
print("flags " .. fdflags(3) .. " " .. fdflags(4))
print("env " .. tostring(os.getenv("LISTEN_PID")) .. " " .. tostring(os.getenv("LISTEN_FDS")) ..
  " " .. tostring(os.getenv("LISTEN_FDNAMES")))
local again = csock.listeners()
print("again " .. #again .. " " .. tostring(next(again)))
if #l == 0 then return end
local function serve(s, tag)
  local c <close> = assert(s:accept())
  c:settimeout(10)
  local line = assert(c:read("l"))
  assert(c:write(tag .. " got: " .. line .. " on " .. tostring(c) .. "\n"))
end
local function main()
  -- both accepts wait at once: the inherited sockets must not block the loop
  local a = csock.spawn(serve, l.web or l[1], "web")
  local b = csock.spawn(serve, l.ctl or l[2], "ctl")
  assert(a:join())
  assert(b:join())
end
if csock.current() then main() else csock.run(main) end
print("served")
]]

local function lines_of(text)
  local t = {}
  for line in text:gmatch("[^\n]+") do t[#t + 1] = line end
  return t
end

-- Runs PARENT with the child command `cmd`; returns the rt.exec result and its stdout lines
-- keyed by their first word ("port", "web-answer:", "child:" lines collected in order).
local function activate(cmd, opts)
  opts = opts or {}
  local upath = helper.tmpname("sd")
  rt.defer(finally, function() helper.remove(upath) end)
  local r = rt.python(PARENT, {upath, opts.names or "web:ctl", opts.pid or "self",
    opts.client or "client", opts.term or "wait", cmd}, {limit = 30})
  local res = {child = {}, raw = r}
  for _, line in ipairs(lines_of(r.out)) do
    local c = line:match("^child: (.*)$")
    if c then
      res.child[#res.child + 1] = c
      local k, v = c:match("^(%S+) ?(.*)$")
      res.child[k] = v
    else
      local k, v = line:match("^(%S+) (.*)$")
      if k then res[k] = v end
    end
  end
  return res, r
end

local function check_served(res, r)
  assert.equal("0", res.status, r.out .. r.err)
  local port = assert(tonumber(res.port), r.out)
  local c = res.child
  assert.equal("2", c.count, r.out .. r.err)
  assert.equal("csock socket (tcp, fd 3) | csock socket (unix, fd 4)", c.kinds)
  assert.equal("true true", c.named)
  assert.equal("3 4", c.fds)
  assert.equal("nonblock,cloexec nonblock,cloexec", c.flags)
  assert.equal("nil nil nil", c.env)
  assert.equal("0 nil", c.again)
  assert.is_truthy(c.served, r.out .. r.err)
  assert.matches("^web got: hello web on csock socket %(tcp, fd %d+%)$", res["web-answer:"])
  assert.matches("^ctl got: hello ctl on csock socket %(unix, fd %d+%)$", res["ctl-answer:"])
  assert.is_true(port > 0)
end

local function skip_without_python()
  if not helper.has_python3() then pending("python3 not installed"); return true end
end

describe("csock.listeners() under socket activation", function()
  it("takes descriptors 3 and 4 in plain lua5.4: an array, by name, non-blocking, env removed", function()
    if skip_without_python() then return end
    local script = rt.script(CHILD)
    rt.defer(finally, function() os.remove(script) end)
    check_served(activate(helper.LUA .. " " .. rt.q(script)))
  end)

  it("takes them in a script run by the host bin/csock", function()
    if skip_without_python() then return end
    local script = rt.script(CHILD)
    rt.defer(finally, function() os.remove(script) end)
    check_served(activate(rt.BIN .. " " .. rt.q(script)))
  end)

  it("returns an empty table when LISTEN_PID is another process", function()
    if skip_without_python() then return end
    local script = rt.script(CHILD)
    rt.defer(finally, function() os.remove(script) end)
    local res, r = activate(helper.LUA .. " " .. rt.q(script), {pid = "1", client = "noclient"})
    assert.equal("0", res.status, r.out .. r.err)
    assert.equal("0", res.child.count)
    assert.equal("0 nil", res.child.again)
    -- the descriptors are left alone: still inherited as they were
    assert.equal("block,inherit block,inherit", res.child.flags)
  end)

  it("stores unnamed descriptors in the array only", function()
    if skip_without_python() then return end
    local script = rt.script(CHILD)
    rt.defer(finally, function() os.remove(script) end)
    local res, r = activate(helper.LUA .. " " .. rt.q(script), {names = ":ctl"})
    assert.equal("0", res.status, r.out .. r.err)
    assert.equal("2", res.child.count)
    assert.equal("false true", res.child.named)
    assert.is_truthy(res.child.served)
  end)
end)

describe("examples/systemd/echo.lua under socket activation", function()
  it("echoes on the passed TCP socket, named echo, and stops on SIGTERM with status 143", function()
    if skip_without_python() then return end
    local f = io.open("examples/systemd/echo.lua")
    if not f then pending("examples/systemd/echo.lua does not exist"); return end
    f:close()
    -- echo.lua serves forever: the parent stops it with SIGTERM once the answer is in. It
    -- takes listeners().echo, so the unix socket at fd 4 (ctl) stays unserved.
    local res, r = activate(rt.BIN .. " examples/systemd/echo.lua 2>&1",
      {names = "echo:ctl", client = "web", term = "term"})
    local port = assert(tonumber(res.port), r.out .. r.err)
    assert.equal("hello web", res["web-answer:"], r.out .. r.err)
    -- its stderr (merged into the child's stdout) names the passed socket, not port 7000
    assert.equal("csock-echo: serving 127.0.0.1:" .. port, res.child[1], r.out .. r.err)
    -- no SIGTERM handler: the host ends as a process killed by SIGTERM (a shell reports 143);
    -- exiting with status 143 would do as well
    assert.is_truthy(res.status == "-15" or res.status == "143", r.out .. r.err)
  end)
end)

describe("csock.listeners() under systemd-socket-activate", function()
  it("takes the unix socket the real tool passes, by its --fdname", function()
    if not helper.has("systemd-socket-activate") then
      pending("systemd-socket-activate not installed"); return
    end
    local script = rt.script([[
      local csock = require "csock"
      io.stdout:setvbuf("line")
      local l = csock.listeners()
      print("count " .. #l .. " named " .. tostring(l.ctl == l[1]) .. " " .. tostring(l[1]))
      local c <close> = assert(l.ctl:accept())
      c:settimeout(10)
      c:write("ctl says: ", assert(c:read("l")), "\n")
    ]])
    local path = helper.tmpname("ssa")
    rt.defer(finally, function() os.remove(script); helper.remove(path) end)
    local cmd = string.format(
      "echo $$; exec env %s timeout -k 2 30 systemd-socket-activate -l %s --fdname=ctl %s %s 2>&1 </dev/null",
      rt.ENV, rt.q(path), rt.BIN, rt.q(script))
    local pipe = assert(io.popen(cmd))
    local pid = assert(math.tointeger(tonumber(pipe:read("l"))))
    rt.defer(finally, function()
      os.execute("kill " .. pid .. " 2>/dev/null")
      pipe:close()
    end)
    local ready = pipe:read("l")
    assert.equal("Listening on " .. path .. " as 3.", ready)
    -- the service starts on the first connection and inherits the socket
    local s <close> = assert(csock.socket(csock.AF_UNIX, csock.SOCK_STREAM))
    s:settimeout(15)
    assert(s:connect(path))
    assert(s:write("ping\n"))
    assert.equal("ctl says: ping", s:read("l"))
    local rest = pipe:read("a")
    assert.matches("count 1 named true csock socket %(unix, fd 3%)", rest)
  end)
end)
