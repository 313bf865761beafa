-- stress/leak_loop.lua [cycles] - run by bin/csock: connect/accept/send/close
-- cycles inside the loop; the descriptor count and RSS must stay flat.
package.path = "./stress/?.lua;" .. package.path
local csock = require "csock"
local S = require "lib"

local N = math.tointeger(tonumber(arg[1])) or 100000
local WARM = 2000
local MSG = "hello, csock\n"

local srv = assert(csock.socket(csock.AF_INET, csock.SOCK_STREAM))
assert(srv:setsockopt(csock.SOL_SOCKET, csock.SO_REUSEADDR, true))
assert(srv:bind("127.0.0.1", 0))
assert(srv:listen(128))
local port = srv:getsockname().port

-- the server task: accept, read the line, answer, close
local served, errors = 0, 0
local server = csock.spawn(function()
  while true do
    local c, err = srv:accept()
    if not c then
      if err == "socket closed" then return end
      errors = errors + 1
    else
      local line = c:read("L")
      if line == MSG then c:write("ok\n") else errors = errors + 1 end
      c:close()
      served = served + 1
    end
  end
end)

local function cycles(n)
  for _ = 1, n do
    local c = assert(csock.socket(csock.AF_INET, csock.SOCK_STREAM))
    local ok, err = c:connect("127.0.0.1", port)
    if ok then
      c:write(MSG)
      if c:read("l") ~= "ok" then errors = errors + 1 end
    else
      errors = errors + 1
      S.log("connect: %s", err)
    end
    c:close()
  end
end

local function settle()
  collectgarbage("collect")
  collectgarbage("collect")
end

cycles(WARM)
settle()
local fd0, rss0, t0 = S.fds(), S.rss(), csock.now()
cycles(N)
settle()
local fd1, rss1, t1 = S.fds(), S.rss(), csock.now()

srv:close()
server:join()

-- flat: no descriptor more, RSS within 2 MiB (allocator noise)
local ok = fd1 <= fd0 and rss1 - rss0 <= 2048 and errors == 0 and served == N + WARM
S.row("leak (loop)", "connect/accept/send/close in csock.run", N, ok,
  string.format("fds %d->%d, RSS %d->%d KiB, errors %d, %.0f cycles/s", fd0, fd1,
    rss0, rss1, errors, N / (t1 - t0)))
S.exit()
