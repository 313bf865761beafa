-- https_get.lua: a verified HTTPS GET; the body goes to stdout.
--
--   csock examples/https_get.lua https://host[:port]/path [cafile]
--
-- The server's certificate chain and host name are checked against the
-- system's CA store (or cafile, or the file SSL_CERT_FILE names); a
-- failed check ends the program with OpenSSL's reason.
local csock = require "csock"

local url, cafile = arg[1], arg[2]
local host, port, path = (url or ""):match("^https://([^/:]+):?(%d*)(.*)$")
if not host then
  io.stderr:write("usage: https_get.lua https://host[:port]/path [cafile]\n")
  os.exit(2)
end
port = tonumber(port) or 443
if path == "" then path = "/" end

local opts = {timeout = 10}
if cafile then opts.context = csock.tls_context {cafile = cafile} end
local s, err = csock.tls_connect(host, port, opts)
if not s then
  io.stderr:write("https_get: ", host, ": ", err, "\n")
  os.exit(1)
end

-- HTTP/1.0: the server closes after the body, so reading to the end is the whole body
s:write("GET ", path, " HTTP/1.0\r\nHost: ", host, "\r\nUser-Agent: csock\r\n\r\n")
local status = s:read("l")
if not status then
  io.stderr:write("https_get: no answer\n")
  os.exit(1)
end
io.stderr:write(status:gsub("\r$", ""), "\n")
repeat local line = s:read("l") until line == nil or line == "\r" or line == ""
io.stdout:write(s:read("a") or "")
s:close()
os.exit(status:match("^HTTP/%d%.%d 2") and 0 or 1)
