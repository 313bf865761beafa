-- stress/leak_blocking.lua [cycles] - run by plain lua5.4: the same cycles in
-- blocking mode, one thread (the connection waits in the backlog until
-- accepted); descriptors and RSS must stay flat.
package.path = "./stress/?.lua;./lua/?.lua;./lua/?/init.lua;" .. package.path
package.cpath = "./?.so;" .. package.cpath
local csock = require "csock"
local S = require "lib"

local N = math.tointeger(tonumber(arg[1])) or 100000
local WARM = 2000
local MSG = "hello, csock\n"

local srv = assert(csock.socket(csock.AF_INET, csock.SOCK_STREAM))
assert(srv:setsockopt(csock.SOL_SOCKET, csock.SO_REUSEADDR, true))
assert(srv:bind("127.0.0.1", 0))
assert(srv:listen(128))
srv:settimeout(5)
local port = srv:getsockname().port
local errors = 0

local function cycles(n)
  for _ = 1, n do
    local c = assert(csock.socket(csock.AF_INET, csock.SOCK_STREAM))
    c:settimeout(5)
    local ok, err = c:connect("127.0.0.1", port)
    if ok then
      local a = assert(srv:accept())
      a:settimeout(5)
      c:write(MSG)
      if a:read("L") ~= MSG then errors = errors + 1 end
      a:write("ok\n")
      if c:read("l") ~= "ok" then errors = errors + 1 end
      a:close()
    else
      errors = errors + 1
      S.log("connect: %s", err)
    end
    c:close()
  end
end

local m = S.measure(cycles, WARM, N, csock.now)
srv:close()

S.leak_row("leak (blocking)", "connect/accept/send/close, lua5.4 blocking", N, m, errors)
S.exit()
