--[[
csock.socket: LuaSocket 3's `socket` module over csock sockets.

    package.loaded.socket = require "csock.socket"

before loading a library written for LuaSocket (socket.http, redis-lua,
...) runs it on csock: each call blocks in plain Lua and suspends only its
task inside csock's loop.  The objects are tables with LuaSocket's classes
(tcp{master}, tcp{client}, tcp{server}, udp{unconnected}, udp{connected})
holding a csock socket; results and error strings are LuaSocket's.  Where
csock behaves differently, docs/luasocket.md says so and why.
]]

local csock = require "csock"

local type, tostring, tonumber, select, pcall, error = type, tostring, tonumber, select, pcall, error
local setmetatable, getmetatable, pairs, ipairs, rawequal = setmetatable, getmetatable, pairs, ipairs, rawequal
local format, sub, byte, find, gsub = string.format, string.sub, string.byte, string.find, string.gsub
local floor, huge, tointeger = math.floor, math.huge, math.tointeger
local pack, unpack = table.pack, table.unpack
local ready, pending, now = csock.ready, csock.pending, csock.now

local socket = {}

socket._VERSION = "LuaSocket 3.1.0"
socket._CSOCK = csock._VERSION
socket._SETSIZE = 2147483647 -- no descriptor cap: select is not select(2)
socket._SOCKETINVALID = -1
socket._DATAGRAMSIZE = 8192
socket.BLOCKSIZE = 2048

local MAXLINE = 1 << 40 -- LuaSocket's lines have no limit; csock's default is 64 KiB

-- ---------------------------------------------------------------- errors

-- LuaSocket's texts for the errors its users compare against; other
-- failures keep the system's message, as LuaSocket's strerror does.
local messages = {
  [csock.ETIMEDOUT] = "timeout",
  [csock.ECONNRESET] = "closed",
  [csock.ECONNABORTED] = "closed",
  [csock.EPIPE] = "closed",
  [csock.EBADF] = "closed", -- another task closed the socket
  [csock.EADDRINUSE] = "address already in use",
  [csock.EISCONN] = "already connected",
  [csock.EACCES] = "permission denied",
  [csock.ECONNREFUSED] = "connection refused",
  [csock.EAI_AGAIN] = "temporary failure in name resolution",
  [csock.EAI_BADFLAGS] = "invalid value for ai_flags",
  [csock.EAI_FAIL] = "non-recoverable failure in name resolution",
  [csock.EAI_FAMILY] = "ai_family not supported",
  [csock.EAI_MEMORY] = "memory allocation failure",
  [csock.EAI_NONAME] = "host or service not provided, or not known",
  [csock.EAI_SERVICE] = "service not supported for socket type",
  [csock.EAI_SOCKTYPE] = "ai_socktype not supported",
}

local function errstr(msg, code)
  return messages[code] or msg
end

-- UDP's "refused" is LuaSocket's text for a send that finds the way closed (EPIPE, its
-- IO_CLOSED); an ICMP port unreachable reported by send or receive (ECONNREFUSED) is
-- "connection refused" there, as for TCP.
local function udperr(msg, code)
  if code == csock.EPIPE then return "refused" end
  return messages[code] or msg
end

-- Raises "bad argument #n to 'fname' (msg)" at the caller of the method;
-- arguments are counted without self, as Lua counts them in a method call.
local function argerror(n, fname, msg, level)
  error(format("bad argument #%d to '%s' (%s)", n, fname, msg), level or 3)
end

local function typename(v)
  local mt = getmetatable(v)
  return type(mt) == "table" and mt.__name or type(v)
end

local function checkstring(n, fname, v, level)
  local tv = type(v)
  if tv == "string" then return v end
  if tv == "number" then return tostring(v) end
  argerror(n, fname, "string expected, got " .. typename(v), level or 4)
end

local function checknumber(n, fname, v, level)
  local x = tonumber(v)
  if x == nil then argerror(n, fname, "number expected, got " .. typename(v), level or 4) end
  return x
end

-- An integer from a number as LuaSocket's C casts take it: the fraction dropped, a number
-- beyond the integers clamped to them; NaN has none and raises, naming fname's argument.
local function checkint(n, fname, v, level)
  level = level or 4
  local x = checknumber(n, fname, v, level + 1)
  if x ~= x then argerror(n, fname, "number has no integer representation", level) end
  if x >= 0x1p63 then return math.maxinteger end
  if x < -0x1p63 then return math.mininteger end
  return tointeger(floor(x))
end

-- A C int's range, where a value goes to setsockopt.
local function cint(x)
  return x < -0x80000000 and -0x80000000 or x > 0x7FFFFFFF and 0x7FFFFFFF or x
end

local function checkport(n, fname, v)
  return checkint(n, fname, v, 5) % 65536 -- LuaSocket casts to unsigned short
end

-- ---------------------------------------------------------------- classes

local classes = {} -- class name -> metatable
local methods = {} -- kind ("tcp", "udp") -> method table shared by its classes

local function newclass(name, kind, groups)
  local index = {class = name}
  local mt = {__index = index, __name = name, [name] = true}
  for _, g in ipairs(groups) do mt[g] = true end
  mt.__tostring = function(o) return format("%s: %p", name, o) end
  mt.__close = function(o) o:close() end
  classes[name] = mt
  methods[kind] = methods[kind] or {}
  mt.kind = kind
  return mt
end

newclass("tcp{master}", "tcp", {"tcp{any}"})
newclass("tcp{client}", "tcp", {"tcp{any}", "tcp{client,server}", "select{able}"})
newclass("tcp{server}", "tcp", {"tcp{any}", "tcp{client,server}", "select{able}"})
newclass("udp{unconnected}", "udp", {"udp{any}", "select{able}"})
newclass("udp{connected}", "udp", {"udp{any}", "select{able}"})

-- Checks that self belongs to class or group want, as LuaSocket's methods do.
local function check(self, fname, want)
  local mt = getmetatable(self)
  if type(mt) ~= "table" or not rawequal(classes[mt.__name], mt) or not mt[want] then
    error(format("calling '%s' on bad self (%s expected)", fname, want), 3)
  end
  return self
end

-- A tcp{client}'s socket under a key of its own, for the hot methods'
-- class check (receive, send: see the end of the class checks); nil on any
-- other object and once closed.
local LIVE = {}

local function setclass(self, name)
  setmetatable(self, classes[name])
  self[LIVE] = name == "tcp{client}" and self.sock or nil
end

-- Descriptor -> object, for select entries that only have getfd (wrappers).
local byfd = setmetatable({}, {__mode = "v"})

local AF = {inet = csock.AF_INET, inet6 = csock.AF_INET6}
local FAMILY = {[csock.AF_INET] = "inet", [csock.AF_INET6] = "inet6"}
local TYPE = {tcp = csock.SOCK_STREAM, udp = csock.SOCK_DGRAM}

--[[ Objects are tables:
  sock      the csock socket (nil once closed)
  family    "inet" or "inet6"
  flex      made by tcp()/udp(): the family follows the first address used
  block, total   LuaSocket's two timeouts (nil: none)
  armed     the timeout set on sock (nil: none)
  fresh     armed is what block and total give (nil: arm must look)
  opts      options set so far, set again when a flexible socket is remade
  rx, tx, born   getstats' counters ]]

local lsrecv, lssend -- csock's LuaSocket receive and send (src/compat.c)

-- Wraps csock socket s as a new object of class name.
local function wrap(s, name, family)
  s:setmaxline(MAXLINE)
  if not lsrecv then lsrecv, lssend = s._lsrecv, s._lssend end
  local o = setmetatable({sock = s, family = family, rx = 0, tx = 0, born = now()}, classes[name])
  if name == "tcp{client}" then o[LIVE] = s end
  byfd[s:_lsfd()] = o
  return o
end

local function makesock(kind, family)
  local s, err, code = csock.socket(AF[family], TYPE[kind])
  if not s then return nil, errstr(err, code) end
  if family == "inet6" then
    -- LuaSocket's IPv6 sockets are IPv6 only, so tcp6 and tcp4 can share a port
    s:setsockopt(csock.IPPROTO_IPV6, csock.IPV6_V6ONLY, true)
  end
  return s
end

local function create(kind, family, flex)
  local s, err = makesock(kind, family)
  if not s then return nil, err end
  local o = wrap(s, kind == "tcp" and "tcp{master}" or "udp{unconnected}", family)
  o.flex = flex
  return o
end

function socket.tcp() return create("tcp", "inet", true) end
function socket.tcp4() return create("tcp", "inet") end
function socket.tcp6() return create("tcp", "inet6") end
function socket.udp() return create("udp", "inet", true) end
function socket.udp4() return create("udp", "inet") end
function socket.udp6() return create("udp", "inet6") end

-- Sets on s the timeout LuaSocket's two would give this call.  Both are
-- measured from the start of each call in LuaSocket; when both are set, the
-- shorter bounds the whole call here (LuaSocket bounds each wait by the
-- block timeout and the call by the total).  Only a change of either (or
-- of the socket) makes it look again: receive and send check self.fresh.
local function arm(self, s)
  local b, t = self.block, self.total
  local span = b and t and (b < t and b or t) or b or t
  if span ~= self.armed then
    s:settimeout(span)
    self.armed = span
  end
  self.fresh = true
end

local setopt -- below

-- A flexible object whose socket must have family: a new socket with the
-- options set so far replaces the old one.
local function refamily(self, family, fresh)
  if self.family == family and not fresh then return true end
  local kind = getmetatable(self).kind
  local s, err = makesock(kind, family)
  if not s then return nil, err end
  byfd[self.sock:_lsfd()] = nil
  self.sock:close()
  s:setmaxline(MAXLINE)
  self.sock, self.family, self.armed, self.fresh = s, family, nil, nil
  byfd[s:_lsfd()] = self
  for name, value in pairs(self.opts or {}) do setopt(self, s, name, value) end
  return true
end

-- The family a numeric address belongs to, or nil for a name.
local function numeric_family(host)
  if find(host, ":", 1, true) then return "inet6" end
  if find(host, "^%d+%.%d+%.%d+%.%d+$") then return "inet" end
  return nil
end

-- Addresses for host, port in the resolver's order, as csock tables.
local function resolve(host, port, family, kind, passive)
  local fam = numeric_family(host)
  if fam then
    if family and fam ~= family then return nil, "host or service not provided, or not known" end
    return {{family = AF[fam], addr = host, port = port}}
  end
  local hints = {family = family and AF[family] or csock.AF_UNSPEC, socktype = TYPE[kind]}
  if passive then hints.flags = csock.AI_PASSIVE end
  local list, err, code = csock.getaddrinfo(host, port, hints)
  if not list then return nil, errstr(err, code) end
  return list
end

-- "*" (and "") is the wildcard address of the object's family.
local function wildcard(self, host)
  if host == "*" or host == "" then return self.family == "inet6" and "::" or "0.0.0.0" end
  return host
end

-- Runs op(s, addr, port) on each address of host until one works; a
-- flexible object takes each address's family.
local function each_address(self, host, port, passive, op, fresh)
  local list, err = resolve(host, port, not self.flex and self.family or nil,
    getmetatable(self).kind, passive)
  if not list then return nil, err end
  local tried = false
  for _, a in ipairs(list) do
    local fam = FAMILY[a.family]
    local ok
    if self.flex or (fresh and tried and fam == self.family) then
      -- after a failed connect the socket may be in any state: the next
      -- address gets a new one (with the options set so far)
      ok, err = refamily(self, fam, fresh and tried)
    else
      ok = fam == self.family
      if not ok then err = "ai_family not supported" end
    end
    if ok then
      local code
      ok, err, code = op(self.sock, a.addr, a.port)
      if ok then return true end
      err = errstr(err, code)
      -- a timeout ends the list, as in LuaSocket: with timeout 0 the
      -- caller comes back to the same socket once it is writable
      if err == "timeout" then return nil, err end
      tried = true
    end
  end
  return nil, err or "host or service not provided, or not known"
end

-- ---------------------------------------------------------------- common methods

local common = {}

function common.close(self)
  local s = self.sock
  if s then
    byfd[s:_lsfd()] = nil
    self.sock, self[LIVE] = nil, nil
    s:close()
  end
  return 1
end

function common.getfd(self)
  local s = self.sock
  return s and s:fileno() or -1
end

-- Only giving up the descriptor is possible: csock sockets own theirs.
local detached = {}
function common.setfd(self, fd)
  fd = tointeger(tonumber(fd))
  local s = self.sock
  if s and fd == s:fileno() then return end
  if fd ~= -1 then
    error("setfd: csock.socket can only set the descriptor -1 (give it up), not adopt one", 2)
  end
  if s then
    byfd[s:_lsfd()] = nil
    detached[#detached + 1] = s -- left open, as LuaSocket leaves it
    self.sock, self[LIVE] = nil, nil
  end
end

function common.dirty(self)
  local s = self.sock
  return s ~= nil and pending(s) > 0
end

function common.getfamily(self)
  return self.family == "inet6" and "inet6" or "inet4"
end

function common.settimeout(self, value, mode)
  local t = value
  if t ~= nil then t = checknumber(1, "settimeout", t) end
  if t and (t < 0 or t ~= t or t == huge) then t = nil end
  mode = mode == nil and "b" or checkstring(2, "settimeout", mode)
  local m = byte(mode)
  if m == 98 then -- "b"
    self.block = t
  elseif m == 116 or m == 114 then -- "t", "r"
    self.total = t
  else
    argerror(2, "settimeout", "invalid timeout mode")
  end
  self.fresh = nil
  return 1
end

function common.gettimeout(self)
  return self.block or -1, self.total or -1
end

function common.getsockname(self)
  local s = self.sock
  if not s then return nil, "closed" end
  local a, err, code = s:getsockname()
  if not a then return nil, errstr(err, code) end
  return a.addr, a.port, FAMILY[a.family]
end

function common.getpeername(self)
  local s = self.sock
  if not s then return nil, "closed" end
  local a, err, code = s:getpeername()
  if not a then return nil, errstr(err, code) end
  return a.addr, a.port, FAMILY[a.family]
end

function common.getstats(self)
  return self.rx, self.tx, now() - self.born
end

function common.setstats(self, received, sent, age)
  self.rx = checknumber(1, "setstats", received)
  self.tx = checknumber(2, "setstats", sent)
  self.born = now() - checknumber(3, "setstats", age)
  return 1
end

-- ---------------------------------------------------------------- options

local S, T, IP, IP6 = csock.SOL_SOCKET, csock.IPPROTO_TCP, csock.IPPROTO_IP, csock.IPPROTO_IPV6

-- LuaSocket's option names: {level, name, kind}.
local options = {
  keepalive = {S, csock.SO_KEEPALIVE, "flag"},
  reuseaddr = {S, csock.SO_REUSEADDR, "flag"},
  reuseport = {S, csock.SO_REUSEPORT, "flag"},
  broadcast = {S, csock.SO_BROADCAST, "flag"},
  dontroute = {S, csock.SO_DONTROUTE, "flag"},
  linger = {S, csock.SO_LINGER, "linger"},
  ["recv-buffer-size"] = {S, csock.SO_RCVBUF, "int"},
  ["send-buffer-size"] = {S, csock.SO_SNDBUF, "int"},
  error = {S, csock.SO_ERROR, "error"},
  ["tcp-nodelay"] = {T, csock.TCP_NODELAY, "flag"},
  ["tcp-keepidle"] = {T, csock.TCP_KEEPIDLE, "int"},
  ["tcp-keepcnt"] = {T, csock.TCP_KEEPCNT, "int"},
  ["tcp-keepintvl"] = {T, csock.TCP_KEEPINTVL, "int"},
  ["tcp-defer-accept"] = {T, csock.TCP_DEFER_ACCEPT, "int"},
  ["tcp-fastopen"] = {T, csock.TCP_FASTOPEN, "int"},
  ["ipv6-v6only"] = {IP6, csock.IPV6_V6ONLY, "flag"},
  ["ip-multicast-ttl"] = {IP, csock.IP_MULTICAST_TTL, "int"},
  ["ip-multicast-loop"] = {IP, csock.IP_MULTICAST_LOOP, "flag"},
  ["ip-multicast-if"] = {IP, csock.IP_MULTICAST_IF, "addr"},
  ["ip-add-membership"] = {IP, csock.IP_ADD_MEMBERSHIP, "group"},
  ["ip-drop-membership"] = {IP, csock.IP_DROP_MEMBERSHIP, "group"},
  ["ipv6-unicast-hops"] = {IP6, csock.IPV6_UNICAST_HOPS, "int"},
  ["ipv6-multicast-hops"] = {IP6, csock.IPV6_MULTICAST_HOPS, "int"},
  ["ipv6-multicast-loop"] = {IP6, csock.IPV6_MULTICAST_LOOP, "flag"},
  ["ipv6-add-membership"] = {IP6, csock.IPV6_JOIN_GROUP, "group"},
  ["ipv6-drop-membership"] = {IP6, csock.IPV6_LEAVE_GROUP, "group"},
}

-- Which names each kind accepts, as LuaSocket's tcp.c and udp.c list them.
local allowed = {
  tcp = {keepalive = true, reuseaddr = true, reuseport = true, linger = true, error = true,
    ["recv-buffer-size"] = true, ["send-buffer-size"] = true, ["tcp-nodelay"] = true,
    ["tcp-keepidle"] = true, ["tcp-keepcnt"] = true, ["tcp-keepintvl"] = true,
    ["tcp-defer-accept"] = true, ["tcp-fastopen"] = true, ["ipv6-v6only"] = true},
  udp = {reuseaddr = true, reuseport = true, broadcast = true, dontroute = true, error = true,
    ["recv-buffer-size"] = true, ["send-buffer-size"] = true, ["ipv6-v6only"] = true,
    ["ip-multicast-ttl"] = true, ["ip-multicast-loop"] = true, ["ip-multicast-if"] = true,
    ["ip-add-membership"] = true, ["ip-drop-membership"] = true, ["ipv6-unicast-hops"] = true,
    ["ipv6-multicast-hops"] = true, ["ipv6-multicast-loop"] = true,
    ["ipv6-add-membership"] = true, ["ipv6-drop-membership"] = true},
}

local function checkoption(self, fname, name)
  name = checkstring(1, fname, name, 5)
  local o = options[name]
  if not o or not allowed[getmetatable(self).kind][name] then
    argerror(1, fname, "unsupported option `" .. name .. "'", 4)
  end
  return o
end

-- Converts a LuaSocket option value to csock's.
local function tocsock(o, value)
  local kind = o[3]
  if kind == "flag" then
    if type(value) ~= "boolean" and type(value) ~= "number" then
      argerror(2, "setoption", "boolean expected, got " .. typename(value), 4)
    end
    return value == true or (type(value) == "number" and value ~= 0)
  elseif kind == "linger" then
    if type(value) ~= "table" then argerror(2, "setoption", "table expected, got " .. typename(value), 4) end
    if type(value.on) ~= "boolean" then argerror(2, "setoption", "invalid 'on' field", 4) end
    local t = tonumber(value.timeout)
    if t == nil or t ~= t then argerror(2, "setoption", "invalid 'timeout' field", 4) end
    return {onoff = value.on, linger = cint(t >= 0x1p63 and math.maxinteger or t < -0x1p63
      and math.mininteger or tointeger(floor(t)))}
  elseif kind == "int" then
    return cint(checkint(2, "setoption", value, 5))
  elseif kind == "group" then
    if type(value) ~= "table" then argerror(2, "setoption", "table expected, got " .. typename(value), 4) end
    return value
  end
  return checkstring(2, "setoption", value, 5)
end

function setopt(self, s, name, value)
  local o = options[name]
  local ok, err, code = s:setsockopt(o[1], o[2], value)
  if not ok then return nil, errstr(err, code) end
  if o[3] ~= "group" then -- set again on a socket that replaces this one
    self.opts = self.opts or {}
    self.opts[name] = value
  end
  return 1
end

function common.setoption(self, name, value)
  local o = checkoption(self, "setoption", name)
  local v = tocsock(o, value)
  local s = self.sock
  if not s then return nil, "closed" end
  return setopt(self, s, name, v)
end

function common.getoption(self, name)
  local o = checkoption(self, "getoption", name)
  local s = self.sock
  if not s then return nil, "closed" end
  if o[3] == "group" then return nil, "unsupported option" end
  local v, err, code = s:getsockopt(o[1], o[2])
  if v == nil then return nil, errstr(err, code) end
  local kind = o[3]
  if kind == "flag" then return v ~= 0 end
  if kind == "linger" then return {on = v.onoff, timeout = v.linger} end
  if kind == "error" then
    if v == 0 then return nil end
    return errstr(nil, v) or ("error " .. v)
  end
  return v
end

-- ---------------------------------------------------------------- tcp

local tcp = methods.tcp
for k, f in pairs(common) do tcp[k] = f end

-- Per-method class checks, as in LuaSocket 3.1's tcp.c.
local tcpcheck = {
  accept = "tcp{server}", bind = "tcp{master}", listen = "tcp{master}", connect = "tcp{any}",
  receive = "tcp{client}", send = "tcp{client}", getpeername = "tcp{client}",
  shutdown = "tcp{client}", setpeername = "tcp{any}", setsockname = "tcp{master}",
}

function tcp.bind(self, host, port)
  host = checkstring(1, "bind", host)
  port = checkport(2, "bind", port)
  if not self.sock then return nil, "closed" end
  local ok, err = each_address(self, wildcard(self, host), port, true, function(s, a, p)
    return s:bind(a, p)
  end)
  if not ok then return nil, err end
  return 1
end
tcp.setsockname = tcp.bind

function tcp.listen(self, backlog)
  local n = backlog == nil and 32 or checkint(1, "listen", backlog)
  local s = self.sock
  if not s then return nil, "closed" end
  local ok, err, code = s:listen(n < 0 and 0 or n > 65535 and 65535 or n)
  if not ok then return nil, errstr(err, code) end
  setclass(self, "tcp{server}")
  return 1
end

function tcp.connect(self, host, port)
  host = checkstring(1, "connect", host)
  port = checkport(2, "connect", port)
  if not self.sock then return nil, "closed" end
  local master = getmetatable(self) == classes["tcp{master}"]
  -- csock's connect takes EISCONN as the end of a connect under way
  if getmetatable(self) == classes["tcp{client}"] then return nil, "already connected" end
  local ok, err = each_address(self, host, port, false, function(s, a, p)
    arm(self, s)
    return s:connect(a, p)
  end, master)
  if not ok then return nil, err end
  setclass(self, "tcp{client}")
  return 1
end
tcp.setpeername = tcp.connect

function tcp.accept(self)
  local s = self.sock
  if not s then return nil, "closed" end
  arm(self, s)
  local c, err, code = s:accept(false)
  if not c then return nil, errstr(err, code) end
  return wrap(c, "tcp{client}", self.family)
end

function tcp.shutdown(self, how)
  how = how == nil and "both" or checkstring(1, "shutdown", how)
  local mode = how == "both" and "rw" or how == "send" and "w" or how == "receive" and "r"
  if not mode then argerror(1, "shutdown", "invalid option '" .. how .. "'") end
  local s = self.sock
  if not s then return nil, "closed" end
  s:shutdown(mode) -- LuaSocket ignores the result too
  return 1
end

-- The bytes a failed read left in the buffer: LuaSocket's partial result.
local function leftover(s)
  local n = pending(s)
  if n == 0 then return "" end
  return s:recv(n) or ""
end

local function failed(self, s, err, code, prefix, line)
  local part = leftover(s)
  if line and find(part, "\r", 1, true) then part = gsub(part, "\r", "") end
  self.rx = self.rx + #part
  return nil, errstr(err, code), prefix .. part
end

-- "*l": a line without its end; every CR is dropped, as LuaSocket does.
local function receive_line(self, s, prefix)
  local line, err, code = s:read("L")
  if line == nil then
    if err == nil then return nil, "closed", prefix end
    return failed(self, s, err, code, prefix, true)
  end
  self.rx = self.rx + #line
  local whole = byte(line, -1) == 10
  if whole then line = sub(line, 1, byte(line, -2) == 13 and -3 or -2) end -- CRLF without a gsub
  if find(line, "\r", 1, true) then line = gsub(line, "\r", "") end
  if whole then return prefix .. line, nil, nil end
  return nil, "closed", prefix .. line
end

local function receive_all(self, s, prefix)
  local data, err, code = s:read("a")
  if data == nil then return failed(self, s, err, code, prefix) end
  self.rx = self.rx + #data
  if data == "" then return nil, "closed", prefix end
  return prefix .. data, nil, nil
end

-- A count includes the prefix, as in LuaSocket 3.1: receive(5, "ab") reads 3.
local function receive_count(self, s, n, prefix)
  n = n - #prefix
  if n <= 0 then return prefix, nil, nil end
  local data, err, code = s:read(n)
  if data == nil then
    if err == nil then return nil, "closed", prefix end
    return failed(self, s, err, code, prefix)
  end
  self.rx = self.rx + #data
  if #data < n then return nil, "closed", prefix .. data end
  if prefix == "" then return data, nil, nil end
  return prefix .. data, nil, nil
end

-- Patterns by name; anything else must be a count (a number or a numeral).
local PATTERNS = {["*l"] = 108, l = 108, ["*a"] = 97, a = 97}

function tcp.receive(self, pattern, prefix)
  if prefix == nil then prefix = "" elseif type(prefix) ~= "string" then prefix = checkstring(2, "receive", prefix) end
  local which = PATTERNS[pattern or "l"]
  local n
  if not which then
    n = tonumber(pattern)
    if not n then
      -- LuaSocket looks at the first letter after an optional "*" ("*line" is "*l")
      local p = type(pattern) == "string" and gsub(pattern, "^%*", "", 1)
      which = p and byte(p)
      if which ~= 108 and which ~= 97 then argerror(1, "receive", "invalid receive pattern") end
    end
  end
  if n and (n ~= n or n < 0) then argerror(1, "receive", "invalid receive pattern") end
  local s = self.sock
  if not s then return nil, "closed", prefix end
  arm(self, s)
  if n then return receive_count(self, s, n >= 0x1p63 and math.maxinteger or floor(n), prefix) end
  if which == 108 then return receive_line(self, s, prefix) end
  return receive_all(self, s, prefix)
end

function tcp.send(self, data, i, j)
  data = checkstring(1, "send", data)
  local size = #data
  i = i == nil and 1 or checkint(2, "send", i)
  j = j == nil and -1 or checkint(3, "send", j)
  if i < 0 then i = size + i + 1 end
  if j < 0 then j = size + j + 1 end
  if i < 1 then i = 1 end
  if j > size then j = size end
  local s = self.sock
  if not s then return nil, "closed", i - 1 end
  if i > j then return i - 1, nil, nil end
  arm(self, s)
  local ok, err, code, sent = s:write((i == 1 and j == size) and data or sub(data, i, j))
  if ok then
    self.tx = self.tx + (j - i + 1)
    return j, nil, nil
  end
  sent = sent or 0
  self.tx = self.tx + sent
  return nil, errstr(err, code), i - 1 + sent
end

-- ---------------------------------------------------------------- udp

local udp = methods.udp
for k, f in pairs(common) do
  if k ~= "getstats" and k ~= "setstats" then udp[k] = f end
end

local udpcheck = {
  send = "udp{connected}", getpeername = "udp{connected}", sendto = "udp{unconnected}",
  receivefrom = "udp{unconnected}", setsockname = "udp{unconnected}", setpeername = "udp{any}",
  receive = "udp{any}",
}

function udp.setsockname(self, host, port)
  host = checkstring(1, "setsockname", host)
  port = checkport(2, "setsockname", port)
  if not self.sock then return nil, "closed" end
  local ok, err = each_address(self, wildcard(self, host), port, true, function(s, a, p)
    return s:bind(a, p)
  end)
  if not ok then return nil, err end
  self.flex = nil -- bound: the family is settled
  return 1
end

-- setpeername("*") dissolves the association: csock cannot connect a
-- socket to AF_UNSPEC, so a new socket takes over the local address.
local function unconnect(self)
  local s = self.sock
  local here = s:getsockname()
  local n, err = makesock("udp", self.family)
  if not n then return nil, err end
  byfd[s:_lsfd()] = nil
  s:close()
  self.sock = n
  byfd[n:_lsfd()] = self
  local ok, berr, code = n:bind(here.addr, here.port)
  if not ok then return nil, errstr(berr, code) end
  n:setmaxline(MAXLINE)
  self.armed, self.fresh = nil, nil
  for name, value in pairs(self.opts or {}) do setopt(self, n, name, value) end
  setclass(self, "udp{unconnected}")
  return 1
end

function udp.setpeername(self, host, port)
  host = checkstring(1, "setpeername", host)
  if not self.sock then return nil, "closed" end
  if host == "*" then
    if getmetatable(self) == classes["udp{connected}"] then return unconnect(self) end
    return 1
  end
  port = checkport(2, "setpeername", port)
  local ok, err = each_address(self, host, port, false, function(s, a, p)
    return s:connect(a, p)
  end)
  if not ok then return nil, err end
  self.flex = nil
  setclass(self, "udp{connected}")
  return 1
end

function udp.send(self, data)
  data = checkstring(1, "send", data)
  local s = self.sock
  if not s then return nil, "closed" end
  arm(self, s)
  local n, err, code = s:send(data)
  if not n then return nil, udperr(err, code) end
  self.tx = self.tx + n
  return n
end

function udp.sendto(self, data, host, port)
  data = checkstring(1, "sendto", data)
  host = checkstring(2, "sendto", host)
  port = checkport(3, "sendto", port)
  if not self.sock then return nil, "closed" end
  local sent
  local ok, err = each_address(self, host, port, false, function(s, a, p)
    arm(self, s)
    local n, e, code = s:sendto(data, a, p)
    sent = n
    return n, e, code
  end)
  if not ok then return nil, err end
  self.tx = self.tx + sent
  return sent
end

local function dgramsize(n, fname, size)
  if size == nil then return socket._DATAGRAMSIZE end
  size = checkint(n, fname, size, 5)
  return size < 1 and 1 or size
end

function udp.receive(self, size)
  size = dgramsize(1, "receive", size)
  local s = self.sock
  if not s then return nil, "closed" end
  arm(self, s)
  local data, err, code = s:recv(size)
  if not data then return nil, udperr(err, code) end
  self.rx = self.rx + #data
  return data
end

function udp.receivefrom(self, size)
  size = dgramsize(1, "receivefrom", size)
  local s = self.sock
  if not s then return nil, "closed" end
  arm(self, s)
  local data, from, code = s:recvfrom(size)
  if not data then return nil, udperr(from, code) end
  self.rx = self.rx + #data
  return data, from.addr, from.port
end

-- ---------------------------------------------------------------- class checks

-- Each method checks its class first, then runs; the tables are shared
-- by the classes of a kind, as LuaSocket's are.
-- No method takes more than three arguments, so the wrapper passes three
-- instead of a vararg, and the common case is one lookup in a set of the
-- metatables that may call the method (what redis-lua's hot loop pays).
local function guarded(kind, list, default)
  local t = methods[kind]
  for name, f in pairs(t) do
    local want = list[name] or default
    local may = {}
    for _, mt in pairs(classes) do
      if mt[want] then may[mt] = true end
    end
    t[name] = function(self, a, b, c)
      if not may[getmetatable(self)] then check(self, name, want) end
      return f(self, a, b, c)
    end
  end
end
guarded("tcp", tcpcheck, "tcp{any}")
guarded("udp", udpcheck, "udp{any}")

for _, mt in pairs(classes) do
  for k, f in pairs(methods[mt.kind]) do mt.__index[k] = f end
end

-- receive and send: redis-lua's hot loop (one send and two receives per
-- command).  An open tcp{client} goes straight to src/compat.c, which
-- answers in one call without the wrapper above; anything else -- another
-- class, a closed object, arguments that need checking or converting
-- (compat.c answers false) -- takes the general path.  The class check is
-- self[LIVE], not getmetatable and a set lookup, which showed in the
-- client's work per redis-lua command.
do
  local receive, send = methods.tcp.receive, methods.tcp.send

  local function fast_receive(self, pattern, prefix)
    local s = type(self) == "table" and self[LIVE]
    if s then
      if not self.fresh then arm(self, s) end
      local data, n, code, partial, consumed = lsrecv(s, pattern, prefix)
      if data then
        self.rx = self.rx + n
        return data, nil, nil
      elseif data == nil then
        self.rx = self.rx + consumed
        return nil, errstr(n, code), partial
      end
    end
    return receive(self, pattern, prefix)
  end

  local function fast_send(self, data, i, j)
    local s = type(self) == "table" and self[LIVE]
    if s then
      if not self.fresh then arm(self, s) end
      local last, n, code, partial, sent = lssend(s, data, i, j)
      if last then
        self.tx = self.tx + n
        return last, nil, nil
      elseif last == nil then
        self.tx = self.tx + sent
        return nil, errstr(n, code), partial
      end
    end
    return send(self, data, i, j)
  end

  for _, mt in pairs(classes) do
    if mt.kind == "tcp" then mt.__index.receive, mt.__index.send = fast_receive, fast_send end
  end
end

-- ---------------------------------------------------------------- module helpers

function socket.connect(address, port, laddress, lport, family)
  local s, err
  if family == "inet" then
    s, err = socket.tcp4()
  elseif family == "inet6" then
    s, err = socket.tcp6()
  else
    s, err = socket.tcp()
  end
  if not s then return nil, err end
  if laddress then
    local ok
    ok, err = s:bind(laddress, lport or 0)
    if not ok then
      s:close()
      return nil, err
    end
    s.flex = nil
  end
  local ok
  ok, err = s:connect(address, port)
  if not ok then
    s:close()
    return nil, err
  end
  return s
end

function socket.connect4(address, port, laddress, lport)
  return socket.connect(address, port, laddress, lport, "inet")
end

function socket.connect6(address, port, laddress, lport)
  return socket.connect(address, port, laddress, lport, "inet6")
end

-- A listening TCP object on host:port ("*": every IPv4 address), with
-- reuseaddr set, as LuaSocket's socket.bind.
function socket.bind(host, port, backlog)
  if host == "*" then host = "0.0.0.0" end
  host = checkstring(1, "bind", host)
  port = checkport(2, "bind", port)
  local list, err = resolve(host, port, nil, "tcp", true)
  if not list then return nil, err end
  for _, a in ipairs(list) do
    local s
    s, err = create("tcp", FAMILY[a.family])
    if not s then return nil, err end
    s:setoption("reuseaddr", true)
    local ok
    ok, err = s:bind(a.addr, port)
    if ok then ok, err = s:listen(backlog) end
    if ok then return s end
    s:close()
  end
  return nil, err or "no info on address"
end

function socket.gettime()
  return csock.time()
end

-- Suspends only the task inside csock's loop; blocks the thread elsewhere.
function socket.sleep(t)
  t = checknumber(1, "sleep", t)
  if t > 0 and t == t then
    if t == huge then t = 2 ^ 31 end
    csock.sleep(t)
  end
end

function socket.skip(d, ...)
  d = checkint(1, "skip", d)
  if d < 0 or d >= select("#", ...) then
    if d < 0 then return ... end
    return
  end
  return select(d + 1, ...)
end

-- ---------------------------------------------------------------- try / protect

-- The error value of a failed try: a table {message}; protect turns it
-- back into nil, message and lets every other error through.
local tried = {__tostring = function(e) return tostring(e[1]) end}

function socket.newtry(finalizer)
  return function(...)
    if (...) then return ... end
    if finalizer then finalizer() end
    error(setmetatable({(select(2, ...))}, tried), 0)
  end
end

socket.try = socket.newtry()

local function unwrap(r)
  if r[1] then return unpack(r, 2, r.n) end
  local e = r[2]
  if getmetatable(e) == tried then return nil, e[1] end
  error(e, 0)
end

function socket.protect(f)
  return function(...)
    return unwrap(pack(pcall(f, ...)))
  end
end

-- ---------------------------------------------------------------- sinks and sources (LTN12)

function socket.choose(tbl)
  return function(name, opt1, opt2)
    if type(name) ~= "string" then
      name, opt1, opt2 = "default", name, opt1
    end
    local f = tbl[name or "nil"]
    if not f then error("unknown key (" .. tostring(name) .. ")", 3) end
    return f(opt1, opt2)
  end
end

local sinkt, sourcet = {}, {}
socket.sinkt, socket.sourcet = sinkt, sourcet

-- A callable table that select also accepts: it has getfd and dirty.
local function selectable(sock, call)
  return setmetatable({
    getfd = function() return sock:getfd() end,
    dirty = function() return sock:dirty() end,
  }, {__call = call})
end

sinkt["close-when-done"] = function(sock)
  return selectable(sock, function(_, chunk)
    if chunk == nil then
      sock:close()
      return 1
    end
    return sock:send(chunk)
  end)
end

sinkt["keep-open"] = function(sock)
  return selectable(sock, function(_, chunk)
    if chunk == nil then return 1 end
    return sock:send(chunk)
  end)
end

sinkt.default = sinkt["keep-open"]
socket.sink = socket.choose(sinkt)

sourcet["by-length"] = function(sock, length)
  return selectable(sock, function()
    if length <= 0 then return nil end
    local chunk, err = sock:receive(length < socket.BLOCKSIZE and length or socket.BLOCKSIZE)
    if err then return nil, err end
    length = length - #chunk
    return chunk
  end)
end

sourcet["until-closed"] = function(sock)
  local done = false
  return selectable(sock, function()
    if done then return nil end
    local chunk, err, partial = sock:receive(socket.BLOCKSIZE)
    if not err then return chunk end
    if err ~= "closed" then return nil, err end
    sock:close()
    done = true
    return partial
  end)
end

sourcet.default = sourcet["until-closed"]
socket.source = socket.choose(sourcet)

-- ---------------------------------------------------------------- select

-- The csock socket behind a select entry: one of ours, or anything with a
-- getfd method whose descriptor is one of ours (a sink, a source, a wrapper).
local function entry_socket(e)
  local mt = getmetatable(e)
  if type(mt) == "table" and rawequal(classes[mt.__name], mt) then return e.sock end
  if type(e) ~= "table" and type(e) ~= "userdata" then return nil end
  local ok, getfd = pcall(function() return e.getfd end)
  if not ok or getfd == nil then return nil end
  local fd = tointeger(tonumber(getfd(e)))
  local o = fd and byfd[fd]
  return o and o.sock
end

local function entry_dirty(e)
  local ok, dirty = pcall(function() return e.dirty end)
  return ok and dirty ~= nil and dirty(e) and true or false
end

-- Entries of a select set with their sockets, each once.
local function gather(set, dir, out)
  if set == nil then return end
  if type(set) ~= "table" then argerror(dir == "r" and 1 or 2, "select", "table expected, got " .. type(set), 4) end
  local seen = {}
  for i = 1, #set do
    local e = set[i]
    local s = entry_socket(e)
    if s and not seen[s] then
      seen[s] = true
      out[#out + 1] = {e = e, s = s, dir = dir}
    end
  end
end

-- Whether s is ready for dir now; a socket closed meanwhile is not.
local function ready_now(s, dir)
  local ok, yes = pcall(ready, s, dir, 0)
  return ok and yes == true
end

-- The entries ready now, in two LuaSocket result sets.
local function collect(entries)
  local r, w = {}, {}
  for _, x in ipairs(entries) do
    local t = x.dir == "r" and r or w
    local yes = (x.dir == "r" and entry_dirty(x.e)) or ready_now(x.s, x.dir)
    if yes then
      t[#t + 1] = x.e
      t[x.e] = #t
    end
  end
  return r, w
end

-- Inside a task: a watcher task per socket waits for its readiness (no
-- descriptor ever read or written) and the first to see it wakes us.
local function wait_tasks(entries, timeout)
  local c = csock.cond()
  local fired = false
  local watchers = {}
  local function watch(s, dir)
    -- raising (another task is reading s) is no readiness: that task will see it
    if pcall(ready, s, dir) then
      fired = true
      c:signal()
    end
  end
  for i, x in ipairs(entries) do watchers[i] = csock.spawn(watch, x.s, x.dir) end
  if not fired then c:wait(timeout) end
  for _, t in ipairs(watchers) do t:cancel() end
end

local function in_task()
  return csock.current() ~= nil and coroutine.isyieldable()
end

-- A wait where no task can be suspended: inside a running loop but not
-- yieldable (a metamethod, a C boundary).  It polls, blocking the thread.
local function wait_poll(entries, timeout)
  local deadline = timeout and now() + timeout
  repeat
    for _, x in ipairs(entries) do
      if ready_now(x.s, x.dir) then return end
    end
    csock.sleep(0.001)
  until deadline and now() >= deadline
end

-- Waits until an entry may be ready or timeout (nil: none) passes.
local function wait(entries, timeout)
  if in_task() then return wait_tasks(entries, timeout) end
  if csock.current() == nil then
    local ok, err = pcall(csock.run, wait_tasks, entries, timeout)
    if ok then return end
    if not find(tostring(err), "already running", 1, true) then error(err, 0) end
  end
  wait_poll(entries, timeout)
end

function socket.select(recvt, sendt, timeout)
  local t = timeout
  if t ~= nil then t = checknumber(3, "select", t) end
  if t and (t < 0 or t ~= t or t == huge) then t = nil end
  local entries = {}
  gather(recvt, "r", entries)
  gather(sendt, "w", entries)
  local r, w = collect(entries)
  if #r > 0 or #w > 0 then return r, w, nil end
  if t == 0 then return r, w, "timeout" end
  if #entries == 0 then
    socket.sleep(t or 0)
    return r, w, "timeout"
  end
  local deadline = t and now() + t
  repeat
    wait(entries, t)
    r, w = collect(entries)
    if #r > 0 or #w > 0 then return r, w, nil end
    -- woken with nothing ready (a socket closed meanwhile): wait out the rest
    t = deadline and deadline - now()
  until t and t <= 0
  return r, w, "timeout"
end

-- ---------------------------------------------------------------- dns

local dns = {}
socket.dns = dns

local function readfile(path)
  local f = io.open(path, "r")
  if not f then return nil end
  local text = f:read("a")
  f:close()
  return text
end

function dns.gethostname()
  local name = readfile("/proc/sys/kernel/hostname") or readfile("/etc/hostname")
  if not name then return nil, "gethostname failed" end
  return (gsub(name, "%s+$", ""))
end

-- Names /etc/hosts gives address ip, first the canonical one.
local function hosts_names(ip)
  local text = readfile("/etc/hosts") or ""
  local names = {}
  for line in text:gmatch("[^\n]+") do
    line = gsub(line, "#.*", "")
    local addr, rest = line:match("^%s*(%S+)%s+(.*)$")
    if addr == ip then
      for n in rest:gmatch("%S+") do names[#names + 1] = n end
    end
  end
  return names
end

-- LuaSocket's resolved table {name =, alias = {...}, ip = {...}} for an
-- IPv4 lookup of host (gethostbyname's view).
local function hostent(host)
  local fam = numeric_family(host)
  if fam == "inet" then
    local names = hosts_names(host)
    local name = table.remove(names, 1) or host
    return {name = name, alias = names, ip = {host}}
  end
  local list = csock.getaddrinfo(host, nil,
    {family = csock.AF_INET, socktype = csock.SOCK_STREAM, flags = csock.AI_CANONNAME})
  if not list then return nil end
  local ip = {}
  for i, a in ipairs(list) do ip[i] = a.addr end
  local name = list[1].canonname or host
  local alias = {}
  if name ~= host then alias[1] = host end
  return {name = name, alias = alias, ip = ip}
end

function dns.toip(name)
  name = checkstring(1, "toip", name)
  local h = hostent(name)
  if not h then return nil, "host not found" end
  return h.ip[1], h
end

-- Reverse lookups read /etc/hosts only: csock has no getnameinfo (yet).
function dns.tohostname(address)
  address = checkstring(1, "tohostname", address)
  local h = hostent(address)
  if not h or (numeric_family(address) and h.name == address) then return nil, "host not found" end
  return h.name, h
end

function dns.getaddrinfo(host)
  host = checkstring(1, "getaddrinfo", host)
  local list, err, code = csock.getaddrinfo(host, nil, {socktype = csock.SOCK_STREAM})
  if not list then return nil, errstr(err, code) end
  local out = {}
  for i, a in ipairs(list) do out[i] = {family = FAMILY[a.family], addr = a.addr} end
  return out
end

function dns.getnameinfo(host, port)
  local names
  if host ~= nil then
    host = checkstring(1, "getnameinfo", host)
    local list, err, code = csock.getaddrinfo(host, nil, {socktype = csock.SOCK_STREAM})
    if not list then return nil, errstr(err, code) end
    names = {}
    for _, a in ipairs(list) do
      local n = hosts_names(a.addr)[1] or a.addr
      names[#names + 1] = n
    end
  end
  local service
  if port ~= nil then
    service = tostring(port)
    for line in (readfile("/etc/services") or ""):gmatch("[^\n]+") do
      local n, p = line:match("^(%S+)%s+(%d+)/tcp")
      if p == service then
        service = n
        break
      end
    end
  end
  return names, service
end

return socket
