-- csock.http's client: http.request against nginx (an upstream no one here wrote), node's http
-- server (chunked both ways) and csock's own server (connection reuse, redirects, timeouts).
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

-- A port that was free a moment ago (nginx and node need a number in their configuration).
local function free_port()
  local l, port = rt.listener()
  l:close()
  return port
end

local function wait_port(port)
  for _ = 1, 100 do
    local c = csock.tcp_connect("127.0.0.1", port, 1)
    if c then
      c:close()
      return true
    end
    csock.sleep(0.05)
  end
  error("nothing listens on port " .. port)
end

local function spit(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

describe("http.request against nginx", function()
  local proc, port, prefix
  setup(function()
    if rt.exec({"sh", "-c", "command -v nginx"}).status ~= 0 then return end
    prefix = rt.tmppath("-nginx")
    os.execute("mkdir -p " .. rt.q(prefix .. "/logs") .. " " .. rt.q(prefix .. "/html"))
    spit(prefix .. "/html/file.txt", "static file\n")
    spit(prefix .. "/html/big.bin", ("0123456789abcdef"):rep(65536))
    port = free_port()
    spit(prefix .. "/nginx.conf", ([[
daemon off;
master_process off;
worker_processes 1;
error_log stderr error;
pid %s/nginx.pid;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path %s/body;
  proxy_temp_path %s/proxy;
  fastcgi_temp_path %s/fcgi;
  uwsgi_temp_path %s/uwsgi;
  scgi_temp_path %s/scgi;
  server {
    listen 127.0.0.1:%d;
    root %s/html;
    location = /conn { return 200 "$connection"; }
    location = /old { return 301 /file.txt; }
    location = /chain { return 302 /old; }
    location = /post { return 303 /file.txt; }
  }
}
]]):format(prefix, prefix, prefix, prefix, prefix, prefix, port, prefix))
    proc = rt.start({"sh", "-c", "echo started; exec nginx -p " .. rt.q(prefix) .. " -c "
      .. rt.q(prefix .. "/nginx.conf")})
    wait_port(port)
  end)
  teardown(function()
    if proc then rt.stop(proc) end
    if prefix then os.execute("rm -rf " .. rt.q(prefix)) end
  end)

  local function base()
    if not proc then pending("no nginx") end
    return "http://127.0.0.1:" .. port
  end

  it("gets a static file: status, headers in any case, body", function()
    local url = base()
    if not url then return end
    local res = assert(http.request(url .. "/file.txt"))
    assert.equal(200, res.status)
    assert.equal("12", res.headers["content-length"])
    assert.equal("12", res.headers["Content-Length"])
    assert.equal("static file\n", res:body())
  end)

  it("reuses the connection for the next request to the same host", function()
    local url = base()
    if not url then return end
    http.close_idle()
    local a = assert(http.request(url .. "/conn")):body()
    local b = assert(http.request(url .. "/conn")):body()
    assert.equal(a, b)
  end)

  it("streams a 1 MiB body with res:read", function()
    local url = base()
    if not url then return end
    local res = assert(http.request(url .. "/big.bin"))
    local n, first = 0, nil
    while true do
      local piece = res:read(100000)
      if not piece then break end
      first = first or piece:sub(1, 16)
      n = n + #piece
    end
    assert.equal(1048576, n)
    assert.equal("0123456789abcdef", first)
  end)

  it("follows redirects, and returns the 3xx itself with redirects = 0", function()
    local url = base()
    if not url then return end
    local res = assert(http.request(url .. "/chain"))
    assert.equal(200, res.status)
    assert.equal("static file\n", res:body())
    res = assert(http.request(url .. "/chain", {redirects = 0}))
    assert.equal(302, res.status)
    assert.equal(url .. "/old", res.headers.location)
    res:close()
    res = assert(http.request(url .. "/chain", {redirects = 1}))
    assert.equal(301, res.status)
    res:close()
  end)

  it("turns a POST into a GET on 303", function()
    local url = base()
    if not url then return end
    local res = assert(http.request(url .. "/post", {method = "POST", body = "x=1"}))
    assert.equal(200, res.status)
    assert.equal("static file\n", res:body())
  end)

  it("sends HEAD and gets no body", function()
    local url = base()
    if not url then return end
    local res = assert(http.request(url .. "/file.txt", {method = "HEAD"}))
    assert.equal(200, res.status)
    assert.equal("12", res.headers["content-length"])
    assert.equal("", res:body())
    assert.equal("static file\n", assert(http.request(url .. "/file.txt")):body())
  end)
end)

describe("http.request against node's http server", function()
  it("sends a reader body chunked and reads a chunked response", function()
    if rt.exec({"sh", "-c", "command -v node"}).status ~= 0 then return pending("no node") end
    local port = free_port()
    local proc = rt.start({"node", "-e", [[
const http = require("http");
http.createServer((req, res) => {
  let body = "";
  req.on("data", (d) => body += d);
  req.on("end", () => {
    res.setHeader("X-Te", String(req.headers["transfer-encoding"]));
    res.write(req.method + " ");
    res.write(body.toUpperCase());
    res.end();
  });
}).listen(]] .. port .. [[, "127.0.0.1", () => console.log("listening"));
]]})
    local ok, err = pcall(function()
      local pieces = {"abc", "def", "ghi"}
      local i = 0
      local res = assert(http.request("http://127.0.0.1:" .. port .. "/", {method = "PUT",
        body = function() i = i + 1; return pieces[i] end, timeout = 5}))
      assert.equal(200, res.status)
      assert.equal("chunked", res.headers["x-te"])
      assert.equal("chunked", res.headers["transfer-encoding"])
      assert.equal("PUT ABCDEFGHI", res:body())
    end)
    rt.stop(proc)
    assert(ok, err)
  end)
end)

describe("http.request against csock's server", function()
  it("keeps one connection for many requests", function()
    local conns = {}
    H.serve(function(req, res)
      conns[req.socket] = true
      res:finish(req.method .. " " .. req.path .. " " .. tostring(req.headers["x-a"]) .. " "
        .. req:body())
    end, nil, function(port)
      local url = "http://127.0.0.1:" .. port
      for i = 1, 5 do
        local res = assert(http.request(url .. "/n" .. i, {method = "post", body = "b" .. i,
          headers = {["X-A"] = "v"}}))
        assert.equal("POST /n" .. i .. " v b" .. i, res:body())
      end
    end)
    local n = 0
    for _ in pairs(conns) do n = n + 1 end
    assert.equal(1, n)
  end)

  it("retries once on a fresh connection when a kept one was closed by the server", function()
    H.serve(function(_, res) res:finish("ok") end, {idle_timeout = 0.05}, function(port)
      local url = "http://127.0.0.1:" .. port .. "/"
      assert.equal("ok", assert(http.request(url)):body())
      csock.sleep(0.2) -- the server has closed the idle connection
      assert.equal("ok", assert(http.request(url)):body())
    end)
  end)

  it("returns nil, message, ETIMEDOUT when the server does not answer in time", function()
    H.serve(function(_, res) csock.sleep(2); res:finish("late") end, nil, function(port)
      local t0 = csock.now()
      local res, err, code = http.request("http://127.0.0.1:" .. port .. "/", {timeout = 0.2})
      assert.is_nil(res)
      assert.equal("timeout", err)
      assert.equal(csock.ETIMEDOUT, code)
      assert.is_true(csock.now() - t0 < 1)
    end)
  end)

  it("returns nil, message, ECONNREFUSED when nothing listens", function()
    local res, err, code = http.request("http://127.0.0.1:" .. free_port() .. "/")
    assert.is_nil(res)
    assert.equal("Connection refused", err)
    assert.equal(csock.ECONNREFUSED, code)
  end)

  it("follows a relative redirect that keeps a string body on 307", function()
    H.serve(function(req, res)
      if req.path == "/a" then
        res:status(307):header("Location", "b?x"):finish()
      else
        res:finish(req.method .. " " .. req.path .. " " .. req.query .. " " .. req:body())
      end
    end, nil, function(port)
      local res = assert(http.request("http://127.0.0.1:" .. port .. "/a",
        {method = "PUT", body = "data"}))
      assert.equal("PUT /b x data", res:body())
    end)
  end)

  it("follows 5 redirects by default and returns the 6th 3xx as it is", function()
    local hops = 0
    H.serve(function(req, res)
      hops = hops + 1
      local n = math.tointeger(tonumber(req.path:match("^/r(%d+)$")))
      res:status(302):header("Location", "/r" .. (n + 1)):finish("hop " .. n)
    end, nil, function(port)
      local url = "http://127.0.0.1:" .. port .. "/r0"
      local res = assert(http.request(url))
      assert.same({302, "/r6", "hop 5", 6}, {res.status, res.headers.location, res:body(), hops})
      hops = 0
      res = assert(http.request(url, {redirects = 2}))
      assert.same({302, "/r3", "hop 2", 3}, {res.status, res.headers.location, res:body(), hops})
    end)
  end)

  it("works outside the loop, blocking", function()
    local srv = H.start_server({})
    local res = assert(http.request("http://127.0.0.1:" .. srv.port .. "/echo", {body = "x"}))
    rt.stop(srv)
    assert.equal(200, res.status)
    assert.equal("POST /echo nil 1.1 1\nx", res:body())
  end)

  it("raises on bad arguments", function()
    assert.has_error(function() http.request(42) end,
      "bad argument #1 to 'request' (string expected, got number)")
    assert.has_error(function() http.request("ftp://x/") end,
      "bad argument #1 to 'request' (unsupported scheme: ftp)")
    assert.has_error(function() http.request("not a url") end,
      "bad argument #1 to 'request' (invalid URL)")
    assert.has_error(function() http.request("http://x/", {body = 42}) end,
      "bad argument #2 to 'request' (body must be a string or a function)")
    assert.has_error(function() http.request("http://x/", {redirects = -1}) end,
      "bad argument #2 to 'request' (redirects must be a non-negative integer)")
  end)
end)

describe("http.request, response framing", function()
  -- A one-shot raw server: answers the first request on the first connection with `text`.
  local function raw_server(text)
    local l, port = rt.listener()
    local task = csock.spawn(function()
      local c <close> = assert(l:accept())
      repeat local line = c:read("l") until line == "\r" or line == nil
      c:write(text)
      c:shutdown("w")
      c:read("a")
      l:close()
    end)
    return port, task
  end

  it("reads a chunked body with extensions and trailers", function()
    rt.loop(function()
      local port = raw_server("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        .. "4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nX-Trailer: t\r\n\r\n")
      local res = assert(http.request("http://127.0.0.1:" .. port .. "/", {timeout = 3}))
      assert.equal("Wikipedia", res:body())
      http.close_idle()
    end)
  end)

  it("reads a body that ends with the connection (no length, no chunking)", function()
    rt.loop(function()
      local port = raw_server("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end")
      local res = assert(http.request("http://127.0.0.1:" .. port .. "/", {timeout = 3}))
      assert.equal("1.1", res.version)
      assert.equal("until the end", res:body())
    end)
  end)

  it("returns nil, message, EPROTO for a malformed status line", function()
    rt.loop(function()
      local port = raw_server("HTTP/1.1 2xx OK\r\n\r\n")
      local res, err, code = http.request("http://127.0.0.1:" .. port .. "/", {timeout = 3})
      assert.is_nil(res)
      assert.equal("bad response: bad status code", err)
      assert.equal(csock.EPROTO, code)
    end)
  end)

  it("returns nil, message, EPROTO for Content-Length with Transfer-Encoding", function()
    rt.loop(function()
      local port = raw_server("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n"
        .. "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
      local res, err, code = http.request("http://127.0.0.1:" .. port .. "/", {timeout = 3})
      assert.is_nil(res)
      assert.equal("bad response: Transfer-Encoding with Content-Length", err)
      assert.equal(csock.EPROTO, code)
    end)
  end)

  -- RFC 9112 (2.2) lets a recipient take a bare LF for CRLF: {title, response, expected
  -- {status, reason, version, X-Lines, body}}
  for _, case in ipairs {
    { "whose lines end in a bare LF", "HTTP/1.1 200 OK\nContent-Length: 5\nX-Lines: bare\n\nhello",
      { 200, "OK", "1.1", "bare", "hello" } },
    { "that mixes CRLF and bare LF line endings",
      "HTTP/1.0 201 Created\r\nContent-Length: 2\nX-Lines: mixed\r\n\nok",
      { 201, "Created", "1.0", "mixed", "ok" } },
  } do
    local title, text, expected = table.unpack(case)
    it("reads a head " .. title, function()
      rt.loop(function()
        local port = raw_server(text)
        local res = assert(http.request("http://127.0.0.1:" .. port .. "/", {timeout = 3}))
        assert.are.same(expected,
          { res.status, res.reason, res.version, res.headers["x-lines"], res:body() })
        http.close_idle()
      end)
    end)
  end

  it("reads a bare-LF head that comes a few bytes at a time", function()
    rt.loop(function()
      local l <close>, port = rt.listener()
      csock.spawn(function()
        local c <close> = assert(l:accept())
        repeat local line = c:read("l") until line == "\r" or line == nil
        local text = "HTTP/1.1 200 OK\nContent-Length: 7\nX-Slow: yes\n\ntrickle"
        for i = 1, #text, 4 do
          assert(c:write(text:sub(i, i + 3)))
          csock.sleep(0.005)
        end
        c:read("a")
      end)
      local res = assert(http.request("http://127.0.0.1:" .. port .. "/", {timeout = 3}))
      assert.are.same({ 200, "yes", "trickle" }, { res.status, res.headers["x-slow"], res:body() })
      http.close_idle()
    end)
  end)

  it("returns nil, message, EPROTO for a bare CR in a response head", function()
    rt.loop(function()
      local port = raw_server("HTTP/1.1 200 OK\nX-Bad: a\rb\n\n")
      local res, err, code = http.request("http://127.0.0.1:" .. port .. "/", {timeout = 3})
      assert.are.same({ nil, "bad response: bad line ending", csock.EPROTO }, { res, err, code })
    end)
  end)

  it("reaches an IPv6 literal in brackets", function()
    if not rt.has_ipv6() then return pending("no ipv6") end
    rt.loop(function()
      local l = assert(csock.tcp_listen("::1", 0))
      local port = l:getsockname().port
      local srv = http.server(l, function(req, res) res:finish(req.headers.host) end)
      local res = assert(http.request("http://[::1]:" .. port .. "/", {timeout = 3}))
      assert.equal("[::1]:" .. port, res:body())
      srv:close(0)
      http.close_idle()
    end)
  end)
end)
