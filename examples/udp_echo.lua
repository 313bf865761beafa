-- udp_echo.lua: send every datagram back to its sender.
--
--   csock examples/udp_echo.lua [port [host]]         (default 7002 127.0.0.1)
--
-- One task is enough: each recvfrom is a whole datagram, and sendto on UDP does not wait for the
-- peer. Try it with `nc -u 127.0.0.1 7002`.
local csock = require "csock"

local port = tonumber(arg[1]) or 7002
local host = arg[2] or "127.0.0.1"
local family = host:find(":", 1, true) and csock.AF_INET6 or csock.AF_INET

local s <close> = csock.socket(family, csock.SOCK_DGRAM)
assert(s:bind(host, port))

local me = s:getsockname()
print(("listening on %s:%d"):format(me.addr, me.port))
io.stdout:flush()

while true do
  local data, from = s:recvfrom(65535)
  if data then
    s:sendto(data, from.addr, from.port)
  else
    io.stderr:write("recvfrom: ", from, "\n")
  end
end
