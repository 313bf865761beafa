--[[
csock.socket.https: LuaSec's ssl.https API on csock's TLS.

    local https = require "csock.socket.https"
    local body, code, headers, status = https.request("https://example.org/")
    https.request{url = ..., sink = ..., method = ..., headers = ..., source = ...}

    package.loaded["ssl.https"] = require "csock.socket.https"  -- for code written for LuaSec

The requests are LuaSocket's socket.http ones (Debian's lua-socket) over a
csock.socket object that does the TLS handshake after connecting.  Unlike
LuaSec, the peer's certificate is checked against the system's CA store and
the host name by default; `verify = "none"` (LuaSec's name) or
`insecure = true` turns the checks off.  Other LuaSec parameters that mean
something to csock's TLS are passed on: cafile, capath, certificate, key,
protocol ("tlsv1_2", "tlsv1_3": the minimum version), ciphers,
ciphersuites, alpn.  Inside csock's loop every call suspends only its task.
]]
local csock = require "csock"
local socket = require "csock.socket"

local type, pairs, pcall, getmetatable = type, pairs, pcall, getmetatable

-- socket.http and its helpers must see csock.socket as `socket` while they
-- load: they keep the module they found.
local function load_http()
  local loaded = package.loaded
  local http = loaded["socket.http"]
  if http then return http end
  local saved, savedcore = loaded.socket, loaded["socket.core"]
  if saved == nil then loaded.socket, loaded["socket.core"] = socket, socket end
  local ok, mod = pcall(require, "socket.http")
  if saved == nil then loaded.socket, loaded["socket.core"] = nil, savedcore end
  if not ok then error(mod, 0) end
  return mod
end

local http = load_http()
local ltn12 = require "ltn12"

local https = {}
https.PORT = 443
https.TIMEOUT = 60 -- seconds, for every https connection (LuaSec's field, read at each call)

local VERSIONS = {tlsv1_2 = "tls1.2", tlsv1_3 = "tls1.3", ["tls1.2"] = "tls1.2", ["tls1.3"] = "tls1.3"}

-- A client context for params, one per distinct request (contexts are cheap
-- to keep, and sharing one would need a key over every parameter).
local function context(params)
  if not csock.tls_context then
    return nil, "TLS is not available in this csock build"
  end
  local verify = params.verify
  local insecure = params.insecure == true or verify == "none"
    or (type(verify) == "table" and verify[1] == "none")
  local opts = {
    mode = "client",
    insecure = insecure or nil,
    cafile = params.cafile,
    capath = params.capath,
    certificate = params.certificate,
    key = params.key,
    ciphers = params.ciphers,
    ciphersuites = params.ciphersuites,
    alpn = params.alpn,
    min_version = VERSIONS[params.protocol],
  }
  local ok, ctx = pcall(csock.tls_context, opts)
  if not ok then return nil, ctx end
  return ctx
end

--[[ https.tcp(params): a function creating LuaSocket tcp objects that
speak TLS once connected -- what socket.http's `create` field takes, and
what LuaSec's https.tcp gives. ]]
function https.tcp(params)
  params = params or {}
  return function()
    local ctx, err = context(params)
    if not ctx then return nil, err end
    local o
    o, err = socket.tcp()
    if not o then return nil, err end
    local class = getmetatable(o).__index
    local connect, settimeout = class.connect, class.settimeout
    -- fields on the object shadow the class's methods: socket.http asks for its own
    -- TIMEOUT, and LuaSec answers with https.TIMEOUT, as here
    o.settimeout = function(self) return settimeout(self, https.TIMEOUT) end
    o.connect = function(self, host, port)
      local ok, cerr = connect(self, host, port)
      if not ok then return nil, cerr end
      local s, terr = self.sock:starttls(ctx, host)
      if not s then
        self:close()
        return nil, terr
      end
      return 1
    end
    return o
  end
end

-- The table form of a string request, as LuaSocket's http.genericform.
local function genericform(url, body)
  local target = {}
  local reqt = {url = url, sink = ltn12.sink.table(target), target = target}
  if body then
    reqt.source = ltn12.source.string(body)
    reqt.headers = {
      ["content-length"] = #body,
      ["content-type"] = "application/x-www-form-urlencoded",
    }
    reqt.method = "POST"
  end
  return reqt
end

local function tablerequest(reqt)
  if reqt.proxy then return nil, "proxy not supported" end
  if reqt.redirect then return nil, "redirect not supported" end -- to an http URL, as LuaSec
  local url = reqt.url and require("socket.url").parse(reqt.url) or {}
  if reqt.url and url.scheme ~= "https" then return nil, "wrong scheme" end
  local nreqt = {}
  for k, v in pairs(reqt) do nreqt[k] = v end
  nreqt.redirect = false
  nreqt.scheme = "https"
  nreqt.port = nreqt.port or url.port or https.PORT
  nreqt.create = nreqt.create or https.tcp(reqt)
  return http.request(nreqt)
end

--- https.request(url [, body]) or https.request(reqt): socket.http's
-- results -- body, code, headers, status (1, code, ... in the table form)
-- -- or nil, message.
function https.request(reqt, body)
  if type(reqt) == "string" then
    local t = genericform(reqt, body)
    local ok, code, headers, status = tablerequest(t)
    if not ok then return nil, code end
    return table.concat(t.target), code, headers, status
  end
  return tablerequest(reqt)
end

return https
