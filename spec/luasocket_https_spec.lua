-- csock.socket.https: LuaSec's ssl.https API over socket.http and csock's TLS, against a
-- python3 HTTPS server with a certificate from the test CA (spec/support/certs.lua).
local csock = require "csock"
local rt = require "support.rt"

local SERVER = [[
import sys, ssl, time, http.server
cert, key = sys.argv[1], sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path.startswith("/slow"):
            time.sleep(0.3)
        body = ("secure %s" % self.path).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)[::-1]
        self.send_response(201)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
class S(http.server.ThreadingHTTPServer):
    request_queue_size = 64
    daemon_threads = True
srv = S(("127.0.0.1", 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print("listening on 127.0.0.1:%d" % srv.server_address[1], flush=True)
srv.serve_forever()
]]

describe("csock.socket.https", function()
  local server, certs, https, url

  setup(function()
    if not csock.tls_context then return end
    certs = require("support.certs").make()
    https = require "csock.socket.https"
    server = rt.start({"python3", "-c", SERVER, certs.server, certs.key})
    url = "https://localhost:" .. server.port
  end)

  teardown(function()
    if server then rt.stop(server) end
    if certs then require("support.certs").remove() end
  end)

  local function skip()
    if not https then pending("csock built without TLS") return true end
  end

  it("fetches a page with the simple form, verifying against the given CA", function()
    if skip() then return end
    local req = {url = url .. "/page", cafile = certs.ca, sink = nil}
    local out = {}
    req.sink = require("ltn12").sink.table(out)
    local ok, code, headers = https.request(req)
    assert.same({1, 200}, {ok, code})
    assert.equal("12", headers["content-length"])
    assert.equal("secure /page", table.concat(out))
  end)

  it("refuses a certificate the system store does not trust, by default", function()
    if skip() then return end
    local body, err = https.request(url .. "/page")
    assert.is_nil(body)
    assert.matches("certificate verify failed", err)
  end)

  it("skips the checks only when told verify = \"none\"", function()
    if skip() then return end
    local out = {}
    local ok, code = https.request {
      url = url .. "/insecure", verify = "none", sink = require("ltn12").sink.table(out),
    }
    assert.same({1, 200}, {ok, code})
    assert.equal("secure /insecure", table.concat(out))
  end)

  it("posts a body with the string form", function()
    if skip() then return end
    local old = package.loaded["ssl.https"]
    package.loaded["ssl.https"] = https
    finally(function() package.loaded["ssl.https"] = old end)
    -- code written for LuaSec: the table form with its own sink and CA
    local lsec = require "ssl.https"
    local out = {}
    local ok, code = lsec.request {
      url = url .. "/post", method = "POST", cafile = certs.ca,
      source = require("ltn12").source.string("olleh"),
      headers = {["content-length"] = 5},
      sink = require("ltn12").sink.table(out),
    }
    assert.same({1, 201}, {ok, code})
    assert.equal("hello", table.concat(out))
  end)

  it("bounds each connection by https.TIMEOUT (60 s), as LuaSec does", function()
    if skip() then return end
    assert.equal(60, https.TIMEOUT)
    https.TIMEOUT = 0.1
    finally(function() https.TIMEOUT = 60 end)
    local t0 = csock.now()
    assert.same({nil, "timeout"}, {https.request {url = url .. "/slow/t", cafile = certs.ca}})
    assert.is_true(csock.now() - t0 < 0.3, "waited for the answer")
  end)

  it("rejects a plain http URL", function()
    if skip() then return end
    assert.same({nil, "wrong scheme"}, {https.request("http://localhost/")})
  end)

  it("runs 10 requests from 10 tasks at once", function()
    if skip() then return end
    local t0 = csock.now()
    local got = rt.loop(function(go)
      local tasks, out = {}, {}
      for i = 1, 10 do
        tasks[i] = go(function()
          local sink = {}
          local ok, code = https.request {url = url .. "/slow/" .. i, cafile = certs.ca,
            sink = require("ltn12").sink.table(sink)}
          assert.same({1, 200}, {ok, code})
          out[i] = table.concat(sink)
        end)
      end
      for _, t in ipairs(tasks) do assert(t:join()) end
      return out
    end, 20)
    for i = 1, 10 do assert.equal("secure /slow/" .. i, got[i]) end
    assert.is_true(csock.now() - t0 < 2, "10 x 0.3 s one after another would take 3 s")
  end)
end)
