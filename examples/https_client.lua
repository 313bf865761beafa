-- https_client.lua: fetch a URL with csock.http and print the status, the fields and the body.
--
--   csock examples/https_client.lua URL [cafile]
--
-- https is verified against the system's CA store (or cafile when given): a certificate
-- that does not check out is an error, not a warning. Redirects are followed (up to 5).
local csock = require "csock"
local http = require "csock.http"

local url, cafile = arg[1], arg[2]
if not url then
  io.stderr:write("usage: csock examples/https_client.lua URL [cafile]\n")
  os.exit(2)
end

local opts = {timeout = 10}
if cafile then opts.tls = csock.tls_context({cafile = cafile}) end

local res, err = http.request(url, opts)
if not res then
  io.stderr:write("https_client: ", err, "\n")
  os.exit(1)
end
print(("HTTP/%s %d %s"):format(res.version, res.status, res.reason))
for _, field in ipairs(res.rawheaders) do print(field[1] .. ": " .. field[2]) end
print()
while true do
  local piece = res:read(16384)
  if not piece then break end
  io.write(piece)
end
