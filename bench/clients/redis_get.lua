--[[
bench/clients/redis_get.lua - one client row of the redis benchmark: N GETs of one key
against a redis-server on 127.0.0.1:PORT with redis-lua, spread over C connections.

  lua5.4 bench/clients/redis_get.lua VARIANT PORT N C      (or: bin/csock bench/clients/...)

VARIANT (every one but resp-by-hand is redis-lua doing the GETs, as issue 19 asks):
  luasocket     (a) plain LuaSocket, one connection (C is ignored)
  copas         (b) LuaSocket + copas, C connections (copas coroutines over select(2))
  csock         (c) csock.socket (LuaSocket's API) under redis-lua, C tasks in csock's loop
  native        (d) csock's native sockets under redis-lua, C tasks: redis-lua is given
                a four-method adapter (send, receive, shutdown, close) that calls the
                socket's write and read
  resp-by-hand  reference only, no redis-lua: csock's native sockets, C tasks, the GET
                written and its reply read by hand

Under the csock host (bin/csock) the script is already a task of a loop: the csock rows
spawn their tasks in it (and pay its allocator and collector pacing) and print their
variant with "-host" appended.

Prints one line: variant, requests, connections, wall seconds, client CPU seconds
(os.clock: user + system of this process), requests per client CPU-second.
]]
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
  .. ";/usr/share/lua/5.2/?.lua;/usr/share/lua/5.1/?.lua"
package.cpath = "./?.so;" .. package.cpath

local variant, port, n, c = arg[1], tonumber(arg[2]), tonumber(arg[3] or 100000), tonumber(arg[4] or 50)
assert(variant and port, "usage: redis_get.lua VARIANT PORT [N [C]]")

local KEY, VALUE = "bench:key", "0123456789abcdef"

-- Splits n requests over c workers: worker i does share(i) of them.
local function share(i, workers)
  local base = n // workers
  return base + (i <= n % workers and 1 or 0)
end

local runs = {}

function runs.luasocket()
  local redis = require "redis"
  local r = redis.connect("127.0.0.1", port)
  r:set(KEY, VALUE)
  for _ = 1, n do assert(r:get(KEY) == VALUE) end
  r:quit()
  return 1
end

function runs.copas()
  local socket = require "socket"
  local copas = require "copas"
  local redis = require "redis"
  local left = c
  for i = 1, c do
    copas.addthread(function()
      local raw = socket.tcp()
      assert(copas.connect(raw, "127.0.0.1", port))
      local s = copas.wrap(raw)
      local r = redis.connect({socket = s})
      for _ = 1, share(i, c) do assert(r:get(KEY) == VALUE) end
      raw:close()
      left = left - 1
    end)
  end
  -- copas 1.2's loop never returns: step until every thread is done
  while left > 0 do copas.step() end
  return c
end

-- Runs fn(i) in c tasks and waits for them: in a loop of its own under lua5.4, in the
-- host's loop (this script is its first task) under bin/csock.
local csock = require "csock"
local hosted = csock.current() ~= nil
local function in_tasks(fn)
  local function all()
    local tasks = {}
    for i = 1, c do tasks[i] = csock.spawn(fn, i) end
    for _, t in ipairs(tasks) do assert(t:join()) end
  end
  if hosted then all() else csock.run(all) end
  return c
end

function runs.csock()
  package.loaded.socket = require "csock.socket"
  local redis = require "redis"
  return in_tasks(function(i)
    local r = redis.connect("127.0.0.1", port)
    for _ = 1, share(i, c) do assert(r:get(KEY) == VALUE) end
    r:quit()
  end)
end

-- redis-lua over csock's native socket s: what redis-lua calls on the socket it is given
-- -- send(buf), receive("*l" or a count), shutdown() from quit -- plus close, each mapped
-- straight onto s's write, read, shutdown and close. RESP's lines end in CRLF: a line
-- loses its CR, as LuaSocket's "*l" drops it; a short count is "closed", as in LuaSocket.
local function adapter(s)
  local sub = string.sub
  return {
    send = function(_, data)
      local ok, err = s:write(data)
      if ok then return #data end
      return nil, err
    end,
    receive = function(_, pattern)
      if pattern == "*l" then
        local line, err = s:read("l")
        if line == nil then return nil, err or "closed" end
        return sub(line, 1, -2)
      end
      local data, err = s:read(pattern)
      if data == nil or #data < pattern then return nil, err or "closed" end
      return data
    end,
    shutdown = function() return s:shutdown() end,
    close = function() return s:close() end,
  }
end

function runs.native()
  local redis = require "redis"
  return in_tasks(function(i)
    local s = assert(csock.tcp_connect("127.0.0.1", port))
    local r = redis.connect({socket = adapter(s)})
    for _ = 1, share(i, c) do assert(r:get(KEY) == VALUE) end
    r:quit()
    s:close()
  end)
end

runs["resp-by-hand"] = function()
  local get = ("*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n"):format(#KEY, KEY)
  return in_tasks(function(i)
    local s = assert(csock.tcp_connect("127.0.0.1", port))
    for _ = 1, share(i, c) do
      s:write(get)
      local len = tonumber(s:read("l"):sub(2, -2))
      assert(s:read(len + 2):sub(1, len) == VALUE)
    end
    s:close()
  end)
end

local run = assert(runs[variant], "unknown variant " .. variant)
do -- the key, set once with a plain connection of csock's
  local s = assert(csock.tcp_connect("127.0.0.1", port))
  s:write(("*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n"):format(#KEY, KEY, #VALUE, VALUE))
  assert(s:read("l") == "+OK\r")
  s:close()
end
local cpu0 = os.clock()
local wall0 = csock.now()
local conns = run()
local wall = csock.now() - wall0
local cpu = os.clock() - cpu0
local label = variant .. ((hosted and variant ~= "luasocket" and variant ~= "copas") and "-host" or "")
print(("%-13s %8d %5d %8.3f %8.3f %10.0f"):format(label, n, conns, wall, cpu, n / cpu))
