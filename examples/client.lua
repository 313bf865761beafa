-- client.lua: the stream client of Beej's Guide to Network Programming (client.c), line for line.
--
--   lua5.4 examples/client.lua hostname [port]  or    csock examples/client.lua hostname [port]
--                                               (default port 3490)
--
-- Connects, prints what the server sends (at most MAXDATASIZE - 1 bytes) and exits.
local csock = require "csock"

local PORT = arg[2] or "3490" -- the port client will be connecting to
local MAXDATASIZE = 100 -- max number of bytes we can get at once

if not arg[1] then
  io.stderr:write("usage: client hostname [port]\n")
  os.exit(1)
end

local sockfd, addr
local servinfo, gerr = csock.getaddrinfo(arg[1], PORT, {socktype = csock.SOCK_STREAM})
if not servinfo then
  io.stderr:write("getaddrinfo: ", gerr, "\n")
  os.exit(1)
end

-- loop through all the results and connect to the first we can
for _, p in ipairs(servinfo) do
  local s, err = csock.socket(p.family, p.socktype, p.protocol)
  if not s then
    io.stderr:write("client: socket: ", err, "\n")
  else
    local ok, cerr = s:connect(p.addr, p.port)
    if ok then
      sockfd, addr = s, p.addr
      break
    end
    s:close()
    io.stderr:write("client: connect: ", cerr, "\n")
  end
end

if not sockfd then
  io.stderr:write("client: failed to connect\n")
  os.exit(2)
end

print("client: connecting to " .. addr)

local buf, err = sockfd:recv(MAXDATASIZE - 1)
if not buf then
  io.stderr:write("recv: ", err, "\n")
  os.exit(1)
end

print(("client: received '%s'"):format(buf))

sockfd:close()
