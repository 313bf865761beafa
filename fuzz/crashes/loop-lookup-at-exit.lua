-- fuzz/lua_api.sh seed 6236 (FUZZ_WITHOUT=manyargs,manyresults,resolve,coclose,crossjoin),
-- reduced by hand: issue 15 bug 6.  An embedded loop's task waits in a lookup ("l", a
-- name); the script ends without stepping the loop again.  Status 139 every time, with
-- no ASan report (the fault comes as the state closes); the plain build exits 0.
local csock = require "csock"
local L = csock.loop()
L:spawn(function() print(csock.getaddrinfo("l", "")) end)
L:step(0)
