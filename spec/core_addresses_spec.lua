-- Addresses: getaddrinfo, and the address tables that come back from
-- recvfrom/accept/getsockname on datagram sockets (UDP and unix).
-- Stream sockets' addresses are in core_socket_spec.

local csock = require "csock"
local helper = require "helper"

local function has_ipv6()
  local s = csock.socket(csock.AF_INET6, csock.SOCK_DGRAM)
  local ok = s:bind("::1", 0)
  s:close()
  return ok == true
end

local function udp(family, host)
  local s = csock.socket(family or csock.AF_INET, csock.SOCK_DGRAM)
  assert.is_true(s:bind(host or "127.0.0.1", 0))
  s:settimeout(5) -- a lost datagram fails the spec instead of hanging it
  return s, s:getsockname().port
end

describe("getaddrinfo()", function()
  it("resolves a numeric IPv4 address once, as a stream address", function()
    local list = assert(csock.getaddrinfo("127.0.0.1", "80"))
    assert.equal(1, #list)
    assert.same({
      family = csock.AF_INET, addr = "127.0.0.1", port = 80,
      socktype = csock.SOCK_STREAM, protocol = csock.IPPROTO_TCP,
    }, list[1])
  end)

  it("writes IPv4 addresses in dotted-quad form, every octet width", function()
    for _, text in ipairs({"0.0.0.0", "1.2.3.4", "10.0.99.100", "127.0.0.1", "192.168.255.9",
                           "255.255.255.255", "100.10.1.0"}) do
      local list = assert(csock.getaddrinfo(text, 1))
      assert.equal(text, list[1].addr)
    end
  end)

  it("resolves a numeric IPv6 address", function()
    local list = assert(csock.getaddrinfo("::1", "8080"))
    assert.equal(1, #list)
    assert.equal(csock.AF_INET6, list[1].family)
    assert.equal("::1", list[1].addr)
    assert.equal(8080, list[1].port)
  end)

  it("resolves a host name from /etc/hosts", function()
    local list = assert(csock.getaddrinfo("localhost", "1234", { family = csock.AF_INET }))
    assert.is_true(#list >= 1)
    for _, a in ipairs(list) do
      assert.equal(csock.AF_INET, a.family)
      assert.equal("127.0.0.1", a.addr)
      assert.equal(1234, a.port)
    end
  end)

  it("resolves a service name", function()
    local list = assert(csock.getaddrinfo("127.0.0.1", "http"))
    assert.equal(80, list[1].port)
  end)

  it("takes the port as an integer too", function()
    local list = assert(csock.getaddrinfo("127.0.0.1", 8080))
    assert.equal(8080, list[1].port)
  end)

  it("follows the socktype hint", function()
    local list = assert(csock.getaddrinfo("127.0.0.1", "53", { socktype = csock.SOCK_DGRAM }))
    assert.equal(1, #list)
    assert.equal(csock.SOCK_DGRAM, list[1].socktype)
    assert.equal(csock.IPPROTO_UDP, list[1].protocol)
  end)

  it("follows the family hint", function()
    local list = assert(csock.getaddrinfo("127.0.0.1", "80", { family = csock.AF_INET }))
    assert.equal(csock.AF_INET, list[1].family)
    local none = csock.getaddrinfo("127.0.0.1", "80", { family = csock.AF_INET6 })
    assert.is_nil(none)
  end)

  it("reads host \"*\" as any address, as bind does, in a task too", function()
    local function addrs()
      local list = assert(csock.getaddrinfo("*", 80, {family = csock.AF_INET}))
      assert.equal(1, #list)
      return list[1].addr, list[1].port
    end
    assert.same({"0.0.0.0", 80}, {addrs()})
    assert.same({"0.0.0.0", 80}, {csock.run(addrs)})
  end)

  it("follows the flags hint", function()
    local list, msg = csock.getaddrinfo("localhost", 80, {flags = csock.AI_NUMERICHOST})
    assert.is_nil(list)
    assert.equal("Name or service not known", msg)
    list = assert(csock.getaddrinfo(nil, 80, {family = csock.AF_INET, flags = csock.AI_PASSIVE}))
    assert.equal("0.0.0.0", list[1].addr)
  end)

  it("returns nil and a message for a name it cannot resolve", function()
    local list, msg = csock.getaddrinfo("127.0.0.1", "no-such-service-csock")
    assert.is_nil(list)
    assert.is_string(msg)
    assert.is_true(#msg > 0)
  end)

  it("gives entries a socket can connect to", function()
    local srv <close> = csock.socket(csock.AF_INET, csock.SOCK_STREAM)
    assert.is_true(srv:bind("127.0.0.1", 0))
    assert.is_true(srv:listen())
    local port = srv:getsockname().port
    local a = assert(csock.getaddrinfo("localhost", port, { family = csock.AF_INET }))[1]
    local cli <close> = csock.socket(a.family, a.socktype, a.protocol)
    assert.is_true(cli:connect(a.addr, a.port))
  end)
end)

describe("datagram sockets", function()

  describe("over UDP on 127.0.0.1", function()
    it("sendto() returns the bytes sent and recvfrom() the data and sender", function()
      local a <close>, aport = udp()
      local b <close>, bport = udp()
      assert.equal(4, a:sendto("ping", "127.0.0.1", bport))
      local data, from = b:recvfrom(100)
      assert.equal("ping", data)
      assert.same({ family = csock.AF_INET, addr = "127.0.0.1", port = aport }, from)
    end)

    it("answers the sender at the address recvfrom() gave", function()
      local a <close> = udp()
      local b <close>, bport = udp()
      a:sendto("question", "127.0.0.1", bport)
      local _, from = b:recvfrom(100)
      assert.equal(6, b:sendto("answer", from.addr, from.port))
      local data, back = a:recvfrom(100)
      assert.equal("answer", data)
      assert.equal(bport, back.port)
    end)

    it("keeps message boundaries", function()
      local a <close> = udp()
      local b <close>, bport = udp()
      for i = 1, 3 do a:sendto("datagram " .. i, "127.0.0.1", bport) end
      for i = 1, 3 do assert.equal("datagram " .. i, (b:recvfrom(100))) end
    end)

    it("recvfrom(n) returns at most n bytes", function()
      local a <close> = udp()
      local b <close>, bport = udp()
      a:sendto("0123456789", "127.0.0.1", bport)
      local data = b:recvfrom(4)
      assert.is_true(#data <= 4)
      assert.equal(("0123456789"):sub(1, #data), data)
    end)

    it("recv(n) drops the rest of a longer datagram, as POSIX does", function()
      local a <close> = udp()
      local b <close>, bport = udp()
      a:sendto("0123456789", "127.0.0.1", bport)
      a:sendto("next", "127.0.0.1", bport)
      assert.equal("012", b:recv(3))
      assert.equal("next", b:recv(100))
    end)

    it("carries an empty datagram as \"\" with its sender", function()
      local a <close>, aport = udp()
      local b <close>, bport = udp()
      assert.equal(0, a:sendto("", "127.0.0.1", bport))
      local data, from = b:recvfrom(100)
      assert.equal("", data)
      assert.equal(aport, from.port)
    end)

    it("send() and recv() work on a connected UDP socket", function()
      local a <close>, aport = udp()
      local b <close>, bport = udp()
      assert.is_true(a:connect("127.0.0.1", bport))
      assert.is_true(b:connect("127.0.0.1", aport))
      assert.equal(5, a:send("hello"))
      assert.equal("hello", b:recv(100))
      assert.same({ family = csock.AF_INET, addr = "127.0.0.1", port = bport }, a:getpeername())
    end)

    it("carries a datagram of 60000 bytes whole", function()
      local a <close> = udp()
      local b <close>, bport = udp()
      local big = string.rep("0123456789", 6000)
      assert.equal(#big, a:sendto(big, "127.0.0.1", bport))
      assert.equal(big, (b:recvfrom(65536)))
    end)

    it("recvfrom() times out with ETIMEDOUT when nothing comes", function()
      local b <close> = udp()
      b:settimeout(0.1)
      local data, msg, errno = b:recvfrom(100)
      assert.is_nil(data)
      assert.equal("timeout", msg)
      assert.equal(csock.ETIMEDOUT, errno)
    end)
  end)

  describe("over UDP on ::1", function()
    it("sends and receives with an AF_INET6 address table", function()
      if not has_ipv6() then pending("no ipv6") end
      local a <close>, aport = udp(csock.AF_INET6, "::1")
      local b <close>, bport = udp(csock.AF_INET6, "::1")
      assert.equal(3, a:sendto("six", "::1", bport))
      local data, from = b:recvfrom(100)
      assert.equal("six", data)
      assert.same({ family = csock.AF_INET6, addr = "::1", port = aport }, from)
    end)
  end)

  describe("over AF_UNIX", function()
    it("sendto(data, path) and recvfrom() give the sender's path", function()
      local pa, pb = helper.tmpname("a"), helper.tmpname("b")
      finally(function() helper.remove(pa); helper.remove(pb) end)
      local a <close> = csock.socket(csock.AF_UNIX, csock.SOCK_DGRAM)
      local b <close> = csock.socket(csock.AF_UNIX, csock.SOCK_DGRAM)
      assert.is_true(a:bind(pa))
      assert.is_true(b:bind(pb))
      b:settimeout(5)
      assert.equal(5, a:sendto("local", pb))
      local data, from = b:recvfrom(100)
      assert.equal("local", data)
      assert.same({ family = csock.AF_UNIX, path = pa }, from)
      assert.equal(5, b:sendto("reply", from.path))
      a:settimeout(5)
      assert.equal("reply", (a:recvfrom(100)))
    end)

    it("keeps message boundaries", function()
      local pb = helper.tmpname()
      finally(function() helper.remove(pb) end)
      local a <close> = csock.socket(csock.AF_UNIX, csock.SOCK_DGRAM)
      local b <close> = csock.socket(csock.AF_UNIX, csock.SOCK_DGRAM)
      assert.is_true(b:bind(pb))
      b:settimeout(5)
      a:sendto("one", pb)
      a:sendto("two", pb)
      assert.equal("one", (b:recvfrom(100)))
      assert.equal("two", (b:recvfrom(100)))
    end)

    it("reports a path nobody listens on as ENOENT", function()
      local path = helper.tmpname()
      local a <close> = csock.socket(csock.AF_UNIX, csock.SOCK_DGRAM)
      local n, msg, errno = a:sendto("lost", path)
      assert.is_nil(n)
      assert.is_string(msg)
      assert.equal(csock.ENOENT, errno)
    end)
  end)
end)
