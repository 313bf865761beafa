-- s:sendfile(file [, offset [, count]]) (docs/reference.md) and res:sendfile of csock.http:
-- whole files and ranges to real peers (curl, a socketpair, a TLS client), a peer that stops
-- reading, one that went away, and the bad arguments.
local csock = require "csock"
local rt = require "support.rt"
local certs = require "support.certs"
local helper = require "helper"

local MiB = 1024 * 1024

teardown(certs.remove)

-- A file of n bytes that are not all alike, so that a byte out of place shows; removed
-- at the end of the test (given its finally).
local function make_file(finally, n)
  local path = rt.tmppath(".bin")
  local f = assert(io.open(path, "wb"))
  local block = {}
  for i = 1, 4096 // 8 do block[i] = ("%07x|"):format(i * 2654435761 % 0x10000000) end
  block = table.concat(block)
  local left = n
  while left > 0 do
    local k = math.min(left, #block)
    f:write(block:sub(1, k))
    left = left - k
  end
  f:close()
  if finally then rt.defer(finally, function() os.remove(path) end) end
  return path
end

local slurp = rt.read_file

local function sha256(path)
  local r = rt.exec({"sha256sum", path})
  return r.out:match("^(%x+)")
end

-- A connected pair with a timeout; the third result closes both ends at the end of its scope.
local function pair(timeout)
  local a, b = csock.socketpair()
  a:settimeout(timeout or 5)
  b:settimeout(timeout or 5)
  return a, b, setmetatable({}, {__close = function() a:close(); b:close() end})
end

-- Starts a server script (csock host) that prints "listening on 127.0.0.1:PORT" first.
local function start_script(finally, text, ...)
  local proc = rt.start({rt.BIN, rt.script(text), ...})
  rt.defer(finally, function() rt.stop(proc) end)
  return proc
end

-- A raw HTTP/1.1 server that answers each request with the file arg[1] through s:sendfile.
local RAW_SERVER = [[
local csock = require "csock"
local l = assert(csock.tcp_listen("127.0.0.1", 0, 64))
print("listening on 127.0.0.1:" .. l:getsockname().port)
io.stdout:flush()
local path = arg[1]
local size = assert(io.open(path, "rb")):seek("end")
while true do
  local c = assert(l:accept())
  csock.spawn(function()
    c:settimeout(10)
    while true do
      local line = c:read("l")
      if not line then break end
      repeat line = c:read("l") until not line or line == "" or line == "\r"
      c:write("HTTP/1.1 200 OK\r\nContent-Length: ", size, "\r\n\r\n")
      assert(c:sendfile(path) == size)
    end
    c:close()
  end)
end
]]

describe("s:sendfile", function()
  it("sends a multi-MiB file whole to curl, byte for byte", function()
    local path = make_file(finally, 6 * MiB + 123)
    local p = start_script(finally, RAW_SERVER, path)
    local out = rt.tmppath(".out")
    rt.defer(finally, function() os.remove(out) end)
    local url = "http://127.0.0.1:" .. p.port .. "/f"
    local r = rt.exec({"curl", "-sS", "--max-time", "20", "-o", out, url, "-o", out .. "2", url})
    rt.defer(finally, function() os.remove(out .. "2") end)
    assert.equal("", r.err)
    assert.equal(0, r.status)
    assert.equal(sha256(path), sha256(out))
    assert.equal(sha256(path), sha256(out .. "2")) -- the second request, on the kept connection
  end)

  it("sends a range: offset and count, clamped to the file's end", function()
    local path = make_file(finally, 10000)
    local data = slurp(path)
    local a, b, _ <close> = pair()
    assert.equal(100, a:sendfile(path, 5, 100))
    assert.equal(data:sub(6, 105), b:read(100))
    assert.equal(500, a:sendfile(path, 9500)) -- to the end
    assert.equal(data:sub(9501), b:read(500))
    assert.equal(10, a:sendfile(path, 9990, 1000)) -- count past the end: the rest
    assert.equal(data:sub(9991), b:read(10))
    assert.equal(0, a:sendfile(path, 20000)) -- offset past the end: nothing
    assert.equal(0, a:sendfile(path, 0, 0))
    a:write("end")
    assert.equal("end", b:read(3))
  end)

  it("takes an io file, whose position it neither uses nor moves, and a descriptor", function()
    local path = make_file(finally, 3000)
    local data = slurp(path)
    local a, b, _ <close> = pair()
    local f <close> = assert(io.open(path, "rb"))
    f:seek("set", 1234)
    assert.equal(3000, a:sendfile(f))
    assert.equal(data, b:read(3000))
    assert.equal(1234, f:seek())
    assert.equal(data:sub(1235, 1244), f:read(10))
    assert.equal(2000, a:sendfile(f, 1000))
    assert.equal(data:sub(1001), b:read(2000))
    local fd -- the descriptor of f, found by its path in /proc/self/fd
    for n, target in pairs(helper.fds()) do
      if target == path then fd = n end
    end
    assert.is_number(fd)
    assert.equal(50, a:sendfile(fd, 2950))
    assert.equal(data:sub(2951), b:read(50))
    assert.equal(data:sub(1245, 1254), f:read(10)) -- the descriptor stays the caller's
  end)

  it("fails for a path that cannot be opened and for a directory", function()
    local a, _, _ <close> = pair()
    local missing = rt.tmppath(".none")
    assert.same({nil, missing .. ": No such file or directory", csock.ENOENT},
      {a:sendfile(missing)})
    assert.same({nil, "Is a directory", 21}, {a:sendfile("/tmp")})
  end)

  it("times out, with the bytes sent so far, when the peer stops reading", function()
    local path = make_file(finally, 16 * MiB)
    local a, _, _ <close> = pair(0.3)
    local t0 = csock.now()
    local sent, err, code, partial = a:sendfile(path)
    assert.is_nil(sent)
    assert.equal("timeout", err)
    assert.equal(csock.ETIMEDOUT, code)
    assert.is_true(partial > 0 and partial < 16 * MiB)
    assert.is_true(csock.now() - t0 >= 0.25)
  end)

  it("times out in a task too, while other tasks run", function()
    local path = make_file(finally, 16 * MiB)
    local a, _, _ <close> = pair(0.3)
    local ticks = 0
    rt.loop(function(go)
      go(function()
        while true do
          ticks = ticks + 1
          csock.sleep(0.02)
        end
      end)
      local sent, err, code, partial = a:sendfile(path)
      assert.same({nil, "timeout", csock.ETIMEDOUT}, {sent, err, code})
      assert.is_true(partial > 0)
    end)
    assert.is_true(ticks >= 5)
  end)

  it("returns EPIPE for a peer that closed, and the process lives on", function()
    local path = make_file(finally, MiB)
    local a, b = csock.socketpair()
    b:close()
    local sent, err, code, partial = a:sendfile(path)
    assert.same({nil, "Broken pipe", csock.EPIPE, 0}, {sent, err, code, partial})
    a:close()
  end)

  it("reports a TCP peer that goes away mid-file as an error, not a signal", function()
    local path = make_file(finally, 32 * MiB)
    local l, port = rt.listener()
    rt.loop(function(go)
      go(function()
        local c = assert(csock.tcp_connect("127.0.0.1", port))
        assert(c:read(64 * 1024))
        c:close() -- with bytes unread: the server's next sends fail
      end)
      local c = assert(l:accept())
      c:settimeout(5)
      local sent, _, code, partial = c:sendfile(path)
      assert.is_nil(sent)
      assert.is_true(code == csock.EPIPE or code == csock.ECONNRESET, tostring(code))
      assert.is_true(partial >= 64 * 1024 and partial < 32 * MiB)
      c:close()
    end)
    l:close()
  end)

  it("fails with 'file closed' when another task closes the io file meanwhile", function()
    local path = make_file(finally, 16 * MiB)
    local a, b, _ <close> = pair()
    local f = assert(io.open(path, "rb"))
    rt.loop(function(go)
      go(function()
        csock.sleep(0.1)
        f:close()
        local got = 0 -- room for the sender: it resumes and finds the file closed
        while got < MiB do got = got + #assert(b:recv(65536)) end
      end)
      local sent, err, code, partial = a:sendfile(f)
      assert.same({nil, "file closed", csock.EBADF}, {sent, err, code})
      assert.is_true(partial > 0)
    end)
  end)

  it("goes through TLS (read and write, no sendfile(2)) byte for byte", function()
    local C = certs.make()
    local path = make_file(finally, 3 * MiB + 7)
    local data = slurp(path)
    local sctx = csock.tls_context {mode = "server", certificate = C.server, key = C.key}
    local cctx = csock.tls_context {cafile = C.ca}
    local l, port = rt.listener()
    rt.loop(function(go)
      go(function()
        local c = assert(l:accept())
        c:settimeout(5)
        assert(c:starttls(sctx))
        assert.equal(#data, c:sendfile(path))
        assert.equal(10, c:sendfile(path, 100, 10))
        c:close()
      end)
      local s = assert(csock.tls_connect("localhost", port, {context = cctx, timeout = 10}))
      local got = s:read("a")
      s:close()
      assert.equal(#data + 10, #got)
      assert.is_true(got == data .. data:sub(101, 110))
    end)
    l:close()
  end)

  describe("bad arguments", function()
    it("raise errors that name sendfile and the argument", function()
      local a, _, _ <close> = pair()
      local f = assert(io.open("/dev/null", "rb"))
      f:close()
      assert.has_error(function() a:sendfile() end,
        "bad argument #2 to 'sendfile' (value expected)")
      assert.has_error(function() a:sendfile({}) end,
        "bad argument #2 to 'sendfile' (file, path or descriptor expected, got table)")
      assert.has_error(function() a:sendfile(f) end,
        "bad argument #2 to 'sendfile' (file is closed)")
      assert.has_error(function() a:sendfile(-1) end,
        "bad argument #2 to 'sendfile' (invalid descriptor)")
      assert.has_error(function() a:sendfile(1.5) end,
        "bad argument #2 to 'sendfile' (number has no integer representation)")
      assert.has_error(function() a:sendfile("/dev/null", -1) end,
        "bad argument #3 to 'sendfile' (offset must not be negative)")
      assert.has_error(function() a:sendfile("/dev/null", "x") end,
        "bad argument #3 to 'sendfile' (number expected, got string)")
      assert.has_error(function() a:sendfile("/dev/null", 0, -5) end,
        "bad argument #4 to 'sendfile' (count must not be negative)")
      assert.has_error(function() a:sendfile("/dev/null", 0, {}) end,
        "bad argument #4 to 'sendfile' (number expected, got table)")
      a:close()
      assert.has_error(function() a:sendfile("/dev/null") end,
        "bad argument #1 to 'sendfile' (socket is closed)")
    end)

    it("a file that is not a regular file is an error result", function()
      local a, _, _ <close> = pair()
      assert.same({nil, "Invalid argument", csock.EINVAL}, {a:sendfile("/dev/null")})
    end)
  end)
end)

-- A csock.http server whose routes send the file arg[1] with res:sendfile.
local HTTP_SERVER = [[
local csock = require "csock"
local http = require "csock.http"
local l = assert(csock.tcp_listen("127.0.0.1", 0, 64))
print("listening on 127.0.0.1:" .. l:getsockname().port)
io.stdout:flush()
local path = arg[1]
local routes = {
  ["/whole"] = function(_, res) assert(res:sendfile(path)) end,
  ["/file"] = function(_, res) -- an io file, its position left alone
    local f <close> = assert(io.open(path, "rb"))
    assert(res:sendfile(f))
  end,
  ["/range"] = function(req, res) -- "?offset,count", sized by the handler, then more text
    local o, n = req.query:match("^(%d+),(%d+)$")
    res:status(206)
    res:header("Content-Length", n + 4)
    assert(res:sendfile(path, tonumber(o), tonumber(n)))
    res:finish("tail")
  end,
  ["/chunked"] = function(_, res) -- no length: text, the file's first 1000 bytes, text
    res:write("head|")
    assert(res:sendfile(path, 0, 1000))
    assert(res:sendfile(path, 0, 0))
    res:finish("|tail")
  end,
  ["/missing"] = function(_, res)
    local ok, err, code = res:sendfile(path .. ".none")
    res:status(404)
    res:finish(tostring(ok) .. " " .. err .. " " .. code)
  end,
  ["/errors"] = function(_, res)
    local out = {}
    for _, args in ipairs({{{}}, {path, -1}, {path, 0, 1.5}}) do
      local _, e = pcall(res.sendfile, res, table.unpack(args))
      out[#out + 1] = e
    end
    res:finish(table.concat(out, "\n"))
  end,
}
http.serve(l, function(req, res) routes[req.path](req, res) end)
]]

describe("res:sendfile", function()
  local path, data, base, proc

  setup(function()
    path = make_file(nil, 5 * MiB + 3)
    data = slurp(path)
    proc = rt.start({rt.BIN, rt.script(HTTP_SERVER), path})
    base = "http://127.0.0.1:" .. proc.port
  end)

  teardown(function()
    rt.stop(proc)
    os.remove(path)
  end)

  local function curl(...)
    local r = rt.exec({"curl", "-sS", "--max-time", "20", ...})
    assert.equal("", r.err)
    return r.out
  end

  it("sends a file as the whole body with its Content-Length, to curl", function()
    local out = rt.tmppath(".out")
    rt.defer(finally, function() os.remove(out) end)
    local head = curl("-D", "-", "-o", out, base .. "/whole")
    assert.truthy(head:find("Content-Length: " .. #data .. "\r\n", 1, true))
    assert.equal(sha256(path), sha256(out))
    curl("-o", out, base .. "/file")
    assert.equal(sha256(path), sha256(out))
  end)

  it("answers HEAD with the head alone", function()
    local out = curl("-I", base .. "/whole")
    assert.truthy(out:find("^HTTP/1.1 200 OK\r\n"))
    assert.truthy(out:find("Content-Length: " .. #data .. "\r\n", 1, true))
  end)

  it("sends a range inside a body the handler sized", function()
    assert.equal(data:sub(1001, 1100) .. "tail", curl(base .. "/range?1000,100"))
    assert.equal(data:sub(-3) .. "tail", curl(base .. "/range?" .. (#data - 3) .. ",3"))
  end)

  it("sends a chunk of its own in a chunked body", function()
    local out = curl("--raw", base .. "/chunked")
    assert.equal("5\r\nhead|\r\n3e8\r\n" .. data:sub(1, 1000) .. "\r\n5\r\n|tail\r\n0\r\n\r\n", out)
  end)

  it("returns nil, message, errno for a path it cannot open", function()
    assert.equal("nil " .. path .. ".none: No such file or directory 2", curl(base .. "/missing"))
  end)

  it("falls back to read and write over https, byte for byte to curl", function()
    local C = certs.make()
    local p = start_script(finally, [[
local csock = require "csock"
local http = require "csock.http"
local ctx = csock.tls_context {mode = "server", certificate = arg[2], key = arg[3]}
local l = assert(csock.tcp_listen("127.0.0.1", 0, 16))
print("listening on 127.0.0.1:" .. l:getsockname().port)
io.stdout:flush()
http.serve(l, function(_, res) assert(res:sendfile(arg[1])) end, {tls = ctx})
]], path, C.server, C.key)
    local out = rt.tmppath(".out")
    rt.defer(finally, function() os.remove(out) end)
    curl("--cacert", C.ca, "--resolve", "localhost:" .. p.port .. ":127.0.0.1", "-o", out,
      "https://localhost:" .. p.port .. "/")
    assert.equal(sha256(path), sha256(out))
  end)

  it("raises errors that name sendfile and the argument", function()
    assert.equal(table.concat({
      "bad argument #2 to 'sendfile' (file or path expected, got table)",
      "bad argument #3 to 'sendfile' (offset must be a non-negative integer)",
      "bad argument #4 to 'sendfile' (count must be a non-negative integer)",
    }, "\n"), curl(base .. "/errors"):gsub("[^\n]*: bad", "bad"))
  end)
end)
