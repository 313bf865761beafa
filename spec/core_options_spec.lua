-- setsockopt/getsockopt: csock knows its options table; integer and flag
-- options read back as integers, SO_LINGER as {onoff=, linger=}, and an
-- unknown level or name is a programming error.

local csock = require "csock"

local function tcp()
  return csock.socket(csock.AF_INET, csock.SOCK_STREAM)
end

local function has_ipv6()
  local s = csock.socket(csock.AF_INET6, csock.SOCK_STREAM)
  local ok = s:bind("::1", 0)
  s:close()
  return ok == true
end

describe("socket options", function()

  describe("setsockopt()", function()
    it("returns true", function()
      local s <close> = tcp()
      assert.is_true(s:setsockopt(csock.SOL_SOCKET, csock.SO_REUSEADDR, true))
      assert.is_true(s:setsockopt(csock.SOL_SOCKET, csock.SO_REUSEADDR, 1))
    end)
  end)

  describe("flag options", function()
    local flags = {
      { "SOL_SOCKET", "SO_REUSEADDR" },
      { "SOL_SOCKET", "SO_REUSEPORT" },
      { "SOL_SOCKET", "SO_KEEPALIVE" },
      { "SOL_SOCKET", "SO_BROADCAST" },
      { "IPPROTO_TCP", "TCP_NODELAY" },
    }
    for _, f in ipairs(flags) do
      local level, name = f[1], f[2]
      it(name .. " takes a boolean and reads back as integer 1 or 0", function()
        local s <close> = tcp()
        assert.is_true(s:setsockopt(csock[level], csock[name], true))
        local v = s:getsockopt(csock[level], csock[name])
        assert.equal("integer", math.type(v))
        assert.equal(1, v)
        assert.is_true(s:setsockopt(csock[level], csock[name], false))
        assert.equal(0, s:getsockopt(csock[level], csock[name]))
      end)

      it(name .. " takes an integer too", function()
        local s <close> = tcp()
        assert.is_true(s:setsockopt(csock[level], csock[name], 1))
        assert.equal(1, s:getsockopt(csock[level], csock[name]))
        assert.is_true(s:setsockopt(csock[level], csock[name], 0))
        assert.equal(0, s:getsockopt(csock[level], csock[name]))
      end)
    end

    it("are off on a fresh socket", function()
      local s <close> = tcp()
      assert.equal(0, s:getsockopt(csock.SOL_SOCKET, csock.SO_KEEPALIVE))
      assert.equal(0, s:getsockopt(csock.IPPROTO_TCP, csock.TCP_NODELAY))
    end)

    it("IPV6_V6ONLY is set and read on an AF_INET6 socket", function()
      if not has_ipv6() then pending("no ipv6") end
      local s <close> = csock.socket(csock.AF_INET6, csock.SOCK_STREAM)
      assert.is_true(s:setsockopt(csock.IPPROTO_IPV6, csock.IPV6_V6ONLY, true))
      assert.equal(1, s:getsockopt(csock.IPPROTO_IPV6, csock.IPV6_V6ONLY))
      assert.is_true(s:setsockopt(csock.IPPROTO_IPV6, csock.IPV6_V6ONLY, false))
      assert.equal(0, s:getsockopt(csock.IPPROTO_IPV6, csock.IPV6_V6ONLY))
    end)
  end)

  describe("integer options", function()
    it("SO_RCVBUF and SO_SNDBUF take a size the kernel may round up", function()
      local s <close> = tcp()
      for _, name in ipairs { "SO_RCVBUF", "SO_SNDBUF" } do
        assert.is_true(s:setsockopt(csock.SOL_SOCKET, csock[name], 32768))
        local v = s:getsockopt(csock.SOL_SOCKET, csock[name])
        assert.equal("integer", math.type(v))
        assert.is_true(v >= 32768, name .. " = " .. v)
      end
    end)

    it("SO_TYPE reads the socket type", function()
      local t <close> = tcp()
      local u <close> = csock.socket(csock.AF_INET, csock.SOCK_DGRAM)
      assert.equal(csock.SOCK_STREAM, t:getsockopt(csock.SOL_SOCKET, csock.SO_TYPE))
      assert.equal(csock.SOCK_DGRAM, u:getsockopt(csock.SOL_SOCKET, csock.SO_TYPE))
    end)

    it("SO_ERROR reads 0 on a healthy socket", function()
      local s <close> = tcp()
      assert.equal(0, s:getsockopt(csock.SOL_SOCKET, csock.SO_ERROR))
    end)
  end)

  describe("SO_REUSEPORT", function()
    it("lets two sockets bind the same port", function()
      local a <close> = tcp()
      local b <close> = tcp()
      assert.is_true(a:setsockopt(csock.SOL_SOCKET, csock.SO_REUSEPORT, true))
      assert.is_true(b:setsockopt(csock.SOL_SOCKET, csock.SO_REUSEPORT, true))
      assert.is_true(a:bind("127.0.0.1", 0))
      local port = a:getsockname().port
      assert.is_true(b:bind("127.0.0.1", port))
      assert.equal(port, b:getsockname().port)
    end)
  end)

  describe("SO_LINGER", function()
    it("is set and read as {onoff = boolean, linger = seconds}", function()
      local s <close> = tcp()
      assert.is_true(s:setsockopt(csock.SOL_SOCKET, csock.SO_LINGER, { onoff = true, linger = 5 }))
      assert.same({ onoff = true, linger = 5 }, s:getsockopt(csock.SOL_SOCKET, csock.SO_LINGER))
      assert.is_true(s:setsockopt(csock.SOL_SOCKET, csock.SO_LINGER, { onoff = false, linger = 0 }))
      -- Linux keeps the old linger time when lingering is turned off.
      local off = s:getsockopt(csock.SOL_SOCKET, csock.SO_LINGER)
      assert.is_false(off.onoff)
      assert.equal("integer", math.type(off.linger))
    end)

    it("with linger 0 makes close() reset the connection: the peer sees ECONNRESET", function()
      local srv <close> = tcp()
      assert.is_true(srv:bind("127.0.0.1", 0))
      assert.is_true(srv:listen())
      local cli <close> = tcp()
      assert.is_true(cli:connect("127.0.0.1", srv:getsockname().port))
      local conn = assert(srv:accept())
      assert.is_true(conn:setsockopt(csock.SOL_SOCKET, csock.SO_LINGER, { onoff = true, linger = 0 }))
      conn:close()
      cli:settimeout(5)
      local data, msg, errno = cli:recv(10)
      assert.is_nil(data)
      assert.is_string(msg)
      assert.equal(csock.ECONNRESET, errno)
    end)

    it("is off on a fresh socket", function()
      local s <close> = tcp()
      assert.same({ onoff = false, linger = 0 }, s:getsockopt(csock.SOL_SOCKET, csock.SO_LINGER))
    end)

    it("rejects a value that is not a table", function()
      local s <close> = tcp()
      assert.has_error(function()
        s:setsockopt(csock.SOL_SOCKET, csock.SO_LINGER, 5)
      end, "bad argument #4 to 'setsockopt' (table expected, got number)")
    end)
  end)

  -- Multicast stays on this host: the group is joined on the loopback interface and sent to
  -- with a TTL of 0.
  describe("multicast groups", function()
    local GROUP = "239.255.77.1"

    local function receiver()
      local rx = csock.socket(csock.AF_INET, csock.SOCK_DGRAM)
      assert(rx:setsockopt(csock.SOL_SOCKET, csock.SO_REUSEADDR, true))
      assert(rx:bind(GROUP, 0)) -- the group's own address: only its datagrams arrive
      rx:settimeout(2)
      return rx, rx:getsockname().port
    end

    local function sender()
      local tx = csock.socket(csock.AF_INET, csock.SOCK_DGRAM)
      assert.is_true(tx:setsockopt(csock.IPPROTO_IP, csock.IP_MULTICAST_IF, "127.0.0.1"))
      assert.is_true(tx:setsockopt(csock.IPPROTO_IP, csock.IP_MULTICAST_TTL, 0))
      assert.is_true(tx:setsockopt(csock.IPPROTO_IP, csock.IP_MULTICAST_LOOP, true))
      return tx
    end

    it("IP_ADD_MEMBERSHIP joins a group: the receiver gets what a sender sends to it", function()
      local rx <close>, port = receiver()
      local join = {multiaddr = GROUP, interface = "127.0.0.1"}
      assert.is_true(rx:setsockopt(csock.IPPROTO_IP, csock.IP_ADD_MEMBERSHIP, join))
      local tx <close> = sender()
      assert.equal(12, tx:sendto("to the group", GROUP, port))
      local data, from = rx:recvfrom(100)
      assert.equal("to the group", data)
      assert.equal("127.0.0.1", from.addr)
      assert.equal(tx:getsockname().port, from.port)
    end)

    it("IP_DROP_MEMBERSHIP leaves it: nothing more arrives", function()
      local rx <close>, port = receiver()
      local join = {multiaddr = GROUP, interface = "127.0.0.1"}
      assert.is_true(rx:setsockopt(csock.IPPROTO_IP, csock.IP_ADD_MEMBERSHIP, join))
      assert.is_true(rx:setsockopt(csock.IPPROTO_IP, csock.IP_DROP_MEMBERSHIP, join))
      local tx <close> = sender()
      tx:sendto("after leaving", GROUP, port)
      rx:settimeout(0.2)
      assert.same({nil, "timeout", csock.ETIMEDOUT}, {rx:recvfrom(100)})
    end)

    it("IP_MULTICAST_IF reads back as the address text", function()
      local tx <close> = sender()
      assert.equal("127.0.0.1", tx:getsockopt(csock.IPPROTO_IP, csock.IP_MULTICAST_IF))
    end)

    it("the kernel refusing a group that is not multicast is nil, message, EINVAL", function()
      local rx <close> = receiver()
      local ok, msg, code = rx:setsockopt(csock.IPPROTO_IP, csock.IP_ADD_MEMBERSHIP,
        {multiaddr = "127.0.0.1"})
      assert.is_nil(ok)
      assert.is_string(msg)
      assert.equal(csock.EINVAL, code)
    end)

    it("IPV6_JOIN_GROUP and IPV6_LEAVE_GROUP take the interface by name or index", function()
      if not has_ipv6() then pending("no ipv6") end
      local s <close> = csock.socket(csock.AF_INET6, csock.SOCK_DGRAM)
      local opt = {multiaddr = "ff02::1:3", interface = "lo"}
      assert.is_true(s:setsockopt(csock.IPPROTO_IPV6, csock.IPV6_JOIN_GROUP, opt))
      opt.interface = 1 -- lo's index
      assert.is_true(s:setsockopt(csock.IPPROTO_IPV6, csock.IPV6_LEAVE_GROUP, opt))
      assert.is_true(s:setsockopt(csock.IPPROTO_IPV6, csock.IPV6_MULTICAST_IF, 1))
      assert.equal(1, s:getsockopt(csock.IPPROTO_IPV6, csock.IPV6_MULTICAST_IF))
    end)

    it("membership options are write-only, and a bad group or interface raises", function()
      local s <close> = csock.socket(csock.AF_INET, csock.SOCK_DGRAM)
      local IP, IP6 = csock.IPPROTO_IP, csock.IPPROTO_IPV6
      assert.has_error(function() s:getsockopt(IP, csock.IP_ADD_MEMBERSHIP) end,
        "bad argument #3 to 'getsockopt' (option is write-only)")
      assert.has_error(function() s:setsockopt(IP, csock.IP_ADD_MEMBERSHIP, "239.1.1.1") end,
        "bad argument #4 to 'setsockopt' (table expected, got string)")
      assert.has_error(function() s:setsockopt(IP, csock.IP_ADD_MEMBERSHIP, {}) end,
        "bad argument #4 to 'setsockopt' (field 'multiaddr' missing)")
      assert.has_error(function()
        s:setsockopt(IP, csock.IP_ADD_MEMBERSHIP, {multiaddr = "nope"})
      end, "bad argument #4 to 'setsockopt' (multiaddr is not an IPv4 address: 'nope')")
      assert.has_error(function() s:setsockopt(IP, csock.IP_MULTICAST_IF, 5) end,
        "bad argument #4 to 'setsockopt' (value must be an IPv4 address)")
      assert.has_error(function()
        s:setsockopt(IP6, csock.IPV6_JOIN_GROUP, {multiaddr = "239.1.1.1"})
      end, "bad argument #4 to 'setsockopt' (field 'multiaddr' must be an IPv6 address)")
      assert.has_error(function()
        s:setsockopt(IP6, csock.IPV6_JOIN_GROUP, {multiaddr = "ff02::1", interface = "nosuch0"})
      end, "bad argument #4 to 'setsockopt' (no interface 'nosuch0')")
    end)
  end)

  describe("SO_PEERCRED", function()
    local rt = require "support.rt"

    it("names the process at the other end of a unix socket (a python3 client)", function()
      local path = rt.tmppath(".sock")
      local server <close> = csock.socket(csock.AF_UNIX, csock.SOCK_STREAM)
      assert(server:bind(path))
      assert(server:listen(4))
      -- the client connects, says who it is and leaves; the kernel noted its credentials at connect
      local r = rt.python([[
import os, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(("%d %d %d\n" % (os.getpid(), os.getuid(), os.getgid())).encode())
]], {path})
      assert.equal(0, r.status, r.err)
      server:settimeout(5)
      local c <close> = assert(server:accept())
      local pid, uid, gid = c:read("n", "n", "n")
      os.remove(path)
      assert.same({pid = pid, uid = uid, gid = gid},
        c:getsockopt(csock.SOL_SOCKET, csock.SO_PEERCRED))
    end)

    it("is read-only", function()
      local a, b = csock.socketpair()
      local _ <close> = a
      local _ <close> = b
      assert.has_error(function() a:setsockopt(csock.SOL_SOCKET, csock.SO_PEERCRED, {}) end,
        "bad argument #3 to 'setsockopt' (option is read-only)")
      assert.is_table(b:getsockopt(csock.SOL_SOCKET, csock.SO_PEERCRED))
    end)
  end)

  describe("bad arguments", function()
    it("an unknown option name raises", function()
      local s <close> = tcp()
      assert.has_error(function()
        s:setsockopt(csock.SOL_SOCKET, 12345, 1)
      end, "bad argument #3 to 'setsockopt' (unknown option)")
      assert.has_error(function()
        s:getsockopt(csock.SOL_SOCKET, 12345)
      end, "bad argument #3 to 'getsockopt' (unknown option)")
    end)

    it("an unknown level raises", function()
      local s <close> = tcp()
      assert.has_error(function()
        s:setsockopt(4242, csock.SO_REUSEADDR, 1)
      end, "bad argument #2 to 'setsockopt' (unknown option level)")
      assert.has_error(function()
        s:getsockopt(4242, csock.SO_REUSEADDR)
      end, "bad argument #2 to 'getsockopt' (unknown option level)")
    end)

    it("an option under the wrong level raises", function()
      -- TCP_NODELAY is 1, like SOL_SOCKET's SO_DEBUG, which csock does not know.
      local s <close> = tcp()
      assert.has_error(function()
        s:setsockopt(csock.SOL_SOCKET, csock.TCP_NODELAY, 1)
      end, "bad argument #3 to 'setsockopt' (unknown option)")
    end)

    it("a value of the wrong type raises", function()
      local s <close> = tcp()
      assert.has_error(function()
        s:setsockopt(csock.SOL_SOCKET, csock.SO_REUSEADDR, "yes")
      end, "bad argument #4 to 'setsockopt' (number expected, got string)")
      assert.has_error(function()
        s:setsockopt(csock.SOL_SOCKET, csock.SO_RCVBUF, {})
      end, "bad argument #4 to 'setsockopt' (number expected, got table)")
    end)

    it("a missing level or name raises", function()
      local s <close> = tcp()
      assert.has_error(function() s:getsockopt() end, "bad argument #2 to 'getsockopt' (number expected, got no value)")
      assert.has_error(function() s:setsockopt(csock.SOL_SOCKET) end,
        "bad argument #3 to 'setsockopt' (number expected, got no value)")
    end)
  end)
end)

-- TCP_NODELAY on connections: on by default, set just before the second send (the first cannot be
-- held back by Nagle's algorithm).  python3 reads the option off csock's own descriptor from
-- outside, through pidfd_getfd(2), so that the check cannot itself set it.
describe("TCP_NODELAY on accepted and connected sockets", function()
  local rt = require "support.rt"

  local PEEK = [[
import ctypes, os, socket, sys
pid, fd = int(sys.argv[1]), int(sys.argv[2])
libc = ctypes.CDLL(None, use_errno=True)
pidfd = os.pidfd_open(pid)
mine = libc.syscall(438, pidfd, fd, 0)  # pidfd_getfd
if mine < 0:
    sys.exit("pidfd_getfd: " + os.strerror(ctypes.get_errno()))
s = socket.socket(fileno=mine)
print(1 if s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) else 0)
]]

  local function my_pid()
    local f <close> = assert(io.open("/proc/self/stat"))
    return f:read("n")
  end

  -- The option as the kernel has it now, without asking csock.
  local function nodelay_of(s)
    local fd = tostring(s):match("fd (%d+)")
    local r = rt.exec({"python3", "-c", PEEK, tostring(my_pid()), fd})
    assert.equal(0, r.status, r.err)
    return tonumber(r.out)
  end

  local function pair()
    local srv <close> = assert(csock.socket(csock.AF_INET, csock.SOCK_STREAM))
    assert(srv:bind("127.0.0.1", 0))
    assert(srv:listen(4))
    local c = assert(csock.socket(csock.AF_INET, csock.SOCK_STREAM))
    c:settimeout(5)
    assert(c:connect("127.0.0.1", srv:getsockname().port))
    local a = assert(srv:accept())
    a:settimeout(5)
    return a, c
  end

  it("is set before an accepted socket's second send, not before its first", function()
    local a, c = pair()
    finally(function() a:close(); c:close() end)
    assert.equal(0, nodelay_of(a))
    assert(a:write("one\n"))
    assert.equal(0, nodelay_of(a))
    assert(a:write("two\n"))
    assert.equal(1, nodelay_of(a))
    assert.same({"one", "two"}, {c:read("l", "l")})
  end)

  it("is set before a connected socket's second send, through send() too", function()
    local a, c = pair()
    finally(function() a:close(); c:close() end)
    assert.equal(4, c:send("req1"))
    assert.equal(0, nodelay_of(c))
    assert.equal(4, c:send("req2"))
    assert.equal(1, nodelay_of(c))
    assert.equal("req1req2", a:read(8))
  end)

  it("reads as 1 from getsockopt at any time", function()
    local a, c = pair()
    finally(function() a:close(); c:close() end)
    assert.equal(1, a:getsockopt(csock.IPPROTO_TCP, csock.TCP_NODELAY))
    assert.equal(1, nodelay_of(a))
    assert.equal(1, c:getsockopt(csock.IPPROTO_TCP, csock.TCP_NODELAY))
  end)

  it("stays off when the caller turns it off before sending", function()
    local a, c = pair()
    finally(function() a:close(); c:close() end)
    assert(a:setsockopt(csock.IPPROTO_TCP, csock.TCP_NODELAY, false))
    assert(a:write("x"))
    assert(a:write("y"))
    assert.equal(0, nodelay_of(a))
    assert.equal("xy", c:read(2))
  end)
end)
