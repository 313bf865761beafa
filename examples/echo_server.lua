-- echo_server.lua: send every byte back to whoever sent it, one task per connection.
--
--   csock examples/echo_server.lua [port [host]]      (default 7000 127.0.0.1)
--
-- Port 0 picks a free port; the first line on stdout names the address either way.
local csock = require "csock"

local port = tonumber(arg[1]) or 7000
local host = arg[2] or "127.0.0.1"
local family = host:find(":", 1, true) and csock.AF_INET6 or csock.AF_INET

-- One connection: recv blocks only this task, so every client gets its own loop.
local function echo(client)
  local c <close> = client
  while true do
    local data = c:recv(65536)
    if not data or data == "" then return end -- error, or the peer is done sending
    if not c:write(data) then return end
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
    csock.spawn(echo, client)
  else
    io.stderr:write("accept: ", err, "\n")
    csock.sleep(0.1) -- out of descriptors, say: let the other tasks close some
  end
end
