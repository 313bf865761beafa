-- csock_hello.lua - the request loop of csock's bench servers (csock_http_raw.lua, and
-- csock_https.lua after its starttls): requests read line by line with the socket API alone
-- and answered with the same 13 bytes, the per-request work of the other Lua peers.
-- Requests are taken to be bodiless; a connection ends on "Connection: close" or HTTP/1.0.
local M = {}

local HELLO = "HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\nHello, World!"
local HELLO_CLOSE = "HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n"
  .. "Connection: close\r\n\r\nHello, World!"
-- "Connection: close" in any letter case. A case-blind pattern rather than header:lower(),
-- which would make a lowered copy of every header line only to look at its first letters.
local CONNECTION_CLOSE = "^[Cc][Oo][Nn][Nn][Ee][Cc][Tt][Ii][Oo][Nn]:%s*[Cc][Ll][Oo][Ss][Ee]"

-- Answers the requests on c until the client closes or asks to; does not close c.
function M.serve(c)
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

return M
