--[[
spec/support/certs.lua - a test CA and certificates, made once per process
with the openssl CLI in a temporary directory.

  certs.make()   the table below (paths), made on the first call:
    dir          the directory
    ca           the test CA's certificate (ECDSA P-256)
    server, key  localhost + 127.0.0.1 + ::1, signed by the CA
    expired      localhost, signed by the CA, expired (uses key)
    wronghost    only DNS:other.example, signed by the CA (uses key)
    self         a self-signed certificate for localhost (uses key)
    stranger     localhost signed by another CA, one the client does not trust (uses key)
    alt          DNS:alt.test, signed by the CA (uses key): a second server name
    client, client_key  a client certificate (CN=csock client), signed by the CA
    made_at      os.time() when they were made (the expired one needs a second to expire)
  certs.remove() removes them (call it from the spec file's teardown)
]]

local certs = {}

local made

local function sh(cmd)
  local ok = os.execute("env -u LD_PRELOAD sh -c " .. string.format("%q", cmd) .. " >/dev/null 2>&1")
  assert(ok, "openssl failed: " .. cmd)
end

local function sign(dir, name, subject, san, ca, days)
  local ext = dir .. "/" .. name .. ".ext"
  local f = assert(io.open(ext, "w"))
  f:write("basicConstraints=CA:FALSE\n")
  if san then f:write("subjectAltName=" .. san .. "\n") end
  f:close()
  sh(string.format("openssl req -new -key %s/%s -subj '%s' -out %s/%s.csr",
    dir, name == "client" and "client.key" or "server.key", subject, dir, name))
  sh(string.format("openssl x509 -req -in %s/%s.csr -CA %s/%s.pem -CAkey %s/%s.key "
    .. "-CAcreateserial -days %d -extfile %s -out %s/%s.pem",
    dir, name, dir, ca, dir, ca, days, ext, dir, name))
end

local function make_ca(dir, name, cn)
  sh(string.format("openssl ecparam -name prime256v1 -genkey -noout -out %s/%s.key", dir, name))
  sh(string.format("openssl req -x509 -new -key %s/%s.key -subj '/CN=%s' -days 3 -out %s/%s.pem "
    .. "-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign",
    dir, name, cn, dir, name))
end

function certs.make()
  if made then return made end
  local base = os.tmpname()
  os.remove(base)
  local dir = base .. "-tls"
  sh("mkdir -p " .. dir)
  make_ca(dir, "ca", "csock test CA")
  make_ca(dir, "otherca", "some other CA")
  sh(string.format("openssl ecparam -name prime256v1 -genkey -noout -out %s/server.key", dir))
  sh(string.format("openssl ecparam -name prime256v1 -genkey -noout -out %s/client.key", dir))
  sign(dir, "server", "/CN=localhost", "DNS:localhost,IP:127.0.0.1,IP:::1", "ca", 3)
  sign(dir, "expired", "/CN=localhost", "DNS:localhost,IP:127.0.0.1", "ca", 0)
  sign(dir, "wronghost", "/CN=other.example", "DNS:other.example", "ca", 3)
  sign(dir, "stranger", "/CN=localhost", "DNS:localhost,IP:127.0.0.1", "otherca", 3)
  sign(dir, "alt", "/CN=alt.test", "DNS:alt.test", "ca", 3)
  sign(dir, "client", "/CN=csock client", nil, "ca", 3)
  sh(string.format("openssl req -x509 -new -key %s/server.key -subj /CN=localhost -days 3 "
    .. "-out %s/self.pem -addext subjectAltName=DNS:localhost,IP:127.0.0.1", dir, dir))
  local p = function(n) return dir .. "/" .. n end
  made = {
    dir = dir, ca = p "ca.pem", server = p "server.pem", key = p "server.key",
    expired = p "expired.pem", wronghost = p "wronghost.pem", self = p "self.pem",
    stranger = p "stranger.pem", alt = p "alt.pem",
    client = p "client.pem", client_key = p "client.key", made_at = os.time(),
  }
  return made
end

--- Removes the directory (a spec file's teardown); the next make() makes a new one.
function certs.remove()
  if made then os.execute("rm -rf '" .. made.dir .. "'") end
  made = nil
end

return certs
