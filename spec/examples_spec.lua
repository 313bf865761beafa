-- The examples, each started with bin/csock as its own process and driven by a real client:
-- nc, curl, python3 or csock itself. Servers listen on 127.0.0.1 port 0 (or a temporary unix
-- path), print their address first, and are stopped by PID in `finally`.
local csock = require "csock"
local rt = require "support.rt"

local BIN = rt.BIN
local EXAMPLES = {"echo_server", "echo_client", "chat", "http_hello", "udp_echo", "unix_echo",
  "port_scan", "server", "client", "rest", "static", "https_client", "tls_echo", "https_get"}

local function start(name, ...)
  local proc = rt.start({BIN, "examples/" .. name .. ".lua", ...})
  rt.defer(finally, function() rt.stop(proc) end)
  return proc
end

describe("every example", function()
  for _, name in ipairs(EXAMPLES) do
    it(name .. ".lua compiles", function()
      assert.is_function(loadfile("examples/" .. name .. ".lua"))
    end)
  end
end)

describe("echo_server.lua", function()
  it("prints its address, port 0 giving a real port", function()
    local p = start("echo_server", 0)
    assert.matches("^listening on 127%.0%.0%.1:%d+$", p.line)
    assert.is_true(p.port > 0)
  end)

  it("echoes to nc", function()
    local p = start("echo_server", 0)
    local r = rt.exec({"nc", "-N", "-w", "5", "127.0.0.1", p.port}, {stdin = "hello nc\nsecond line\n"})
    assert.equal(0, r.status, r.err)
    assert.equal("hello nc\nsecond line\n", r.out)
  end)

  it("echoes a megabyte to each of 50 python3 clients at once", function()
    local p = start("echo_server", 0)
    local r = rt.python([[
import socket, sys, threading, os
port = int(sys.argv[1])
results = []
def client(i):
    blob = os.urandom(1 << 20)
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    def send():
        s.sendall(blob)
        s.shutdown(socket.SHUT_WR)
    t = threading.Thread(target=send)
    t.start()
    got = []
    while True:
        d = s.recv(65536)
        if not d:
            break
        got.append(d)
    t.join()
    s.close()
    results.append(b"".join(got) == blob)
ts = [threading.Thread(target=client, args=(i,)) for i in range(50)]
for t in ts: t.start()
for t in ts: t.join()
print(sum(results), len(results))
]], {p.port}, {limit = 60})
    assert.equal(0, r.status, r.err)
    assert.equal("50 50\n", r.out)
  end)

  it("answers echo_client.lua's 200 concurrent clients", function()
    local p = start("echo_server", 0)
    local r = rt.exec({BIN, "examples/echo_client.lua", p.port, "127.0.0.1", 200, "ping"})
    assert.equal(0, r.status, r.err)
    local lines = {}
    for l in r.out:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.equal(201, #lines)
    assert.equal("ok 200/200", lines[201])
    table.sort(lines)
    assert.equal("ping 1", lines[2]) -- "ok 200/200" sorts first, then "ping 1", "ping 10", ...
  end)

  it("serves on ::1 as well", function()
    if not rt.has_ipv6() then return pending("no ipv6") end
    local p = start("echo_server", 0, "::1")
    assert.matches("^listening on ::1:%d+$", p.line)
    local r = rt.exec({BIN, "examples/echo_client.lua", p.port, "::1", 3})
    assert.equal(0, r.status, r.err)
    assert.matches("ok 3/3", r.out)
  end)
end)

describe("echo_client.lua", function()
  it("exits 1 when the server is not there", function()
    local s = csock.socket(csock.AF_INET, csock.SOCK_STREAM)
    assert(s:bind("127.0.0.1", 0)) -- bound, not listening: connections are refused
    local port = s:getsockname().port
    rt.defer(finally, function() s:close() end)
    local r = rt.exec({BIN, "examples/echo_client.lua", port, "127.0.0.1", 2})
    assert.equal(1, r.status)
    assert.matches("ok 0/2", r.out)
  end)
end)

describe("http_hello.lua", function()
  -- csock.http answers with a Date field (RFC 9110 6.6.1); the specs compare without it
  local HELLO = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!"
  local HELLO_CLOSE = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n"
    .. "Connection: close\r\n\r\nHello, World!"
  local function undated(text)
    return (text:gsub("\r\nDate: [^\r]*", ""))
  end

  it("answers curl twice on one connection", function()
    local p = start("http_hello", 0)
    local base = "http://127.0.0.1:" .. p.port
    local r = rt.exec({"curl", "-sv", "--max-time", "10", base .. "/", base .. "/again"})
    assert.equal(0, r.status, r.err)
    assert.equal("Hello, World!Hello, World!", r.out)
    assert.matches("[Rr]e%-using existing connection", r.err)
    local _, connects = r.err:gsub("Connected to", "")
    assert.equal(1, connects)
  end)

  it("sends exactly the expected bytes, for pipelined requests too", function()
    local p = start("http_hello", 0)
    local r = rt.python([[
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
req = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
s.sendall(req * 3 + b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
got = b""
while True:
    d = s.recv(65536)
    if not d:
        break
    got += d
sys.stdout.buffer.write(got)
]], {p.port})
    assert.equal(0, r.status, r.err)
    assert.equal(HELLO:rep(3) .. HELLO_CLOSE, undated(r.out))
  end)

  it("adds 'Connection: close' and closes when the client asks", function()
    local p = start("http_hello", 0)
    local r = rt.exec({"curl", "-si", "--max-time", "10", "-H", "Connection: close",
      "http://127.0.0.1:" .. p.port .. "/"})
    assert.equal(0, r.status, r.err)
    assert.equal(HELLO_CLOSE, undated(r.out))
  end)

  it("takes any case of the header, and answers 400 to bare \\n line ends", function()
    local p = start("http_hello", 0)
    local r = rt.exec({"nc", "-w", "5", "127.0.0.1", p.port},
      {stdin = "GET / HTTP/1.1\r\nHost: x\r\nCONNECTION: Close\r\n\r\n"})
    assert.equal(0, r.status, r.err)
    assert.equal(HELLO_CLOSE, undated(r.out))
    r = rt.exec({"nc", "-w", "5", "127.0.0.1", p.port},
      {stdin = "GET / HTTP/1.1\nHost: x\n\n"})
    assert.equal(0, r.status, r.err)
    assert.matches("^HTTP/1.1 400 Bad Request\r\n", r.out)
  end)

  it("serves 100 keep-alive connections at once", function()
    local p = start("http_hello", 0)
    local r = rt.python([[
import socket, sys, threading
port = int(sys.argv[1])
want = (b"HTTP/1.1 200 OK\r\nDate: Sat, 05 Dec 2026 00:00:00 GMT\r\n"
        b"Content-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!")
ok = []
def client():
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    good = True
    for _ in range(20):
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        got = b""
        while len(got) < len(want):
            d = s.recv(len(want) - len(got))
            if not d:
                break
            got += d
        good = good and got[:23] == want[:23] and got[52:] == want[52:]
    s.close()
    ok.append(good)
ts = [threading.Thread(target=client) for _ in range(100)]
for t in ts: t.start()
for t in ts: t.join()
print(sum(ok))
]], {p.port}, {limit = 60})
    assert.equal(0, r.status, r.err)
    assert.equal("100\n", r.out)
  end)
end)

describe("chat.lua", function()
  it("broadcasts each line to every other client, not back to its sender", function()
    local p = start("chat", 0)
    local r = rt.python([[
import socket, sys
port = int(sys.argv[1])
def connect():
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    f = s.makefile("rwb", buffering=0)
    welcome = f.readline().decode()
    assert welcome.startswith("* welcome "), welcome
    return s, f
def next_message(f):
    while True:
        line = f.readline().decode()
        assert line, "connection closed"
        if not line.startswith("* "):
            return line.rstrip("\n")
clients = [connect() for _ in range(4)]
names = [c[0].getsockname() for c in clients]
names = ["%s:%d" % n for n in names]
clients[0][0].sendall(b"hello everyone\n")
for i in (1, 2, 3):
    got = next_message(clients[i][1])
    assert got == names[0] + ": hello everyone", got
clients[2][0].sendall(b"hi from two\r\n")
for i in (0, 1, 3):
    got = next_message(clients[i][1])
    assert got == names[2] + ": hi from two", got
print("ok")
]], {p.port})
    assert.equal(0, r.status, r.err)
    assert.equal("ok\n", r.out)
  end)

  it("announces joins and leaves", function()
    local p = start("chat", 0)
    local r = rt.python([[
import socket, sys
port = int(sys.argv[1])
a = socket.create_connection(("127.0.0.1", port), timeout=10)
fa = a.makefile("rb")
assert fa.readline().startswith(b"* welcome ")
b = socket.create_connection(("127.0.0.1", port), timeout=10)
fb = b.makefile("rb")
welcome = fb.readline().decode()
assert welcome.startswith("* welcome ") and welcome.endswith(", 2 online\n"), welcome
bname = "%s:%d" % b.getsockname()
got = fa.readline().decode()
assert got == "* %s joined\n" % bname, got
b.sendall(b"/quit\n")
got = fa.readline().decode()
assert got == "* %s left\n" % bname, got
assert fb.readline() == b""  # the server closed b
print("ok")
]], {p.port})
    assert.equal(0, r.status, r.err)
    assert.equal("ok\n", r.out)
  end)

  it("carries on for the others when a client vanishes", function()
    local p = start("chat", 0)
    local r = rt.python([[
import socket, sys
port = int(sys.argv[1])
def connect():
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    f = s.makefile("rb")
    assert f.readline().startswith(b"* welcome ")
    return s, f
(a, fa), (b, fb), (c, fc) = connect(), connect(), connect()
b.close()
a.sendall(b"still here?\n")
while True:
    line = fc.readline().decode()
    if not line.startswith("* "):
        break
assert line.endswith(": still here?\n"), line
print("ok")
]], {p.port})
    assert.equal(0, r.status, r.err)
    assert.equal("ok\n", r.out)
  end)
  it("drops a member that stops reading, while the others get every line", function()
    local p = start("chat", 0)
    local r = rt.python([[
import socket, sys, threading, time
port = int(sys.argv[1])
def connect(rcvbuf=None):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(20)
    s.connect(("127.0.0.1", port))
    return s
mute = connect(4096)      # never reads: its lines pile up in the server's outbox
listener = connect()
fl = listener.makefile("rb")
assert fl.readline().startswith(b"* welcome ")
talker = connect()
# more than the kernel buffers toward mute can hold, so its outbox must grow; paced (100 lines
# every 5 ms) so that the listener, a reading member, keeps up even on a busy machine
N = 8000
def talk():
    for start in range(0, N, 100):
        talker.sendall(b"".join(b"line %05d %s\n" % (i, b"x" * 1000)
                                for i in range(start, start + 100)))
        time.sleep(0.005)
threading.Thread(target=talk, daemon=True).start()
got = 0
while got < N:
    line = fl.readline().decode()
    assert line, "listener lost its connection"
    if not line.startswith("* "):
        assert line.split(": ", 1)[1].startswith("line %05d " % got), line
        got += 1
# the mute member was dropped: after what the kernel had buffered, its connection ends
n = 0
while True:
    data = mute.recv(65536)
    if not data:
        break
    n += len(data)
assert n < N * 1000, n
print("ok", got)
]], {p.port})
    assert.equal(0, r.status, r.err)
    assert.equal("ok 8000\n", r.out)
  end)
end)

describe("udp_echo.lua", function()
  it("returns each python3 datagram to its sender, boundaries kept", function()
    local p = start("udp_echo", 0)
    local r = rt.python([[
import socket, sys
port = int(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
msgs = [b"one", b"two two", b"", b"x" * 1400, bytes(range(256))]
for m in msgs:
    s.sendto(m, ("127.0.0.1", port))
    data, addr = s.recvfrom(65535)
    assert data == m, (m[:20], data[:20])
    assert addr == ("127.0.0.1", port), addr
print(len(msgs))
]], {p.port})
    assert.equal(0, r.status, r.err)
    assert.equal("5\n", r.out)
  end)

  it("serves two clients whose datagrams interleave", function()
    local p = start("udp_echo", 0)
    local r = rt.python([[
import socket, sys
port = int(sys.argv[1])
a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); a.settimeout(5)
b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); b.settimeout(5)
for i in range(20):
    a.sendto(b"a%d" % i, ("127.0.0.1", port))
    b.sendto(b"b%d" % i, ("127.0.0.1", port))
ga = sorted(a.recvfrom(100)[0] for _ in range(20))
gb = sorted(b.recvfrom(100)[0] for _ in range(20))
assert ga == sorted(b"a%d" % i for i in range(20)), ga
assert gb == sorted(b"b%d" % i for i in range(20)), gb
print("ok")
]], {p.port})
    assert.equal(0, r.status, r.err)
    assert.equal("ok\n", r.out)
  end)
end)

describe("unix_echo.lua", function()
  it("echoes lines to a python3 AF_UNIX client", function()
    local path = rt.tmppath(".sock")
    rt.defer(finally, function() os.remove(path) end)
    local p = start("unix_echo", path)
    assert.equal("listening on " .. path, p.line)
    local r = rt.python([[
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
s.connect(sys.argv[1])
s.sendall(b"first\nsecond\nno newline")
s.shutdown(socket.SHUT_WR)
got = b""
while True:
    d = s.recv(4096)
    if not d:
        break
    got += d
sys.stdout.buffer.write(got)
]], {path})
    assert.equal(0, r.status, r.err)
    assert.equal("first\nsecond\nno newline", r.out)
  end)

  it("replaces a stale socket file left at its path", function()
    local path = rt.tmppath(".sock")
    rt.defer(finally, function() os.remove(path) end)
    local stale = csock.socket(csock.AF_UNIX, csock.SOCK_STREAM)
    assert(stale:bind(path))
    stale:close()
    local p = start("unix_echo", path)
    local r = rt.exec({"nc", "-N", "-U", "-w", "5", path}, {stdin = "still works\n"})
    assert.equal(0, r.status, r.err)
    assert.equal("still works\n", r.out)
    assert.is_truthy(p.path)
  end)
end)

describe("port_scan.lua", function()
  it("lists the ports that listen and not one that refuses", function()
    -- two listeners close together and, between them, a port that is bound but refuses
    local function bound(port)
      local s = csock.socket(csock.AF_INET, csock.SOCK_STREAM)
      if s:bind("127.0.0.1", port) then return s end
      s:close()
    end
    local first = assert(bound(0))
    local base = first:getsockname().port
    local closed, second
    for port = base + 1, math.min(base + 50, 65535) do
      local s = bound(port)
      if s then
        if not closed then closed = s else second = s break end
      end
    end
    if not second then
      first:close()
      if closed then closed:close() end
      return pending("no two free ports near " .. base)
    end
    rt.defer(finally, function()
      first:close()
      closed:close()
      second:close()
    end)
    assert(first:listen())
    assert(second:listen())
    local p1, p2, pc = base, second:getsockname().port, closed:getsockname().port
    local lo, hi = math.max(1, p1 - 20), math.min(65535, p2 + 20)
    local r = rt.exec({BIN, "examples/port_scan.lua", lo, hi, "127.0.0.1", 1})
    assert.equal(0, r.status, r.err)
    local open = {}
    for port in r.out:gmatch("(%d+)/tcp open") do open[tonumber(port)] = true end
    assert.is_true(open[p1], r.out)
    assert.is_true(open[p2], r.out)
    assert.is_nil(open[pc])
    local prev = 0
    for port in r.out:gmatch("(%d+)/tcp open") do
      assert.is_true(tonumber(port) > prev, "in order")
      prev = tonumber(port)
    end
  end)

  it("scans a thousand ports well within the time of one timeout per port", function()
    local s = csock.socket(csock.AF_INET, csock.SOCK_STREAM)
    assert(s:bind("127.0.0.1", 0))
    assert(s:listen())
    rt.defer(finally, function() s:close() end)
    local port = s:getsockname().port
    local lo = math.max(1, port - 500)
    local t0 = csock.now()
    local r = rt.exec({BIN, "examples/port_scan.lua", lo, lo + 999, "127.0.0.1", 2})
    local dt = csock.now() - t0
    assert.equal(0, r.status, r.err)
    assert.matches(port .. "/tcp open", r.out, 1, true)
    assert.is_true(dt < 10, "took " .. dt)
  end)
end)

describe("server.lua and client.lua (Beej's guide)", function()
  local LUA = "lua5.4"

  it("greet each other under bin/csock", function()
    local p = start("server", 0)
    assert.matches("^server: waiting for connections on 127%.0%.0%.1:%d+%.%.%.$", p.line)
    local r = rt.exec({BIN, "examples/client.lua", "127.0.0.1", p.port})
    assert.equal(0, r.status, r.err)
    assert.equal("client: connecting to 127.0.0.1\nclient: received 'Hello, world!'\n", r.out)
  end)

  it("run under plain lua5.4 and talk to each other across the two", function()
    local proc = rt.start({LUA, "examples/server.lua", 0})
    rt.defer(finally, function() rt.stop(proc) end)
    for _, runner in ipairs({LUA, BIN, LUA}) do
      local r = rt.exec({runner, "examples/client.lua", "127.0.0.1", proc.port})
      assert.equal(0, r.status, r.err)
      assert.equal("client: connecting to 127.0.0.1\nclient: received 'Hello, world!'\n", r.out)
    end
  end)

  it("server.lua logs each connection", function()
    local p = start("server", 0)
    local r = rt.exec({"nc", "-w", "5", "127.0.0.1", p.port})
    assert.equal("Hello, world!", r.out)
    assert.equal("server: got connection from 127.0.0.1", p.pipe:read("l"))
  end)

  it("client.lua without a hostname prints its usage and exits 1", function()
    local r = rt.exec({"lua5.4", "examples/client.lua"})
    assert.equal(1, r.status)
    assert.matches("usage: client hostname", r.err)
  end)
end)

describe("rest.lua", function()
  local function curl(...)
    local argv = {"curl", "-sS", "--max-time", "10", ...}
    return rt.exec(argv)
  end

  it("creates, lists, reads, replaces and deletes notes", function()
    local p = start("rest", 0)
    local base = "http://127.0.0.1:" .. p.port
    local r = curl("-i", "--data-binary", "first note", base .. "/notes")
    assert.matches("^HTTP/1.1 201 Created\r\n", r.out)
    assert.matches("\r\nLocation: /notes/1\r\n", r.out)
    curl("--data-binary", "second", base .. "/notes")
    assert.equal("1\n2\n", curl(base .. "/notes").out)
    assert.equal("first note", curl(base .. "/notes/1").out)
    assert.equal("updated 1\n", curl("-X", "PUT", "--data-binary", "new", base .. "/notes/1").out)
    assert.equal("new", curl(base .. "/notes/1").out)
    r = curl("-i", "-X", "DELETE", base .. "/notes/1")
    assert.matches("^HTTP/1.1 204 No Content\r\n", r.out)
    assert.equal("2\n", curl(base .. "/notes").out)
    r = curl("-i", base .. "/notes/1")
    assert.matches("^HTTP/1.1 404 Not Found\r\n", r.out)
    r = curl("-i", "-X", "PATCH", base .. "/notes")
    assert.matches("^HTTP/1.1 405 Method Not Allowed\r\n", r.out)
    assert.matches("\r\nAllow: GET, POST\r\n", r.out)
  end)
end)

describe("static.lua", function()
  it("serves files whole, HEAD, index.html, and refuses .. and missing files", function()
    local dir = rt.tmppath("-static")
    os.execute("mkdir -p " .. rt.q(dir .. "/sub"))
    rt.defer(finally, function() os.execute("rm -rf " .. rt.q(dir)) end)
    local big = {}
    for i = 1, 40000 do big[i] = ("line %06d of the big file\n"):format(i) end
    big = table.concat(big)
    for name, text in pairs({["big.txt"] = big, ["sub/index.html"] = "<p>index</p>",
      ["empty.txt"] = ""}) do
      local f = assert(io.open(dir .. "/" .. name, "wb"))
      f:write(text)
      f:close()
    end
    local p = start("static", dir, 0)
    local base = "http://127.0.0.1:" .. p.port
    local r = rt.exec({"curl", "-sS", "--max-time", "10", base .. "/big.txt"})
    assert.equal(#big, #r.out)
    assert.is_true(r.out == big)
    r = rt.exec({"curl", "-sS", "-I", "--max-time", "10", base .. "/big.txt"})
    assert.matches("\r\nContent%-Length: " .. #big .. "\r\n", r.out)
    assert.matches("\r\nContent%-Type: text/plain; charset=utf%-8\r\n", r.out)
    assert.equal("<p>index</p>", rt.exec({"curl", "-sS", base .. "/sub/"}).out)
    assert.equal("", rt.exec({"curl", "-sS", "-f", base .. "/empty.txt"}).out)
    r = rt.exec({"curl", "-sS", "-i", "--path-as-is", base .. "/sub/../../etc/passwd"})
    assert.matches("^HTTP/1.1 400 Bad Request\r\n", r.out)
    r = rt.exec({"curl", "-sS", "-i", base .. "/nothing"})
    assert.matches("^HTTP/1.1 404 Not Found\r\n", r.out)
    r = rt.exec({"curl", "-sS", "-i", base .. "/sub"})
    assert.matches("^HTTP/1.1 404 Not Found\r\n", r.out)
  end)
end)

describe("https_client.lua", function()
  teardown(require("support.certs").remove)

  it("fetches from an https server it trusts through cafile, and refuses one it does not", function()
    local certs = require("support.certs").make()
    local script = rt.script(([[
      local csock = require "csock"
      local http = require "csock.http"
      local l = assert(csock.tcp_listen("127.0.0.1", 0))
      print("listening on 127.0.0.1:" .. l:getsockname().port)
      io.stdout:flush()
      local ctx = csock.tls_context({mode = "server", certificate = %q, key = %q})
      http.serve(l, function(_, res)
        res:header("X-Test", "yes")
        res:finish("secure hello\n")
      end, {tls = ctx})
    ]]):format(certs.server, certs.key))
    rt.defer(finally, function() os.remove(script) end)
    local p = rt.start({BIN, script})
    rt.defer(finally, function() rt.stop(p) end)
    local url = "https://localhost:" .. p.port .. "/"
    local r = rt.exec({BIN, "examples/https_client.lua", url, certs.ca})
    assert.equal(0, r.status, r.err)
    assert.matches("^HTTP/1.1 200 OK\n", r.out)
    assert.matches("\nX%-Test: yes\n", r.out)
    assert.matches("\n\nsecure hello\n$", r.out)
    r = rt.exec({BIN, "examples/https_client.lua", url})
    assert.equal(1, r.status)
    assert.matches("^https_client: .*certificate verify failed", r.err)
  end)
end)

describe("tls_echo.lua", function()
  local C = require("support.certs").make()
  teardown(require("support.certs").remove)

  it("echoes lines to openssl s_client, which verifies it", function()
    local p = start("tls_echo", C.server, C.key, 0)
    assert.matches("^listening on 127%.0%.0%.1:%d+$", p.line)
    local r = rt.exec({"sh", "-c", "(printf 'over tls\\n'; sleep 1) | openssl s_client -connect 127.0.0.1:"
      .. p.port .. " -servername localhost -verify_return_error -CAfile " .. C.ca
      .. " -verify_hostname localhost -quiet -no_ign_eof"})
    assert.equal(0, r.status, r.err)
    assert.equal("over tls\n", r.out)
  end)
end)

describe("https_get.lua", function()
  local C = require("support.certs").make()
  teardown(require("support.certs").remove)
  local helper = require "helper"

  -- A blocking csock HTTPS server for one request; returns the port and a function that serves it.
  local function one_request(body)
    local ctx = csock.tls_context {mode = "server", certificate = C.server, key = C.key}
    local srv, port = rt.listener()
    return port, function()
      local c = assert(srv:accept())
      srv:close()
      c:settimeout(10)
      local ok = c:starttls(ctx)
      local request
      if ok then
        request = c:read("l")
        repeat local l = c:read("l") until l == "\r" or l == nil
        c:write("HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n", body)
      end
      c:close()
      return request
    end
  end

  local function get(url, env)
    return helper.spawn(string.format("%s %s %s examples/https_get.lua %s", rt.ENV, env or "",
      rt.BIN, url))
  end

  it("gets a page, verifying the server against the CA in SSL_CERT_FILE", function()
    local port, serve = one_request("secure hello\n")
    local child = get("https://localhost:" .. port .. "/page", "SSL_CERT_FILE=" .. C.ca)
    assert.equal("GET /page HTTP/1.0\r", serve())
    local ok, _, out, err = child:wait()
    assert.is_true(ok, err)
    assert.equal("secure hello\n", out)
    assert.equal("HTTP/1.0 200 OK\n", err)
  end)

  it("refuses a server the system store does not vouch for", function()
    local port, serve = one_request("never\n")
    local child = get("https://localhost:" .. port .. "/")
    assert.is_nil(serve())
    local ok, code, out, err = child:wait()
    assert.is_false(ok)
    assert.equal(1, code)
    assert.equal("", out)
    assert.equal("https_get: localhost: certificate verify failed: unable to get local issuer "
      .. "certificate\n", err)
  end)
end)
