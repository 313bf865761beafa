-- csock: the module users require.  The C core does the work; this file
-- adds the Lua-side helpers and returns one table.
local core = require "csock.core"

local csock = {}
for k, v in pairs(core) do csock[k] = v end

--- Connects a new TCP socket to host:port, trying each address in turn.
-- Returns the socket, or nil, message, errno of the last failure.
function csock.tcp_connect(host, port, timeout)
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

--- Opens a listening TCP socket on host:port (SO_REUSEADDR set).
function csock.tcp_listen(host, port, backlog)
  local family = host and host:find(":", 1, true) and core.AF_INET6 or core.AF_INET
  local s, err, code = core.socket(family, core.SOCK_STREAM)
  if not s then return nil, err, code end
  s:setsockopt(core.SOL_SOCKET, core.SO_REUSEADDR, true)
  local ok
  ok, err, code = s:bind(host or "*", port or 0)
  if ok then ok, err, code = s:listen(backlog) end
  if not ok then
    s:close()
    return nil, err, code
  end
  return s
end

return csock
