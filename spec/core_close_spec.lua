-- Closing: close() is idempotent, and a socket's descriptor is released by
-- close(), by a `<close>` variable going out of scope and by the garbage
-- collector.  Descriptors are checked in /proc/self/fd by their link target
-- ("socket:[inode]"), since a freed number is soon reused.

local csock = require "csock"
local helper = require "helper"

local function target(s)
  local t = helper.fds()[s:fileno()]
  assert.matches("^socket:%[%d+%]$", t)
  return t
end

local function is_open(t)
  for _, v in pairs(helper.fds()) do
    if v == t then return true end
  end
  return false
end

local function full_gc()
  collectgarbage()
  collectgarbage()
end

describe("close()", function()
  it("returns true and releases the descriptor", function()
    local s = csock.socket(csock.AF_INET, csock.SOCK_STREAM)
    local t = target(s)
    assert.is_true(is_open(t))
    assert.is_true(s:close())
    assert.is_false(is_open(t))
  end)

  it("is harmless the second time", function()
    local s = csock.socket(csock.AF_INET, csock.SOCK_STREAM)
    assert.is_true(s:close())
    assert.is_true(s:close())
    assert.is_true(s:close())
  end)

  it("does not close a descriptor that was reused by someone else", function()
    local s = csock.socket(csock.AF_INET, csock.SOCK_STREAM)
    s:close()
    local other <close> = csock.socket(csock.AF_INET, csock.SOCK_STREAM)
    local t = target(other)
    s:close()
    assert.is_true(is_open(t))
    assert.is_string(other:getsockname().addr)
  end)

  it("makes the peer see the end of the stream", function()
    local a, b = csock.socketpair()
    finally(function() b:close() end)
    a:write("bye\n")
    a:close()
    assert.equal("bye", b:read("l"))
    assert.is_nil(b:read("l"))
  end)

  it("of a listening socket stops new connections", function()
    local srv = csock.socket(csock.AF_INET, csock.SOCK_STREAM)
    assert.is_true(srv:bind("127.0.0.1", 0))
    assert.is_true(srv:listen())
    local port = srv:getsockname().port
    srv:close()
    local cli <close> = csock.socket(csock.AF_INET, csock.SOCK_STREAM)
    local ok, _, errno = cli:connect("127.0.0.1", port)
    assert.is_nil(ok)
    assert.equal(csock.ECONNREFUSED, errno)
  end)

  it("leaves the unix path of a bound socket for its owner to remove", function()
    local path = helper.tmpname()
    finally(function() helper.remove(path) end)
    local s = csock.socket(csock.AF_UNIX, csock.SOCK_STREAM)
    assert.is_true(s:bind(path))
    s:close()
    assert.is_true(os.execute("test -S " .. helper.shell_quote(path)))
  end)
end)

describe("descriptors", function()
  it("are not inherited by child processes (close-on-exec)", function()
    local srv <close> = csock.socket(csock.AF_INET, csock.SOCK_STREAM)
    assert.is_true(srv:bind("127.0.0.1", 0))
    assert.is_true(srv:listen())
    local cli <close> = csock.socket(csock.AF_INET, csock.SOCK_STREAM)
    assert.is_true(cli:connect("127.0.0.1", srv:getsockname().port))
    local conn <close> = srv:accept()
    local a, b = csock.socketpair()
    finally(function() a:close(); b:close() end)
    local ours = {}
    for _, s in ipairs { srv, cli, conn, a, b } do ours[target(s)] = true end
    local child = helper.spawn("find /proc/self/fd -mindepth 1 -maxdepth 1 -printf '%l\\n'")
    local ok, _, out, err = child:wait()
    assert.is_true(ok, err)
    local inherited = {}
    for link in out:gmatch("[^\n]+") do
      if ours[link] then inherited[#inherited + 1] = link end
    end
    assert.same({}, inherited)
  end)
end)

describe("a <close> variable", function()
  it("closes its socket at the end of the block", function()
    local t, s
    do
      local sock <close> = csock.socket(csock.AF_INET, csock.SOCK_STREAM)
      s, t = sock, target(sock)
      assert.is_true(is_open(t))
    end
    assert.is_false(is_open(t))
    assert.matches("closed", tostring(s))
  end)

  it("closes its socket when the block ends in an error", function()
    local t
    local ok = pcall(function()
      local sock <close> = csock.socket(csock.AF_INET, csock.SOCK_STREAM)
      t = target(sock)
      error("boom")
    end)
    assert.is_false(ok)
    assert.is_false(is_open(t))
  end)

  it("does not mind a socket already closed by hand", function()
    assert.has_no_error(function()
      local sock <close> = csock.socket(csock.AF_INET, csock.SOCK_STREAM)
      sock:close()
    end)
  end)
end)

describe("garbage collection", function()
  it("closes a socket nobody refers to", function()
    local t
    do
      local s = csock.socket(csock.AF_INET, csock.SOCK_STREAM)
      t = target(s)
    end
    full_gc()
    assert.is_false(is_open(t))
  end)

  it("leaves the descriptor count where it was after many sockets", function()
    full_gc()
    local before = helper.fd_count()
    for _ = 1, 200 do
      csock.socket(csock.AF_INET, csock.SOCK_STREAM)
      csock.socket(csock.AF_UNIX, csock.SOCK_DGRAM)
      csock.socketpair()
    end
    full_gc()
    assert.equal(before, helper.fd_count())
  end)

  it("closes accepted sockets and both ends of a pair", function()
    full_gc()
    local before = helper.fd_count()
    do
      local srv = csock.socket(csock.AF_INET, csock.SOCK_STREAM)
      assert.is_true(srv:bind("127.0.0.1", 0))
      assert.is_true(srv:listen())
      local cli = csock.socket(csock.AF_INET, csock.SOCK_STREAM)
      assert.is_true(cli:connect("127.0.0.1", srv:getsockname().port))
      local conn = srv:accept()
      conn:write("x")
      assert.equal("x", cli:recv(1))
      local a, b = csock.socketpair()
      a:write("buffered but never read")
      assert.is_not_nil(b)
    end
    full_gc()
    assert.equal(before, helper.fd_count())
  end)

  it("of a socket closed by hand leaves alone the descriptor's next owner", function()
    do
      local s = csock.socket(csock.AF_INET, csock.SOCK_STREAM)
      s:close()
    end
    local other <close> = csock.socket(csock.AF_INET, csock.SOCK_STREAM)
    local t = target(other)
    assert.has_no_error(full_gc)
    assert.is_true(is_open(t))
  end)

  it("releases 100 dropped sockets in a fresh interpreter", function()
    local ok, out, err = helper.run_lua([[
      local csock = require "csock"
      local function count()
        local stat <close> = io.open("/proc/self/stat")
        -- leaves out the pipe it reads through (popen's child end may still be open here)
        local p <close> = io.popen("me=$(readlink /proc/$$/fd/1); find /proc/" .. stat:read("n")
          .. "/fd -mindepth 1 -maxdepth 1 -printf '%l\\n' | grep -v -F \"$me\"")
        local n = 0
        for _ in p:lines() do n = n + 1 end
        return n
      end
      collectgarbage()
      local before = count()
      local keep = {}
      for i = 1, 100 do keep[i] = csock.socket(csock.AF_INET, csock.SOCK_STREAM) end
      local during = count()
      keep = nil
      collectgarbage(); collectgarbage()
      print(during - before, count() - before)
    ]])
    assert.is_true(ok, err)
    assert.equal("100\t0\n", out)
  end)
end)
