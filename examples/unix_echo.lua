-- unix_echo.lua: the echo server on a unix-domain stream socket.
--
--   csock examples/unix_echo.lua [path]               (default /tmp/csock-echo.sock)
--
-- A path left behind by an earlier run is removed first, as bind would fail on it.
-- Try it with `nc -U /tmp/csock-echo.sock`.
local csock = require "csock"

local path = arg[1] or "/tmp/csock-echo.sock"

local function echo(client)
  local c <close> = client
  for line in c:lines("L") do -- "L" keeps the newline; lines() raises on an error
    c:write(line)
  end
end

os.remove(path)
local server <close> = csock.socket(csock.AF_UNIX, csock.SOCK_STREAM)
assert(server:bind(path))
assert(server:listen(128))

print(("listening on %s"):format(path))
io.stdout:flush()

while true do
  local client, err = server:accept()
  if client then
    csock.spawn(echo, client)
  else
    io.stderr:write("accept: ", err, "\n")
    csock.sleep(0.1)
  end
end
