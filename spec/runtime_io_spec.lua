-- Sockets inside the loop: blocking calls that suspend only their task (SPEC "Runtime").
local csock = require "csock"
local rt = require "support.rt"

local listener = rt.listener

-- Echoes every byte of one connection.
local function echo(conn)
  local c <close> = conn
  while true do
    local data = c:recv(4096)
    if not data or data == "" then return end
    assert(c:write(data))
  end
end

-- Accepts connections forever, a task per connection.
local function echo_server(go, server)
  while true do
    local c = assert(server:accept())
    go(echo, c)
  end
end

local function connect(port, family, host)
  local c = csock.socket(family or csock.AF_INET, csock.SOCK_STREAM)
  c:settimeout(10)
  assert(c:connect(host or "127.0.0.1", port))
  return c
end

describe("server and client tasks in one loop", function()
  it("echo a line over 127.0.0.1", function()
    local server <close>, port = listener()
    local got = rt.loop(function(go)
      go(echo_server, go, server)
      local c <close> = connect(port)
      assert(c:write("hello loop\n"))
      return c:read("l")
    end)
    assert.equal("hello loop", got)
  end)

  it("echo a line over ::1", function()
    if not rt.has_ipv6() then return pending("no ipv6") end
    local server <close> = csock.socket(csock.AF_INET6, csock.SOCK_STREAM)
    assert(server:bind("::1", 0))
    assert(server:listen())
    local port = server:getsockname().port
    local got = rt.loop(function(go)
      go(echo_server, go, server)
      local c <close> = connect(port, csock.AF_INET6, "::1")
      assert(c:write("hello six\n"))
      return c:read("l"), c:getpeername()
    end)
    assert.equal("hello six", got)
  end)

  it("echo a line over a unix path", function()
    local path = rt.tmppath(".sock")
    rt.defer(finally, function() os.remove(path) end)
    local server <close> = csock.socket(csock.AF_UNIX, csock.SOCK_STREAM)
    assert(server:bind(path))
    assert(server:listen())
    local got = rt.loop(function(go)
      go(echo_server, go, server)
      local c <close> = csock.socket(csock.AF_UNIX, csock.SOCK_STREAM)
      c:settimeout(10)
      assert(c:connect(path))
      assert(c:write("hello unix\n"))
      return c:read("l")
    end)
    assert.equal("hello unix", got)
  end)

  it("move a megabyte both ways at once without a deadlock", function()
    -- Both sides write more than the socket buffers hold before reading: only works if a
    -- blocked write suspends just its task.
    local server <close>, port = listener()
    local blob = ("0123456789abcdef"):rep(65536)
    local got = rt.loop(function(go)
      go(echo_server, go, server)
      local c <close> = connect(port)
      local w = go(function()
        assert(c:write(blob))
        assert(c:shutdown("w"))
      end)
      local back = c:read("a")
      assert(w:join())
      return back
    end, 20)
    assert.equal(#blob, #got)
    assert.is_true(got == blob)
  end)

  it("echo 4 MiB read in 64 KiB counts back to a python3 client, in order", function()
    local helper = require "helper"
    local server <close>, port = listener()
    local client = helper.spawn_python([[
import socket, sys, threading
blob = bytes((i * 7 + i // 251) % 256 for i in range(4 << 20))
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
def send():
    s.sendall(blob)
    s.shutdown(socket.SHUT_WR)
threading.Thread(target=send).start()
got = bytearray()
while True:
    piece = s.recv(1 << 16)
    if not piece: break
    got += piece
print(len(got), got == blob)
]], tostring(port))
    local reads = rt.loop(function()
      local c <close> = assert(server:accept())
      c:settimeout(20)
      local n = 0
      while true do
        local data = c:read(65536)
        if not data then break end
        n = n + 1
        assert(#data == 65536 or not c:read(0), "a short count before the end of stream")
        assert(c:write(data))
      end
      return n
    end, 30)
    local ok, _, out, err = client:wait()
    assert.is_true(ok, err)
    assert.equal("4194304 True\n", out)
    assert.equal(64, reads)
  end)

  it("exchange a UDP datagram between two tasks", function()
    local a <close> = csock.socket(csock.AF_INET, csock.SOCK_DGRAM)
    local b <close> = csock.socket(csock.AF_INET, csock.SOCK_DGRAM)
    assert(a:bind("127.0.0.1", 0))
    assert(b:bind("127.0.0.1", 0))
    local bport = b:getsockname().port
    local data, from = rt.loop(function(go)
      local r = go(function() return b:recvfrom(100) end)
      csock.sleep(0.01)
      assert(a:sendto("datagram", "127.0.0.1", bport))
      return select(2, assert(r:join()))
    end)
    assert.equal("datagram", data)
    assert.equal(a:getsockname().port, from.port)
  end)
end)

describe("1,000 concurrent clients", function()
  it("all get their own bytes back from one echo server task", function()
    if rt.fd_limit() < 2100 then
      return pending("ulimit -n is " .. rt.fd_limit() .. ", below the 2,100 this needs")
    end
    local N = 1000
    local server <close>, port = listener(2048)
    local good, connected_at_once = rt.loop(function(go)
      go(echo_server, go, server)
      local open, peak, good = 0, 0, 0
      local clients = {}
      for i = 1, N do
        clients[i] = go(function()
          local c <close> = connect(port)
          open = open + 1
          peak = math.max(peak, open)
          local msg = ("client %04d says %s\n"):format(i, ("x"):rep(i % 97))
          csock.sleep(0.05) -- hold the connection so they overlap
          assert(c:write(msg))
          local back = assert(c:read("L"))
          assert(back == msg, "wrong bytes for client " .. i)
          open = open - 1
          good = good + 1
        end)
      end
      for i = 1, N do
        local ok, err = clients[i]:join()
        if not ok then error("client " .. i .. ": " .. tostring(err), 0) end
      end
      return good, peak
    end, 60)
    assert.equal(N, good)
    assert.is_true(connected_at_once > N / 2, "only " .. connected_at_once .. " at once")
  end)
end)

describe("timeouts inside the loop", function()
  it("recv on a silent peer returns nil, 'timeout', ETIMEDOUT after about 0.2 s", function()
    local server <close>, port = listener()
    local r = table.pack(rt.loop(function(go)
      go(function()
        local c = server:accept() -- accept, and say nothing
        csock.sleep(30)
        c:close()
      end)
      local c <close> = connect(port)
      c:settimeout(0.2)
      local t0 = csock.now()
      local data, msg, code = c:recv(10)
      return csock.now() - t0, data, msg, code
    end))
    local dt = r[1]
    assert.is_true(dt >= 0.19 and dt < 0.2 + 1, "waited " .. dt)
    assert.same({nil, "timeout", csock.ETIMEDOUT}, {r[2], r[3], r[4]})
  end)

  it("suspends only the waiting task: others run meanwhile", function()
    local a, b = csock.socketpair()
    local ticks = rt.loop(function(go)
      local ticks = 0
      go(function()
        while true do
          csock.sleep(0.01)
          ticks = ticks + 1
        end
      end)
      a:settimeout(0.2)
      assert.is_nil((a:recv(1)))
      return ticks
    end)
    a:close()
    b:close()
    assert.is_true(ticks >= 5, "only " .. ticks .. " ticks during the timeout")
  end)

  it("read('l') that times out mid-line keeps the bytes for the next call", function()
    local a, b = csock.socketpair()
    local r = table.pack(rt.loop(function(go)
      a:settimeout(0.1)
      assert(b:write("par"))
      local first = table.pack(a:read("l"))
      go(function()
        csock.sleep(0.02)
        b:write("tial\nrest\n")
      end)
      a:settimeout(2)
      return first[1], first[3], a:read("l"), a:read("l")
    end))
    a:close()
    b:close()
    assert.same({nil, csock.ETIMEDOUT, "partial", "rest", n = 4}, r)
  end)

  it("accept times out when nobody connects", function()
    local server <close> = listener()
    local r = table.pack(rt.loop(function()
      server:settimeout(0.1)
      return server:accept()
    end))
    assert.is_nil(r[1])
    assert.equal(csock.ETIMEDOUT, r[3])
  end)

  it("settimeout(0) returns at once when no data is there", function()
    local a, b = csock.socketpair()
    local dt, code = rt.loop(function()
      a:settimeout(0)
      local t0 = csock.now()
      local _, _, code = a:recv(1)
      return csock.now() - t0, code
    end)
    a:close()
    b:close()
    assert.is_true(dt < 0.5)
    assert.equal(csock.ETIMEDOUT, code)
  end)

  it("many tasks time out together, each on its own deadline", function()
    local results = rt.loop(function()
      local ts, res = {}, {}
      for i = 1, 50 do
        ts[i] = csock.spawn(function()
          local a, b = csock.socketpair()
          a:settimeout(0.05 + (i % 5) * 0.02)
          local t0 = csock.now()
          local _, _, code = a:recv(1)
          res[i] = {code, csock.now() - t0, 0.05 + (i % 5) * 0.02}
          a:close()
          b:close()
        end)
      end
      for _, t in ipairs(ts) do t:join() end
      return res
    end)
    assert.equal(50, #results)
    for i, r in ipairs(results) do
      assert.equal(csock.ETIMEDOUT, r[1])
      assert.is_true(r[2] >= r[3] - 0.001 and r[2] < r[3] + 0.05,
        ("task %d waited %.3f for %.2f"):format(i, r[2], r[3]))
    end
  end)
end)

describe("closing a socket under a blocked task", function()
  it("wakes a task blocked in recv with nil, message, EBADF", function()
    local a, b = csock.socketpair()
    local r = table.pack(rt.loop(function(go)
      local t = go(function() return a:recv(10) end)
      csock.sleep(0.02)
      assert.equal("waiting", t:status())
      a:close()
      return t:join()
    end))
    b:close()
    assert.is_true(r[1])
    assert.is_nil(r[2])
    assert.is_string(r[3])
    assert.equal(csock.EBADF, r[4])
  end)

  it("wakes a task blocked in read('l')", function()
    local a, b = csock.socketpair()
    local r = table.pack(rt.loop(function(go)
      local t = go(function() return a:read("l") end)
      csock.sleep(0.02)
      b:write("half a li")
      csock.sleep(0.02)
      a:close()
      return t:join()
    end))
    b:close()
    assert.is_true(r[1])
    assert.is_nil(r[2])
  end)

  it("wakes a task blocked in accept", function()
    local server = listener()
    local r = table.pack(rt.loop(function(go)
      local t = go(function() return server:accept() end)
      csock.sleep(0.02)
      server:close()
      return t:join()
    end))
    assert.is_true(r[1])
    assert.is_nil(r[2])
    assert.equal(csock.EBADF, r[4])
  end)

  it("wakes a task blocked in write, which reports what it sent", function()
    local a, b = csock.socketpair()
    local r = table.pack(rt.loop(function(go)
      local t = go(function() return a:write(("z"):rep(8 * 1024 * 1024)) end)
      csock.sleep(0.05)
      assert.equal("waiting", t:status())
      a:close()
      return t:join()
    end))
    b:close()
    assert.is_true(r[1])
    assert.is_nil(r[2])
    assert.equal(csock.EBADF, r[4])
    assert.is_true(math.type(r[5]) == "integer" and r[5] > 0 and r[5] < 8 * 1024 * 1024)
  end)

  it("wakes both a reader and a writer of the same socket", function()
    local a, b = csock.socketpair()
    local r = table.pack(rt.loop(function(go)
      local reader = go(function() return a:recv(1) end)
      local writer = go(function() return a:write(("w"):rep(8 * 1024 * 1024)) end)
      csock.sleep(0.05)
      a:close()
      local _, rd = reader:join()
      local _, wr = writer:join()
      return rd, wr
    end))
    b:close()
    assert.same({nil, nil, n = 2}, r)
  end)
end)

describe("several tasks blocked on one socket", function()
  it("are all woken by its close, each with nil, 'socket closed', EBADF", function()
    local a, b = csock.socketpair()
    local server = listener()
    local r = rt.loop(function(go)
      local ts = {}
      for _ = 1, 3 do ts[#ts + 1] = go(function() return a:recv(10) end) end
      for _ = 1, 3 do ts[#ts + 1] = go(function() return server:accept() end) end
      csock.sleep(0.02)
      for _, t in ipairs(ts) do assert.equal("waiting", t:status()) end
      a:close()
      server:close()
      local out = {}
      for i, t in ipairs(ts) do out[i] = table.pack(t:join()) end
      return out
    end)
    b:close()
    for i = 1, 6 do
      assert.same({true, nil, "socket closed", csock.EBADF, n = 4}, r[i])
    end
  end)

  it("share a listener's connections: each accept gets its own", function()
    local server <close>, port = listener()
    local got = rt.loop(function(go)
      local ts = {}
      for i = 1, 3 do
        ts[i] = go(function()
          local c <close> = assert(server:accept())
          return c:read("l")
        end)
      end
      csock.sleep(0.01)
      for i = 1, 3 do
        local c <close> = connect(port)
        assert(c:write("client " .. i .. "\n"))
      end
      local lines = {}
      for i = 1, 3 do
        local ok, line = ts[i]:join()
        assert.is_true(ok)
        lines[#lines + 1] = line
      end
      table.sort(lines)
      return lines
    end)
    assert.same({"client 1", "client 2", "client 3"}, got)
  end)

  it("share datagrams: recvfrom in two tasks, one datagram each", function()
    local u <close> = csock.socket(csock.AF_INET, csock.SOCK_DGRAM)
    assert.is_true(u:bind("127.0.0.1", 0))
    u:settimeout(5)
    local got = rt.loop(function(go)
      local t1 = go(function() return u:recvfrom(100) end)
      local t2 = go(function() return u:recvfrom(100) end)
      csock.sleep(0.01)
      local v <close> = csock.socket(csock.AF_INET, csock.SOCK_DGRAM)
      v:sendto("one", "127.0.0.1", u:getsockname().port)
      v:sendto("two", "127.0.0.1", u:getsockname().port)
      local _, d1 = t1:join()
      local _, d2 = t2:join()
      return {d1, d2}
    end)
    table.sort(got)
    assert.same({"one", "two"}, got)
  end)

  it("keep read() to one task at a time: a second read raises busy", function()
    local a, b = csock.socketpair()
    local r = rt.loop(function(go)
      local t = go(function() return a:read("l") end)
      csock.sleep(0.01)
      local ok, err = pcall(a.read, a, "l")
      b:write("line\n")
      local _, line = t:join()
      return {ok, err, line}
    end)
    a:close()
    b:close()
    assert.same({false, "socket is busy: another task is reading from it", "line"}, r)
  end)
end)

describe("waiting", function()
  it("costs no CPU while a task waits on a socket or a timer", function()
    local a, b = csock.socketpair()
    local cpu = rt.loop(function(go)
      go(function() csock.sleep(0.3) end)
      local c0 = os.clock()
      a:settimeout(0.3)
      a:recv(1)
      return os.clock() - c0
    end)
    a:close()
    b:close()
    assert.is_true(cpu < 0.1, ("%.3f s of CPU for 0.3 s of waiting"):format(cpu))
  end)

  it("a socket call in a plain coroutine outside the loop blocks, honouring the timeout", function()
    local a, b = csock.socketpair()
    a:settimeout(0.05)
    local co = coroutine.wrap(function() return "inner", a:recv(10) end)
    local r = table.pack(co())
    a:close()
    b:close()
    assert.same({"inner", nil, "timeout", csock.ETIMEDOUT, n = 4}, r)
  end)

  it("the peer of a cancelled task's <close> socket sees the end of stream", function()
    local a, b = csock.socketpair()
    local got = rt.loop(function(go)
      local t = go(function()
        local s <close> = a
        s:recv(1) -- waits until cancelled
      end)
      csock.sleep(0.01)
      t:cancel()
      b:settimeout(2)
      return b:recv(10)
    end)
    b:close()
    assert.equal("", got)
    assert.matches("closed", tostring(a))
  end)
end)

describe("sockets across loops and descriptor reuse", function()
  it("a socket that waited in one run waits again in the next", function()
    local a, b = csock.socketpair()
    for round = 1, 3 do
      local got = rt.loop(function(go)
        go(function()
          csock.sleep(0.01)
          b:write("round ", round, "\n")
        end)
        a:settimeout(2)
        return a:read("l")
      end)
      assert.equal("round " .. round, got)
    end
    a:close()
    b:close()
  end)

  it("a new socket on the descriptor of a closed one gets its own events", function()
    local r = table.pack(rt.loop(function(go)
      local a, b = csock.socketpair()
      local old_fd = a:fileno()
      local blocked = go(function() return a:recv(1) end)
      csock.sleep(0.01)
      a:close()
      b:close()
      local c, d = csock.socketpair() -- most likely on the descriptors just freed
      local reused = c:fileno() == old_fd or d:fileno() == old_fd
      go(function()
        csock.sleep(0.01)
        d:write("fresh\n")
        c:write("fresh\n")
      end)
      c:settimeout(2)
      d:settimeout(2)
      local first = c:read("l")
      local second = d:read("l")
      local _, data, _, code = blocked:join()
      c:close()
      d:close()
      return first, second, data, code, reused
    end))
    assert.same({"fresh", "fresh", nil, csock.EBADF}, {r[1], r[2], r[3], r[4]})
  end)
end)

describe("a failing task in the host", function()
  it("prints 'csock: task <id>' and its traceback to stderr, and the others go on", function()
    local script = rt.script([[
      local csock = require "csock"
      local function deep() error("task exploded") end
      local bad = csock.spawn(function()
        csock.sleep(0.01)
        deep()
      end)
      local good = csock.spawn(function()
        csock.sleep(0.1)
        print("survivor done")
      end)
      csock.sleep(0.05)
      print("main sees " .. bad:status())
    ]])
    rt.defer(finally, function() os.remove(script) end)
    local r = rt.exec({rt.BIN, script})
    assert.equal(0, r.status, r.err)
    assert.equal("main sees failed\nsurvivor done\n", r.out)
    assert.matches("csock: task %S+", r.err)
    assert.matches("task exploded", r.err)
    assert.matches("stack traceback", r.err)
    assert.matches("'deep'", r.err)
  end)

  it("prints a traceback per failing task under plain lua5.4 too", function()
    local r = rt.exec({"lua5.4", "-e", [[
      local csock = require "csock"
      csock.run(function()
        for i = 1, 3 do csock.spawn(function() error("failure " .. i) end) end
        csock.sleep(0.01)
        print("run went on")
      end)
      print("run returned")
    ]]})
    assert.equal(0, r.status, r.err)
    assert.equal("run went on\nrun returned\n", r.out)
    local _, n = r.err:gsub("csock: task", "")
    assert.equal(3, n)
    for i = 1, 3 do assert.matches("failure " .. i, r.err) end
  end)
end)

describe("the same calls outside the loop", function()
  it("block the thread and honour the timeout", function()
    local a, b = csock.socketpair()
    a:settimeout(0.1)
    local t0 = csock.now()
    local data, msg, code = a:recv(1)
    local dt = csock.now() - t0
    a:close()
    b:close()
    assert.same({nil, "timeout", csock.ETIMEDOUT}, {data, msg, code})
    assert.is_true(dt >= 0.09 and dt < 1.1, "waited " .. dt)
  end)

  it("work on sockets made inside a loop that has ended", function()
    local a, b = csock.run(function()
      local a, b = csock.socketpair()
      assert(a:write("made in the loop\n"))
      return a, b
    end)
    assert.equal("made in the loop", b:read("l"))
    assert(b:write("and back\n"))
    assert.equal("and back", a:read("l"))
    a:close()
    b:close()
  end)
end)
