-- csock: the module users require.  The C core does the work; this file
-- adds the Lua-side helpers and returns one table.
local core = require "csock.core"

local csock = {}
for k, v in pairs(core) do csock[k] = v end

local type, tointeger, error, format = type, math.tointeger, error, string.format

-- Raises "bad argument #n to 'fname' (msg)" at the caller of fname: fname
-- calls argerror directly, or through one of the check helpers below (then
-- `level` is 4, one more frame up).
local function argerror(n, fname, msg, level)
  error(format("bad argument #%d to '%s' (%s)", n, fname, msg), level or 3)
end

local function checkhost(host, fname)
  if host ~= nil and type(host) ~= "string" then
    argerror(1, fname, "string expected, got " .. type(host), 4)
  end
  if host and host:find("\0", 1, true) then argerror(1, fname, "host contains a zero byte", 4) end
end

local function checkport(port, fname)
  local p = tointeger(port)
  if p == nil then argerror(2, fname, "number expected, got " .. type(port), 4) end
  if p < 0 or p > 65535 then argerror(2, fname, "port out of range", 4) end
  return p
end

--- Connects a new TCP socket to host:port, trying each address in turn.
-- Returns the socket, or nil, message, errno of the last failure.
function csock.tcp_connect(host, port, timeout)
  checkhost(host, "tcp_connect")
  port = checkport(port, "tcp_connect")
  if timeout ~= nil and (type(timeout) ~= "number" or timeout < 0 or timeout ~= timeout) then
    argerror(3, "tcp_connect", "timeout must be a non-negative number")
  end
  local addrs, err, code = core.getaddrinfo(host, port)
  if not addrs then return nil, err, code end
  for _, a in ipairs(addrs) do
    local s
    s, err, code = core.socket(a.family, core.SOCK_STREAM)
    if s then
      s:settimeout(timeout)
      local ok
      ok, err, code = s:connect(a.addr, a.port)
      if ok then return s end
      s:close()
    end
  end
  return nil, err, code
end

--- Opens a listening TCP socket on host:port (SO_REUSEADDR set); host
-- "*" or nil listens on every IPv4 address, a host with ':' is IPv6.
function csock.tcp_listen(host, port, backlog)
  checkhost(host, "tcp_listen")
  port = checkport(port or 0, "tcp_listen")
  if backlog ~= nil and tointeger(backlog) == nil then
    argerror(3, "tcp_listen", "integer expected, got " .. type(backlog))
  end
  local family = host and host:find(":", 1, true) and core.AF_INET6 or core.AF_INET
  local s, err, code = core.socket(family, core.SOCK_STREAM)
  if not s then return nil, err, code end
  s:setsockopt(core.SOL_SOCKET, core.SO_REUSEADDR, true)
  local ok
  ok, err, code = s:bind(host or "*", port)
  if ok then ok, err, code = s:listen(backlog) end
  if not ok then
    s:close()
    return nil, err, code
  end
  return s
end

local default_client -- the shared client context on the system store, made on first use

local tls_connect_opts = {timeout = true, context = true, alpn = true, insecure = true}

-- tls_connect's opts, checked; returns what starttls's own opts get (or nil).
local function tls_connect_override(opts)
  for k in pairs(opts) do
    if not tls_connect_opts[k] then
      argerror(3, "tls_connect", format("unknown option '%s'", tostring(k)), 4)
    end
  end
  local t = opts.timeout
  if t ~= nil and (type(t) ~= "number" or t < 0 or t ~= t) then
    argerror(3, "tls_connect", "option 'timeout' must be a non-negative number", 4)
  end
  if opts.alpn ~= nil and type(opts.alpn) ~= "table" then
    argerror(3, "tls_connect", "option 'alpn' must be a list of strings", 4)
  end
  if opts.insecure ~= nil and type(opts.insecure) ~= "boolean" then
    argerror(3, "tls_connect", "option 'insecure' must be a boolean, got " .. type(opts.insecure), 4)
  end
  if opts.alpn == nil and not opts.insecure then return nil end
  return {alpn = opts.alpn, insecure = opts.insecure}
end

--- Connects to host:port over TCP and does a TLS handshake as a client,
-- checking the server's certificate for host unless opts.insecure.
-- opts: timeout, context, alpn, insecure (alpn and insecure apply to this
-- connection, over the context's own).  Returns the socket, or nil,
-- message, code (csock.EPROTO for a failed handshake).
function csock.tls_connect(host, port, opts)
  checkhost(host, "tls_connect")
  port = checkport(port, "tls_connect")
  if opts ~= nil and type(opts) ~= "table" then
    argerror(3, "tls_connect", "table expected, got " .. type(opts))
  end
  opts = opts or {}
  local override = tls_connect_override(opts)
  local ctx = opts.context
  if ctx == nil then
    default_client = default_client or core.tls_context {}
    ctx = default_client
  end
  local s, err, code = csock.tcp_connect(host, port, opts.timeout)
  if not s then return nil, err, code end
  local ok
  ok, err, code = s:starttls(ctx, host, override)
  if not ok then
    s:close()
    return nil, err, code
  end
  return s
end

return csock
