-- csock.http's server when a handler raises: on a kept-alive connection, after the response
-- started, after detach, and what goes to stderr. Talked to over raw sockets and by curl.
local csock = require "csock"
local rt = require "support.rt"
local H = require "support.http"

-- The head of the response in text at or after init, without its Date line (it changes).
local function head_without_date(text, init)
  local s, e = text:find("\r\n\r\n", init or 1, true)
  assert(s, "no head in: " .. text)
  local head = text:sub(init or 1, s + 1):gsub("Date: [^\r]*\r\n", "")
  return head, e
end

describe("csock.http server, a handler that raises", function()
  it("answers 500 with Connection: close on a kept-alive connection, after a 200", function()
    local text = H.serve(function(req, res)
      if req.path == "/boom" then error("boom") end
      res:finish("ok")
    end, nil, function(port)
      return H.raw(port, "GET /ok HTTP/1.1\r\nHost: h\r\n\r\nGET /boom HTTP/1.1\r\nHost: h\r\n\r\n"
        .. "GET /never HTTP/1.1\r\nHost: h\r\n\r\n")
    end)
    local first, e = head_without_date(text)
    assert.equal("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n", first)
    assert.equal("ok", text:sub(e + 1, e + 2))
    local second, e2 = head_without_date(text, e + 3)
    assert.equal("HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\n"
      .. "Content-Length: 22\r\nConnection: close\r\n", second)
    assert.equal("Internal Server Error\n", text:sub(e2 + 1)) -- and nothing for /never
  end)

  it("closes without a 500 when the response had started", function()
    local text = H.serve(function(_, res)
      res:write("part")
      error("late")
    end, nil, function(port) return H.raw(port, "GET / HTTP/1.1\r\nHost: h\r\n\r\n") end)
    local head, e = head_without_date(text)
    assert.equal("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n", head)
    assert.equal("4\r\npart\r\n", text:sub(e + 1)) -- no last chunk: the body is cut
  end)

  it("leaves a detached connection to the handler's task", function()
    local text = H.serve(function(_, res)
      local s = res:detach()
      csock.spawn(function()
        csock.sleep(0.05)
        s:write("still mine")
        s:close()
      end)
      error("after detach")
    end, nil, function(port) return H.raw(port, "GET / HTTP/1.1\r\nHost: h\r\n\r\n") end)
    assert.equal("still mine", text)
  end)

  it("serves the next connection after a handler's error", function()
    local a, b = H.serve(function(req, res)
      if req.path == "/boom" then error("boom") end
      res:finish("fine")
    end, nil, function(port)
      local x = H.raw(port, "GET /boom HTTP/1.1\r\nHost: h\r\n\r\n")
      return x, H.raw(port, "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    end)
    assert.equal(500, H.status(a))
    assert.equal(200, H.status(b))
    assert.equal("fine", b:sub(-4))
  end)

  it("logs the error and its traceback to stderr", function()
    local script = rt.script([[
local csock = require "csock"
local http = require "csock.http"
local l = assert(csock.tcp_listen("127.0.0.1", 0))
print("listening on 127.0.0.1:" .. l:getsockname().port)
io.stdout:flush()
http.serve(l, function() error("oops") end)
]])
    rt.defer(finally, function() os.remove(script) end)
    local proc = rt.start({rt.BIN, script})
    local r = rt.exec({"curl", "-sS", "--max-time", "5", "-o", "/dev/null", "-w", "%{http_code}",
      "http://127.0.0.1:" .. proc.port .. "/"})
    local _, err = rt.stop(proc)
    assert.equal("500", r.out)
    local first = err:match("^[^\n]*")
    assert.equal("csock.http: handler error: " .. script .. ":6: oops", first)
    assert.truthy(err:find("\nstack traceback:\n", 1, true), err)
  end)
end)

describe("csock.http server, a request without a body", function()
  it("reads as an empty body: body() is \"\", every read format nil", function()
    local got
    local text = H.serve(function(req, res)
      got = {req:body(), req:read("a"), req:read("l"), req:read("L"), req:read("n"), req:read(0),
        req:read(5), req:read(), select("#", req:read("l", "a")), req:body()}
      res:finish("done")
    end, nil, function(port)
      return H.raw(port, "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    end)
    assert.equal(200, H.status(text))
    assert.same({"", "", nil, nil, nil, nil, nil, nil, 1, ""}, got)
  end)

  it("keeps the connection for the next request after those reads", function()
    local n = 0
    local text = H.serve(function(req, res)
      n = n + 1
      assert.is_nil(req:read("l"))
      assert.equal("", req:body())
      res:finish(tostring(n))
    end, nil, function(port)
      return H.raw(port, "GET /1 HTTP/1.1\r\nHost: h\r\n\r\n"
        .. "GET /2 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    end)
    local _, e = head_without_date(text)
    assert.equal("1", text:sub(e + 1, e + 1))
    assert.equal("2", text:sub(-1))
  end)
end)

describe("csock.http server, finish after the handler changed the response", function()
  local function one(handler, request)
    local text = H.serve(handler, nil, function(port)
      return H.raw(port, request or "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    end)
    local head, e = head_without_date(text)
    return head, text:sub(e + 1)
  end

  it("sends the body and its length when the status went back from 204 to 200", function()
    local head, body = one(function(_, res) res:status(204):status(200):finish("abc") end)
    assert.equal("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n", head)
    assert.equal("abc", body)
  end)

  it("sends no body for a 304 set before finish", function()
    local head, body = one(function(_, res) res:status(304):finish("abc") end)
    assert.equal("HTTP/1.1 304 Not Modified\r\nConnection: close\r\n", head)
    assert.equal("", body)
  end)

  it("sends the handler's Content-Length, and no second one", function()
    local head, body = one(function(_, res)
      res:header("Content-Length", "3"):finish("abc")
    end)
    assert.equal("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n", head)
    assert.equal("abc", body)
  end)

  it("answers HEAD with the head of GET and no body", function()
    local head, body = one(function(_, res) res:header("X-A", "1"):finish("abc") end,
      "HEAD / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    assert.equal("HTTP/1.1 200 OK\r\nX-A: 1\r\nContent-Length: 3\r\nConnection: close\r\n", head)
    assert.equal("", body)
  end)
end)

describe("csock.http server, a response used after finish or detach", function()
  local function errors_of(fn)
    local got
    local text = H.serve(function(_, res)
      got = fn(res)
    end, nil, function(port)
      return H.raw(port, "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    end)
    return got, text
  end

  local function err(f, ...)
    local ok, e = pcall(f, ...)
    assert.is_false(ok)
    return e
  end

  it("raises \"already finished\" on write and sendfile after finish", function()
    local got = errors_of(function(res)
      res:finish("x")
      return {err(res.write, res, "y"), err(res.sendfile, res, "/dev/null")}
    end)
    assert.same({"write: response already finished", "sendfile: response already finished"}, got)
  end)

  it("raises \"detached\" on write and sendfile after detach, finish does nothing", function()
    local got, text = errors_of(function(res)
      local s = res:detach()
      local r = {err(res.write, res, "y"), err(res.sendfile, res, "/dev/null"), res:finish("z") == res}
      s:write("own bytes")
      s:close()
      return r
    end)
    assert.same({"write: response detached", "sendfile: response detached", true}, got)
    assert.equal("own bytes", text)
  end)

  it("still says \"already finished\" when a finished response was detached", function()
    local got = errors_of(function(res)
      res:finish("x")
      local s = res:detach()
      local r = {err(res.write, res, "y"), err(res.sendfile, res, "/dev/null")}
      s:close()
      return r
    end)
    assert.same({"write: response already finished", "sendfile: response already finished"}, got)
  end)
end)
