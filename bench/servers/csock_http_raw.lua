-- csock_http_raw.lua: the benchmark's hand-parsed HTTP/1.1 "Hello, World!" server on csock's
-- socket API alone (accept, spawn, read("l"), write), the same per-request work as the other
-- Lua peers: bench/servers/csock_server.sh runs it as the "csock" row.
--
--   csock bench/servers/csock_http_raw.lua [port [host]]      (default 8080 127.0.0.1)
--
-- Requests are taken to be bodiless; a connection ends on "Connection: close" or HTTP/1.0.
package.path = (arg[0]:match("(.*/)") or "./") .. "?.lua;" .. package.path
local csock = require "csock"
local hello = require "csock_hello"

local port = tonumber(arg[1]) or 8080
local host = arg[2] or "127.0.0.1"
local family = host:find(":", 1, true) and csock.AF_INET6 or csock.AF_INET

local function serve(client)
  local c <close> = client
  hello.serve(c)
end

local server <close> = csock.socket(family, csock.SOCK_STREAM)
assert(server:setsockopt(csock.SOL_SOCKET, csock.SO_REUSEADDR, true))
assert(server:bind(host, port))
assert(server:listen(1024))

local me = server:getsockname()
print(("listening on %s:%d"):format(me.addr, me.port))
io.stdout:flush()

while true do
  local client, err = server:accept(false) -- the peer's address is not used
  if client then
    csock.spawn(serve, client)
  else
    io.stderr:write("accept: ", err, "\n")
    csock.sleep(0.1)
  end
end
