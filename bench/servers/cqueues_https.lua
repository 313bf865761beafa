-- cqueues_https.lua - the HTTPS "hello world" peer of bench/tls.sh: cqueues sockets with
-- starttls over a luaossl context, the same per-request work as the other Lua peers.
--   lua5.4 cqueues_https.lua PORT CERT KEY
package.path = (arg[0]:match("(.*/)") or "./") .. "?.lua;" .. package.path
local cqueues = require "cqueues"
local socket = require "cqueues.socket"
local context = require "openssl.ssl.context"
local pkey = require "openssl.pkey"
local x509 = require "openssl.x509"
local common = require "common"

local port, certfile, keyfile = tonumber(arg[1]), arg[2], arg[3]
local function slurp(path)
  local f <close> = assert(io.open(path, "rb"))
  return f:read("a")
end
local ctx = context.new("TLS", true)
ctx:setCertificate(x509.new(slurp(certfile)))
ctx:setPrivateKey(pkey.new(slurp(keyfile)))

local cq = cqueues.new()
local srv = socket.listen{host = "127.0.0.1", port = port, reuseaddr = true, nodelay = true}
assert(srv:listen())

local function quiet(_, _, why) return why end

local function on_http(con)
  con:onerror(quiet)
  if not con:starttls(ctx, 10) then con:close() return end
  con:setmode("b", "bn")
  local buf = ""
  while true do
    local data = con:read(-16384)
    if not data then break end
    if buf ~= "" then data = buf .. data end
    local out, rest, close = common.process(data)
    buf = rest
    if out ~= "" and not con:write(out) then break end
    if close then break end
  end
  con:close()
end

cq:wrap(function()
  while true do
    local con = srv:accept()
    if con then cq:wrap(on_http, con) end
  end
end)
assert(cq:loop())
