-- TLS (SPEC.md "TLS (OpenSSL 3)"): contexts, starttls, tls_connect and
-- tlsinfo, in the loop and outside it, against csock itself and against
-- openssl, python3 and curl.  Certificates are made at test time
-- (spec/support/certs.lua).

local csock = require "csock"
local rt = require "support.rt"
local helper = require "helper"
local certs = require "support.certs"

local C = certs.make()
teardown(certs.remove)

local function server_ctx(extra)
  local o = {mode = "server", certificate = C.server, key = C.key}
  for k, v in pairs(extra or {}) do o[k] = v end
  return csock.tls_context(o)
end

local function client_ctx(extra)
  local o = {cafile = C.ca}
  for k, v in pairs(extra or {}) do o[k] = v end
  return csock.tls_context(o)
end

-- A server context with certificate file cert (key: the shared server key).
local function ctx_with(cert)
  return csock.tls_context {mode = "server", certificate = cert, key = C.key}
end

-- In a loop: a listener whose connections go through starttls(sctx) and then
-- handler(conn); returns the port.  handler gets nil, message, code on a failed handshake.
local function serve(go, sctx, handler)
  local srv, port = rt.listener(128)
  go(function()
    while true do
      local c = srv:accept()
      go(function()
        c:settimeout(5)
        local ok, err, code = c:starttls(sctx)
        if ok then handler(c) else handler(nil, err, code) end
        c:close()
      end)
    end
  end)
  return port
end

local function echo_lines(c)
  for line in c:lines("L") do c:write(line) end
end

describe("csock.tls_context", function()
  it("gives OpenSSL's version as csock._TLS and EPROTO as a constant", function()
    assert.matches("^OpenSSL 3%.", csock._TLS)
    assert.is_number(csock.EPROTO)
    assert.equal(71, csock.EPROTO)
  end)

  it("raises on an unknown option, naming it", function()
    assert.has_error(function() csock.tls_context {mode = "server", sertificate = "x"} end,
      "bad argument #1 to 'tls_context' (unknown option 'sertificate')")
  end)

  it("raises on an unreadable certificate, naming the option and the file", function()
    assert.has_error(function()
      csock.tls_context {mode = "server", certificate = C.dir .. "/none.pem", key = C.key}
    end, "bad argument #1 to 'tls_context' (option 'certificate': cannot read '" .. C.dir
      .. "/none.pem' (No such file or directory))")
  end)

  it("raises on an unreadable capath, naming the option and the directory", function()
    assert.has_error(function() csock.tls_context {capath = C.dir .. "/none"} end,
      "bad argument #1 to 'tls_context' (option 'capath': cannot read '" .. C.dir
      .. "/none' (No such file or directory))")
    assert.has_error(function() csock.tls_context {capath = C.ca} end,
      "bad argument #1 to 'tls_context' (option 'capath': cannot read '" .. C.ca
      .. "' (Not a directory))")
    assert.equal("csock TLS context (client)", tostring(csock.tls_context {capath = C.dir}))
  end)

  it("raises when the key does not match the certificate, naming both files", function()
    assert.has_error(function()
      csock.tls_context {mode = "server", certificate = C.client, key = C.key}
    end, "bad argument #1 to 'tls_context' (option 'key': '" .. C.key
      .. "' does not match the certificate '" .. C.client .. "')")
  end)

  it("raises when a file is not PEM, naming the option and the file", function()
    assert.has_error(function()
      csock.tls_context {mode = "server", certificate = C.dir .. "/server.ext", key = C.key}
    end, "bad argument #1 to 'tls_context' (option 'certificate': cannot use '" .. C.dir
      .. "/server.ext' (no start line))")
  end)

  it("raises for a server without a key, a bad mode, a bad min_version", function()
    assert.has_error(function() csock.tls_context {mode = "server", certificate = C.server} end,
      "bad argument #1 to 'tls_context' (a server needs options 'certificate' and 'key')")
    assert.has_error(function() csock.tls_context {mode = "peer"} end,
      "bad argument #1 to 'tls_context' (option 'mode' must be \"client\" or \"server\", not 'peer')")
    assert.has_error(function() csock.tls_context {min_version = "ssl3"} end,
      "bad argument #1 to 'tls_context' (option 'min_version' must be \"tls1.2\" or \"tls1.3\", not 'ssl3')")
    assert.has_error(function() csock.tls_context {ciphers = "NOPE"} end,
      "bad argument #1 to 'tls_context' (option 'ciphers': no cipher matches 'NOPE')")
    assert.has_error(function() csock.tls_context {mode = "server", insecure = true} end,
      "bad argument #1 to 'tls_context' (option 'insecure' is for clients)")
  end)

  it("makes client and server contexts", function()
    assert.equal("csock TLS context (client)", tostring(csock.tls_context {}))
    assert.equal("csock TLS context (server)", tostring(server_ctx()))
  end)

  it("starttls on a verifying client context without a host raises", function()
    local a, b = csock.socketpair()
    assert.has_error(function() a:starttls(client_ctx()) end,
      "bad argument #3 to 'starttls' (host name expected: the context verifies the server)")
    assert.has_error(function() a:starttls({}) end,
      "bad argument #2 to 'starttls' (csock.tls_context expected, got table)")
    a:close()
    b:close()
  end)

  it("tlsinfo is nil on a plain socket", function()
    local a, b = csock.socketpair()
    assert.is_nil(a:tlsinfo())
    a:close()
    b:close()
  end)
end)

describe("TLS between csock tasks", function()
  it("echoes lines; read('l') and write work over TLS; tlsinfo tells the session", function()
    local sctx, cctx = server_ctx(), client_ctx()
    rt.loop(function(go)
      local sinfo
      local port = serve(go, sctx, function(c)
        sinfo = c:tlsinfo()
        echo_lines(c)
      end)
      local s = assert(csock.tcp_connect("127.0.0.1", port, 5))
      assert.equal(s, s:starttls(cctx, "localhost"))
      assert.is_true(s:write("hello\n", "world", "\n") == s)
      assert.equal("hello", s:read("l"))
      assert.equal("world", s:read("l"))
      local info = s:tlsinfo()
      assert.equal("TLSv1.3", info.version)
      assert.is_string(info.cipher)
      assert.equal("localhost", info.servername)
      assert.is_true(info.verified)
      assert.equal("CN=localhost", info.peer.subject)
      assert.equal("CN=csock test CA", info.peer.issuer)
      assert.is_nil(info.alpn)
      s:close()
      assert.equal("localhost", sinfo.servername)
      assert.is_false(sinfo.verified)
      assert.is_nil(sinfo.peer)
    end)
  end)

  it("moves 4 MiB each way at once", function()
    local sctx, cctx = server_ctx(), client_ctx()
    local big = string.rep("0123456789abcdef", 4 * 65536)
    rt.loop(function(go)
      local port = serve(go, sctx, function(c)
        local got = c:read(#big)
        c:write(got)
      end)
      local s = assert(csock.tls_connect("localhost", port, {context = cctx, timeout = 10}))
      local writer = go(function() return s:write(big) end)
      local back = s:read(#big)
      assert.is_true(writer:join())
      assert.equal(#big, #back)
      assert.is_true(back == big)
      s:close()
    end, 30)
  end)

  it("recv and send work over TLS; end of stream after the peer's close", function()
    local sctx, cctx = server_ctx(), client_ctx()
    rt.loop(function(go)
      local port = serve(go, sctx, function(c)
        local d = c:recv(100)
        assert.equal(5, c:send(d .. "!"))
      end)
      local s = assert(csock.tls_connect("localhost", port, {context = cctx, timeout = 5}))
      assert.equal(4, s:send("ping"))
      assert.equal("ping!", s:read(5))
      assert.equal("", s:recv(10))
      assert.is_nil(s:read("l"))
      s:close()
    end)
  end)

  it("recvfrom and sendto go through TLS too", function()
    local sctx, cctx = server_ctx(), client_ctx()
    rt.loop(function(go)
      local port = serve(go, sctx, function(c)
        local d, from = c:recvfrom(100)
        assert.equal("127.0.0.1", from.addr)
        c:sendto(d:upper(), from.addr, from.port)
      end)
      local s = assert(csock.tls_connect("localhost", port, {context = cctx, timeout = 5}))
      assert.equal(3, s:sendto("abc", "127.0.0.1", port))
      local d, from = s:recvfrom(100)
      assert.equal("ABC", d)
      assert.equal(port, from.port)
      s:close()
    end)
  end)

  it("shutdown('w') sends close_notify: the peer reads to the end, then answers", function()
    local sctx, cctx = server_ctx(), client_ctx()
    rt.loop(function(go)
      local port = serve(go, sctx, function(c)
        local all = c:read("a")
        c:write(#all .. "\n")
      end)
      local s = assert(csock.tls_connect("localhost", port, {context = cctx, timeout = 5}))
      s:write("abc")
      assert.is_true(s:shutdown("w"))
      local ok, msg, code = s:write("more")
      assert.same({nil, "Broken pipe", csock.EPIPE}, {ok, msg, code})
      assert.equal("3", s:read("l"))
      s:close()
    end)
  end)

  it("a timed-out read keeps its bytes; the next read gets them", function()
    local sctx, cctx = server_ctx(), client_ctx()
    rt.loop(function(go)
      local more = csock.cond()
      local port = serve(go, sctx, function(c)
        c:write("part")
        more:wait()
        c:write("ial\n")
        c:read("l")
      end)
      local s = assert(csock.tls_connect("localhost", port, {context = cctx, timeout = 5}))
      s:settimeout(0.1)
      local data, msg, code = s:read("l")
      assert.is_nil(data)
      assert.equal("timeout", msg)
      assert.equal(csock.ETIMEDOUT, code)
      more:signal()
      s:settimeout(5)
      assert.equal("partial", s:read("l"))
      s:write("bye\n")
      s:close()
    end)
  end)

  it("close wakes a task waiting to read on a TLS socket", function()
    local sctx, cctx = server_ctx(), client_ctx()
    rt.loop(function(go)
      local port = serve(go, sctx, function(c) c:read("l") end)
      local s = assert(csock.tls_connect("localhost", port, {context = cctx, timeout = 5}))
      local reader = go(function() return s:read("l") end)
      csock.sleep(0.05)
      s:close()
      local ok, data, msg, code = reader:join()
      assert.is_true(ok)
      assert.is_nil(data)
      assert.equal("socket closed", msg)
      assert.equal(csock.EBADF, code)
    end)
  end)

  it("a <close> variable closes the TLS socket at the end of its scope", function()
    local sctx, cctx = server_ctx(), client_ctx()
    rt.loop(function(go)
      local seen = csock.cond()
      local got
      local port = serve(go, sctx, function(c)
        got = {c:read("a")}
        seen:signal()
      end)
      do
        local s <close> = assert(csock.tls_connect("localhost", port, {context = cctx, timeout = 5}))
        s:write("last words")
      end
      if not got then seen:wait() end
      assert.same({"last words"}, got)
    end)
  end)

  it("keeps the maximum line over TLS", function()
    local sctx, cctx = server_ctx(), client_ctx()
    rt.loop(function(go)
      local port = serve(go, sctx, function(c)
        c:write(string.rep("x", 100), "\nshort\n")
        c:read("l")
      end)
      local s = assert(csock.tls_connect("localhost", port, {context = cctx, timeout = 5}))
      s:setmaxline(50)
      assert.same({nil, "line too long", csock.EMSGSIZE}, {s:read("l")})
      s:setmaxline(200)
      assert.equal(string.rep("x", 100), s:read("l"))
      assert.equal("short", s:read("l"))
      s:write("bye\n")
      s:close()
    end)
  end)

  it("tls_connect's alpn option offers the protocols", function()
    local sctx = server_ctx {alpn = {"x-csock"}}
    rt.loop(function(go)
      local port = serve(go, sctx, function() end)
      local s = assert(csock.tls_connect("localhost", port, {alpn = {"x-csock"}, insecure = true,
        timeout = 5}))
      assert.equal("x-csock", s:tlsinfo().alpn)
      s:close()
    end)
  end)

  it("tls_connect's alpn option applies over a given context", function()
    local sctx = server_ctx {alpn = {"h2", "x-csock"}}
    local cctx = client_ctx {alpn = {"http/1.1"}}
    rt.loop(function(go)
      local port = serve(go, sctx, function() end)
      local s = assert(csock.tls_connect("localhost", port, {context = cctx, alpn = {"x-csock"},
        timeout = 5}))
      local info = s:tlsinfo()
      assert.equal("x-csock", info.alpn)
      assert.is_true(info.verified)
      s:close()
    end)
  end)

  it("tls_connect's insecure option applies over a given context", function()
    local sctx = server_ctx()
    rt.loop(function(go)
      local port = serve(go, sctx, function() end)
      -- the system store does not trust the test CA: only insecure lets this through
      local s = assert(csock.tls_connect("localhost", port, {context = csock.tls_context {},
        insecure = true, timeout = 5}))
      assert.is_false(s:tlsinfo().verified)
      s:close()
    end)
  end)

  it("tls_connect raises on an unknown option, naming it", function()
    local ok, err = pcall(csock.tls_connect, "localhost", 443, {timout = 5})
    assert.is_false(ok)
    assert.equal("bad argument #3 to 'tls_connect' (unknown option 'timout')", err)
    ok, err = pcall(csock.tls_connect, "localhost", 443, {alpn = "h2"})
    assert.is_false(ok)
    assert.equal("bad argument #3 to 'tls_connect' (option 'alpn' must be a list of strings)", err)
  end)

  it("starttls's opts set alpn and insecure for one connection, and are checked", function()
    local sctx = server_ctx {alpn = {"x-csock"}}
    rt.loop(function(go)
      local port = serve(go, sctx, function() end)
      local s = assert(csock.tcp_connect("127.0.0.1", port, 5))
      assert.equal(s, s:starttls(csock.tls_context {}, nil, {alpn = {"x-csock"}, insecure = true}))
      assert.equal("x-csock", s:tlsinfo().alpn)
      s:close()
    end)
    local a, b = csock.socketpair()
    local cases = {
      {{bogus = 1}, "bad argument #4 to 'starttls' (unknown option 'bogus')"},
      {{alpn = {""}}, "bad argument #4 to 'starttls' (option 'alpn': entry 1 must be a name of 1 to 255 bytes)"},
      {{insecure = 1}, "bad argument #4 to 'starttls' (option 'insecure' must be a boolean, got number)"},
      {5, "bad argument #4 to 'starttls' (table expected, got number)"},
    }
    for _, c in ipairs(cases) do
      local ok, err = pcall(a.starttls, a, csock.tls_context {insecure = true}, "x", c[1])
      assert.is_false(ok)
      assert.equal(c[2], err)
    end
    local ok, err = pcall(a.starttls, a, server_ctx(), nil, {})
    assert.is_false(ok)
    assert.equal("bad argument #4 to 'starttls' (options are for client contexts)", err)
    a:close()
    b:close()
  end)

  it("negotiates ALPN", function()
    local sctx = server_ctx {alpn = {"h2", "http/1.1"}}
    local cctx = client_ctx {alpn = {"x-csock", "http/1.1"}}
    rt.loop(function(go)
      local salpn
      local port = serve(go, sctx, function(c) salpn = c:tlsinfo().alpn end)
      local s = assert(csock.tls_connect("localhost", port, {context = cctx, timeout = 5}))
      assert.equal("http/1.1", s:tlsinfo().alpn)
      s:read("a")
      s:close()
      assert.equal("http/1.1", salpn)
    end)
  end)

  it("picks the server context by SNI from `servers`", function()
    local alt = ctx_with(C.alt)
    local sctx = server_ctx {servers = {["alt.test"] = alt}}
    local cctx = client_ctx()
    rt.loop(function(go)
      local port = serve(go, sctx, function(c) c:write(c:tlsinfo().servername .. "\n") end)
      local s = assert(csock.tcp_connect("127.0.0.1", port, 5))
      assert(s:starttls(cctx, "alt.test"))
      assert.equal("CN=alt.test", s:tlsinfo().peer.subject)
      assert.equal("alt.test", s:read("l"))
      s:close()
      s = assert(csock.tcp_connect("127.0.0.1", port, 5))
      assert(s:starttls(cctx, "localhost"))
      assert.equal("CN=localhost", s:tlsinfo().peer.subject)
      s:close()
    end)
  end)

  it("a server with verify = true takes a client certificate from its CA", function()
    local sctx = server_ctx {verify = true, cafile = C.ca}
    local cctx = client_ctx {certificate = C.client, key = C.client_key}
    rt.loop(function(go)
      local info
      local port = serve(go, sctx, function(c)
        info = c:tlsinfo()
        c:write("ok\n")
      end)
      local s = assert(csock.tls_connect("localhost", port, {context = cctx, timeout = 5}))
      assert.equal("ok", s:read("l"))
      s:close()
      assert.is_true(info.verified)
      assert.equal("CN=csock client", info.peer.subject)
    end)
  end)

  it("a server with verify = true refuses a client without a certificate", function()
    local sctx = server_ctx {verify = true, cafile = C.ca}
    local cctx = client_ctx()
    rt.loop(function(go)
      local res = csock.cond()
      local got
      local port = serve(go, sctx, function(c, err, code)
        got = {c, err, code}
        res:signal()
      end)
      local s = csock.tls_connect("localhost", port, {context = cctx, timeout = 5})
      -- TLS 1.3: the client's handshake ends first; the refusal comes as an alert on read
      if s then
        local data, msg, code = s:read("l")
        assert.is_nil(data)
        assert.equal("tlsv13 alert certificate required", msg)
        assert.equal(csock.EPROTO, code)
        s:close()
      end
      if not got then res:wait() end
      assert.same({nil, "peer did not return a certificate", csock.EPROTO}, got)
    end)
  end)
end)

describe("TLS certificate checks (each failure's whole message)", function()
  local function fails_with(cert, host, connect_to, message)
    local sctx, cctx = ctx_with(cert), client_ctx()
    rt.loop(function(go)
      local port = serve(go, sctx, function() end)
      local s = assert(csock.tcp_connect(connect_to or "127.0.0.1", port, 5))
      local ok, msg, code = s:starttls(cctx, host)
      assert.is_nil(ok)
      assert.equal(message, msg)
      assert.equal(csock.EPROTO, code)
      s:close()
    end)
  end

  it("an untrusted CA", function()
    fails_with(C.stranger, "localhost", nil,
      "certificate verify failed: unable to get local issuer certificate")
  end)

  it("an expired certificate", function()
    while os.time() <= C.made_at + 1 do csock.sleep(0.2) end
    fails_with(C.expired, "localhost", nil, "certificate verify failed: certificate has expired")
  end)

  it("a certificate for another host", function()
    fails_with(C.wronghost, "localhost", nil, "certificate verify failed: hostname mismatch")
  end)

  it("a self-signed certificate", function()
    fails_with(C.self, "localhost", nil, "certificate verify failed: self-signed certificate")
  end)

  it("an IP literal the certificate does not name", function()
    fails_with(C.wronghost, "127.0.0.1", nil, "certificate verify failed: IP address mismatch")
  end)

  it("accepts an IP literal the certificate names", function()
    local sctx, cctx = server_ctx(), client_ctx()
    rt.loop(function(go)
      local port = serve(go, sctx, function() end)
      local s = assert(csock.tls_connect("127.0.0.1", port, {context = cctx, timeout = 5}))
      assert.is_true(s:tlsinfo().verified)
      assert.is_nil(s:tlsinfo().servername) -- no SNI for an IP literal
      s:close()
    end)
  end)

  it("checks against the system store by default: the test CA is not in it", function()
    local sctx = server_ctx()
    rt.loop(function(go)
      local port = serve(go, sctx, function() end)
      local s, msg, code = csock.tls_connect("localhost", port, {timeout = 5})
      assert.is_nil(s)
      assert.equal("certificate verify failed: unable to get local issuer certificate", msg)
      assert.equal(csock.EPROTO, code)
    end)
  end)

  it("insecure = true connects to a self-signed server, unverified", function()
    local sctx = ctx_with(C.self)
    rt.loop(function(go)
      local port = serve(go, sctx, function(c) c:write("hi\n") end)
      local s = assert(csock.tls_connect("localhost", port, {insecure = true, timeout = 5}))
      assert.equal("hi", s:read("l"))
      assert.is_false(s:tlsinfo().verified)
      s:close()
    end)
  end)
end)

describe("TLS against hostile and slow peers", function()
  it("a handshake times out against a silent peer while 100 other clients are served", function()
    local sctx, cctx = server_ctx(), client_ctx()
    rt.loop(function(go)
      local port = serve(go, sctx, echo_lines)
      local silent, sport = rt.listener()
      local held
      go(function() held = silent:accept() end)
      local timed = go(function()
        local s = assert(csock.tcp_connect("127.0.0.1", sport, 0.5))
        local t0 = csock.now()
        local ok, msg, code = s:starttls(cctx, "localhost")
        s:close()
        return ok, msg, code, csock.now() - t0
      end)
      local served = 0
      local clients = {}
      for i = 1, 100 do
        clients[i] = go(function()
          local s = assert(csock.tls_connect("localhost", port, {context = cctx, timeout = 5}))
          s:write("n" .. i .. "\n")
          assert.equal("n" .. i, s:read("l"))
          s:close()
          served = served + 1
        end)
      end
      for _, t in ipairs(clients) do assert(t:join()) end
      local _, ok, msg, code, took = timed:join()
      assert.is_nil(ok)
      assert.equal("timeout", msg)
      assert.equal(csock.ETIMEDOUT, code)
      assert.is_true(took >= 0.45 and took < 2, "took " .. took)
      assert.equal(100, served)
      if held then held:close() end
      silent:close()
    end, 30)
  end)

  it("garbage instead of a ClientHello fails the server's handshake with EPROTO", function()
    local sctx = server_ctx()
    rt.loop(function(go)
      local res = csock.cond()
      local got
      local port = serve(go, sctx, function(c, err, code)
        got = {c, err, code}
        res:signal()
      end)
      local s = assert(csock.tcp_connect("127.0.0.1", port, 5))
      s:write("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
      if not got then res:wait() end
      assert.same({nil, "http request", csock.EPROTO}, got)
      s:close()
    end)
  end)

  it("a peer vanishing mid-handshake fails it with EPROTO", function()
    local cctx = client_ctx()
    rt.loop(function(go)
      local srv, port = rt.listener()
      go(function()
        local c = srv:accept()
        c:read(5) -- the start of the ClientHello, then gone
        c:close()
      end)
      local s = assert(csock.tcp_connect("127.0.0.1", port, 5))
      local ok, msg, code = s:starttls(cctx, "localhost")
      assert.is_nil(ok)
      assert.equal("unexpected eof while reading", msg)
      assert.equal(csock.EPROTO, code)
      assert.same({nil, "TLS failed on this socket", csock.EPROTO}, {s:starttls(cctx, "localhost")})
      assert.same({nil, "unexpected eof while reading", csock.EPROTO}, {s:read("l")})
      s:close()
    end)
  end)

  it("a peer gone away: write fails with EPIPE or ECONNRESET, close sends no SIGPIPE", function()
    -- in a child, so that a SIGPIPE would kill only it
    local ok, out, err = helper.run_lua([[
      local csock = require "csock"
      local C = {server = arg[1], key = arg[2], ca = arg[3]}
      local sctx = csock.tls_context {mode = "server", certificate = C.server, key = C.key}
      local cctx = csock.tls_context {cafile = C.ca}
      csock.run(function()
        local srv = assert(csock.tcp_listen("127.0.0.1", 0))
        local port = srv:getsockname().port
        csock.spawn(function()
          local c = srv:accept()
          c:settimeout(5)
          assert(c:starttls(sctx))
          c:close()
        end)
        local s = assert(csock.tls_connect("localhost", port, {context = cctx, timeout = 5}))
        csock.sleep(0.1)
        local codes = {}
        for _ = 1, 20 do
          local r, _, code = s:write(string.rep("x", 65536))
          if not r then codes[#codes + 1] = code break end
          csock.sleep(0.01)
        end
        s:close()
        print(codes[1] == csock.EPIPE or codes[1] == csock.ECONNRESET)
      end)
      print("alive")
    ]], C.server, C.key, C.ca)
    assert.is_true(ok, err)
    assert.equal("true\nalive\n", out)
  end)

  it("serves 1,000 concurrent TLS connections in one loop (fewer under a low fd limit)", function()
    local sctx, cctx = server_ctx(), client_ctx()
    local n = math.min(1000, math.floor((rt.fd_limit() - 40) / 2))
    rt.loop(function(go)
      local port = serve(go, sctx, echo_lines)
      local conns, tasks = {}, {}
      for i = 1, n do
        tasks[i] = go(function()
          conns[i] = assert(csock.tls_connect("localhost", port, {context = cctx, timeout = 20}))
        end)
      end
      for _, t in ipairs(tasks) do assert(t:join()) end
      for i = 1, n do conns[i]:write(i .. "\n") end
      for i = 1, n do assert.equal(tostring(i), conns[i]:read("l")) end
      for i = 1, n do conns[i]:close() end
    end, 60)
  end)
end)

describe("TLS outside the loop (blocking)", function()
  it("a csock client talks to openssl s_server", function()
    local proc = rt.start({"openssl", "s_server", "-accept", "0", "-cert", C.server, "-key", C.key,
      "-rev"})
    finally(function() rt.stop(proc) end)
    local line = proc.line -- s_server may say a word about DH parameters first
    while line and not line:match("^ACCEPT") do line = proc.pipe:read("l") end
    local port = assert(tonumber(line:match(":(%d+)$")))
    local s = assert(csock.tls_connect("localhost", port, {context = client_ctx(), timeout = 5}))
    s:write("abc\n")
    assert.equal("cba", s:read("l"))
    assert.equal("TLSv1.3", s:tlsinfo().version)
    s:close()
  end)

  it("a csock client talks to a python3 ssl server, which sees the SNI", function()
    if not helper.has_python3() then pending("python3 missing") return end
    local child = helper.spawn_python([[
import socket, ssl, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
names = []
ctx.sni_callback = lambda s, name, c: names.append(name)
ls = socket.socket(); ls.bind(("127.0.0.1", 0)); ls.listen(1)
print(ls.getsockname()[1], flush=True)
c, _ = ls.accept()
t = ctx.wrap_socket(c, server_side=True)
line = t.recv(100)
t.sendall(names[0].encode() + b" " + line)
t.unwrap() if False else None
t.close()
]], C.server, C.key)
    local port = assert(tonumber(child:line()))
    local s = assert(csock.tls_connect("localhost", port, {context = client_ctx(), timeout = 5}))
    s:write("ping\n")
    assert.equal("localhost ping", s:read("l"))
    assert.is_nil(s:read("l"))
    s:close()
    assert.is_true((child:wait()))
  end)

  -- A blocking csock server for one connection that answers one line.
  local function one_shot_server(sctx)
    local srv, port = rt.listener()
    return port, function()
      local c = assert(srv:accept())
      c:settimeout(10)
      local ok, err = c:starttls(sctx)
      srv:close()
      if not ok then
        c:close()
        return nil, err
      end
      return c
    end
  end

  it("curl --cacert gets a page from a blocking csock server", function()
    local port, accept = one_shot_server(server_ctx())
    local child = helper.spawn(string.format(
      "curl -sS --max-time 10 --cacert %s https://localhost:%d/hello", C.ca, port),
      {foreign = true})
    local c = assert(accept())
    local req = c:read("l")
    assert.equal("GET /hello HTTP/1.1\r", req)
    repeat local l = c:read("l") until l == "\r" or l == nil
    c:write("HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nhello\n")
    c:close()
    local ok, _, out, err = child:wait()
    assert.is_true(ok, err)
    assert.equal("hello\n", out)
  end)

  it("openssl s_client verifies a blocking csock server and echoes through it", function()
    local port, accept = one_shot_server(server_ctx())
    local child = helper.spawn(string.format(
      "printf 'from s_client\\n' | openssl s_client -connect 127.0.0.1:%d -servername localhost "
      .. "-verify_return_error -CAfile %s -quiet -verify_hostname localhost", port, C.ca),
      {foreign = true})
    local c = assert(accept())
    assert.equal("from s_client", c:read("l"))
    assert.equal("localhost", c:tlsinfo().servername)
    c:write("from csock\n")
    c:close()
    local ok, _, out, err = child:wait()
    assert.is_true(ok, err)
    assert.equal("from csock\n", out)
  end)

  it("a python3 ssl client verifies a blocking csock server", function()
    if not helper.has_python3() then pending("python3 missing") return end
    local port, accept = one_shot_server(server_ctx())
    local child = helper.spawn_python([[
import socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[1])
with socket.create_connection(("127.0.0.1", int(sys.argv[2]))) as raw:
    with ctx.wrap_socket(raw, server_hostname="localhost") as t:
        t.sendall(b"py\n")
        print(t.recv(100).decode().strip(), t.version())
]], C.ca, tostring(port))
    local c = assert(accept())
    assert.equal("py", c:read("l"))
    c:write("back\n")
    c:close()
    local ok, _, out, err = child:wait()
    assert.is_true(ok, err)
    assert.equal("back TLSv1.3\n", out)
  end)

  it("moves 4 MiB each way with a python3 ssl echo server, blocking", function()
    if not helper.has_python3() then pending("python3 missing") return end
    local child = helper.spawn_python([[
import socket, ssl, sys, threading
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
ls = socket.socket(); ls.bind(("127.0.0.1", 0)); ls.listen(1)
print(ls.getsockname()[1], flush=True)
c, _ = ls.accept()
t = ctx.wrap_socket(c, server_side=True)
while True:
    d = t.recv(65536)
    if not d: break
    t.sendall(d)
t.close()
]], C.server, C.key)
    local port = assert(tonumber(child:line()))
    local s = assert(csock.tls_connect("localhost", port, {context = client_ctx(), timeout = 10}))
    local chunk = string.rep("0123456789abcdef", 4096) -- 64 KiB
    local got = {}
    local n = 0
    for _ = 1, 64 do -- write a chunk, read what came back so far: neither side's buffers fill
      assert(s:write(chunk))
      local d = assert(s:read(#chunk))
      n = n + #d
      got[#got + 1] = d
    end
    assert.equal(4 * 1024 * 1024, n)
    assert.is_true(table.concat(got) == string.rep(chunk, 64))
    s:close()
    assert.is_true((child:wait()))
  end)

  it("negotiates TLS 1.2 with a peer that speaks no more; min_version = 'tls1.3' refuses it", function()
    local proc = rt.start({"openssl", "s_server", "-accept", "0", "-cert", C.server, "-key", C.key,
      "-rev", "-tls1_2"})
    finally(function() rt.stop(proc) end)
    local line = proc.line
    while line and not line:match("^ACCEPT") do line = proc.pipe:read("l") end
    local port = assert(tonumber(line:match(":(%d+)$")))
    local s = assert(csock.tls_connect("localhost", port, {context = client_ctx(), timeout = 5}))
    assert.equal("TLSv1.2", s:tlsinfo().version)
    s:write("tls12\n")
    assert.equal("21slt", s:read("l"))
    s:close()
    local strict = client_ctx {min_version = "tls1.3"}
    local t, msg, code = csock.tls_connect("localhost", port, {context = strict, timeout = 5})
    assert.is_nil(t)
    assert.equal("tlsv1 alert protocol version", msg)
    assert.equal(csock.EPROTO, code)
  end)

  it("a blocking handshake honours the timeout against a silent peer", function()
    local silent, port = rt.listener()
    local s = assert(csock.tcp_connect("127.0.0.1", port, 0.3))
    local t0 = csock.now()
    local ok, msg, code = s:starttls(client_ctx(), "localhost")
    assert.is_nil(ok)
    assert.equal("timeout", msg)
    assert.equal(csock.ETIMEDOUT, code)
    assert.is_true(csock.now() - t0 >= 0.25)
    s:close()
    silent:close()
  end)
end)
