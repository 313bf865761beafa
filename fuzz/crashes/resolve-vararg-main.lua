-- fuzz/lua_api.sh seeds 3001, 3104 (FUZZ_WITHOUT=manyargs,manyresults) and 35 more, reduced;
-- not one of issue 15's ten.  A connect by name in a main task that takes `...` and was
-- given 7 arguments: when the lookup ends, again_k (resolve.c:329) finds no socket at
-- index 1 -- UBSan "member access within null pointer of type 'const struct
-- csock_socket'".  For a name that does not resolve, lookup_result's addr_pusherror
-- path reads a wild address instead (ASan SEGV in lua_pushstring, addr.c:168).
-- It depends on where the frame sits in the coroutine's stack, not on the count:
-- 3 arguments fail under a pcall and a tail call, 7 fail plainly, 1 and 25 pass;
-- function(a, b, c) (not vararg) passes with any count.  The plain build segfaults too.
-- Cause (checked): the lookup's box is a to-be-closed slot (lua_toclose in
-- lookup_start), and lua_settop(L, top) closes it; calling its __close can reallocate
-- the stack, and Lua 5.4.4's lua_settop then sets the top from a pointer into the old
-- stack: Lua 5.4.4's bug "'lua_settop' may use a pointer to stack invalidated by
-- 'luaF_close'" (Debian 12 ships 5.4.4).  With lua_checkstack(L, 60) before each
-- lua_settop(L, top) of resolve.c the crash is gone; 5.4.4's lua_closeslot recomputes
-- its pointer after the close, so lua_closeslot(L, top + 1) before lua_settop is a fix
-- too -- for every C function that uses lua_toclose.
local csock = require "csock"
csock.run(function(...) -- luacheck: ignore 212 (the arguments only move the frame)
  local c = csock.socket("inet", "stream")
  print(c:connect("localhost", 9))
  local d = csock.socket("inet", "stream")
  print(d:connect("nosuchcaa.invalid", 9))
end, 1, 2, 3, 4, 5, 6, 7)
