-- LuaSocket's own socket.http (Debian's lua-socket) running on csock.socket against python3's
-- http.server: plain blocking calls, and 20 requests from 20 tasks that overlap in time.
local csock = require "csock"
local rt = require "support.rt"

-- A threading HTTP server: /slow sleeps DELAY seconds, /chunked answers with a chunked
-- body, POST echoes the body upper-cased; every other GET answers "path=<path>".
local SERVER = [[
import sys, time, http.server
DELAY = float(sys.argv[1])
class H(http.server.BaseHTTPRequestHandler):
    def reply(self, body, code=200):
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        if self.path.startswith("/slow"):
            time.sleep(DELAY)
        if self.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"first ", b"second ", b"third"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
            return
        if self.path == "/missing":
            return self.reply(b"no such page", 404)
        self.reply(("path=%s" % self.path).encode())
    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        self.reply(self.rfile.read(n).upper())
    def log_message(self, *args):
        pass
class S(http.server.ThreadingHTTPServer):
    request_queue_size = 128
    daemon_threads = True
srv = S(("127.0.0.1", 0), H)
print("listening on 127.0.0.1:%d" % srv.server_address[1], flush=True)
srv.serve_forever()
]]

local DELAY = 0.5

describe("socket.http over csock.socket", function()
  local server, base, http, ltn12
  local saved = {}

  setup(function()
    for _, m in ipairs {"socket", "socket.core", "socket.http", "socket.url", "socket.headers"} do
      saved[m] = package.loaded[m]
      package.loaded[m] = nil
    end
    package.loaded.socket = require "csock.socket"
    package.loaded["socket.core"] = package.loaded.socket
    http = require "socket.http"
    ltn12 = require "ltn12"
    server = rt.start({"python3", "-c", SERVER, tostring(DELAY)})
    base = "http://127.0.0.1:" .. server.port
  end)

  teardown(function()
    rt.stop(server)
    for _, m in ipairs {"socket", "socket.core", "socket.http", "socket.url", "socket.headers"} do
      package.loaded[m] = saved[m]
    end
  end)

  it("loads LuaSocket's own http module on top of csock.socket", function()
    assert.equal(require "csock.socket", require "socket")
    assert.equal("function", type(http.request))
    assert.equal("LuaSocket 3.1.0", http.USERAGENT)
  end)

  it("fetches a page with the simple form", function()
    local body, code, headers, status = http.request(base .. "/hello")
    assert.equal("path=/hello", body)
    assert.equal(200, code)
    assert.equal("11", headers["content-length"])
    assert.equal("HTTP/1.0 200 OK", status)
  end)

  it("sends a body with POST and reads the answer through an ltn12 sink", function()
    local out = {}
    local ok, code = http.request {
      url = base .. "/echo",
      method = "POST",
      source = ltn12.source.string("some body"),
      headers = {["content-length"] = 9},
      sink = ltn12.sink.table(out),
    }
    assert.same({1, 200}, {ok, code})
    assert.equal("SOME BODY", table.concat(out))
  end)

  it("reads a chunked body and reports a 404", function()
    assert.equal("first second third", (http.request(base .. "/chunked")))
    local body, code = http.request(base .. "/missing")
    assert.same({"no such page", 404}, {body, code})
  end)

  it("returns nil and LuaSocket's message when nothing listens", function()
    local probe = assert(csock.tcp_listen("127.0.0.1", 0))
    local port = probe:getsockname().port
    probe:close()
    assert.same({nil, "connection refused"}, {http.request("http://127.0.0.1:" .. port .. "/")})
  end)

  it("times out with http.TIMEOUT", function()
    local old = http.TIMEOUT
    http.TIMEOUT = 0.1
    finally(function() http.TIMEOUT = old end)
    local t0 = csock.now()
    assert.same({nil, "timeout"}, {http.request(base .. "/slow")})
    assert.is_true(csock.now() - t0 < DELAY)
  end)

  it("runs 20 requests from 20 tasks in about one request's time", function()
    local t0 = csock.now()
    local bodies = rt.loop(function(go)
      local tasks, out = {}, {}
      for i = 1, 20 do
        tasks[i] = go(function()
          local body, code = http.request(base .. "/slow/" .. i)
          assert.equal(200, code)
          out[i] = body
        end)
      end
      for _, t in ipairs(tasks) do assert(t:join()) end
      return out
    end, 20)
    local took = csock.now() - t0
    for i = 1, 20 do assert.equal("path=/slow/" .. i, bodies[i]) end
    -- one after another they would take 20 * DELAY = 10 s
    assert.is_true(took >= DELAY and took < 3 * DELAY, "took " .. took .. " s")
  end)
end)
