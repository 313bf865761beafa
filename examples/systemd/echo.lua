-- echo.lua: the echo server of examples/echo_server.lua, on a socket passed in by systemd.
--
--   systemctl start csock-echo.socket          (see csock-echo.socket and csock-echo.service)
--   systemd-socket-activate -l 127.0.0.1:7000 csock examples/systemd/echo.lua
--   csock examples/systemd/echo.lua [port]     (no socket activation: listens itself)
--
-- csock.listeners() returns the descriptors systemd passed (LISTEN_FDS, LISTEN_PID) as sockets,
-- also by name (FileDescriptorName= in the .socket unit); without them the script listens itself.
local csock = require "csock"

local function echo(client)
  local c <close> = client
  while true do
    local data = c:recv(16384)
    if not data or data == "" then return end
    if not c:write(data) then return end
  end
end

local listeners = csock.listeners and csock.listeners() or {}
local server = listeners.echo or listeners[1]
if not server then
  server = assert(csock.tcp_listen("127.0.0.1", tonumber(arg[1]) or 7000))
end
local me = server:getsockname()
io.stderr:write(("csock-echo: serving %s:%d\n"):format(me.addr, me.port))

while true do
  local client, err = server:accept()
  if client then
    csock.spawn(echo, client)
  else
    io.stderr:write("accept: ", err, "\n")
    csock.sleep(0.1)
  end
end
