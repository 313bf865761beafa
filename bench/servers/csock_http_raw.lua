-- csock_http_raw.lua: the benchmark's hand-parsed HTTP/1.1 "Hello, World!" server on csock's
-- socket API alone (accept, spawn, read("l"), write), the same per-request work as the other
-- Lua peers: bench/servers/csock_server.sh runs it as the "csock" row.
--
--   csock bench/servers/csock_http_raw.lua [port [host]]      (default 8080 127.0.0.1)
--
-- Requests are taken to be bodiless; a connection ends on "Connection: close" or HTTP/1.0.
local csock = require "csock"

local port = tonumber(arg[1]) or 8080
local host = arg[2] or "127.0.0.1"
local family = host:find(":", 1, true) and csock.AF_INET6 or csock.AF_INET

local HELLO = "HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\nHello, World!"
local HELLO_CLOSE = "HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n"
  .. "Connection: close\r\n\r\nHello, World!"
-- "Connection: close" in any letter case. A case-blind pattern rather than header:lower(),
-- which would make a lowered copy of every header line only to look at its first letters.
local CONNECTION_CLOSE = "^[Cc][Oo][Nn][Nn][Ee][Cc][Tt][Ii][Oo][Nn]:%s*[Cc][Ll][Oo][Ss][Ee]"

local function serve(client)
  local c <close> = client
  while true do
    local request = c:read("l")
    if not request then return end -- the client went away
    local close = request:find("HTTP/1.0", 1, true) ~= nil -- no keep-alive for HTTP/1.0 here
    while true do
      local header = c:read("l")
      if not header then return end
      if header == "\r" or header == "" then break end -- the blank line ends the headers
      if header:find(CONNECTION_CLOSE) then close = true end
    end
    if close then
      c:write(HELLO_CLOSE)
      return
    end
    if not c:write(HELLO) then return end
  end
end

local server <close> = csock.socket(family, csock.SOCK_STREAM)
assert(server:setsockopt(csock.SOL_SOCKET, csock.SO_REUSEADDR, true))
assert(server:bind(host, port))
assert(server:listen(1024))

local me = server:getsockname()
print(("listening on %s:%d"):format(me.addr, me.port))
io.stdout:flush()

while true do
  local client, err = server:accept()
  if client then
    csock.spawn(serve, client)
  else
    io.stderr:write("accept: ", err, "\n")
    csock.sleep(0.1)
  end
end
