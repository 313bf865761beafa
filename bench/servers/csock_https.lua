-- csock_https.lua PORT CERT KEY - the benchmark's "hello world" over TLS: the
-- request loop of csock_hello.lua after a starttls per connection.
package.path = (arg[0]:match("(.*/)") or "./") .. "?.lua;" .. package.path
local csock = require "csock"
local hello = require "csock_hello"

local port, cert, key = tonumber(arg[1]), arg[2], arg[3]
local ctx = csock.tls_context {mode = "server", certificate = cert, key = key}

local function serve(client)
  local c <close> = client
  c:settimeout(30)
  if c:starttls(ctx) then hello.serve(c) end
end

local server <close> = assert(csock.tcp_listen("127.0.0.1", port, 1024))
print("listening on 127.0.0.1:" .. server:getsockname().port)
io.stdout:flush()
while true do
  local client = server:accept()
  if client then csock.spawn(serve, client) else csock.sleep(0.1) end
end
