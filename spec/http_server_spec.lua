-- csock.http's server: request and response objects, keep-alive, pipelining, chunked bodies
-- both ways, Expect: 100-continue, HEAD, HTTP/1.0, graceful close, detach; talked to by curl,
-- python3 (http.client, urllib, a raw pipelining socket), node's http module and csock's client.
local csock = require "csock"
local http = require "csock.http"
local rt = require "support.rt"
local H = require "support.http"

-- Sockets this file leaves behind (the client's pool, responses dropped unread) are closed
-- here, not by a collection in the middle of a later file that counts descriptors.
teardown(function()
  require("csock.http").close_idle()
  collectgarbage()
  collectgarbage()
end)

local function curl(args)
  local argv = {"curl", "-sS", "--max-time", "10"}
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  return rt.exec(argv)
end

describe("csock.http server with curl", function()
  local srv, base
  setup(function()
    srv = H.start_server({})
    base = "http://127.0.0.1:" .. srv.port
  end)
  teardown(function() rt.stop(srv) end)

  it("answers GET with the handler's body", function()
    local r = curl({base .. "/"})
    assert.equal(0, r.status)
    assert.equal("Hello, World!", r.out)
  end)

  it("keeps the connection alive between requests", function()
    local r = curl({"-v", base .. "/", base .. "/"})
    assert.equal("Hello, World!Hello, World!", r.out)
    assert.truthy(r.err:find("Re%-using existing connection"), r.err)
  end)

  it("reads a Content-Length body", function()
    local r = curl({"--data-binary", "hello world", base .. "/echo?x=1"})
    assert.equal("POST /echo x=1 1.1 11\nhello world", r.out)
  end)

  it("reads a chunked upload", function()
    local r = curl({"-H", "Transfer-Encoding: chunked", "--data-binary", "chunky body",
      base .. "/echo"})
    assert.equal("POST /echo nil 1.1 11\nchunky body", r.out)
  end)

  it("sends 100 Continue before reading a body the client holds back", function()
    local file = rt.tmppath(".bin")
    local f = assert(io.open(file, "wb"))
    f:write(("x"):rep(200000))
    f:close()
    local r = curl({"-v", "-H", "Expect: 100-continue", "--data-binary", "@" .. file,
      base .. "/echo"})
    os.remove(file)
    assert.equal("POST /echo nil 1.1 200000\n" .. ("x"):rep(200000), r.out)
    assert.truthy(r.err:find("< HTTP/1.1 100 Continue", 1, true), r.err)
  end)

  it("streams a chunked response from res:write", function()
    local r = curl({"--raw", base .. "/chunked"})
    assert.equal("4\r\none,\r\n4\r\ntwo,\r\n5\r\nthree\r\n0\r\n\r\n", r.out)
    assert.equal("one,two,three", curl({base .. "/chunked"}).out)
  end)

  it("answers HEAD with the headers of GET and no body", function()
    local r = curl({"-I", base .. "/"})
    assert.truthy(r.out:find("^HTTP/1.1 200 OK\r\n"))
    assert.truthy(r.out:find("\r\nContent-Length: 13\r\n", 1, true))
    assert.truthy(r.out:find("\r\n\r\n$"))
  end)

  it("speaks HTTP/1.0 and closes after the response", function()
    local r = curl({"-i", "--http1.0", base .. "/echo"})
    assert.truthy(r.out:find("^HTTP/1.1 200 OK\r\n"))
    assert.truthy(r.out:find("\r\nConnection: close\r\n", 1, true))
    assert.truthy(r.out:find("GET /echo nil 1.0 0\n", 1, true))
  end)

  it("joins repeated fields with \", \" and keeps rawheaders in order", function()
    local r = curl({"-H", "X-Multi: a", "-H", "x-multi: b", "-H", "User-Agent: t",
      base .. "/headers"})
    assert.equal("Host: 127.0.0.1:" .. srv.port .. "\nAccept: */*\n"
      .. "X-Multi: a\nx-multi: b\nUser-Agent: t\nx-multi: a, b\n", r.out)
  end)

  it("answers 404 from the handler's status", function()
    local r = curl({"-i", base .. "/nowhere"})
    assert.truthy(r.out:find("^HTTP/1.1 404 Not Found\r\n"))
  end)
end)

describe("csock.http server with python3", function()
  local srv
  setup(function() srv = H.start_server({}) end)
  teardown(function() rt.stop(srv) end)

  it("answers pipelined requests on one socket in order", function()
    local r = rt.python([[
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
reqs = b""
for i in range(5):
    body = ("body%d" % i).encode()
    reqs += b"POST /echo?%d HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (i, len(body)) + body
reqs += b"GET /echo?last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
s.sendall(reqs)
data = b""
while True:
    d = s.recv(65536)
    if not d: break
    data += d
for part in data.split(b"HTTP/1.1 ")[1:]:
    print(part.split(b"\r\n\r\n", 1)[1].split(b"\n")[0].decode())
]], {srv.port})
    assert.equal(0, r.status, r.err)
    assert.equal("POST /echo 0 1.1 5\nPOST /echo 1 1.1 5\nPOST /echo 2 1.1 5\n"
      .. "POST /echo 3 1.1 5\nPOST /echo 4 1.1 5\nGET /echo last 1.1 0\n", r.out)
  end)

  it("serves http.client with a chunked upload and keep-alive", function()
    local r = rt.python([[
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=10)
c.request("POST", "/echo", body=iter([b"ab", b"cd", b"ef"]), encode_chunked=True,
          headers={"Transfer-Encoding": "chunked"})
r = c.getresponse()
print(r.status, r.read().decode().replace("\n", "|"))
c.request("GET", "/")
r = c.getresponse()
print(r.status, r.read().decode())
]], {srv.port})
    assert.equal(0, r.status, r.err)
    assert.equal("200 POST /echo nil 1.1 6|abcdef\n200 Hello, World!\n", r.out)
  end)

  it("serves urllib", function()
    local r = rt.python([[
import urllib.request, sys
with urllib.request.urlopen("http://127.0.0.1:%s/echo?q" % sys.argv[1], data=b"x=1") as f:
    print(f.status, f.read().decode().replace("\n", "|"))
]], {srv.port})
    assert.equal(0, r.status, r.err)
    assert.equal("200 POST /echo q 1.1 3|x=1\n", r.out)
  end)
end)

describe("csock.http server with node", function()
  it("serves node's http client on a keep-alive agent", function()
    if rt.exec({"node", "--version"}).status ~= 0 then return pending("no node") end
    local srv = H.start_server({})
    local r = rt.exec({"node", "-e", [[
const http = require("http");
const agent = new http.Agent({keepAlive: true, maxSockets: 1});
const port = process.argv[1];
let ports = new Set();
function get(path) {
  return new Promise((ok, fail) => {
    const req = http.request({port, path, agent, method: "PUT", host: "127.0.0.1"}, (res) => {
      let body = "";
      ports.add(res.socket.localPort);
      res.on("data", (d) => body += d);
      res.on("end", () => ok(res.statusCode + " " + body.replace("\n", "|")));
    });
    req.on("error", fail);
    req.write("from node");
    req.end();
  });
}
(async () => {
  console.log(await get("/echo?1"));
  console.log(await get("/echo?2"));
  console.log("connections " + ports.size);
  agent.destroy();
})();
]], srv.port})
    rt.stop(srv)
    assert.equal(0, r.status, r.err)
    assert.equal("200 PUT /echo 1 1.1 9|from node\n200 PUT /echo 2 1.1 9|from node\n"
      .. "connections 1\n", r.out)
  end)
end)

describe("csock.http server, graceful close", function()
  it("lets a request in flight finish, then the process ends", function()
    local srv = H.start_server({})
    local base = "http://127.0.0.1:" .. srv.port
    local slow = require("helper").spawn("curl -sS --max-time 10 " .. base .. "/slow?0.5",
      {foreign = true})
    csock.sleep(0.2) -- the slow request is in the handler
    assert.equal("closing", curl({base .. "/shutdown?5"}).out)
    local ok, _, out = slow:wait()
    assert.is_true(ok)
    assert.equal("slow done", out)
    assert.equal("closed", srv.pipe:read("l"))
    assert.equal(7, curl({base .. "/"}).status) -- curl: could not connect
    rt.stop(srv)
  end)

  it("cuts off a request that outlives the grace period", function()
    local handled = false
    rt.loop(function(go)
      local l, port = rt.listener()
      local srv = http.server(l, function(_, res)
        csock.sleep(5)
        handled = true
        res:finish("late")
      end)
      local client = go(function()
        return H.raw(port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
      end)
      csock.sleep(0.1)
      local t0 = csock.now()
      assert.is_true(srv:close(0.2))
      assert.is_true(csock.now() - t0 < 1)
      assert.is_true(srv:join())
      local _, text = client:join()
      assert.equal("", text)
    end)
    assert.is_false(handled)
  end)

  it("closes idle keep-alive connections at once", function()
    rt.loop(function()
      local l, port = rt.listener()
      local srv = http.server(l, function(_, res) res:finish("x") end)
      local c = assert(csock.tcp_connect("127.0.0.1", port, 3))
      c:write("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
      assert.equal("HTTP/1.1 200 OK\r", c:read("l"))
      repeat local line = c:read("l") until line == "\r"
      assert.equal("x", c:read(1))
      local t0 = csock.now()
      srv:close()
      srv:join()
      assert.equal("", c:read("a"))
      assert.is_true(csock.now() - t0 < 1)
    end)
  end)
end)

describe("csock.http server objects", function()
  local function get(port, path, extra)
    return H.raw(port, "GET " .. path .. " HTTP/1.1\r\nHost: h\r\n" .. (extra or "")
      .. "Connection: close\r\n\r\n")
  end

  it("gives method, path, query, version and headers in any case", function()
    local seen
    H.serve(function(req, res)
      seen = {req.method, req.path, req.query, req.version, req.headers["X-ONE"],
        req.headers["x-one"], req.headers.host, #req.rawheaders}
      res:finish()
    end, nil, function(port) get(port, "/p/a%20th?a=1&b", "X-One: 1\r\n") end)
    assert.same({"GET", "/p/a%20th", "a=1&b", "1.1", "1", "1", "h", 3}, seen)
  end)

  it("joins repeated fields with \", \", leaving out empty values", function()
    local seen
    H.serve(function(req, res)
      seen = {req.headers.a, req.headers.b, req.headers.c, #req.rawheaders}
      res:finish()
    end, nil, function(port)
      H.raw(port, "GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nA:\r\nB:\r\nB:  2 \r\nA: 3\r\n"
        .. "C:\r\nConnection: close\r\n\r\n")
    end)
    assert.same({"1, 3", "2", "", 8}, seen)
  end)

  it("reads the body with read formats", function()
    local got
    H.serve(function(req, res)
      got = {req:read("l"), req:read("L"), req:read(3), req:read("a"), req:read("l")}
      res:finish()
    end, nil, function(port)
      H.raw(port, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 15\r\nConnection: close\r\n\r\n"
        .. "one\ntwo\nthrest!")
    end)
    assert.same({"one", "two\n", "thr", "est!"}, got)
  end)

  it("reads numbers from the body with \"n\", as file:read does", function()
    local got
    H.serve(function(req, res)
      got = {req:read("n", "n", "n", "l")}
      res:finish()
    end, nil, function(port)
      H.raw(port, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 20\r\nConnection: close\r\n\r\n"
        .. "12 -3.5e2 0x10 rest\n")
    end)
    assert.same({12, -350.0, 16, " rest"}, got)
  end)

  it("sets status and headers, and sends the head and body in one response", function()
    local text = H.serve(function(_, res)
      res:status(201):header("X-Thing", "yes"):header("Content-Type", "text/plain")
      res:finish("made")
    end, nil, function(port) return get(port, "/") end)
    assert.truthy(text:find("^HTTP/1.1 201 Created\r\n"))
    assert.truthy(text:find("\r\nX%-Thing: yes\r\nContent%-Type: text/plain\r\n"))
    assert.truthy(text:find("\r\nContent%-Length: 4\r\n"))
    assert.truthy(text:find("\r\n\r\nmade$"))
  end)

  it("finishes a response the handler left open", function()
    local text = H.serve(function(_, res) res:write("part") end, nil,
      function(port) return get(port, "/") end)
    assert.truthy(text:find("\r\n\r\n4\r\npart\r\n0\r\n\r\n$"))
  end)

  it("answers 500 when the handler raises before sending, and closes", function()
    local text = H.serve(function() error("oops") end, nil, function(port)
      return H.raw(port, "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    end)
    assert.equal(500, H.status(text))
  end)

  it("sends no body for 204 and 304", function()
    local text = H.serve(function(_, res) res:status(204):finish("ignored") end, nil,
      function(port) return get(port, "/") end)
    assert.truthy(text:find("^HTTP/1.1 204 No Content\r\n"))
    assert.truthy(text:find("\r\n\r\n$"))
    assert.falsy(text:find("Content-Length", 1, true))
  end)

  it("hands the connection over on res:detach()", function()
    local text = H.serve(function(req, res)
      local s = res:detach()
      assert.equal(req.socket, s)
      s:write("HTTP/1.1 101 Switching Protocols\r\n\r\nraw bytes")
      s:close()
    end, nil, function(port) return get(port, "/") end)
    assert.equal("HTTP/1.1 101 Switching Protocols\r\n\r\nraw bytes", text)
  end)

  it("takes math.huge and fractions as limits: no limit, the integer below", function()
    local huge = math.huge
    local opts = {max_line = huge, max_header_bytes = huge, max_headers = huge, max_body = huge,
      header_timeout = huge, idle_timeout = huge, body_timeout = huge}
    local text = H.serve(function(req, res) res:finish(req:body()) end, opts, function(port)
      return H.raw(port, "POST /" .. ("a"):rep(10000) .. " HTTP/1.1\r\nHost: h\r\n"
        .. "Content-Length: 9000000\r\nConnection: close\r\n\r\n" .. ("b"):rep(9000000), 10)
    end)
    assert.equal(200, H.status(text))
    assert.equal(9000000, #text:match("\r\n\r\n(.*)$"))
    text = H.serve(function(_, res) res:finish() end, {max_line = 20.9}, function(port)
      return get(port, "/" .. ("a"):rep(7)) -- "GET /aaaaaaa HTTP/1.1" is 21 bytes
    end)
    assert.equal(414, H.status(text))
  end)

  it("raises on bad arguments", function()
    assert.has_error(function() http.server(42, print) end,
      "bad argument #1 to 'server' (listening socket expected, got number)")
    local l = rt.listener()
    assert.has_error(function() http.server(l, 42) end,
      "bad argument #2 to 'server' (function expected, got number)")
    assert.has_error(function() http.server(l, print, {max_body = -1}) end,
      "bad argument #3 to 'server' (max_body must be a non-negative number)")
    l:close()
    H.serve(function(req, res)
      assert.has_error(function() res:header("Bad Name", "x") end,
        "bad argument #2 to 'header' (invalid header name)")
      assert.has_error(function() res:header("X-A", "a\r\nb") end,
        "bad argument #3 to 'header' (invalid header value)")
      assert.has_error(function() res:status(42) end,
        "bad argument #2 to 'status' (status code expected)")
      assert.has_error(function() req:read("x") end,
        "bad argument #2 to 'read' (invalid format)")
      assert.has_error(function() req:read("l", -1) end,
        "bad argument #3 to 'read' (invalid format)")
      res:finish("ok")
    end, nil, function(port) assert.equal(200, H.status(get(port, "/"))) end)
  end)
end)

describe("csock.http server under csock -w 2", function()
  it("serves from both workers on one port", function()
    local l, port = rt.listener()
    l:close()
    local script = rt.script([[
      local csock = require "csock"
      local http = require "csock.http"
      local l = assert(csock.tcp_listen("127.0.0.1", tonumber(arg[1]), 128))
      print("listening on 127.0.0.1:" .. arg[1])
      io.stdout:flush()
      http.serve(l, function(_, res) res:finish("worker " .. tostring(csock.worker())) end)
    ]])
    local proc = rt.start({rt.BIN, "-w", "2", script, tostring(port)})
    assert.equal("listening on 127.0.0.1:" .. port, proc.pipe:read("l"))
    local r = rt.python([[
import http.client, sys
seen = set()
for i in range(200):
    c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=5)
    c.request("GET", "/")
    seen.add(c.getresponse().read().decode())
    c.close()
    if len(seen) == 2: break
print(" ".join(sorted(seen)))
]], {port})
    rt.stop(proc)
    os.remove(script)
    assert.equal(0, r.status, r.err)
    assert.equal("worker 1 worker 2\n", r.out)
  end)
end)

describe("csock.http server, edge cases of RFC 9112", function()
  it("answers without 100 Continue when the handler refuses the body, and closes", function()
    H.serve(function(_, res) res:status(413):finish("no") end, nil, function(port)
      local c = assert(csock.tcp_connect("127.0.0.1", port, 3))
      c:write("POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n")
      local text = c:read("a")
      c:close()
      assert.equal(413, H.status(text))
      assert.falsy(text:find("100 Continue", 1, true))
      assert.truthy(text:find("\r\nConnection: close\r\n", 1, true))
      assert.truthy(text:find("\r\n\r\nno$"))
    end)
  end)

  it("sends no body for HEAD even when the handler streams one", function()
    H.serve(function(_, res)
      res:write("streamed ")
      res:write("body")
    end, nil, function(port)
      local text = H.raw(port, "HEAD / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
      assert.truthy(text:find("^HTTP/1.1 200 OK\r\n"))
      assert.truthy(text:find("\r\nTransfer%-Encoding: chunked\r\n"))
      assert.truthy(text:find("\r\n\r\n$"))
    end)
  end)

  -- A keep-alive request on a raw socket; the server's whole answer up to its close, or nil,
  -- "timeout" when the connection stays open.
  local function answer_until_close(port)
    local c <close> = assert(csock.tcp_connect("127.0.0.1", port, 3))
    c:write("GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    return c:read("a")
  end

  -- A body of "hello" against a Content-Length of another size, sent by write or by finish.
  for _, case in ipairs {
    {"shorter", "10", function(res) res:write("hello") end},
    {"longer", "2", function(res) res:finish("hello") end},
  } do
    local which, length, send = case[1], case[2], case[3]
    it("closes the connection after a body " .. which .. " than the handler's Content-Length",
      function()
        H.serve(function(_, res)
          res:header("Content-Length", length)
          send(res)
        end, nil, function(port)
          local text, err = answer_until_close(port)
          assert.equal(nil, err)
          assert.truthy(text:find("\r\nContent%-Length: " .. length .. "\r\n"))
          assert.truthy(text:find("\r\n\r\nhello$"))
        end)
      end)
  end

  it("keeps the connection when the body matches the handler's Content-Length", function()
    H.serve(function(_, res)
      res:header("Content-Length", "5")
      res:write("he")
      res:finish("llo")
    end, nil, function(port)
      local c <close> = assert(csock.tcp_connect("127.0.0.1", port, 3))
      for _ = 1, 2 do
        c:write("GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        repeat local line = assert(c:read("l")) until line == "\r"
        assert.equal("hello", c:read(5))
      end
    end)
  end)

  it("keeps an HTTP/1.0 connection that asks for keep-alive", function()
    H.serve(function(req, res) res:finish(req.version) end, nil, function(port)
      local c = assert(csock.tcp_connect("127.0.0.1", port, 3))
      for _ = 1, 2 do
        c:write("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        local head = {}
        repeat
          local line = assert(c:read("l"))
          head[#head + 1] = line
        until line == "\r"
        assert.equal("HTTP/1.1 200 OK\r", head[1])
        assert.truthy(table.concat(head, "\n"):find("Connection: keep-alive\r", 1, true))
        assert.equal("1.0", c:read(3))
      end
      c:write("GET / HTTP/1.0\r\n\r\n") -- no keep-alive: the server closes after it
      local text = c:read("a")
      assert.truthy(text:find("\r\nConnection: close\r\n\r\n1.0$"))
      c:close()
    end)
  end)

  it("takes an absolute-form target and OPTIONS *", function()
    local seen = {}
    H.serve(function(req, res)
      seen[#seen + 1] = req.method .. " " .. req.path .. " " .. tostring(req.query)
      res:finish()
    end, nil, function(port)
      H.raw(port, "GET http://h/a/b?x=1 HTTP/1.1\r\nHost: h\r\n\r\n"
        .. "OPTIONS * HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    end)
    assert.same({"GET /a/b x=1", "OPTIONS * nil"}, seen)
  end)

  it("ignores empty lines before a request line", function()
    local text = H.serve(function(_, res) res:finish("ok") end, nil, function(port)
      return H.raw(port, "\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    end)
    assert.equal(200, H.status(text))
  end)
end)

describe("csock.http server, a listener that fails", function()
  it("ends the server (join returns) when the socket does not listen", function()
    rt.loop(function()
      local s = assert(csock.socket(csock.AF_INET, csock.SOCK_STREAM))
      local srv = http.server(s, function() end)
      assert.is_true(srv:join())
      s:close()
    end, 5)
  end)
end)

describe("csock.http server, order and shutdown from a handler", function()
  it("answers pipelined requests in order even when the first is slow", function()
    local text = H.serve(function(req, res)
      if req.path == "/slow" then csock.sleep(0.2) end
      res:finish(req.path)
    end, nil, function(port)
      return H.raw(port, "GET /slow HTTP/1.1\r\nHost: h\r\n\r\nGET /fast HTTP/1.1\r\nHost: h\r\n"
        .. "Connection: close\r\n\r\n")
    end)
    local bodies = {}
    for body in text:gmatch("\r\n\r\n(/%l+)") do bodies[#bodies + 1] = body end
    assert.same({"/slow", "/fast"}, bodies)
  end)

  it("lets a handler close its own server: its response still goes out", function()
    rt.loop(function(go)
      local l, port = rt.listener()
      local srv
      srv = http.server(l, function(_, res)
        srv:close(1)
        res:finish("bye")
      end)
      local client = go(function()
        return H.raw(port, "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
      end)
      assert.is_true(srv:join())
      local _, text = client:join()
      assert.truthy(text:find("\r\nConnection: close\r\n", 1, true), text)
      assert.truthy(text:find("\r\n\r\nbye$"))
    end)
  end)
end)
