-- fuzz/lua_api.sh seed 4098 (FUZZ_WITHOUT=manyargs,manyresults,resolve), reduced: issue 15's
-- bug 7 through a lookup.  One task resumes another's coroutine while it waits in
-- getaddrinfo (a number that is not an address, 1e308, is a name to look up): the
-- resume is accepted, list_k's lookup_result frees the lookup, and the waiting task
-- stays linked to it; closing the loop then wakes it through freed memory (ASan
-- heap-use-after-free in wake, loop.c:213, from box_free).
local csock = require "csock"
local L = csock.loop()
local co
L:spawn(function() co = coroutine.running(); print(csock.getaddrinfo("1e+308", nil)) end)
L:spawn(function() print("resume", coroutine.resume(co)) end)
L:step(0.005)
L:step(0.005)
