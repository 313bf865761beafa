-- accept and recvfrom remember the last IPv4 peer's text (addr.c, push_ipv4): the address
-- tables must still name each peer as it is, whatever came before it.
local csock = require "csock"
local rt = require "support.rt"

-- A client socket bound to host (any port) before it connects or sends.
local function bound(type, host)
  local c = csock.socket(csock.AF_INET, type)
  assert(c:bind(host, 0))
  return c
end

describe("the peer address of accept", function()
  it("names each of several peers, repeated and alternating", function()
    local hosts = {"127.0.0.1", "127.0.0.2", "127.0.0.2", "127.0.0.1", "127.0.0.3"}
    local got, want = {}, {}
    csock.run(function()
      local srv <close>, port = rt.listener(8)
      for i, host in ipairs(hosts) do
        local c <close> = bound(csock.SOCK_STREAM, host)
        assert(c:connect("127.0.0.1", port))
        local a <close>, addr = srv:accept()
        assert(a, addr)
        got[i] = addr
        want[i] = {family = csock.AF_INET, addr = host, port = c:getsockname().port}
      end
    end)
    assert.same(want, got)
  end)
end)

describe("the peer address of an accept that waited", function()
  it("names each peer that connected while the task waited", function()
    local hosts = {"127.0.0.3", "127.0.0.3", "127.0.0.1"}
    local got, want = {}, {}
    csock.run(function()
      local srv <close>, port = rt.listener(8)
      for i, host in ipairs(hosts) do
        local c = bound(csock.SOCK_STREAM, host)
        want[i] = {family = csock.AF_INET, addr = host, port = c:getsockname().port}
        csock.spawn(function()
          csock.sleep(0.01) -- after accept has started waiting
          assert(c:connect("127.0.0.1", port))
          csock.sleep(0.05)
          c:close()
        end)
        local a <close>, addr = srv:accept()
        assert(a, addr)
        got[i] = addr
      end
    end)
    assert.same(want, got)
  end)
end)

describe("the peer address of recvfrom", function()
  it("names each of several peers, repeated and alternating", function()
    local hosts = {"127.0.0.2", "127.0.0.1", "127.0.0.1", "127.0.0.4"}
    local got, want = {}, {}
    csock.run(function()
      local srv <close> = csock.socket(csock.AF_INET, csock.SOCK_DGRAM)
      assert(srv:bind("127.0.0.1", 0))
      local port = srv:getsockname().port
      for i, host in ipairs(hosts) do
        local c <close> = bound(csock.SOCK_DGRAM, host)
        assert(c:sendto("x" .. i, "127.0.0.1", port))
        local data, addr = srv:recvfrom(16)
        got[i] = {data, addr}
        want[i] = {"x" .. i, {family = csock.AF_INET, addr = host, port = c:getsockname().port}}
      end
    end)
    assert.same(want, got)
  end)
end)

describe("accept(false)", function()
  it("returns the client alone, which works and still knows its peer", function()
    local results, peer, want, line
    csock.run(function()
      local srv <close>, port = rt.listener(8)
      local client = csock.spawn(function()
        local c <close> = bound(csock.SOCK_STREAM, "127.0.0.2")
        assert(c:connect("127.0.0.1", port))
        want = {family = csock.AF_INET, addr = "127.0.0.2", port = c:getsockname().port}
        assert(c:write("hello\n"))
        assert(c:read("a"))
      end)
      results = table.pack(srv:accept(false))
      local a <close> = assert(results[1])
      peer = a:getpeername()
      line = a:read("l")
      a:close()
      assert(client:join())
    end)
    assert.equal(1, results.n)
    assert.equal("hello", line)
    assert.same(want, peer)
  end)

  it("accept(true) and accept(nil) return the address as accept() does", function()
    local got = {}
    csock.run(function()
      local srv <close>, port = rt.listener(8)
      local flags = {true, nil, false}
      for i = 1, 3 do
        local flag = flags[i]
        local c <close> = csock.socket(csock.AF_INET, csock.SOCK_STREAM)
        assert(c:connect("127.0.0.1", port))
        local r = table.pack(srv:accept(flag))
        r[1]:close()
        got[i] = {r.n, r[2] and r[2].port == c:getsockname().port}
      end
    end)
    assert.same({{2, true}, {2, true}, {1, nil}}, got)
  end)

  it("raises on an argument that is not a boolean", function()
    local srv <close> = rt.listener(8)
    assert.has_error(function() srv:accept("no") end,
      "bad argument #2 to 'accept' (boolean expected, got string)")
  end)
end)
