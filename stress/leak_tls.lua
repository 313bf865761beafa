-- stress/leak_tls.lua [cycles] - run by bin/csock: TLS connect/handshake/
-- line/close cycles inside the loop, both ends csock; the descriptor count
-- and RSS must stay flat (no SSL object, BIO or buffer left behind).
package.path = "./stress/?.lua;./spec/?.lua;" .. package.path
local csock = require "csock"
local S = require "lib"
local C = require("support.certs").make() -- a test CA and certificates (openssl CLI)

local N = math.tointeger(tonumber(arg[1])) or 20000
local WARM = 500
local MSG = "hello, tls\n"

local sctx = csock.tls_context {mode = "server", certificate = C.server, key = C.key}
local cctx = csock.tls_context {cafile = C.ca}
local srv = assert(csock.tcp_listen("127.0.0.1", 0, 128))
local port = srv:getsockname().port

local served, errors = 0, 0
local server = csock.spawn(function()
  while true do
    local c, err = srv:accept()
    if not c then
      if err == "socket closed" then return end
      errors = errors + 1
    else
      c:settimeout(5)
      if c:starttls(sctx) and c:read("L") == MSG then c:write("ok\n") else errors = errors + 1 end
      c:close()
      served = served + 1
    end
  end
end)

local function cycles(n)
  for _ = 1, n do
    local c, err = csock.tls_connect("127.0.0.1", port, {context = cctx, timeout = 5})
    if c then
      c:write(MSG)
      if c:read("l") ~= "ok" then errors = errors + 1 end
      c:close()
    else
      errors = errors + 1
      S.log("tls_connect: %s", err)
    end
  end
end

local m = S.measure(cycles, WARM, N, csock.now)

srv:close()
server:join()

S.leak_row("leak (TLS)", "TLS connect/handshake/line/close in csock.run", N, m, errors, served == N + WARM)
require("support.certs").remove()
S.exit()
