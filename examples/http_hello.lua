-- http_hello.lua: the smallest useful HTTP/1.1 server, "Hello, World!" on csock.http.
--
--   csock examples/http_hello.lua [port [host]]       (default 8080 127.0.0.1)
--
-- csock.http does the protocol: keep-alive, pipelining, HTTP/1.0, limits and timeouts.
-- bench/ measures this script.
local csock = require "csock"
local http = require "csock.http"

local port, host = tonumber(arg[1]) or 8080, arg[2] or "127.0.0.1"
local listener = assert(csock.tcp_listen(host, port, 1024))
local me = listener:getsockname()
print(("listening on %s:%d"):format(me.addr, me.port))
io.stdout:flush()

http.serve(listener, function(_, res)
  res:header("Content-Type", "text/plain")
  res:finish("Hello, World!")
end)
