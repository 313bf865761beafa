-- I/O on stream sockets: send/recv (the POSIX calls), read/write/lines
-- (the io-library face) and the read buffer the two share.
--
-- Most specs use a socketpair: the writer writes less than the kernel
-- buffers, then the reader reads, all in one process.  Bulk transfers run
-- the other side in a child process.

local csock = require "csock"
local helper = require "helper"

-- A connected pair with a 5 s timeout; the third result closes both ends
-- when it goes out of scope: `local a, b, _ <close> = pair()`.
local function pair()
  local a, b = csock.socketpair()
  a:settimeout(5)
  b:settimeout(5)
  local both = setmetatable({}, { __close = function() a:close(); b:close() end })
  return a, b, both
end

-- A child lua5.4 that connects to the unix path arg[1] and runs `body`
-- with `s`; extra arguments follow in arg[2..n].
local function unix_child(path, body, ...)
  return helper.spawn_lua([[
    local csock = require "csock"
    local s = csock.socket(csock.AF_UNIX, csock.SOCK_STREAM)
    s:settimeout(20)
    assert(s:connect(arg[1]))
  ]] .. body, path, ...)
end

-- n bytes that are not all alike, so that a byte out of place shows.
local function pattern(n)
  local t = {}
  for i = 1, n // 9 + 1 do t[i] = ("%08d|"):format(i) end
  return table.concat(t):sub(1, n)
end

local function unix_listener()
  local path = helper.tmpname()
  local srv = csock.socket(csock.AF_UNIX, csock.SOCK_STREAM)
  assert.is_true(srv:bind(path))
  assert.is_true(srv:listen())
  srv:settimeout(10)
  return srv, path
end

describe("send() and recv()", function()
  it("send() returns the number of bytes sent", function()
    local a, b, _ <close> = pair()
    assert.equal(5, a:send("hello"))
    assert.equal("hello", b:recv(5))
  end)

  it("send(data, i, j) sends the substring from i to j", function()
    local a, b, _ <close> = pair()
    assert.equal(3, a:send("hello", 2, 4))
    assert.equal(2, a:send("hello", 4))
    assert.equal(2, a:send("hello", -2))
    assert.equal("elllolo", b:recv(100))
  end)

  it("send(data, i, j) clips j to the string and sends nothing when i > j", function()
    local a, b, _ <close> = pair()
    assert.equal(2, a:send("hello", 4, 100))
    assert.equal(0, a:send("hello", 10))
    assert.equal(0, a:send("hello", 3, 2))
    assert.equal("lo", b:recv(100))
  end)

  it("send() of an empty string sends nothing and returns 0", function()
    local a, b, _ <close> = pair()
    assert.equal(0, a:send(""))
    a:send("x")
    assert.equal("x", b:recv(10))
  end)

  it("recv(n) returns at most n bytes, and what is there without waiting for n", function()
    local a, b, _ <close> = pair()
    a:send("abcdef")
    assert.equal("abc", b:recv(3))
    assert.equal("def", b:recv(100))
  end)

  it("recv() returns \"\" when the peer has shut down its side", function()
    local a, b, _ <close> = pair()
    a:send("tail")
    a:shutdown("w")
    assert.equal("tail", b:recv(100))
    assert.equal("", b:recv(100))
    assert.equal("", b:recv(100))
  end)

  it("recv() with a huge count returns what there is", function()
    local a, b, _ <close> = pair()
    a:write("abc")
    assert.equal("abc", b:recv(1 << 40))
    assert.equal("abc", (a:write("abc") and b:recv(math.maxinteger)))
  end)

  it("recv() returns \"\" after our own shutdown(\"r\")", function()
    local a, _, _ <close> = pair()
    assert.is_true(a:shutdown("r"))
    assert.equal("", a:recv(10))
  end)

  it("recv() returns \"\" when the peer has closed", function()
    local a, b <close> = pair()
    a:close()
    assert.equal("", b:recv(100))
  end)

  it("carries every byte value, zeros included", function()
    local a, b, _ <close> = pair()
    local bytes = {}
    for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
    local all = table.concat(bytes)
    assert.equal(256, a:send(all))
    assert.equal(all, b:read(256))
  end)
end)

describe("write()", function()
  it("returns the socket, so calls chain", function()
    local a, b, _ <close> = pair()
    assert.equal(a, a:write("one "))
    a:write("two "):write("three\n")
    assert.equal("one two three", b:read("l"))
  end)

  it("writes all its arguments in order, numbers as file:write does", function()
    local a, b, _ <close> = pair()
    a:write("a", 1, "b", 2.5, "\n")
    assert.equal("a1b2.5", b:read("l"))
  end)

  it("writes more pieces than one system call takes (64), all and in order", function()
    local a, b, _ <close> = pair()
    local values, want = {}, {}
    for i = 1, 150 do
      values[i] = i % 3 == 0 and i or ("<" .. i .. ">")
      want[i] = tostring(values[i])
    end
    values[151], want[151] = "\n", ""
    assert.equal(a, a:write(table.unpack(values)))
    assert.equal(table.concat(want), b:read("l"))
  end)

  it("writes floats with Lua's number format, as file:write does (3.0 is \"3\")", function()
    local a, b, _ <close> = pair()
    local values = {3.0, " ", -0.0, " ", 0.1, " ", 1e100, " ", 2^53, " ", math.huge, " ", 7, "\n"}
    a:write(table.unpack(values))
    local f <close> = io.tmpfile()
    f:write(table.unpack(values))
    f:seek("set")
    local want = f:read("l")
    assert.equal("3 -0 0.1 1e+100 9.007199254741e+15 inf 7", want)
    assert.equal(want, b:read("l"))
  end)

  it("with no arguments writes nothing and returns the socket", function()
    local a, b, _ <close> = pair()
    assert.equal(a, a:write())
    b:settimeout(0)
    local data, _, errno = b:recv(1)
    assert.is_nil(data)
    assert.equal(csock.ETIMEDOUT, errno)
  end)

  it("writes 8 MiB whole to a reader in another process", function()
    -- 128 blocks of 64 KiB, each numbered and holding every byte value, so
    -- a lost, doubled or reordered block shows.  Both sides build the data
    -- from the same chunk of code.
    local bulk = [[
      local all = {}
      for i = 0, 255 do all[#all + 1] = string.char(i) end
      local fill = string.rep(table.concat(all), 256)
      local blocks = {}
      for i = 1, 128 do blocks[i] = (string.format("%08d", i) .. fill):sub(1, 65536) end
      return table.concat(blocks)
    ]]
    local data = load(bulk)()
    assert.equal(8 * 1024 * 1024, #data)
    local srv <close>, path = unix_listener()
    finally(function() helper.remove(path) end)
    local child = unix_child(path, "local expected = load(arg[2])()\n" .. [[
      s:settimeout(nil) -- the writer may be slow (valgrind); helper.TIMEOUT bounds us
      local got = assert(s:read("a"))
      print(#got, got == expected)
    ]], bulk)
    local conn = assert(srv:accept())
    conn:settimeout(20)
    local written = table.pack(conn:write(data))
    conn:close()
    local ok, _, out, err = child:wait()
    assert.equal(conn, written[1], table.concat({ tostring(written[2]), err }, "\n"))
    assert.is_true(ok, err)
    assert.equal("8388608\ttrue\n", out)
  end)

  it("writes 8 MiB in 1 KiB pieces to a child that reads it line by line", function()
    local srv <close>, path = unix_listener()
    finally(function() helper.remove(path) end)
    local child = unix_child(path, [[
      local n = 0
      for line in s:lines("L") do n = n + #line end
      print(n)
    ]])
    local conn = assert(srv:accept())
    conn:settimeout(20)
    local chunk = string.rep("z", 1023) .. "\n"
    for _ = 1, 8 * 1024 do conn:write(chunk) end
    conn:close()
    local ok, _, out, err = child:wait()
    assert.is_true(ok, err)
    assert.equal("8388608\n", out)
  end)

  it("returns nil, message, errno, sent when it fails part-way", function()
    -- Nobody reads the peer: the kernel buffers fill and the write times out.
    local a, b, _ <close> = pair()
    a:settimeout(0.2)
    local data = string.rep("w", 4 * 1024 * 1024)
    local ok, msg, errno, sent = a:write(data)
    assert.is_nil(ok)
    assert.equal("timeout", msg)
    assert.equal(csock.ETIMEDOUT, errno)
    assert.equal("integer", math.type(sent))
    assert.is_true(sent > 0 and sent < #data, "sent " .. tostring(sent))
    -- exactly `sent` bytes went out
    b:settimeout(0)
    local got = 0
    for _ = 1, 100000 do
      local chunk = b:recv(65536)
      if not chunk then break end
      got = got + #chunk
    end
    assert.equal(sent, got)
  end)

  it("counts the bytes of earlier arguments in sent", function()
    local a, b, _ <close> = pair()
    a:settimeout(0.2)
    local first = string.rep("1", 1000)
    local ok, _, errno, sent = a:write(first, string.rep("2", 4 * 1024 * 1024))
    assert.is_nil(ok)
    assert.equal(csock.ETIMEDOUT, errno)
    assert.is_true(sent > #first)
    assert.equal(first, b:read(1000))
  end)

  it("after our own shutdown(\"w\") returns nil, message, EPIPE, 0", function()
    local a, _, _ <close> = pair()
    a:shutdown("w")
    local ok, msg, errno, sent = a:write("too late")
    assert.is_nil(ok)
    assert.is_string(msg)
    assert.equal(csock.EPIPE, errno)
    assert.equal(0, sent)
  end)

  it("reports a closed peer as EPIPE with sent = 0, and does not kill the process", function()
    local ok, out, err = helper.run_lua([[
      local csock = require "csock"
      local a, b = csock.socketpair()
      b:close()
      local r, msg, errno, sent = a:write("into the void")
      print(r, type(msg), errno == csock.EPIPE, sent)
      print(a:send("x") == nil)
    ]])
    assert.is_true(ok, err)
    assert.equal("nil\tstring\ttrue\t0\ntrue\n", out)
  end)
end)

describe("read()", function()
  it("reads a line without its newline by default", function()
    local a, b, _ <close> = pair()
    a:write("first\nsecond\n")
    assert.equal("first", b:read())
    assert.equal("second", b:read())
  end)

  it("\"n\" reads numerals as file:read(\"n\") does", function()
    local cases = {
      {"12 34\n", {"n", "n", "l"}}, {"  -3.5e2x", {"n", "a"}}, {"0x1F rest", {"n", "l"}},
      {"0x1p4\n", {"n"}}, {"abc", {"n", "a"}}, {"", {"n"}}, {"  \n  ", {"n"}}, {"1e", {"n", "a"}},
      {".5 5.", {"n", "n"}}, {"- 3", {"n", "a"}}, {"1.2.3", {"n", "a"}}, {"3 4 5", {"*n", "n", "n"}},
      {"9223372036854775807 9223372036854775808", {"n", "n"}}, {string.rep("1", 250), {"n", "a"}},
    }
    local function show(...)
      local t = table.pack(...)
      for i = 1, t.n do t[i] = (math.type(t[i]) or "") .. ":" .. tostring(t[i]) end
      return table.concat(t, ",")
    end
    for _, c in ipairs(cases) do
      local f <close> = io.tmpfile()
      f:write(c[1])
      f:seek("set")
      local a, b, _ <close> = pair()
      a:write(c[1])
      a:close()
      assert.equal(show(f:read(table.unpack(c[2]))), show(b:read(table.unpack(c[2]))), c[1])
    end
  end)

  it("\"n\" waits for the numeral's end when it comes in pieces", function()
    local a, b, _ <close> = pair()
    local r = csock.run(function()
      csock.spawn(function()
        a:write("12")
        csock.sleep(0.05)
        a:write("34.5 rest")
        a:close()
      end)
      return {b:read("n", "a")}
    end)
    assert.equal(1234.5, r[1])
    assert.equal(" rest", r[2])
  end)

  it("\"l\" reads a line without its newline", function()
    local a, b, _ <close> = pair()
    a:write("one\n\nthree\n")
    assert.equal("one", b:read("l"))
    assert.equal("", b:read("l"))
    assert.equal("three", b:read("l"))
  end)

  it("\"L\" keeps the newline", function()
    local a, b, _ <close> = pair()
    a:write("one\ntwo\n")
    assert.equal("one\n", b:read("L"))
    assert.equal("two\n", b:read("L"))
  end)

  it("returns the last line even without a newline before end of stream", function()
    local a, b, _ <close> = pair()
    a:write("complete\nunfinished")
    a:shutdown("w")
    assert.equal("complete", b:read("l"))
    assert.equal("unfinished", b:read("l"))
    assert.is_nil(b:read("l"))
  end)

  it("\"L\" returns the unfinished last line as it is", function()
    local a, b, _ <close> = pair()
    a:write("x\ny")
    a:shutdown("w")
    assert.equal("x\n", b:read("L"))
    assert.equal("y", b:read("L"))
    assert.is_nil(b:read("L"))
  end)

  it("keeps a carriage return, as file:read does", function()
    local a, b, _ <close> = pair()
    a:write("GET / HTTP/1.0\r\n")
    assert.equal("GET / HTTP/1.0\r", b:read("l"))
  end)

  it("a count reads exactly that many bytes", function()
    local a, b, _ <close> = pair()
    a:write("0123456789")
    assert.equal("012", b:read(3))
    assert.equal("3456789", b:read(7))
  end)

  it("a count waits for bytes that arrive in several pieces", function()
    local srv <close>, path = unix_listener()
    finally(function() helper.remove(path) end)
    local child = unix_child(path, [[
      for i = 1, 5 do s:write(tostring(i)); csock.sleep(0.02) end
      s:close()
    ]])
    local conn <close> = assert(srv:accept())
    conn:settimeout(10)
    assert.equal("12345", conn:read(5))
    assert.is_true((child:wait()))
  end)

  it("a count may be a float with an integral value, as with file:read", function()
    local a, b, _ <close> = pair()
    a:write("abcdef")
    assert.equal("abc", b:read(3.0))
  end)

  it("a huge count returns what the stream holds, allocating nothing up front", function()
    for _, n in ipairs { 1 << 40, math.maxinteger } do
      local a, b, _ <close> = pair()
      a:write("abc")
      a:shutdown("w")
      assert.equal("abc", b:read(n))
    end
  end)

  it("a count returns the bytes left at end of stream, then nil", function()
    local a, b, _ <close> = pair()
    a:write("abc")
    a:shutdown("w")
    assert.equal("abc", b:read(10))
    assert.is_nil(b:read(10))
  end)

  -- A count from 16 KiB up, with nothing buffered, is read straight into its string.
  it("a large count takes exactly that many bytes of a longer stream, then the rest", function()
    local a, b, _ <close> = pair()
    local sent = pattern(100000)
    a:write(sent)
    a:shutdown("w")
    assert.equal(sent:sub(1, 65536), b:read(65536))
    assert.equal(sent:sub(65537), b:read(65536))
    assert.is_nil(b:read(65536))
  end)

  it("a large count that gets a first piece waits for the rest, in order", function()
    local srv <close>, path = unix_listener()
    finally(function() helper.remove(path) end)
    local child = unix_child(path, [[
      local sent = arg[2]:rep(4096)
      s:write(sent:sub(1, 20000))
      csock.sleep(0.05)
      s:write(sent:sub(20001, 65536))
      s:close()
    ]], "0123456789abcdef")
    local conn <close> = assert(srv:accept())
    conn:settimeout(10)
    assert.equal(("0123456789abcdef"):rep(4096), conn:read(65536))
    assert.is_nil(conn:read(65536))
    assert.is_true((child:wait()))
  end)

  it("a large count that times out keeps what came for the next read", function()
    local a, b, _ <close> = pair()
    local sent = pattern(32768)
    b:settimeout(0.1)
    a:write(sent:sub(1, 10000))
    local data, msg, errno = b:read(32768)
    assert.is_nil(data)
    assert.equal("timeout", msg)
    assert.equal(csock.ETIMEDOUT, errno)
    a:write(sent:sub(10001))
    assert.equal(sent, b:read(32768))
  end)

  it("a large count that meets a reset reports it and keeps what came before it", function()
    local srv <close> = csock.socket(csock.AF_INET, csock.SOCK_STREAM)
    assert(srv:bind("127.0.0.1", 0))
    assert(srv:listen())
    local a <close> = csock.socket(csock.AF_INET, csock.SOCK_STREAM)
    assert(a:connect("127.0.0.1", srv:getsockname().port))
    local b <close> = assert(srv:accept())
    b:settimeout(5)
    a:write(("x"):rep(100))
    a:setsockopt(csock.SOL_SOCKET, csock.SO_LINGER, { onoff = true, linger = 0 })
    a:close() -- a reset, behind the 100 bytes
    csock.sleep(0.1)
    local data, msg, errno = b:read(32768)
    assert.is_nil(data)
    assert.equal("Connection reset by peer", msg)
    assert.equal(csock.ECONNRESET, errno)
    assert.equal(("x"):rep(100), b:read("a"))
  end)

  it("a large count after a line reads on from the buffered bytes", function()
    local a, b, _ <close> = pair()
    local body = pattern(40000)
    a:write("HEAD\n", body, "tail")
    assert.equal("HEAD", b:read("l"))
    assert.equal(body, b:read(40000))
    assert.equal("tail", b:recv(100))
  end)

  it("\"a\" reads everything up to the end of stream", function()
    local a, b, _ <close> = pair()
    a:write("line 1\nline 2\nno newline")
    a:shutdown("w")
    assert.equal("line 1\nline 2\nno newline", b:read("a"))
  end)

  it("\"a\" returns \"\" at end of stream, like file:read", function()
    local a, b, _ <close> = pair()
    a:shutdown("w")
    assert.equal("", b:read("a"))
    assert.equal("", b:read("a"))
  end)

  it("returns nil at end of stream for \"l\", \"L\" and counts", function()
    local a, b, _ <close> = pair()
    a:close()
    assert.is_nil(b:read("l"))
    assert.is_nil(b:read("L"))
    assert.is_nil(b:read(1))
  end)

  it("reads several formats at once", function()
    local a, b, _ <close> = pair()
    a:write("header\n", "ABCD", "line\n", "rest of it")
    a:shutdown("w")
    local h, four, l, rest = b:read("l", 4, "L", "a")
    assert.equal("header", h)
    assert.equal("ABCD", four)
    assert.equal("line\n", l)
    assert.equal("rest of it", rest)
  end)

  it("returns nil for a format that fails and stops there", function()
    local a, b, _ <close> = pair()
    a:write("only line\n")
    a:shutdown("w")
    local r = table.pack(b:read("l", "l", "l"))
    assert.equal("only line", r[1])
    assert.is_nil(r[2])
    assert.is_true(r.n <= 3)
    assert.is_nil(r[3])
  end)

  it("accepts the Lua 5.1 style \"*l\" and \"*a\"", function()
    local a, b, _ <close> = pair()
    a:write("x\nyz")
    a:shutdown("w")
    assert.equal("x", b:read("*l"))
    assert.equal("yz", b:read("*a"))
  end)

  it("reads a long line in one piece", function()
    local a, b, _ <close> = pair()
    local long = string.rep("0123456789", 5000)
    a:write(long, "\n")
    assert.equal(long, b:read("l"))
  end)
end)

describe("lines()", function()
  it("iterates over the lines up to the end of stream", function()
    local a, b, _ <close> = pair()
    a:write("alpha\nbeta\ngamma\n")
    a:shutdown("w")
    local got = {}
    for line in b:lines() do got[#got + 1] = line end
    assert.same({ "alpha", "beta", "gamma" }, got)
  end)

  it("takes a format, as file:lines does", function()
    local a, b, _ <close> = pair()
    a:write("a\nb\n")
    a:shutdown("w")
    local got = {}
    for line in b:lines("L") do got[#got + 1] = line end
    assert.same({ "a\n", "b\n" }, got)
  end)

  it("takes a count", function()
    local a, b, _ <close> = pair()
    a:write("aabbc")
    a:shutdown("w")
    local got = {}
    for piece in b:lines(2) do got[#got + 1] = piece end
    assert.same({ "aa", "bb", "c" }, got)
  end)

  it("raises on an error, as file:lines does", function()
    local a, b, _ <close> = pair()
    b:settimeout(0.1)
    a:write("one\n")
    local got = {}
    assert.has_error(function()
      for line in b:lines() do got[#got + 1] = line end
    end)
    assert.same({ "one" }, got)
  end)

  it("raises when its socket was closed meanwhile", function()
    local a, b, _ <close> = pair()
    a:write("one\ntwo\n")
    local next_line = b:lines()
    assert.equal("one", next_line())
    b:close()
    assert.error_matches(next_line, "closed") -- like file:lines: "socket is already closed"
  end)
end)

describe("the shared read buffer", function()
  it("gives recv() the bytes read() left behind", function()
    local a, b, _ <close> = pair()
    a:write("abc\ndefgh")
    assert.equal("abc", b:read("l"))
    assert.equal("de", b:recv(2))
    assert.equal("fgh", b:read(3))
  end)

  it("gives read() the bytes after recv()", function()
    local a, b, _ <close> = pair()
    a:write("xy\nzz\n")
    assert.equal("x", b:recv(1))
    assert.equal("y", b:read("l"))
    assert.equal("zz\n", b:read("L"))
  end)

  it("loses no byte when recv, read(n), \"l\" and \"L\" take turns on a long stream", function()
    local srv <close>, path = unix_listener()
    finally(function() helper.remove(path) end)
    local child = unix_child(path, [[
      local t = {}
      for i = 1, 20000 do
        t[#t + 1] = string.rep(string.char(97 + i % 26), i % 17) .. "\n"
      end
      s:write(table.concat(t))
      s:close()
    ]])
    local t = {}
    for i = 1, 20000 do
      t[#t + 1] = string.rep(string.char(97 + i % 26), i % 17) .. "\n"
    end
    local expected = table.concat(t)
    local conn <close> = assert(srv:accept())
    conn:settimeout(10)
    local got, k = {}, 0
    for _ = 1, 1e6 do
      k = k + 1
      local piece
      if k % 4 == 0 then piece = conn:recv(k % 50 + 1)
      elseif k % 4 == 1 then piece = conn:read(k % 30 + 1)
      elseif k % 4 == 2 then piece = conn:read("L")
      else
        piece = conn:read("l")
        if piece then piece = piece .. "\n" end
      end
      if piece == nil or piece == "" then break end
      got[#got + 1] = piece
    end
    local all = table.concat(got)
    -- read("l") adds back a newline the stream may not have had at its end
    if #all == #expected + 1 then all = all:sub(1, -2) end
    assert.equal(#expected, #all)
    assert.equal(expected, all)
    assert.is_true((child:wait()))
  end)

  it("keeps what read(\"a\") gathered before a timeout", function()
    local a, b, _ <close> = pair()
    b:settimeout(0.1)
    a:write("abc")
    local data, msg, errno = b:read("a")
    assert.is_nil(data)
    assert.equal("timeout", msg)
    assert.equal(csock.ETIMEDOUT, errno)
    a:write("def")
    a:close()
    assert.equal("abcdef", b:read("a"))
  end)

  it("hands buffered bytes to recv() even after the peer closed", function()
    local a, b <close> = pair()
    a:write("one\ntwo")
    a:close()
    assert.equal("one", b:read("l"))
    assert.equal("two", b:recv(100))
    assert.equal("", b:recv(100))
  end)
end)

describe("recvfrom on a TCP stream", function()
  it("returns the bytes read ahead for read() first, with the peer's address", function()
    local server <close> = assert(csock.tcp_listen("127.0.0.1", 0))
    local client <close> = assert(csock.tcp_connect("127.0.0.1", server:getsockname().port, 5))
    local peer <close> = assert(server:accept())
    peer:settimeout(5)
    assert(client:write("line\nrest"))
    assert.equal("line", peer:read("l"))
    local data, from = peer:recvfrom(100)
    assert.equal("rest", data)
    assert.same(client:getsockname(), from)
  end)
end)
