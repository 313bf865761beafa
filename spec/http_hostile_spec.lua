-- csock.http against hostile clients: malformed heads, smuggling pairs, floods, slowloris.
-- Each gets its status (400, 408, 413, 414, 431, 501, 505) and a closed connection, never the
-- handler; the server serves the next client normally.
local csock = require "csock"
local H = require "support.http"
local rt = require "support.rt"

-- Sockets this file leaves behind (the client's pool, responses dropped unread) are closed
-- here, not by a collection in the middle of a later file that counts descriptors.
teardown(function()
  require("csock.http").close_idle()
  collectgarbage()
  collectgarbage()
end)

local hello_calls = 0
local function hello(_, res)
  hello_calls = hello_calls + 1
  res:finish("hello")
end

-- The full answer to bytes, the status, and whether the server then served a good request.
local function answer(bytes, opts)
  hello_calls = 0
  return H.serve(hello, opts, function(port)
    local text = H.raw(port, bytes)
    local calls = hello_calls
    local after = H.raw(port, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert.equal(200, H.status(after), "the server no longer serves")
    return text, calls
  end)
end

-- The body a rejection carries: the reason, the parser's message.
local function rejected(code, reason, msg)
  local body = reason .. ": " .. msg .. "\n"
  return code, body
end

local function check(bytes, code, reason, msg, opts)
  local text, calls = answer(bytes, opts)
  local want_code, want_body = rejected(code, reason, msg)
  assert.equal(want_code, H.status(text))
  assert.equal(want_body, text:match("\r\n\r\n(.*)$"))
  assert.truthy(text:find("\r\nConnection: close\r\n", 1, true))
  assert.equal(0, calls, "the handler ran")
end

describe("csock.http server, malformed request lines", function()
  it("answers 400 to a request line without a version", function()
    check("GET /\r\nHost: x\r\n\r\n", 400, "Bad Request", "bad request target")
  end)
  it("answers 400 to two spaces between method and target", function()
    check("GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400, "Bad Request", "bad request target")
  end)
  it("answers 400 to a method that is not a token", function()
    check("G(T / HTTP/1.1\r\nHost: x\r\n\r\n", 400, "Bad Request", "bad request line")
  end)
  it("answers 400 to a control character in the target", function()
    check("GET /a\1b HTTP/1.1\r\nHost: x\r\n\r\n", 400, "Bad Request", "bad request target")
  end)
  it("answers 400 to a malformed version", function()
    check("GET / HTTP/1.1x\r\nHost: x\r\n\r\n", 400, "Bad Request", "bad HTTP version")
  end)
  it("answers 505 to HTTP/2.0 and HTTP/0.9", function()
    check("GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505, "HTTP Version Not Supported",
      "HTTP version not supported")
    check("GET / HTTP/0.9\r\nHost: x\r\n\r\n", 505, "HTTP Version Not Supported",
      "HTTP version not supported")
  end)
  it("answers 501 to an unknown method", function()
    check("BREW / HTTP/1.1\r\nHost: x\r\n\r\n", 501, "Not Implemented", "method not implemented")
  end)
  it("answers 400 to a bare LF ending a line", function()
    check("GET / HTTP/1.1\nHost: x\r\n\r\n", 400, "Bad Request", "bad line ending")
    check("GET / HTTP/1.1\r\nHost: x\n\r\n", 400, "Bad Request", "bad line ending")
  end)
  it("answers 400 to a bare CR inside a line", function()
    check("GET / HTTP/1.1\r\nHost: x\ry\r\n\r\n", 400, "Bad Request", "bad line ending")
  end)
  it("answers 414 to a request line over max_line", function()
    check("GET /" .. ("a"):rep(9000) .. " HTTP/1.1\r\nHost: x\r\n\r\n", 414, "URI Too Long",
      "request line too long")
  end)
  it("answers 414 before the line has ended, at max_line bytes", function()
    H.serve(hello, {max_line = 100}, function(port)
      local c = assert(csock.tcp_connect("127.0.0.1", port, 3))
      c:write("GET /" .. ("a"):rep(200)) -- no newline: the limit alone decides
      local head = c:read("l")
      assert.equal("HTTP/1.1 414 URI Too Long\r", head)
      c:close()
    end)
  end)
end)

describe("csock.http server, malformed header fields", function()
  it("answers 400 to obs-fold", function()
    check("GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n 2\r\n\r\n", 400, "Bad Request",
      "obsolete line folding")
  end)
  it("answers 400 to a space before the colon", function()
    check("GET / HTTP/1.1\r\nHost: x\r\nX-A : 1\r\n\r\n", 400, "Bad Request", "bad field name")
  end)
  it("answers 400 to a field without a colon", function()
    check("GET / HTTP/1.1\r\nHost: x\r\nX-A\r\n\r\n", 400, "Bad Request", "bad field name")
  end)
  it("answers 400 to a NUL in a value", function()
    check("GET / HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n", 400, "Bad Request",
      "bad character in a field value")
  end)
  it("answers 400 to HTTP/1.1 without Host, and to two Hosts", function()
    check("GET / HTTP/1.1\r\n\r\n", 400, "Bad Request", "missing or repeated Host")
    check("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, "Bad Request",
      "missing or repeated Host")
  end)
  it("answers 431 to more than max_headers fields", function()
    local t = {"GET / HTTP/1.1\r\nHost: x\r\n"}
    for i = 1, 101 do t[#t + 1] = "X-" .. i .. ": v\r\n" end
    t[#t + 1] = "\r\n"
    check(table.concat(t), 431, "Request Header Fields Too Large", "header section too large")
  end)
  it("answers 431 to a header section over max_header_bytes, before it has ended", function()
    H.serve(hello, {max_header_bytes = 1000}, function(port)
      local c = assert(csock.tcp_connect("127.0.0.1", port, 3))
      c:write("GET / HTTP/1.1\r\nHost: x\r\nX-Flood: " .. ("f"):rep(2000))
      assert.equal("HTTP/1.1 431 Request Header Fields Too Large\r", c:read("l"))
      c:close()
    end)
  end)
  it("takes 60 KB of fields and answers 431 to 70 KB by default (64 KiB)", function()
    local head = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: "
    local text = answer(head .. ("b"):rep(60000) .. "\r\n\r\n")
    assert.equal(200, H.status(text))
    check(head .. ("b"):rep(70000) .. "\r\n\r\n", 431, "Request Header Fields Too Large",
      "header section too large")
  end)
  it("bounds a header flood: 10 MB of fields cost a 431, not the memory", function()
    H.serve(hello, nil, function(port)
      local c = assert(csock.tcp_connect("127.0.0.1", port, 5))
      c:write("GET / HTTP/1.1\r\nHost: x\r\n")
      local line = ("X-Flood: " .. ("f"):rep(990) .. "\r\n")
      local chunk = line:rep(100)
      local sent = 0
      for _ = 1, 100 do
        if not c:write(chunk) then break end -- the server closes after its answer
        sent = sent + #chunk
      end
      assert.is_true(sent < 10 * 1000 * 1000, "the server read the whole flood")
      local text = c:read("a") or ""
      assert.equal(431, H.status(text))
      c:close()
    end)
  end)
end)

describe("csock.http server, request smuggling", function()
  it("answers 400 to Content-Length with Transfer-Encoding", function()
    check("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
      .. "0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n", 400, "Bad Request",
      "Transfer-Encoding with Content-Length")
  end)
  it("answers 400 to two Content-Length fields, equal or not", function()
    check("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
      400, "Bad Request", "more than one Content-Length")
    check("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
      400, "Bad Request", "more than one Content-Length")
  end)
  it("answers 400 to a Content-Length that is not digits", function()
    check("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello", 400, "Bad Request",
      "bad Content-Length")
    check("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\nhello", 400, "Bad Request",
      "bad Content-Length")
  end)
  it("answers 501 to a transfer coding other than chunked", function()
    check("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501,
      "Not Implemented", "transfer coding not implemented")
  end)
  it("answers 400 to chunked applied twice", function()
    check("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
      400, "Bad Request", "chunked applied twice")
  end)
  it("answers 400 to a bad chunk-size line, once the handler reads the body", function()
    local text = H.serve(function(req, res)
      local body, err = req:body()
      res:finish(tostring(body) .. " " .. tostring(err))
    end, nil, function(port)
      return H.raw(port, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        .. "5\nhello\r\n0\r\n\r\n")
    end)
    assert.equal("nil bad chunk line", text:match("\r\n\r\n(.*)$"))
    assert.truthy(text:find("\r\nConnection: close\r\n", 1, true))
  end)
end)

describe("csock.http server, bodies over the limit", function()
  it("answers 413 to a declared 1 GB body without reading it", function()
    H.serve(hello, nil, function(port)
      local c = assert(csock.tcp_connect("127.0.0.1", port, 3))
      local t0 = csock.now()
      c:write("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1073741824\r\n\r\n")
      assert.equal("HTTP/1.1 413 Content Too Large\r", c:read("l"))
      assert.is_true(csock.now() - t0 < 1)
      c:close()
    end)
  end)
  it("takes a body of 8 MiB and answers 413 to one byte more by default", function()
    -- the body over the limit is not sent: the answer comes on the head alone, and a
    -- refused body still on its way could make the close a reset that loses the answer
    local function post(n, body)
      return H.serve(function(req, res) res:finish(tostring(#assert(req:body()))) end, nil,
        function(port)
          return H.raw(port, "POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            .. "Content-Length: " .. n .. "\r\n\r\n" .. body, 10)
        end)
    end
    local text = post(8 * 1024 * 1024, ("z"):rep(8 * 1024 * 1024))
    assert.equal(200, H.status(text))
    assert.equal("8388608", text:match("\r\n\r\n(.*)$"))
    assert.equal(413, H.status(post(8 * 1024 * 1024 + 1, "")))
  end)
  it("fails a chunked body past max_body with 413", function()
    local text = H.serve(function(req, res)
      local body, err = req:body()
      res:finish(tostring(body) .. " " .. tostring(err))
    end, {max_body = 10}, function(port)
      return H.raw(port, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        .. "8\r\n12345678\r\n8\r\n12345678\r\n0\r\n\r\n")
    end)
    assert.equal("nil body too large", text:match("\r\n\r\n(.*)$"))
  end)
  it("answers 413 itself when the handler did not answer", function()
    local text = H.serve(function(req) req:body() end, {max_body = 10}, function(port)
      return H.raw(port, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        .. "8\r\n12345678\r\n8\r\n12345678\r\n0\r\n\r\n")
    end)
    assert.equal(413, H.status(text))
  end)
end)

describe("csock.http server, slow clients", function()
  it("answers 408 and closes when the head does not come within header_timeout", function()
    H.serve(hello, {header_timeout = 0.2}, function(port)
      local c = assert(csock.tcp_connect("127.0.0.1", port, 3))
      local t0 = csock.now()
      for _, piece in ipairs({"GET / HT", "TP/1.1\r\n", "Host: x\r\n"}) do
        c:write(piece)
        csock.sleep(0.1)
      end
      local text = c:read("a")
      local took = csock.now() - t0
      assert.equal(408, H.status(text))
      assert.is_true(took >= 0.2 and took < 1, "took " .. took)
      c:close()
    end)
  end)
  it("closes an idle connection after idle_timeout without a response", function()
    H.serve(hello, {idle_timeout = 0.2}, function(port)
      local c = assert(csock.tcp_connect("127.0.0.1", port, 3))
      c:write("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
      local head = c:read("l")
      assert.equal("HTTP/1.1 200 OK\r", head)
      repeat local line = c:read("l") until line == "\r"
      assert.equal("hello", c:read(5))
      local t0 = csock.now()
      assert.equal("", c:read("a"))
      assert.is_true(csock.now() - t0 < 1)
      c:close()
    end)
  end)
  it("gives the handler a timeout when the body stalls past body_timeout", function()
    local text = H.serve(function(req, res)
      local body, err, code = req:body()
      res:finish(("%s %s %s"):format(tostring(body), err, tostring(code == csock.ETIMEDOUT)))
    end, {body_timeout = 0.2}, function(port)
      local c = assert(csock.tcp_connect("127.0.0.1", port, 3))
      c:write("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12345")
      local t = c:read("a")
      c:close()
      return t
    end)
    assert.equal("nil timeout true", text:match("\r\n\r\n(.*)$"))
  end)
end)

describe("csock.http's parser and other readers of the socket", function()
  it("makes a second reader fail as busy while it waits for a head", function()
    rt.loop(function(go)
      local a, b = assert(csock.socketpair())
      a:write("GET / HT") -- part of a head: the parser waits for the rest
      local parser = go(function() return b:_httpreq(2, 2, 8192, 65536, 100) end)
      csock.sleep(0.05)
      local ok, err = pcall(b.read, b, "l")
      assert.is_false(ok)
      assert.equal("socket is busy: another task is reading from it", err)
      a:write("TP/1.1\r\nHost: x\r\n\r\n")
      local _, method, path = parser:join()
      assert.equal("GET", method)
      assert.equal("/", path)
      a:write("after\n")
      assert.equal("after", b:read("l")) -- the flag is given back with the result
    end)
  end)
end)
