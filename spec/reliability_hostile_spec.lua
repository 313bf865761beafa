-- Hostile Lua (issue 6): every socket method and module function called
-- with wrong types, nil, negative and huge sizes, closed sockets, over-long
-- unix paths, zeros inside hosts and paths, options out of range, and a
-- self that is not a socket.  Each call must raise a Lua error whose
-- message names the function - never crash, never return.  The whole table
-- runs again in a child process, where a crash shows as a signal.

local helper = require "helper"

-- The table, as source: this process and the child load the same text.
local CASES = [==[
local csock = require "csock"

local LONG108 = string.rep("a", 108)           -- sun_path is 108 bytes: no room for the NUL
local LONG = string.rep("p", 4096)
local ABSTRACT109 = "\0" .. string.rep("a", 108)
local F251 = {} -- more formats than read and lines take
for i = 1, 251 do F251[i] = "l" end

-- Socket kinds a case runs on.
local make = {
  tcp = function() return assert(csock.socket(csock.AF_INET, csock.SOCK_STREAM)) end,
  tcp6 = function() return assert(csock.socket(csock.AF_INET6, csock.SOCK_STREAM)) end,
  udp = function() return assert(csock.socket(csock.AF_INET, csock.SOCK_DGRAM)) end,
  unix = function() return assert(csock.socket(csock.AF_UNIX, csock.SOCK_STREAM)) end,
  unixd = function() return assert(csock.socket(csock.AF_UNIX, csock.SOCK_DGRAM)) end,
  closed = function()
    local s = assert(csock.socket(csock.AF_INET, csock.SOCK_STREAM))
    s:close()
    return s
  end,
}

-- method = {{kind, "arguments as Lua source"}, ...}: each must raise.
local methods = {
  setsockopt = {
    {"tcp", ""}, {"tcp", "nil, nil, nil"}, {"tcp", "'x', 1, 1"},
    {"tcp", "csock.SOL_SOCKET, 'x', 1"}, {"tcp", "csock.SOL_SOCKET, 99999, 1"},
    {"tcp", "12345, csock.SO_REUSEADDR, true"}, {"tcp", "math.maxinteger, 1, 1"},
    {"tcp", "csock.SOL_SOCKET, math.mininteger, 1"},
    {"tcp", "csock.SOL_SOCKET, csock.SO_REUSEADDR"},
    {"tcp", "csock.SOL_SOCKET, csock.SO_REUSEADDR, nil"},
    {"tcp", "csock.SOL_SOCKET, csock.SO_RCVBUF, 2^40"},
    {"tcp", "csock.SOL_SOCKET, csock.SO_RCVBUF, 1 << 40"},
    {"tcp", "csock.SOL_SOCKET, csock.SO_RCVBUF, -(1 << 40)"},
    {"tcp", "csock.SOL_SOCKET, csock.SO_RCVBUF, 1.5"},
    {"tcp", "csock.SOL_SOCKET, csock.SO_RCVBUF, 'big'"},
    {"tcp", "csock.SOL_SOCKET, csock.SO_RCVBUF, {}"},
    {"tcp", "csock.SOL_SOCKET, csock.SO_LINGER, 5"},
    {"tcp", "csock.SOL_SOCKET, csock.SO_LINGER, {onoff = true, linger = -1}"},
    {"tcp", "csock.SOL_SOCKET, csock.SO_LINGER, {onoff = true, linger = 1 << 40}"},
    {"tcp", "csock.SOL_SOCKET, csock.SO_LINGER, {onoff = 'x'}"},
    {"tcp", "csock.SOL_SOCKET, csock.SO_LINGER, {onoff = true, linger = 1.5}"},
    {"tcp", "csock.SOL_SOCKET, csock.SO_RCVTIMEO, -1"},
    {"tcp", "csock.SOL_SOCKET, csock.SO_RCVTIMEO, 0/0"},
    {"tcp", "csock.SOL_SOCKET, csock.SO_RCVTIMEO, math.huge"},
    {"tcp", "csock.SOL_SOCKET, csock.SO_ERROR, 1"},
    {"tcp", "csock.SOL_SOCKET, csock.SO_TYPE, 1"},
    {"tcp", "csock.IPPROTO_UDP, csock.SO_REUSEADDR, true"},
  },
  getsockopt = {
    {"tcp", ""}, {"tcp", "nil, nil"}, {"tcp", "'x', 1"}, {"tcp", "csock.SOL_SOCKET"},
    {"tcp", "csock.SOL_SOCKET, 99999"}, {"tcp", "99999, 1"}, {"tcp", "csock.SOL_SOCKET, 1.5"},
    {"tcp", "csock.SOL_SOCKET, math.maxinteger"},
  },
  bind = {
    {"tcp", ""}, {"tcp", "nil"}, {"tcp", "{}"}, {"tcp", "'127.0.0.1'"},
    {"tcp", "'127.0.0.1', nil"}, {"tcp", "'127.0.0.1', -1"}, {"tcp", "'127.0.0.1', 65536"},
    {"tcp", "'127.0.0.1', 1.5"}, {"tcp", "'127.0.0.1', 'x'"}, {"tcp", "'127.0.0.1', math.maxinteger"},
    {"tcp", "'127.0.0.1', math.mininteger"}, {"tcp", "'127.0.0.1', 2^63"},
    {"tcp", "'127.0.0.1', 0/0"}, {"tcp", "'127.0.0.1\\0evil', 0"}, {"tcp6", "'::1\\0', 0"},
    {"tcp", "'\\0', 0"}, {"tcp", "true, 0"},
    {"unix", ""}, {"unix", "nil"}, {"unix", "''"}, {"unix", "LONG108"}, {"unix", "LONG"},
    {"unix", "ABSTRACT109"}, {"unix", "'/tmp/a\\0b'"}, {"unix", "'/tmp/x\\0'"}, {"unix", "{}"},
    {"unix", "true"},
  },
  listen = {
    {"tcp", "'x'"}, {"tcp", "-1"}, {"tcp", "65536"}, {"tcp", "1.5"}, {"tcp", "math.maxinteger"},
    {"tcp", "math.mininteger"}, {"tcp", "{}"},
  },
  connect = {
    {"tcp", ""}, {"tcp", "nil"}, {"tcp", "{}"}, {"tcp", "'127.0.0.1'"},
    {"tcp", "'127.0.0.1', -1"}, {"tcp", "'127.0.0.1', 65536"}, {"tcp", "'127.0.0.1', 1.5"},
    {"tcp", "'127.0.0.1', 'x'"}, {"tcp", "'127.0.0.1', 2^63"}, {"tcp", "'127.0.0.1\\0x', 1"},
    {"tcp6", "'::1\\0x', 1"},
    {"unix", ""}, {"unix", "''"}, {"unix", "LONG108"}, {"unix", "LONG"}, {"unix", "ABSTRACT109"},
    {"unix", "'/tmp/a\\0b'"}, {"unix", "{}"},
  },
  send = {
    {"tcp", ""}, {"tcp", "nil"}, {"tcp", "{}"}, {"tcp", "true"}, {"tcp", "'x', 'a'"},
    {"tcp", "'x', 1.5"}, {"tcp", "'x', 1, 2.5"}, {"tcp", "'x', {}"},
  },
  recv = {
    {"tcp", "-1"}, {"tcp", "0"}, {"tcp", "'x'"}, {"tcp", "{}"}, {"tcp", "1.5"},
    {"tcp", "math.mininteger"}, {"tcp", "-math.huge"}, {"tcp", "0/0"},
  },
  sendto = {
    {"udp", ""}, {"udp", "'x'"}, {"udp", "'x', '127.0.0.1'"}, {"udp", "'x', '127.0.0.1', -1"},
    {"udp", "'x', '127.0.0.1', 70000"}, {"udp", "{}, '127.0.0.1', 1"},
    {"udp", "'x', '127.0.0.1\\0', 1"}, {"udp", "'x', nil, 1"}, {"udp", "'x', '127.0.0.1', 1.5"},
    {"unixd", "'x'"}, {"unixd", "'x', ''"}, {"unixd", "'x', LONG108"}, {"unixd", "'x', LONG"},
    {"unixd", "'x', 'a\\0b'"}, {"unixd", "nil, '/tmp/x'"},
  },
  recvfrom = {
    {"udp", "-1"}, {"udp", "0"}, {"udp", "'x'"}, {"udp", "1.5"}, {"udp", "{}"},
    {"udp", "math.mininteger"},
  },
  read = {
    {"tcp", "'x'"}, {"tcp", "'nn'"}, {"tcp", "''"}, {"tcp", "'ll'"}, {"tcp", "'*x'"},
    {"tcp", "-1"}, {"tcp", "1.5"}, {"tcp", "math.mininteger"}, {"tcp", "{}"}, {"tcp", "true"},
    {"tcp", "nil"}, {"tcp", "'l', 'x'"}, {"tcp", "'l', nil"},
    {"tcp", "table.unpack(F251)"},
  },
  write = {
    {"tcp", "{}"}, {"tcp", "nil"}, {"tcp", "true"}, {"tcp", "'a', {}"}, {"tcp", "'a', nil, 'b'"},
  },
  sendfile = {
    {"tcp", ""}, {"tcp", "nil"}, {"tcp", "{}"}, {"tcp", "true"}, {"tcp", "-1"}, {"tcp", "1.5"},
    {"tcp", "math.mininteger"}, {"tcp", "math.maxinteger"}, {"tcp", "'/dev/null', -1"},
    {"tcp", "'/dev/null', math.mininteger"}, {"tcp", "'/dev/null', 'x'"},
    {"tcp", "'/dev/null', 0, -1"}, {"tcp", "'/dev/null', 0, {}"}, {"tcp", "'/dev/null', 0.5"},
    {"tcp", "io.stdin, 0, math.mininteger"},
  },
  lines = {
    {"tcp", "'x'"}, {"tcp", "-1"}, {"tcp", "{}"}, {"tcp", "1.5"},
    {"tcp", "table.unpack(F251)"},
  },
  shutdown = {
    {"tcp", "'x'"}, {"tcp", "99"}, {"tcp", "-1"}, {"tcp", "{}"}, {"tcp", "1.5"}, {"tcp", "'rwx'"},
  },
  settimeout = {
    {"tcp", "-1"}, {"tcp", "'x'"}, {"tcp", "{}"}, {"tcp", "-math.huge"}, {"tcp", "0/0"},
    {"tcp", "true"},
  },
  setmaxline = {
    {"tcp", ""}, {"tcp", "nil"}, {"tcp", "0"}, {"tcp", "-1"}, {"tcp", "1 << 41"},
    {"tcp", "math.maxinteger"}, {"tcp", "'x'"}, {"tcp", "1.5"}, {"tcp", "{}"},
  },
  starttls = {
    {"tcp", ""}, {"tcp", "nil"}, {"tcp", "{}"}, {"tcp", "5"}, {"tcp", "csock.tls_context {}"},
    {"tcp", "csock.tls_context {}, 5"}, {"tcp", "csock.tls_context {}, 'a\\0b'"},
    {"udp", "csock.tls_context {insecure = true}"},
  },
  _httpreq = {
    {"tcp", ""}, {"tcp", "-1, 1, 1, 1, 1"}, {"tcp", "'x', 1, 1, 1, 1"}, {"tcp", "1, 0/0, 1, 1, 1"},
    {"tcp", "1, 1, 0, 1, 1"}, {"tcp", "1, 1, 1, -1, 1"}, {"tcp", "1, 1, 1, 1, 1.5"},
    {"tcp", "1, 1, 1, 1"}, {"tcp", "1, 1, {}, 1, 1"}, {"tcp", "nil, nil, math.mininteger, 1, 1"},
  },
  _httpres = {
    {"tcp", ""}, {"tcp", "1, -1, 1, 1, 1"}, {"tcp", "1, 1, 1, 0, 1"}, {"tcp", "1, 1, 1, 1, 'x'"},
  },
  _httpchunk = {
    {"tcp", ""}, {"tcp", "-1, false, 1, 1, 1"}, {"tcp", "1, true, 0, 1, 1"},
    {"tcp", "1, true, 1, 1, -1"}, {"tcp", "{}, true, 1, 1, 1"},
  },
  -- _lsrecv and _lssend answer false to arguments they do not take (csock.socket checks them)
  _lsrecv = {}, _lssend = {},
  accept = {}, _accept = {}, close = {}, getsockname = {}, getpeername = {}, gettimeout = {}, fileno = {},
  tlsinfo = {}, _lsfd = {},
}

-- Valid-looking arguments for the closed-socket cases.
local closed_args = {
  setsockopt = "csock.SOL_SOCKET, csock.SO_REUSEADDR, true",
  getsockopt = "csock.SOL_SOCKET, csock.SO_REUSEADDR",
  bind = "'127.0.0.1', 0", listen = "", accept = "", _accept = "", connect = "'127.0.0.1', 1",
  send = "'x'", recv = "1", sendto = "'x', '127.0.0.1', 9", recvfrom = "1", read = "'l'",
  write = "'x'", sendfile = "'/dev/null'", lines = "", shutdown = "", getsockname = "", getpeername = "",
  settimeout = "1", gettimeout = "", setmaxline = "10", fileno = "",
  starttls = "csock.tls_context {insecure = true}", tlsinfo = "",
  _httpreq = "1, 1, 1, 1, 1", _httpres = "1, 1, 1, 1, 1", _httpchunk = "1, false, 1, 1, 1",
  _lsrecv = "'*l'", _lssend = "'x'", _lsfd = "",
}

-- Module functions: {name, "arguments"}; each must raise.
local functions = {
  {"socket", ""}, {"socket", "nil, nil"}, {"socket", "'x', 1"}, {"socket", "99, csock.SOCK_STREAM"},
  {"socket", "csock.AF_INET"}, {"socket", "csock.AF_INET, 99"}, {"socket", "csock.AF_INET, 'x'"},
  {"socket", "csock.AF_INET, csock.SOCK_STREAM, -1"}, {"socket", "csock.AF_INET, csock.SOCK_STREAM, 256"},
  {"socket", "csock.AF_INET, csock.SOCK_STREAM, 1.5"}, {"socket", "{}, 1"}, {"socket", "1.5, 1"},
  {"socket", "math.maxinteger, 1"}, {"socket", "csock.AF_INET, math.mininteger"},
  {"socketpair", "'x'"}, {"socketpair", "99"}, {"socketpair", "csock.AF_UNIX, 99"},
  {"socketpair", "csock.AF_UNIX, 'x'"}, {"socketpair", "{}"}, {"socketpair", "1.5"},
  {"getaddrinfo", ""}, {"getaddrinfo", "nil, nil"}, {"getaddrinfo", "{}, 80"},
  {"getaddrinfo", "'localhost\\0x', 80"}, {"getaddrinfo", "'127.0.0.1', -1"},
  {"getaddrinfo", "'127.0.0.1', 65536"}, {"getaddrinfo", "'127.0.0.1', 1.5"},
  {"getaddrinfo", "'127.0.0.1', 80, 5"}, {"getaddrinfo", "'127.0.0.1', 80, {family = 'x'}"},
  {"getaddrinfo", "'127.0.0.1', 'http\\0'"}, {"getaddrinfo", "'127.0.0.1', 80, {flags = 1.5}"},
  {"getaddrinfo", "'127.0.0.1', {}"},
  {"run", ""}, {"run", "nil"}, {"run", "5"}, {"run", "{}"},
  {"spawn", ""}, {"spawn", "5"}, {"spawn", "function() end"},
  {"sleep", ""}, {"sleep", "-1"}, {"sleep", "'x'"}, {"sleep", "0/0"}, {"sleep", "nil"}, {"sleep", "{}"},
  {"workers", ""}, {"workers", "0"}, {"workers", "-1"}, {"workers", "'x'"}, {"workers", "1 << 40"},
  {"workers", "1.5"},
  {"signal", ""}, {"signal", "'x'"}, {"signal", "-1"}, {"signal", "99999"}, {"signal", "2, 5"},
  {"signal", "1.5, nil"},
  {"tcp_connect", "{}, 80"}, {"tcp_connect", "'127.0.0.1', -1"},
  {"tcp_listen", "'127.0.0.1', -1"}, {"tcp_listen", "'127.0.0.1\\0', 0"},
  {"tls_context", "5"}, {"tls_context", "{x = 1}"}, {"tls_context", "{[1] = true}"},
  {"tls_context", "{mode = 5}"}, {"tls_context", "{mode = 'server'}"},
  {"tls_context", "{verify = 'yes'}"}, {"tls_context", "{alpn = 'h2'}"},
  {"tls_context", "{alpn = {''}}"}, {"tls_context", "{alpn = {string.rep('x', 256)}}"},
  {"tls_context", "{servers = {}}"}, {"tls_context", "{min_version = 1.5}"},
  {"tls_context", "{cafile = '/nonexistent'}"}, {"tls_context", "{ciphersuites = 'x'}"},
  {"tls_context", "{mode = 'server', certificate = '/x', key = '/y', servers = {a = 1}}"},
  {"tls_connect", "{}, 443"}, {"tls_connect", "'127.0.0.1', -1"},
  {"tls_connect", "'127.0.0.1', 443, 5"}, {"tls_connect", "'127.0.0.1', 443, {bogus = 1}"},
  {"tls_connect", "'127.0.0.1', 1, {timeout = 0/0}"}, {"tcp_connect", "'127.0.0.1', 1, 0/0"},
  {"ready", ""}, {"ready", "5, 'r'"}, {"ready", "{}, 'r'"}, {"ready", "(csock.socketpair())"},
  {"ready", "(csock.socketpair()), 'x'"}, {"ready", "(csock.socketpair()), 1"},
  {"ready", "(csock.socketpair()), 'r', -1"}, {"ready", "(csock.socketpair()), 'w', 0/0"},
  {"ready", "(csock.socketpair()), 'r', 'x'"},
  {"ready", "(function() local a = csock.socketpair() a:close() return a end)(), 'r'"},
  {"pending", ""}, {"pending", "5"}, {"pending", "{}"}, {"pending", "io.stdout"},
}
-- Module functions that take no argument worth breaking (every call is valid).
local no_arguments = {now = true, current = true, tasks = true, dump = true, listeners = true, worker = true,
  loop = true, cond = true, time = true}

local cases = {}
local function add(label, fname, src, kind)
  local chunk = assert(load("local csock, s, LONG108, LONG, ABSTRACT109, F251 = ... " .. src,
    "=" .. label))
  cases[#cases + 1] = {label = label, fname = fname, run = function()
    local s = kind and make[kind]() or nil
    local ok, err = pcall(chunk, csock, s, LONG108, LONG, ABSTRACT109, F251)
    if s then s:close() end
    return ok, err
  end}
end

for m, list in pairs(methods) do
  for _, c in ipairs(list) do
    add(string.format("%s s:%s(%s)", c[1], m, c[2]), m,
      string.format("return s:%s(%s)", m, c[2]), c[1])
  end
  if m ~= "close" then
    add(string.format("closed s:%s(%s)", m, closed_args[m]), m,
      string.format("return s:%s(%s)", m, closed_args[m]), "closed")
  end
  for _, self in ipairs({"5", "nil", "{}", "'tcp'", "io.stdout", "csock.socket"}) do
    -- the method fetched from a socket, called on something else
    add(string.format("s.%s(%s)", m, self), m,
      string.format("return s.%s(%s)", m, self), "tcp")
  end
end
for _, f in ipairs(functions) do
  add(string.format("csock.%s(%s)", f[1], f[2]), f[1],
    string.format("return csock.%s(%s)", f[1], f[2]))
end

return {cases = cases, methods = methods, functions = functions, no_arguments = no_arguments,
  make = make}
]==]

-- What a raised error must look like: a string naming the function.
local function check(case, ok, err)
  if ok then return "returned instead of raising" end
  if type(err) ~= "string" then return "raised a " .. type(err) end
  if not err:find("'" .. case.fname .. "'", 1, true)
    and not err:find("csock." .. case.fname, 1, true) then
    return "error does not name '" .. case.fname .. "': " .. err
  end
end

local function load_cases()
  return assert(load(CASES, "=cases"))()
end

describe("hostile arguments", function()
  local T = load_cases()

  it("cover every socket method and module function", function()
    local csock = require "csock"
    local missing = {}
    local s = T.make.tcp()
    for name in pairs(getmetatable(s).__index) do
      if not T.methods[name] then missing[#missing + 1] = "method " .. name end
    end
    s:close()
    local named = {}
    for _, f in ipairs(T.functions) do named[f[1]] = true end
    for name, v in pairs(csock) do
      if type(v) == "function" and not named[name] and not T.no_arguments[name] then
        missing[#missing + 1] = "function " .. name
      end
    end
    table.sort(missing)
    assert.same({}, missing)
  end)

  it("raise an error naming the function, for each of " .. #T.cases .. " calls", function()
    local bad = {}
    for _, case in ipairs(T.cases) do
      local why = check(case, case.run())
      if why then bad[#bad + 1] = case.label .. ": " .. why end
    end
    table.sort(bad)
    assert.same({}, bad)
  end)

  it("never crash: the whole table in a child process ends normally", function()
    local code = "local T = assert(load(" .. string.format("%q", CASES) .. "))() "
      .. "local n = 0 for _, c in ipairs(T.cases) do c.run() n = n + 1 end "
      .. "collectgarbage() collectgarbage() print('ran ' .. n)"
    local ok, status, out, err = helper.spawn_lua(code):wait()
    assert.equal(0, status, "child ended with status " .. tostring(status)
      .. " (128+n: killed by signal n)\n" .. err)
    assert.is_true(ok)
    assert.equal("ran " .. #T.cases, (out:gsub("%s+$", "")))
  end)

  it("leave the socket usable after a bad argument", function()
    local csock = require "csock"
    local a, b = csock.socketpair()
    assert.has_error(function() a:recv(-1) end)
    assert.has_error(function() a:read("x") end)
    assert.has_error(function() a:setmaxline(0) end)
    assert.truthy(b:write("still here\n"))
    assert.equal("still here", a:read("l"))
    a:close()
    b:close()
  end)
end)
