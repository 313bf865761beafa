-- redis-lua (Debian's lua-redis, written for LuaSocket) on csock.socket against a real
-- redis-server started here: plain blocking calls and 100 tasks at once.
local csock = require "csock"
local rt = require "support.rt"

-- Debian ships redis.lua for Lua 5.1-5.3 only; the same file runs on 5.4.
local REDIS_LUA = "/usr/share/lua/5.1/redis.lua"

local function have(path)
  local f = io.open(path)
  if f then f:close() end
  return f ~= nil
end

-- A free loopback port: bind port 0, read it, let it go (redis-server has no port 0).
local function free_port()
  local s = assert(csock.tcp_listen("127.0.0.1", 0))
  local port = s:getsockname().port
  s:close()
  return port
end

-- Waits (bounded) until something accepts connections on port.
local function wait_listening(port)
  local deadline = csock.now() + 10
  while csock.now() < deadline do
    local c = csock.tcp_connect("127.0.0.1", port, 1)
    if c then
      c:close()
      return true
    end
    csock.sleep(0.02)
  end
  error("redis-server did not start on port " .. port)
end

describe("redis-lua over csock.socket", function()
  local server, port, redis
  local saved

  setup(function()
    if not have(REDIS_LUA) or not os.execute("command -v redis-server >/dev/null") then return end
    saved = package.loaded.socket
    package.loaded.socket = require "csock.socket"
    redis = dofile(REDIS_LUA)
    port = free_port()
    server = rt.start({"sh", "-c", "echo listening on 127.0.0.1:" .. port .. "; exec redis-server --port " .. port ..
      " --bind 127.0.0.1 --save '' --appendonly no --loglevel warning >/dev/null"})
    wait_listening(port)
  end)

  teardown(function()
    if server then rt.stop(server) end
    package.loaded.socket = saved
  end)

  local function skip()
    if not redis then pending("lua-redis or redis-server is not installed") return true end
  end

  it("connects and runs commands in plain Lua", function()
    if skip() then return end
    local c = redis.connect("127.0.0.1", port)
    assert.is_true(c:ping())
    assert.is_true(c:set("plain", "value"))
    assert.equal("value", c:get("plain"))
    assert.equal(1, c:incr("plain:n"))
    assert.equal(2, c:incr("plain:n"))
    c:quit()
  end)

  it("100 tasks do SET/GET/INCR at once, every value checked", function()
    if skip() then return end
    local counter = "tasks:counter:" .. os.time()
    local results = rt.loop(function(go)
      local tasks, out = {}, {}
      for i = 1, 100 do
        tasks[i] = go(function()
          local c = redis.connect({host = "127.0.0.1", port = port, timeout = 5})
          for j = 1, 10 do
            local key = ("task:%d:%d"):format(i, j)
            local value = ("v%d-%d"):format(i, j)
            assert(c:set(key, value))
            assert.equal(value, c:get(key))
            c:incr(counter)
          end
          out[i] = c:incr("task:" .. i .. ":own")
          c:quit()
        end)
      end
      for _, t in ipairs(tasks) do assert(t:join()) end
      return out
    end, 30)
    for i = 1, 100 do assert.equal(1, results[i]) end
    local c = redis.connect("127.0.0.1", port)
    assert.equal("1000", c:get(counter))
    assert.equal("v57-9", c:get("task:57:9"))
    c:quit()
  end)
end)
