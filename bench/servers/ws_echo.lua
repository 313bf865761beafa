-- ws_echo.lua PORT: the WebSocket echo server of bench/ws_echo.sh, on csock.http.
local csock = require "csock"
local http = require "csock.http"

local listener = assert(csock.tcp_listen("127.0.0.1", tonumber(arg[1]) or 0, 1024))
print("listening on 127.0.0.1:" .. listener:getsockname().port)
io.stdout:flush()
http.serve(listener, function(req, res)
  local ws = http.websocket(req, res)
  if not ws then return end
  while true do
    local data, kind = ws:receive()
    if not data then return end
    ws:send(data, kind)
  end
end)
