-- The module table of `require "csock"`: version, constants, clocks and the
-- constructors (socket, socketpair).  getaddrinfo is in core_addresses_spec.

local csock = require "csock"
local rt = require "support.rt"

describe("csock module", function()

  describe("_VERSION", function()
    it("is \"csock X.Y.Z\"", function()
      assert.is_string(csock._VERSION)
      assert.matches("^csock %d+%.%d+%.%d+$", csock._VERSION)
    end)
  end)

  describe("constants", function()
    -- Linux values, the ones a C program on this machine sees.
    local linux = {
      AF_UNIX = 1, AF_LOCAL = 1, AF_INET = 2, AF_INET6 = 10,
      SOCK_STREAM = 1, SOCK_DGRAM = 2, SOCK_SEQPACKET = 5,
      SOL_SOCKET = 1, IPPROTO_IP = 0, IPPROTO_TCP = 6, IPPROTO_UDP = 17,
      IPPROTO_IPV6 = 41,
      SO_REUSEADDR = 2, SO_TYPE = 3, SO_ERROR = 4, SO_BROADCAST = 6,
      SO_SNDBUF = 7, SO_RCVBUF = 8, SO_KEEPALIVE = 9, SO_LINGER = 13,
      SO_REUSEPORT = 15,
      TCP_NODELAY = 1, IPV6_V6ONLY = 26,
      SHUT_RD = 0, SHUT_WR = 1, SHUT_RDWR = 2,
      EINTR = 4, EAGAIN = 11, ENOENT = 2, EINVAL = 22, EMFILE = 24, EPIPE = 32,
      EADDRINUSE = 98, ECONNRESET = 104, ETIMEDOUT = 110, ECONNREFUSED = 111,
      EMSGSIZE = 90,
    }

    for name, value in pairs(linux) do
      it(name .. " is the integer " .. value, function()
        assert.equal(value, csock[name])
        assert.equal("integer", math.type(csock[name]))
      end)
    end

    it("AF_LOCAL is the same as AF_UNIX", function()
      assert.equal(csock.AF_UNIX, csock.AF_LOCAL)
    end)
  end)

  describe("now()", function()
    it("returns seconds as a float", function()
      assert.equal("float", math.type(csock.now()))
    end)

    it("never goes backwards", function()
      local prev = csock.now()
      for _ = 1, 10000 do
        local t = csock.now()
        assert.is_true(t >= prev)
        prev = t
      end
    end)

    it("has sub-millisecond resolution", function()
      local t0 = csock.now()
      local t1 = t0
      for _ = 1, 1e6 do
        t1 = csock.now()
        if t1 ~= t0 then break end
      end
      assert.is_true(t1 > t0)
      assert.is_true(t1 - t0 < 0.1) -- a fine clock, with room for a busy machine
    end)
  end)

  describe("sleep()", function()
    it("blocks the thread for about the given time outside the loop", function()
      local t0 = csock.now()
      csock.sleep(0.1)
      local dt = csock.now() - t0
      assert.is_true(dt >= 0.095, "slept only " .. dt)
      assert.is_true(dt < 1, "slept " .. dt)
    end)

    it("returns at once for 0", function()
      local t0 = csock.now()
      csock.sleep(0)
      assert.is_true(csock.now() - t0 < 0.5)
    end)
  end)

  describe("socket()", function()
    it("makes a TCP socket", function()
      local s <close> = csock.socket(csock.AF_INET, csock.SOCK_STREAM)
      assert.equal("userdata", type(s))
      assert.equal(csock.SOCK_STREAM, s:getsockopt(csock.SOL_SOCKET, csock.SO_TYPE))
    end)

    it("makes a UDP socket", function()
      local s <close> = csock.socket(csock.AF_INET, csock.SOCK_DGRAM)
      assert.equal(csock.SOCK_DGRAM, s:getsockopt(csock.SOL_SOCKET, csock.SO_TYPE))
    end)

    it("accepts an explicit protocol", function()
      local s <close> = csock.socket(csock.AF_INET, csock.SOCK_STREAM, csock.IPPROTO_TCP)
      assert.equal(csock.SOCK_STREAM, s:getsockopt(csock.SOL_SOCKET, csock.SO_TYPE))
    end)

    it("makes unix stream, datagram and seqpacket sockets", function()
      for _, ty in ipairs { csock.SOCK_STREAM, csock.SOCK_DGRAM, csock.SOCK_SEQPACKET } do
        local s <close> = csock.socket(csock.AF_UNIX, ty)
        assert.equal(ty, s:getsockopt(csock.SOL_SOCKET, csock.SO_TYPE))
      end
    end)

    it("gives every socket its own descriptor", function()
      local a <close> = csock.socket(csock.AF_INET, csock.SOCK_STREAM)
      local b <close> = csock.socket(csock.AF_INET, csock.SOCK_STREAM)
      assert.is_true(a:fileno() >= 0)
      assert.not_equal(a:fileno(), b:fileno())
    end)

    it("shares one metatable among sockets of every kind", function()
      local a <close> = csock.socket(csock.AF_INET, csock.SOCK_STREAM)
      local b <close> = csock.socket(csock.AF_UNIX, csock.SOCK_DGRAM)
      assert.equal(getmetatable(a), getmetatable(b))
    end)
  end)

  describe("socketpair()", function()
    it("defaults to a connected AF_UNIX stream pair", function()
      local a, b = csock.socketpair()
      finally(function() a:close(); b:close() end)
      assert.equal(csock.SOCK_STREAM, a:getsockopt(csock.SOL_SOCKET, csock.SO_TYPE))
      assert.equal(csock.AF_UNIX, a:getsockname().family)
      assert.equal(a, a:write("ping\n"))
      assert.equal("ping", b:read("l"))
      assert.equal(b, b:write("pong\n"))
      assert.equal("pong", a:read("l"))
    end)

    it("makes a datagram pair that keeps message boundaries", function()
      local a, b = csock.socketpair(csock.AF_UNIX, csock.SOCK_DGRAM)
      finally(function() a:close(); b:close() end)
      assert.equal(csock.SOCK_DGRAM, a:getsockopt(csock.SOL_SOCKET, csock.SO_TYPE))
      assert.equal(3, a:send("one"))
      assert.equal(3, a:send("two"))
      assert.equal("one", b:recv(100))
      assert.equal("two", b:recv(100))
    end)

    it("returns two distinct open sockets", function()
      local a, b = csock.socketpair()
      finally(function() a:close(); b:close() end)
      assert.not_equal(a:fileno(), b:fileno())
    end)
  end)
end)

describe("the in-place build", function()
  it("is found by a plain lua5.4 started at the repository root, on its default paths", function()
    local r = rt.exec({"/bin/sh", "-c", "env -u LUA_PATH -u LUA_PATH_5_4 -u LUA_CPATH -u LUA_CPATH_5_4 "
      .. [[lua5.4 -e 'print(require("csock")._VERSION == require("csock.core")._VERSION,
      type(require("csock.http").request), type(require("csock.socket.https").request))']]})
    assert.equal(0, r.status, r.err)
    assert.equal("true\tfunction\tfunction\n", r.out)
  end)
end)
