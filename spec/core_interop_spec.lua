-- Interoperability with peers nobody here wrote: python3's socket module,
-- netcat (nc) and curl.  csock plays the server for one and the client for
-- another, over TCP, UDP and unix sockets.  Each peer runs under `timeout`
-- (see helper.spawn) and every csock socket has a timeout, so nothing hangs.

local csock = require "csock"
local helper = require "helper"

local python3 = helper.has_python3()
local nc = helper.has("nc")
local curl = helper.has("curl")

local function listener(host)
  local srv = csock.socket(csock.AF_INET, csock.SOCK_STREAM)
  assert.is_true(srv:setsockopt(csock.SOL_SOCKET, csock.SO_REUSEADDR, true))
  assert.is_true(srv:bind(host or "127.0.0.1", 0))
  assert.is_true(srv:listen())
  srv:settimeout(10)
  return srv, srv:getsockname().port
end

describe("interop with python3", function()

  it("a csock server greets a python3 client and reads its answer", function()
    if not python3 then pending("no python3") end
    local srv <close>, port = listener()
    local child = helper.spawn_python([[
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
f = s.makefile("rb")
greeting = f.readline()
s.sendall(b"Hello from python\n")
print(greeting.decode().rstrip("\n"))
s.close()
]], port)
    local conn <close>, peer = assert(srv:accept())
    assert.equal(csock.AF_INET, peer.family)
    assert.equal("127.0.0.1", peer.addr)
    conn:settimeout(10)
    conn:write("Hello, world!\n")
    assert.equal("Hello from python", conn:read("l"))
    assert.is_nil(conn:read("l")) -- python closed
    local ok, _, out, err = child:wait()
    assert.is_true(ok, err)
    assert.equal("Hello, world!\n", out)
  end)

  it("a csock client talks to a python3 server", function()
    if not python3 then pending("no python3") end
    local child = helper.spawn_python([[
import socket
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(1)
srv.settimeout(10)
print(srv.getsockname()[1], flush=True)
conn, _ = srv.accept()
conn.settimeout(10)
conn.sendall(b"Hello, world!\n")
f = conn.makefile("rb")
print(f.readline().decode().rstrip("\n"))
conn.close()
]])
    local port = assert(math.tointeger(tonumber(child:line())))
    local cli <close> = csock.socket(csock.AF_INET, csock.SOCK_STREAM)
    cli:settimeout(10)
    assert.is_true(cli:connect("127.0.0.1", port))
    assert.same({ family = csock.AF_INET, addr = "127.0.0.1", port = port }, cli:getpeername())
    assert.equal("Hello, world!", cli:read("l"))
    cli:write("Hello from csock\n")
    assert.equal("", cli:read("a"))
    local ok, _, out, err = child:wait()
    assert.is_true(ok, err)
    assert.equal("Hello from csock\n", out)
  end)

  it("a python3 client receives 1 MiB that csock writes in one call", function()
    if not python3 then pending("no python3") end
    local srv <close>, port = listener()
    local child = helper.spawn_python([[
import socket, sys, hashlib
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
data = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
print(len(data), hashlib.sha256(data).hexdigest()[:16])
]], port)
    local piece = {}
    for i = 0, 255 do piece[#piece + 1] = string.char(i) end
    local data = string.rep(table.concat(piece), 4096)
    local conn = assert(srv:accept())
    conn:settimeout(10)
    assert.equal(conn, conn:write(data))
    conn:close()
    local ok, _, out, err = child:wait()
    assert.is_true(ok, err)
    local len = out:match("^(%d+) ")
    assert.equal(tostring(#data), len)
    -- the same digest, computed by python from the bytes we meant to send
    local check = helper.spawn_python([[
import hashlib
print(len(bytes(range(256)) * 4096), hashlib.sha256(bytes(range(256)) * 4096).hexdigest()[:16])
]])
    local _, _, expected = check:wait()
    assert.equal(expected, out)
  end)

  it("a python3 client exchanges UDP datagrams with a csock socket", function()
    if not python3 then pending("no python3") end
    local s <close> = csock.socket(csock.AF_INET, csock.SOCK_DGRAM)
    assert.is_true(s:bind("127.0.0.1", 0))
    s:settimeout(10)
    local child = helper.spawn_python([[
import socket, sys
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.settimeout(10)
u.bind(("127.0.0.1", 0))
u.sendto(b"ping from python", ("127.0.0.1", int(sys.argv[1])))
data, addr = u.recvfrom(100)
print(data.decode(), addr[1] == int(sys.argv[1]))
]], s:getsockname().port)
    local data, from = s:recvfrom(100)
    assert.equal("ping from python", data)
    assert.equal("127.0.0.1", from.addr)
    assert.equal(4, s:sendto("pong", from.addr, from.port))
    local ok, _, out, err = child:wait()
    assert.is_true(ok, err)
    assert.equal("pong True\n", out)
  end)

  it("a python3 server on a unix socket sees csock's request and answers", function()
    if not python3 then pending("no python3") end
    local path = helper.tmpname()
    finally(function() helper.remove(path) end)
    local child = helper.spawn_python([[
import socket, sys
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(sys.argv[1])
srv.listen(1)
srv.settimeout(10)
print("ready", flush=True)
conn, _ = srv.accept()
f = conn.makefile("rwb")
line = f.readline()
f.write(line.upper())
f.flush()
conn.close()
]], path)
    assert.equal("ready", child:line())
    local cli <close> = csock.socket(csock.AF_UNIX, csock.SOCK_STREAM)
    cli:settimeout(10)
    assert.is_true(cli:connect(path))
    cli:write("shout this\n")
    assert.equal("SHOUT THIS", cli:read("l"))
    assert.is_true((child:wait()))
  end)

  it("a csock server on ::1 answers a python3 client", function()
    if not python3 then pending("no python3") end
    local srv = csock.socket(csock.AF_INET6, csock.SOCK_STREAM)
    if not srv:bind("::1", 0) then
      srv:close()
      pending("no ipv6")
    end
    local _ <close> = srv
    assert.is_true(srv:listen())
    srv:settimeout(10)
    local child = helper.spawn_python([[
import socket, sys
s = socket.create_connection(("::1", int(sys.argv[1])), timeout=10)
print(s.makefile("rb").readline().decode().rstrip("\n"))
]], srv:getsockname().port)
    local conn <close>, peer = assert(srv:accept())
    assert.equal(csock.AF_INET6, peer.family)
    assert.equal("::1", peer.addr)
    conn:write("Hello, six!\n")
    local ok, _, out, err = child:wait()
    assert.is_true(ok, err)
    assert.equal("Hello, six!\n", out)
  end)
end)

describe("interop with nc", function()
  it("a csock server answers nc over TCP", function()
    if not nc then pending("no nc") end
    local srv <close>, port = listener()
    local child = helper.spawn(string.format("printf 'ping\\n' | nc -N 127.0.0.1 %d", port),
      { foreign = true })
    local conn <close> = assert(srv:accept())
    conn:settimeout(10)
    assert.equal("ping", conn:read("l"))
    assert.is_nil(conn:read("l")) -- -N: nc shut down its side after stdin
    conn:write("pong\n")
    conn:close()
    local ok, _, out, err = child:wait()
    assert.is_true(ok, err)
    assert.equal("pong\n", out)
  end)

  it("a csock server answers nc over a unix socket", function()
    if not nc then pending("no nc") end
    local path = helper.tmpname()
    finally(function() helper.remove(path) end)
    local srv <close> = csock.socket(csock.AF_UNIX, csock.SOCK_STREAM)
    assert.is_true(srv:bind(path))
    assert.is_true(srv:listen())
    srv:settimeout(10)
    local child = helper.spawn("printf 'over unix\\n' | nc -N -U " .. helper.shell_quote(path),
      { foreign = true })
    local conn <close> = assert(srv:accept())
    conn:settimeout(10)
    assert.equal("over unix", conn:read("l"))
    conn:write("heard\n")
    conn:close()
    local ok, _, out, err = child:wait()
    assert.is_true(ok, err)
    assert.equal("heard\n", out)
  end)
end)

describe("interop with curl", function()
  it("curl fetches a page from a csock HTTP/1.0 server", function()
    if not curl then pending("no curl") end
    local srv <close>, port = listener()
    local child = helper.spawn(string.format(
      "curl -sS --max-time 10 -H 'X-Test: yes' http://127.0.0.1:%d/hello", port),
      { foreign = true })
    local conn <close> = assert(srv:accept())
    conn:settimeout(10)
    local request = assert(conn:read("l"))
    assert.equal("GET /hello HTTP/1.1\r", request)
    local headers = {}
    for _ = 1, 100 do
      local line = assert(conn:read("l"))
      if line == "\r" then break end
      local k, v = line:match("^([^:]+):%s*(.-)\r$")
      headers[k:lower()] = v
    end
    assert.equal("yes", headers["x-test"])
    assert.equal("127.0.0.1:" .. port, headers.host)
    local body = "Hello, world!\n"
    conn:write("HTTP/1.0 200 OK\r\n", "Content-Type: text/plain\r\n",
      "Content-Length: ", #body, "\r\n\r\n", body)
    conn:close()
    local ok, _, out, err = child:wait()
    assert.is_true(ok, err)
    assert.equal(body, out)
  end)
end)
