--[[
bench/clients/redis_get.lua - one client row of the redis benchmark: N GETs of one key
against a redis-server on 127.0.0.1:PORT with redis-lua, spread over C connections.

  lua5.4 bench/clients/redis_get.lua VARIANT PORT N C

VARIANT:
  luasocket   plain LuaSocket, one connection (C is ignored)
  copas       LuaSocket + copas, C connections (copas coroutines over select(2))
  csock       csock.socket under redis-lua, C tasks in csock's loop
  native      csock's own sockets, C tasks, the GET written and read by hand

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

function runs.csock()
  local csock = require "csock"
  package.loaded.socket = require "csock.socket"
  local redis = require "redis"
  csock.run(function()
    local tasks = {}
    for i = 1, c do
      tasks[i] = csock.spawn(function()
        local r = redis.connect("127.0.0.1", port)
        for _ = 1, share(i, c) do assert(r:get(KEY) == VALUE) end
        r:quit()
      end)
    end
    for _, t in ipairs(tasks) do assert(t:join()) end
  end)
  return c
end

function runs.native()
  local csock = require "csock"
  local get = ("*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n"):format(#KEY, KEY)
  csock.run(function()
    local tasks = {}
    for i = 1, c do
      tasks[i] = csock.spawn(function()
        local s = assert(csock.tcp_connect("127.0.0.1", port))
        for _ = 1, share(i, c) do
          s:write(get)
          local len = tonumber(s:read("l"):sub(2, -2))
          assert(s:read(len + 2):sub(1, len) == VALUE)
        end
        s:close()
      end)
    end
    for _, t in ipairs(tasks) do assert(t:join()) end
  end)
  return c
end

local run = assert(runs[variant], "unknown variant " .. variant)
do -- the key, set once with a plain connection of csock's
  local csock = require "csock"
  local s = assert(csock.tcp_connect("127.0.0.1", port))
  s:write(("*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n"):format(#KEY, KEY, #VALUE, VALUE))
  assert(s:read("l") == "+OK\r")
  s:close()
end
local cpu0 = os.clock()
local wall0 = require("csock").now()
local conns = run()
local wall = require("csock").now() - wall0
local cpu = os.clock() - cpu0
print(("%-10s %8d %5d %8.3f %8.3f %10.0f"):format(variant, n, conns, wall, cpu, n / cpu))
