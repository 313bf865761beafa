-- csock.http over TLS: an https server (opts.tls) for csock's client and curl, and the
-- client's verification by default.
local csock = require "csock"
local http = require "csock.http"
local rt = require "support.rt"
local H = require "support.http"
local certs = require "support.certs"

-- Sockets this file leaves behind (the client's pool, responses dropped unread) are closed
-- here, not by a collection in the middle of a later file that counts descriptors.
teardown(function()
  require("csock.http").close_idle()
  collectgarbage()
  collectgarbage()
end)

local function server_ctx(c)
  return csock.tls_context({mode = "server", certificate = c.server, key = c.key})
end

local function echo(req, res)
  res:finish(req.method .. " " .. req.path .. " " .. req:body())
end

describe("csock.http over TLS", function()
  local c
  setup(function() c = certs.make() end)
  teardown(certs.remove)

  it("serves https to csock's client with a context that trusts the test CA", function()
    H.serve(echo, {tls = server_ctx(c)}, function(port)
      local ctx = csock.tls_context({cafile = c.ca})
      local url = "https://localhost:" .. port
      for i = 1, 3 do
        local res, err = http.request(url .. "/p" .. i, {tls = ctx, body = "b" .. i})
        assert.is_truthy(res, err)
        assert.equal(200, res.status)
        assert.equal("POST /p" .. i .. " b" .. i, res:body())
      end
    end)
  end)

  it("verifies by default: the test CA is not in the system store", function()
    H.serve(echo, {tls = server_ctx(c)}, function(port)
      local res, err, code = http.request("https://localhost:" .. port .. "/")
      assert.is_nil(res)
      assert.truthy(err:find("certificate verify failed", 1, true), err)
      assert.equal(csock.EPROTO, code)
    end)
  end)

  it("serves curl over https, keep-alive and a chunked upload", function()
    local script = rt.script(([[
      local csock = require "csock"
      local http = require "csock.http"
      local l = assert(csock.tcp_listen("127.0.0.1", 0))
      print("listening on 127.0.0.1:" .. l:getsockname().port)
      io.stdout:flush()
      local ctx = csock.tls_context({mode = "server", certificate = %q, key = %q})
      http.serve(l, function(req, res) res:finish(req.method .. " " .. req:body()) end, {tls = ctx})
    ]]):format(c.server, c.key))
    local proc = rt.start({rt.BIN, script})
    local port = proc.port
    local r = rt.exec({"curl", "-sS", "-v", "--max-time", "10", "--cacert", c.ca,
      "-H", "Transfer-Encoding: chunked", "--data-binary", "secret",
      "https://localhost:" .. port .. "/", "https://localhost:" .. port .. "/"})
    rt.stop(proc)
    os.remove(script)
    assert.equal(0, r.status, r.err)
    assert.equal("POST secretPOST secret", r.out)
    assert.truthy(r.err:find("Re%-using existing connection"), r.err)
  end)

  it("raises when tls is not a context", function()
    local l = rt.listener()
    assert.has_error(function() http.server(l, echo, {tls = "yes"}) end,
      "bad argument #3 to 'server' (tls must be a TLS context)")
    l:close()
  end)
end)
