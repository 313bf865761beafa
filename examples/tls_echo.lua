-- tls_echo.lua: an echo server over TLS, one task per connection.
--
--   csock examples/tls_echo.lua cert.pem key.pem [port [host]]   (default 7443 127.0.0.1)
--
-- Port 0 picks a free port; the first line on stdout names the address.  Try it with
--   openssl s_client -connect 127.0.0.1:7443 -CAfile ca.pem -servername localhost
local csock = require "csock"

local cert, key = arg[1], arg[2]
if not cert or not key then
  io.stderr:write("usage: tls_echo.lua cert.pem key.pem [port [host]]\n")
  os.exit(2)
end
local port = tonumber(arg[3]) or 7443
local host = arg[4] or "127.0.0.1"

-- One context for every connection: the certificate is read once, here.
local ctx = csock.tls_context {mode = "server", certificate = cert, key = key}

local function echo(client)
  local c <close> = client
  c:settimeout(30)
  local ok, err = c:starttls(ctx) -- the handshake suspends only this task
  if not ok then
    io.stderr:write("handshake: ", err, "\n")
    return
  end
  for line in c:lines("L") do -- plaintext, as on a plain socket
    if not c:write(line) then return end
  end
end

local server <close> = assert(csock.tcp_listen(host, port))
local me = server:getsockname()
print(("listening on %s:%d"):format(me.addr, me.port))
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
