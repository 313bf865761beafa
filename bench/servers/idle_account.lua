-- idle_account.lua N: accepts N connections and serves each as bench/servers/csock_http_raw.lua
-- does (a task blocked in read("l") until a request comes), then writes to stderr what they
-- hold: the Lua heap and RSS per connection, and, under bench/clients/lua_alloc_count, the
-- blocks per connection by kind and size.  Prints its port first.  bench/idle_account.sh runs it.
package.path = (arg[0]:match("(.*/)") or "./") .. "?.lua;" .. package.path
local csock = require "csock"
local hello = require "csock_hello"

local n = assert(tonumber(arg[1]), "usage: idle_account.lua N")
-- the counting host's globals, when it runs this script (lua_alloc_count.c)
local alloc_mark, alloc_report = rawget(_G, "alloc_mark"), rawget(_G, "alloc_report")

local function rss_kib()
  for line in io.lines("/proc/self/status") do
    local kib = line:match("^VmRSS:%s+(%d+)")
    if kib then return tonumber(kib) end
  end
end

local function serve(client)
  local c <close> = client
  hello.serve(c)
end

local function main()
  local server <close> = csock.socket(csock.AF_INET, csock.SOCK_STREAM)
  assert(server:bind("127.0.0.1", 0))
  assert(server:listen(4096))
  print(server:getsockname().port)
  io.stdout:flush()
  collectgarbage()
  collectgarbage()
  local heap0, rss0 = collectgarbage("count"), rss_kib()
  if alloc_mark then alloc_mark() end
  for _ = 1, n do csock.spawn(serve, assert(server:accept(false))) end
  csock.sleep(0.5) -- every task reaches its read
  collectgarbage()
  collectgarbage()
  local heap1, rss1 = collectgarbage("count"), rss_kib()
  io.stderr:write(("connections %d: Lua heap %.1f bytes each, RSS %.1f bytes each\n")
    :format(n, (heap1 - heap0) * 1024 / n, (rss1 - rss0) * 1024 / n))
  if alloc_report then alloc_report(n) end
  os.exit(0)
end

-- the host runs the script in its loop already; plain lua5.4 and the counting host do not
if csock.current() then main() else csock.run(main) end
