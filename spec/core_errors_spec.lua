-- Errors.  A failure of the operating system is a result: nil, message,
-- errno.  A programming error (wrong type, value out of range, unknown
-- option, a closed socket) raises a Lua error that names the function and
-- the argument, counting the socket itself as argument #1.

local csock = require "csock"
local helper = require "helper"

local function tcp()
  return csock.socket(csock.AF_INET, csock.SOCK_STREAM)
end

local function unix()
  return csock.socket(csock.AF_UNIX, csock.SOCK_STREAM)
end

-- A port on 127.0.0.1 that nobody listens on: bound, so nobody else takes it.
local function closed_port()
  local holder = tcp()
  assert.is_true(holder:bind("127.0.0.1", 0))
  return holder, holder:getsockname().port
end

local function assert_os_error(errno, ok, msg, got)
  assert.is_nil(ok)
  assert.is_string(msg)
  assert.is_true(#msg > 0)
  assert.equal(errno, got)
end

describe("OS errors", function()
  it("connect() to a closed port returns nil, message, ECONNREFUSED", function()
    local _ <close>, port = closed_port()
    local s <close> = tcp()
    local ok, msg, errno = s:connect("127.0.0.1", port)
    assert_os_error(csock.ECONNREFUSED, ok, msg, errno)
    assert.matches("[Rr]efused", msg)
  end)

  it("bind() to a port in use returns nil, message, EADDRINUSE", function()
    local a <close> = tcp()
    assert.is_true(a:bind("127.0.0.1", 0))
    assert.is_true(a:listen())
    local b <close> = tcp()
    assert_os_error(csock.EADDRINUSE, b:bind("127.0.0.1", a:getsockname().port))
  end)

  it("bind() to an existing unix path returns EADDRINUSE", function()
    local path = helper.tmpname()
    finally(function() helper.remove(path) end)
    local a <close> = unix()
    assert.is_true(a:bind(path))
    local b <close> = unix()
    assert_os_error(csock.EADDRINUSE, b:bind(path))
  end)

  it("connect() to a missing unix path returns ENOENT", function()
    local s <close> = unix()
    assert_os_error(csock.ENOENT, s:connect(helper.tmpname()))
  end)

  it("accept() on a socket that does not listen returns EINVAL", function()
    local s <close> = tcp()
    assert.is_true(s:bind("127.0.0.1", 0))
    assert_os_error(csock.EINVAL, s:accept())
  end)

  it("getpeername() of an unconnected socket is an OS error", function()
    local s <close> = tcp()
    assert_os_error(107, s:getpeername()) -- ENOTCONN
  end)

  it("running out of descriptors makes socket() and socketpair() return EMFILE", function()
    local child = helper.spawn("ulimit -n 32; " .. helper.lua_cmd([[
      local csock = require "csock"
      local keep = {}
      for i = 1, 100 do
        local s, msg, errno = csock.socket(csock.AF_INET, csock.SOCK_STREAM)
        if not s then
          print(type(msg), errno == csock.EMFILE)
          break
        end
        keep[i] = s
      end
      local a, msg, errno = csock.socketpair()
      print(a, type(msg), errno == csock.EMFILE)
      keep[#keep]:close()
      print(csock.socket(csock.AF_INET, csock.SOCK_STREAM) ~= nil)
    ]]))
    local ok, _, out, err = child:wait()
    assert.is_true(ok, err)
    assert.equal("string\ttrue\nnil\tstring\ttrue\ntrue\n", out)
  end)

  it("leaves the socket usable after an error", function()
    local _ <close>, port = closed_port()
    local s <close> = tcp()
    assert.is_nil((s:connect("127.0.0.1", port)))
    assert.equal("integer", math.type(s:fileno()))
    assert.matches("csock", tostring(s))
  end)

  it("send() on a reset connection returns an errno, not an error", function()
    local a, b = csock.socketpair()
    b:close()
    local n, msg, errno = a:send("x")
    a:close()
    assert_os_error(csock.EPIPE, n, msg, errno)
  end)
end)

describe("a closed socket", function()
  local uses = {
    { "recv", function(s) return s:recv(1) end },
    { "send", function(s) return s:send("x") end },
    { "read", function(s) return s:read("l") end },
    { "write", function(s) return s:write("x") end },
    { "lines", function(s) return s:lines() end },
    { "bind", function(s) return s:bind("127.0.0.1", 0) end },
    { "listen", function(s) return s:listen() end },
    { "accept", function(s) return s:accept() end },
    { "connect", function(s) return s:connect("127.0.0.1", 1) end },
    { "sendto", function(s) return s:sendto("x", "127.0.0.1", 1) end },
    { "recvfrom", function(s) return s:recvfrom(1) end },
    { "shutdown", function(s) return s:shutdown("rw") end },
    { "setsockopt", function(s) return s:setsockopt(csock.SOL_SOCKET, csock.SO_REUSEADDR, true) end },
    { "getsockopt", function(s) return s:getsockopt(csock.SOL_SOCKET, csock.SO_TYPE) end },
    { "getsockname", function(s) return s:getsockname() end },
    { "getpeername", function(s) return s:getpeername() end },
    { "settimeout", function(s) return s:settimeout(1) end },
    { "setmaxline", function(s) return s:setmaxline(100) end },
    { "fileno", function(s) return s:fileno() end },
  }

  for _, use in ipairs(uses) do
    local name, fn = use[1], use[2]
    it("raises \"bad argument #1 to '" .. name .. "' (socket is closed)\"", function()
      local s = tcp()
      assert.is_true(s:close())
      assert.has_error(function() fn(s) end,
        "bad argument #1 to '" .. name .. "' (socket is closed)")
    end)
  end

  it("names the method also when it is called without a name at the call site", function()
    local s = tcp()
    s:close()
    local ok, err = pcall(s.recv, s, 1)
    assert.is_false(ok)
    assert.equal("bad argument #1 to 'recv' (socket is closed)", err)
    local f = s.getsockname
    assert.has_error(function() return f(s) end, "bad argument #1 to 'getsockname' (socket is closed)")
  end)

  it("can still be closed again and printed", function()
    local s = tcp()
    s:close()
    assert.is_true(s:close())
    assert.is_string(tostring(s))
  end)
end)

describe("bad arguments", function()
  -- the whole message (has_error drops only the "file:line: " position)
  local function raises(message, fn)
    assert.has_error(fn, message)
  end

  describe("socket()", function()
    it("rejects a missing or non-integer domain and type", function()
      raises("bad argument #1 to 'socket' (number expected, got no value)", function() csock.socket() end)
      raises("bad argument #1 to 'socket' (number expected, got table)",
        function() csock.socket({}, csock.SOCK_STREAM) end)
      raises("bad argument #2 to 'socket' (number expected, got table)", function() csock.socket(csock.AF_INET, {}) end)
      raises("bad argument #3 to 'socket' (number expected, got table)", function()
        csock.socket(csock.AF_INET, csock.SOCK_STREAM, {})
      end)
    end)

    it("rejects an unknown family", function()
      raises("bad argument #1 to 'socket' (unsupported address family)",
        function() csock.socket(9999, csock.SOCK_STREAM) end)
      raises("bad argument #1 to 'socket' (unsupported address family)",
        function() csock.socket(-1, csock.SOCK_STREAM) end)
    end)
  end)

  describe("socketpair()", function()
    it("rejects arguments that are not integers", function()
      raises("bad argument #1 to 'socketpair' (number expected, got table)", function() csock.socketpair({}) end)
      raises("bad argument #2 to 'socketpair' (number expected, got table)",
        function() csock.socketpair(csock.AF_UNIX, {}) end)
    end)
  end)

  describe("getaddrinfo()", function()
    it("rejects hints that are not a table", function()
      raises("bad argument #3 to 'getaddrinfo' (table expected, got number)", function()
        csock.getaddrinfo("127.0.0.1", "80", 5)
      end)
    end)

    it("rejects a host or service with an embedded zero", function()
      raises("bad argument #1 to 'getaddrinfo' (host contains a zero byte)", function()
        csock.getaddrinfo("127.0.0.1\0evil", "80")
      end)
      raises("bad argument #2 to 'getaddrinfo' (service contains a zero byte)", function()
        csock.getaddrinfo("127.0.0.1", "80\0")
      end)
    end)
  end)

  describe("sleep()", function()
    it("rejects a non-number", function()
      raises("bad argument #1 to 'sleep' (number expected, got string)", function() csock.sleep("soon") end)
    end)

    it("rejects NaN and negative seconds, each with its own message", function()
      raises("bad argument #1 to 'sleep' (seconds must be a number, not NaN)",
        function() csock.sleep(0 / 0) end)
      raises("bad argument #1 to 'sleep' (seconds must not be negative)",
        function() csock.sleep(-1) end)
      local s <close> = tcp()
      raises("bad argument #2 to 'settimeout' (timeout must be a number, not NaN)",
        function() s:settimeout(0 / 0) end)
    end)
  end)

  for _, name in ipairs { "bind", "connect" } do
    describe(name .. "()", function()
      local function call(s, ...)
        if name == "bind" then return s:bind(...) end
        return s:connect(...)
      end

      it("rejects a host that is not a string", function()
        local s <close> = tcp()
        raises("bad argument #2 to '" .. name .. "' (string expected, got table)", function() call(s, {}, 0) end)
        raises("bad argument #2 to '" .. name .. "' (string expected, got nil)", function() call(s, nil, 0) end)
      end)

      it("rejects a port that is not an integer", function()
        local s <close> = tcp()
        raises("bad argument #3 to '" .. name .. "' (number expected, got table)",
          function() call(s, "127.0.0.1", {}) end)
        raises("bad argument #3 to '" .. name .. "' (number has no integer representation)",
          function() call(s, "127.0.0.1", 1.5) end)
        raises("bad argument #3 to '" .. name .. "' (number expected, got no value)",
          function() call(s, "127.0.0.1") end)
      end)

      it("rejects a port out of range", function()
        local s <close> = tcp()
        raises("bad argument #3 to '" .. name .. "' (port out of range)", function() call(s, "127.0.0.1", 70000) end)
        raises("bad argument #3 to '" .. name .. "' (port out of range)", function() call(s, "127.0.0.1", 65536) end)
        raises("bad argument #3 to '" .. name .. "' (port out of range)", function() call(s, "127.0.0.1", -1) end)
      end)

      it("rejects a host with an embedded zero", function()
        local s <close> = tcp()
        raises("bad argument #2 to '" .. name .. "' (host contains a zero byte)",
          function() call(s, "127.0.0.1\0.evil", 0) end)
      end)

      it("rejects a unix path longer than 107 bytes, whatever its length", function()
        local s <close> = unix()
        for _, n in ipairs { 108, 109, 200, 5000 } do
          raises("bad argument #2 to '" .. name .. "' (path too long)", function()
            call(s, "/tmp/" .. string.rep("x", n - 5))
          end)
        end
      end)

      it("rejects a unix path with an embedded zero", function()
        local s <close> = unix()
        raises("bad argument #2 to '" .. name .. "' (path contains a zero byte)", function() call(s, "/tmp/a\0b") end)
      end)

      it("rejects a unix path that is not a string", function()
        local s <close> = unix()
        raises("bad argument #2 to '" .. name .. "' (string expected, got table)", function() call(s, {}) end)
      end)
    end)
  end

  describe("listen()", function()
    it("rejects a backlog that is not an integer", function()
      local s <close> = tcp()
      raises("bad argument #2 to 'listen' (number expected, got string)", function() s:listen("many") end)
    end)
  end)

  describe("send()", function()
    it("rejects data that is not a string and bounds that are not integers", function()
      local a, b = csock.socketpair()
      finally(function() a:close(); b:close() end)
      raises("bad argument #2 to 'send' (string expected, got table)", function() a:send({}) end)
      raises("bad argument #2 to 'send' (string expected, got no value)", function() a:send() end)
      raises("bad argument #3 to 'send' (number expected, got table)", function() a:send("abc", {}) end)
      raises("bad argument #4 to 'send' (number expected, got string)", function() a:send("abc", 1, "x") end)
    end)
  end)

  it("name the method and count self as #1 when called through pcall", function()
    local s <close> = tcp()
    local ok, err = pcall(s.setsockopt, s, csock.SOL_SOCKET, csock.SO_LINGER, {onoff = "x"})
    assert.is_false(ok)
    assert.equal("bad argument #4 to 'setsockopt' (field 'onoff' must be a boolean or an integer)", err)
    ok, err = pcall(s.recv, s, "many")
    assert.is_false(ok)
    assert.equal("bad argument #2 to 'recv' (number expected, got string)", err)
    ok, err = pcall(s.recv, 5)
    assert.is_false(ok)
    assert.equal("bad argument #1 to 'recv' (csock.socket expected, got number)", err)
  end)

  describe("recv()", function()
    it("needs a count of at least 1", function()
      local a, b = csock.socketpair()
      finally(function() a:close(); b:close() end)
      a:settimeout(0.1) -- a call that does not raise must not hang the spec
      raises("bad argument #2 to 'recv' (size must be positive)", function() a:recv(0) end)
      raises("bad argument #2 to 'recv' (size must be positive)", function() a:recv(-5) end)
      raises("bad argument #2 to 'recv' (number expected, got string)", function() a:recv("lots") end)
    end)
  end)

  describe("sendto()", function()
    it("checks the data, host and port", function()
      local s <close> = csock.socket(csock.AF_INET, csock.SOCK_DGRAM)
      raises("bad argument #2 to 'sendto' (string expected, got table)", function() s:sendto({}, "127.0.0.1", 9) end)
      raises("bad argument #3 to 'sendto' (string expected, got table)", function() s:sendto("x", {}, 9) end)
      raises("bad argument #4 to 'sendto' (port out of range)", function() s:sendto("x", "127.0.0.1", 70000) end)
      raises("bad argument #3 to 'sendto' (host contains a zero byte)", function() s:sendto("x", "127.0.0.1\0x", 9) end)
    end)

    it("checks a unix path", function()
      local s <close> = csock.socket(csock.AF_UNIX, csock.SOCK_DGRAM)
      raises("bad argument #3 to 'sendto' (path too long)", function() s:sendto("x", string.rep("p", 300)) end)
      raises("bad argument #3 to 'sendto' (path contains a zero byte)", function() s:sendto("x", "/tmp/a\0b") end)
    end)
  end)

  describe("recvfrom()", function()
    it("needs a count of at least 1", function()
      local s <close> = csock.socket(csock.AF_INET, csock.SOCK_DGRAM)
      raises("bad argument #2 to 'recvfrom' (size must be positive)", function() s:recvfrom(0) end)
      raises("bad argument #2 to 'recvfrom' (number expected, got table)", function() s:recvfrom({}) end)
    end)
  end)

  describe("read()", function()
    it("rejects an unknown format", function()
      local a, b = csock.socketpair()
      finally(function() a:close(); b:close() end)
      assert.has_error(function() a:read("x") end, "bad argument #2 to 'read' (invalid format)")
      assert.has_error(function() a:read("l", "q") end, "bad argument #3 to 'read' (invalid format)")
      raises("bad argument #2 to 'read' (string expected, got table)", function() a:read({}) end)
    end)
  end)

  describe("write()", function()
    it("rejects values that are neither strings nor numbers", function()
      local a, b = csock.socketpair()
      finally(function() a:close(); b:close() end)
      raises("bad argument #2 to 'write' (string expected, got table)", function() a:write({}) end)
      raises("bad argument #3 to 'write' (string expected, got boolean)", function() a:write("ok", true) end)
    end)
  end)

  describe("shutdown()", function()
    it("rejects an unknown direction", function()
      local a, b = csock.socketpair()
      finally(function() a:close(); b:close() end)
      raises("bad argument #2 to 'shutdown' (invalid option 'sideways')", function() a:shutdown("sideways") end)
      raises("bad argument #2 to 'shutdown' (number expected, got table)", function() a:shutdown({}) end)
      raises("bad argument #2 to 'shutdown' (invalid shutdown mode)", function() a:shutdown(42) end)
    end)
  end)

  describe("settimeout()", function()
    it("rejects a negative or non-number timeout", function()
      local s <close> = tcp()
      raises("bad argument #2 to 'settimeout' (timeout must not be negative)", function() s:settimeout(-1) end)
      raises("bad argument #2 to 'settimeout' (timeout must not be negative)", function() s:settimeout(-0.001) end)
      raises("bad argument #2 to 'settimeout' (number expected, got string)", function() s:settimeout("soon") end)
      raises("bad argument #2 to 'settimeout' (number expected, got table)", function() s:settimeout({}) end)
    end)

    it("leaves the timeout as it was after a rejected value", function()
      local s <close> = tcp()
      s:settimeout(3)
      pcall(s.settimeout, s, -1)
      assert.equal(3, s:gettimeout())
    end)
  end)

  describe("setmaxline()", function()
    it("rejects a non-integer or negative limit", function()
      local s <close> = tcp()
      raises("bad argument #2 to 'setmaxline' (number expected, got string)", function() s:setmaxline("big") end)
      raises("bad argument #2 to 'setmaxline' (line length out of range)", function() s:setmaxline(-1) end)
    end)
  end)

  describe("methods", function()
    it("reject a self that is not a socket", function()
      local s <close> = tcp()
      local recv, fileno = s.recv, s.fileno
      raises("bad argument #1 to 'recv' (csock.socket expected, got table)", function() recv({}, 1) end)
      raises("bad argument #1 to 'fileno' (csock.socket expected, got string)", function() fileno("fd") end)
    end)

    it("reject userdata of other kinds: files, task handles, loops, light userdata", function()
      local s <close> = tcp()
      local recv, close = s.recv, s.close
      raises("bad argument #1 to 'recv' (csock.socket expected, got FILE*)", function() recv(io.stdout, 1) end)
      local loop <close> = csock.loop()
      raises("bad argument #1 to 'close' (csock.socket expected, got csock.loop)", function() close(loop) end)
      local task = csock.run(function() return csock.spawn(function() end) end)
      raises("bad argument #1 to 'close' (csock.socket expected, got csock.task)", function() close(task) end)
      -- a light userdata that points nowhere must not be read
      local light = debug.upvalueid(recv, 1) or debug.upvalueid(function() return s end, 1)
      raises("bad argument #1 to 'close' (csock.socket expected, got light userdata)", function() close(light) end)
    end)
  end)
end)

describe("no input crashes the process", function()
  it("survives every method called with odd arguments", function()
    -- In a child, so that a crash fails this spec rather than the run.
    local ok, out, err = helper.run_lua([=[
      local csock = require "csock"
      local odd = table.pack(nil, true, false, 0, -1, 1.5, 2^63, -2^63, math.huge,
        -math.huge, 0/0, "", "\0", string.rep("x", 70000), {}, print, io.stdout,
        coroutine.create(print), "127.0.0.1", "::1", "*", "l", "a", "L")
      local n = 0
      local function try(f, ...) pcall(f, ...); n = n + 1 end
      local names = { "recv", "send", "read", "write", "bind", "listen", "accept",
        "connect", "sendto", "recvfrom", "shutdown", "setsockopt", "getsockopt",
        "getsockname", "getpeername", "settimeout", "setmaxline", "fileno",
        "lines", "close" }
      for _, fam in ipairs { csock.AF_INET, csock.AF_INET6, csock.AF_UNIX } do
        for _, ty in ipairs { csock.SOCK_STREAM, csock.SOCK_DGRAM } do
          local s = csock.socket(fam, ty)
          s:settimeout(0)
          local mt = getmetatable(s).__index
          for _, name in ipairs(names) do
            local f = mt[name] or s[name]
            if name ~= "close" then
              for i = 1, odd.n do
                try(f, s, odd[i])
                try(f, s, odd[i], odd[(i * 7) % (odd.n) + 1])
                try(f, odd[i], odd[i])
              end
            end
          end
          s:settimeout(0)
          s:close()
          for _, name in ipairs(names) do try(s[name], s, 1, 2, 3) end
        end
      end
      for _, fn in ipairs { csock.socket, csock.socketpair, csock.getaddrinfo, csock.sleep } do
        for i = 1, odd.n do
          if fn ~= csock.sleep or type(odd[i]) ~= "number" or odd[i] <= 0 then
            try(fn, odd[i], odd[(i * 3) % (odd.n) + 1], odd[i])
          end
        end
      end
      collectgarbage()
      print("survived", n > 1000)
    ]=])
    assert.is_true(ok, err)
    assert.equal("survived\ttrue\n", out)
  end)
end)

describe("a module function's argument error called through pcall", function()
  it("names the function csock.<name> every time, not csock.core.<name> at random", function()
    for _ = 1, 5 do
      local code = [[
        local c = require "csock"
        print(select(2, pcall(c.sleep, -1)))
        print(select(2, pcall(c.tls_context, 42)))
        print(select(2, pcall(c.tls_context, {mode = "server"})))
      ]]
      local ok, out, err = helper.run_lua(code)
      assert.is_true(ok, err)
      assert.equal("bad argument #1 to 'csock.sleep' (seconds must not be negative)\n"
        .. "bad argument #1 to 'csock.tls_context' (table expected, got number)\n"
        .. "bad argument #1 to 'csock.tls_context' (a server needs options 'certificate' and 'key')\n", out)
    end
  end)
end)
