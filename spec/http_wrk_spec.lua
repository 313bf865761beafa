-- csock.http under load from wrk (Debian's wrk, installed by tools/deps.sh): one second,
-- one thread, 50 connections, against a server on a 127.0.0.1 port of its own.  Every
-- response must be a 2xx, with no socket error, keep-alive and `Connection: close` alike.
-- wrk missing is a failure, not a skip: deps.sh installs it.
local rt = require "support.rt"
local helper = require "helper"

-- A wrk script (wrk's own Lua, with its globals) that counts statuses in each thread and
-- prints "statuses: ok=N bad=M" at the end; extra is prepended (request settings).
local function counting_script(extra)
  return rt.script((extra or "") .. [[
local threads = {}
function setup(thread) threads[#threads + 1] = thread end
function init() ok, bad = 0, 0 end
function response(status)
  if status >= 200 and status < 300 then ok = ok + 1 else bad = bad + 1 end
end
function done()
  local o, b = 0, 0
  for _, t in ipairs(threads) do o, b = o + t:get("ok"), b + t:get("bad") end
  io.write(("statuses: ok=%d bad=%d\n"):format(o, b))
end
]])
end

-- Runs wrk -t1 -c50 -d1s with the script at url: its report, parsed.
local function wrk(url, script)
  assert.is_true(helper.has("wrk"), "wrk is missing: tools/deps.sh installs it")
  local r = rt.exec({"wrk", "-t1", "-c50", "-d1s", "-s", script, url}, {limit = 15})
  os.remove(script)
  assert.equal(0, r.status, r.err)
  local report = {
    text = r.out,
    requests = tonumber(r.out:match("(%d+) requests in")),
    socket_errors = r.out:match("Socket errors:[^\n]*"),
    non2xx = r.out:match("Non%-2xx or 3xx responses: %d+"),
  }
  report.ok, report.bad = r.out:match("statuses: ok=(%d+) bad=(%d+)")
  report.ok, report.bad = tonumber(report.ok), tonumber(report.bad)
  return report
end

-- Asserts that every one of a positive number of requests got a 2xx, with no socket error.
local function assert_clean(report)
  assert.is_true(report.requests ~= nil and report.requests > 0, report.text)
  assert.is_nil(report.socket_errors, report.text)
  assert.is_nil(report.non2xx, report.text)
  assert.is_true(report.ok > 0, report.text)
  assert.equal(0, report.bad, report.text)
end

describe("csock.http under wrk", function()
  local proc, base

  setup(function()
    proc = rt.start({rt.BIN, "spec/support/http_server.lua"})
    base = "http://127.0.0.1:" .. proc.port
  end)

  teardown(function() rt.stop(proc) end)

  it("answers every keep-alive request with a 2xx and no socket error", function()
    assert_clean(wrk(base .. "/", counting_script()))
  end)

  it("answers requests with a body (POST /echo) on kept connections", function()
    assert_clean(wrk(base .. "/echo", counting_script([[
wrk.method = "POST"
wrk.body = string.rep("x", 1000)
wrk.headers["Content-Type"] = "text/plain"
]])))
  end)

  it("answers `Connection: close` requests, one connection each, with no socket error", function()
    local report = wrk(base .. "/", counting_script([[
wrk.headers["Connection"] = "close"
]]))
    assert_clean(report)
  end)
end)

describe("examples/static.lua under wrk", function()
  it("serves a 64 KiB file with res:sendfile to 50 connections", function()
    local dir = rt.tmppath("-static")
    os.execute("mkdir -p " .. rt.q(dir))
    rt.defer(finally, function() os.execute("rm -rf " .. rt.q(dir)) end)
    local f = assert(io.open(dir .. "/file.bin", "wb"))
    f:write(string.rep("0123456789abcdef", 4096))
    f:close()
    local p = rt.start({rt.BIN, "examples/static.lua", dir, 0})
    rt.defer(finally, function() rt.stop(p) end)
    local report = wrk("http://127.0.0.1:" .. p.port .. "/file.bin", counting_script())
    assert_clean(report)
    local n, unit = report.text:match("requests in [%d.]+%a+, ([%d.]+)(%a+) read")
    local read = tonumber(n) * ({KB = 1024, MB = 1024 ^ 2, GB = 1024 ^ 3})[unit]
    assert.is_true(read >= report.requests * 65536 * 0.99, report.text) -- the bodies came whole
  end)
end)
