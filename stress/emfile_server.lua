-- stress/emfile_server.lua [naive] - run by bin/csock under a low
-- `ulimit -n`: an echo-style server ("ping" -> "pong") whose accept runs out
-- of descriptors.  On EMFILE/ENFILE it backs off 50 ms (the way
-- examples/echo_server.lua treats the error result) and tries again; with
-- "naive" it calls accept again at once, as a plain accept loop would.
-- Prints its port and pid, then "emfile" the first time accept fails that
-- way; ends itself after 60 s whatever happens.
package.path = "./stress/?.lua;" .. package.path
local csock = require "csock"
local S = require "lib"

local srv = assert(csock.socket(csock.AF_INET, csock.SOCK_STREAM))
assert(srv:bind("127.0.0.1", 0))
assert(srv:listen(512))
io.stdout:setvbuf("line")
print(string.format("listening 127.0.0.1:%d pid %d", srv:getsockname().port, S.pid()))

csock.spawn(function()
  csock.sleep(60)
  io.stderr:write("emfile_server: watchdog\n")
  os.exit(3)
end)

local function handle(c)
  for line in c:lines("l") do
    if line == "quit" then os.exit(0) end
    c:write(line == "ping" and "pong\n" or "?\n")
  end
  c:close()
end

local naive = arg[1] == "naive"
local emfile = 0
while true do
  local c, err, code = srv:accept()
  if c then
    csock.spawn(handle, c)
  elseif code == csock.EMFILE or code == csock.ENFILE then
    emfile = emfile + 1
    if emfile == 1 then print("emfile " .. err) end
    if not naive then csock.sleep(0.05) end
  else
    io.stderr:write("emfile_server: accept: ", tostring(err), "\n")
    csock.sleep(0.05)
  end
end
