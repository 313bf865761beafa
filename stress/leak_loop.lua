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

local m = S.measure(cycles, WARM, N, csock.now)

srv:close()
server:join()

S.leak_row("leak (loop)", "connect/accept/send/close in csock.run", N, m, errors, served == N + WARM)
S.exit()
