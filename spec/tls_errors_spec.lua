-- TLS failures after the handshake (SPEC.md "TLS (OpenSSL 3)", issue 18): a read or a
-- write on a session that went wrong gives nil, OpenSSL's reason, csock.EPROTO -- the
-- same message on every later call -- and one socket's failure never shows on another.
-- The peer is python3's ssl, which after a real handshake writes bytes of its choosing
-- on the raw descriptor underneath.

local csock = require "csock"
local http = require "csock.http"
local rt = require "support.rt"
local helper = require "helper"
local certs = require "support.certs"

local C = certs.make()
teardown(certs.remove)
local CCTX = csock.tls_context {cafile = C.ca}

-- A TLS server (TLS 1.2 at most when argv[3] is "1.2"), a thread a connection.  Each
-- line it reads is echoed, except: a name in RAW, answered with "ok" over TLS and then
-- those bytes written raw on the descriptor; an HTTP request line, answered with a record
-- with a bad MAC; "quit", which ends the server.
local PEER = [[
import os, socket, ssl, sys, threading, time
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
if sys.argv[3] == "1.2":
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
BAD_MAC = bytes([0x17, 3, 3, 0, 32]) + os.urandom(32)
RAW = {
    "mac": BAD_MAC,
    "text": b"this is not a TLS record\n",
    "alert": bytes([0x15, 3, 3, 0, 2, 2, 40]),
    "long": bytes([0x17, 3, 3, 0xff, 0xff]) + b"x" * 100,
}
ls = socket.socket(); ls.bind(("127.0.0.1", 0)); ls.listen(16)
print(ls.getsockname()[1], flush=True)

def raw(t, data):
    r = socket.socket(fileno=os.dup(t.fileno()))
    r.sendall(data)
    time.sleep(0.5)
    r.close()

def serve(c):
    try:
        t = ctx.wrap_socket(c, server_side=True)
        f = t.makefile("rb")
        for line in f:
            cmd = line.decode().strip()
            if cmd == "quit":
                os._exit(0)
            elif cmd in RAW:
                t.sendall(b"ok\n")
                return raw(t, RAW[cmd])
            elif cmd.startswith("GET "):
                while f.readline().strip():
                    pass
                return raw(t, BAD_MAC)
            t.sendall(line)
    except (OSError, ssl.SSLError):
        pass
    finally:
        c.close()

while True:
    c, _ = ls.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
]]

local peers = {}

-- The port of the python3 peer for TLS version v ("1.3" or "1.2"), started on first use.
local function peer(v)
  if not peers[v] then
    local child = helper.spawn_python(PEER, C.server, C.key, v)
    peers[v] = {child = child, port = assert(tonumber(child:line()), "the peer did not start")}
  end
  return peers[v].port
end

teardown(function()
  for _, p in pairs(peers) do
    local s = csock.tls_connect("localhost", p.port, {context = CCTX, timeout = 5})
    if s then
      s:write("quit\n")
      s:close()
    end
    p.child:wait()
  end
end)

local function connect(v)
  return assert(csock.tls_connect("localhost", peer(v), {context = CCTX, timeout = 5}))
end

-- Asks the peer for the raw bytes `what` and checks that read, a second read and a write
-- all give nil, message, csock.EPROTO.
local function fails_with(v, what, message)
  local s = connect(v)
  assert(s:write(what .. "\n"))
  assert.equal("ok", s:read("l"))
  assert.same({nil, message, csock.EPROTO}, {s:read("l")})
  assert.same({nil, message, csock.EPROTO}, {s:read(1)})
  assert.same({nil, message, csock.EPROTO, 0}, {s:write("more\n")})
  assert.same({nil, message, csock.EPROTO}, {s:send("more\n")})
  s:close()
end

describe("TLS errors after the handshake", function()
  it("a record with a bad MAC gives 'decryption failed or bad record mac' (TLS 1.3)", function()
    rt.loop(function()
      fails_with("1.3", "mac", "decryption failed or bad record mac")
    end)
  end)

  it("a record with a bad MAC gives the same reason over TLS 1.2, blocking", function()
    -- OpenSSL queues the cipher's "cipher operation failed" first; the SSL layer's reason is
    -- the one that says what happened
    fails_with("1.2", "mac", "decryption failed or bad record mac")
  end)

  it("bytes that are no TLS record give 'wrong version number'", function()
    rt.loop(function()
      fails_with("1.3", "text", "wrong version number")
    end)
  end)

  it("an alert in the clear where only encrypted records may come gives 'bad record type'", function()
    rt.loop(function()
      fails_with("1.3", "alert", "bad record type")
    end)
  end)

  it("a record longer than TLS allows gives 'packet length too long'", function()
    rt.loop(function()
      fails_with("1.3", "long", "packet length too long")
    end)
  end)

  it("the peer's fatal alert gives its name: a server that does not trust our certificate", function()
    local child = helper.spawn_python([[
import socket, ssl, sys, time
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
ctx.verify_mode = ssl.CERT_REQUIRED
ctx.load_verify_locations(sys.argv[3])  # not the CA of the client's certificate
ls = socket.socket(); ls.bind(("127.0.0.1", 0)); ls.listen(1)
print(ls.getsockname()[1], flush=True)
c, _ = ls.accept()
try:
    ctx.wrap_socket(c, server_side=True)
except ssl.SSLError as e:
    print(e.reason, flush=True)
time.sleep(0.5)
]], C.server, C.key, C.stranger)
    local port = assert(tonumber(child:line()))
    local ctx = csock.tls_context {cafile = C.ca, certificate = C.client, key = C.client_key}
    rt.loop(function()
      -- TLS 1.3: the client's handshake is over before the server has looked at its certificate
      local s = assert(csock.tls_connect("localhost", port, {context = ctx, timeout = 5}))
      assert.same({nil, "tlsv1 alert unknown ca", csock.EPROTO}, {s:read("l")})
      s:close()
    end)
    local ok, _, out, err = child:wait()
    assert.is_true(ok, err)
    assert.equal("CERTIFICATE_VERIFY_FAILED\n", out)
  end)

  it("lines() raises the reason", function()
    rt.loop(function()
      local s = connect("1.3")
      s:write("mac\n")
      local it = s:lines()
      assert.equal("ok", it())
      assert.has_error(it, "decryption failed or bad record mac")
      s:close()
    end)
  end)

  it("csock.http's client returns the reason of a response that fails in TLS", function()
    rt.loop(function()
      local res, err, code = http.request("https://localhost:" .. peer("1.3") .. "/",
        {tls = CCTX, timeout = 5})
      assert.is_nil(res)
      assert.equal("decryption failed or bad record mac", err)
      assert.equal(csock.EPROTO, code)
    end)
  end)

  it("a csock server reading garbage from its client gives the reason", function()
    local sctx = csock.tls_context {mode = "server", certificate = C.server, key = C.key}
    local srv, port = rt.listener()
    local child = helper.spawn_python([[
import os, socket, ssl, sys, time
ctx = ssl.create_default_context(cafile=sys.argv[1])
t = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[2]))),
                    server_hostname="localhost")
t.sendall(b"hello\n")
r = socket.socket(fileno=os.dup(t.fileno()))
r.sendall(b"this is not a TLS record\n")
time.sleep(0.5)
]], C.ca, tostring(port))
    local c = assert(srv:accept())
    srv:close()
    c:settimeout(5)
    assert(c:starttls(sctx))
    assert.equal("hello", c:read("l"))
    assert.same({nil, "wrong version number", csock.EPROTO}, {c:read("l")})
    c:close()
    local ok, _, _, err = child:wait()
    assert.is_true(ok, err)
  end)

  it("one socket's failure does not show on another", function()
    rt.loop(function(go)
      local a, b = connect("1.3"), connect("1.3")
      assert(a:write("mac\n"))
      assert(b:write("one\n"))
      assert.equal("ok", a:read("l"))
      assert.equal("one", b:read("l"))
      -- b's read waits while a's fails in another task
      local bt = go(function() return b:read("l") end)
      assert.same({nil, "decryption failed or bad record mac", csock.EPROTO}, {a:read("l")})
      assert(b:write("two\n"))
      assert.same({true, "two"}, {bt:join()})
      -- a new handshake, and b's own failure is its own
      local d = connect("1.3")
      assert(d:write("three\n"))
      assert.equal("three", d:read("l"))
      d:close()
      assert(b:write("text\n"))
      assert.equal("ok", b:read("l"))
      assert.same({nil, "wrong version number", csock.EPROTO}, {b:read("l")})
      assert.same({nil, "decryption failed or bad record mac", csock.EPROTO}, {a:read("l")})
      a:close()
      b:close()
    end)
  end)
end)
