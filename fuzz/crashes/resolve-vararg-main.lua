-- fuzz/lua_api.sh seeds 3001 and 3104 (FUZZ_WITHOUT=manyargs,manyresults), reduced.
-- A connect by name, tail-called inside a pcall, in a main task that takes `...` and
-- was given three arguments: when the lookup ends, again_k (resolve.c:329) finds no
-- socket at index 1 -- UBSan "member access within null pointer of type 'const
-- struct csock_socket'"; for a name that does not resolve, lookup_result's
-- addr_pusherror path reads a wild address instead (ASan SEGV in lua_pushstring).
-- With one argument, or without the tail call, it passes.
local csock = require "csock"
local l = assert(csock.tcp_listen("127.0.0.1", 0))
local port = l:getsockname().port
local function connect(host)
  return pcall(function()
    local c = csock.socket("inet", "stream")
    return c:connect(host, port)
  end)
end
print(pcall(csock.run, function(...)
  print(connect("localhost"))
  print(connect("nosuchcaa.invalid"))
end, 1, 2, 3))
