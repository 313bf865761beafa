-- csock_https.lua PORT CERT KEY - the benchmark's "hello world" over TLS: the
-- keep-alive loop of examples/http_hello.lua after a starttls per connection.
local csock = require "csock"

local port, cert, key = tonumber(arg[1]), arg[2], arg[3]
local ctx = csock.tls_context {mode = "server", certificate = cert, key = key}

local HELLO = "HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\nHello, World!"
local HELLO_CLOSE = "HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n"
  .. "Connection: close\r\n\r\nHello, World!"
local CONNECTION_CLOSE = "^[Cc][Oo][Nn][Nn][Ee][Cc][Tt][Ii][Oo][Nn]:%s*[Cc][Ll][Oo][Ss][Ee]"

local function serve(client)
  local c <close> = client
  c:settimeout(30)
  if not c:starttls(ctx) then return end
  while true do
    local request = c:read("l")
    if not request then return end
    local close = false
    while true do
      local header = c:read("l")
      if not header then return end
      if header == "\r" or header == "" then break end
      if header:find(CONNECTION_CLOSE) then close = true end
    end
    if close then
      c:write(HELLO_CLOSE)
      return
    end
    if not c:write(HELLO) then return end
  end
end

local server <close> = assert(csock.tcp_listen("127.0.0.1", port, 1024))
print("listening on 127.0.0.1:" .. server:getsockname().port)
io.stdout:flush()
while true do
  local client = server:accept()
  if client then csock.spawn(serve, client) else csock.sleep(0.1) end
end
