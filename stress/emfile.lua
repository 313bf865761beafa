-- stress/emfile.lua - run by lua5.4: starts stress/emfile_server.lua under
-- `ulimit -n 64`, opens more clients than it has descriptors, measures the
-- server's CPU time while accept fails with EMFILE, then frees descriptors
-- and checks that every waiting client is served.
package.path = "./stress/?.lua;./lua/?.lua;./lua/?/init.lua;" .. package.path
package.cpath = "./?.so;" .. package.cpath
local csock = require "csock"
local S = require "lib"

local LIMIT, CLIENTS, WINDOW = 64, 120, 2.0

local pipe = assert(io.popen(string.format(
  "exec sh -c 'ulimit -n %d; exec bin/csock stress/emfile_server.lua'", LIMIT), "r"))
local banner = pipe:read("l") or ""
local port = math.tointeger(tonumber(banner:match(":(%d+)")))
local pid = math.tointeger(tonumber(banner:match("pid (%d+)")))
if not (port and pid) then
  S.row("EMFILE", "server under ulimit -n " .. LIMIT, CLIENTS, false, "server did not start")
  S.exit()
end

local clients, connected = {}, 0
for i = 1, CLIENTS do
  local c = assert(csock.socket(csock.AF_INET, csock.SOCK_STREAM))
  c:settimeout(5)
  if c:connect("127.0.0.1", port) then
    connected = connected + 1
    c:write("ping\n")
  end
  clients[i] = c
end

-- the first ones are served at once
local early = 0
for i = 1, 40 do
  if clients[i]:read("l") == "pong" then early = early + 1 end
end

-- wait for the server to report EMFILE, then watch its CPU time
local line = pipe:read("l") or ""
local saw_emfile = line:match("^emfile") ~= nil
local cpu0, t0 = S.cpu(pid), csock.now()
csock.sleep(WINDOW)
local cpu1, t1 = S.cpu(pid), csock.now()
local busy = (cpu1 and cpu0) and (cpu1 - cpu0) / (t1 - t0) or 1

-- free descriptors: each served client leaves, so the waiting ones must be
-- served one after another
for i = 1, 40 do clients[i]:close() end
local late, t2 = 0, csock.now()
for i = 41, CLIENTS do
  if clients[i]:read("l") == "pong" then late = late + 1 end
  clients[i]:close()
end
local recover = csock.now() - t2

-- and a fresh client after that
local fresh = false
do
  local c = assert(csock.socket(csock.AF_INET, csock.SOCK_STREAM))
  c:settimeout(5)
  if c:connect("127.0.0.1", port) then
    c:write("ping\n")
    fresh = c:read("l") == "pong"
    c:write("quit\n")
  end
  c:close()
end
os.execute("kill " .. pid .. " 2>/dev/null")
pipe:close()

S.row("EMFILE (cpu)", string.format("%d clients vs ulimit -n %d; server CPU over %.0f s",
  CLIENTS, LIMIT, WINDOW), CLIENTS, saw_emfile and busy < 0.10,
  string.format("accept gave EMFILE: %s; server CPU %.1f%% while out of fds",
    saw_emfile and "yes" or "no", busy * 100))
S.row("EMFILE (recovery)", "served clients leave; the waiting ones + a fresh one",
  CLIENTS - 40 + 1, early == 40 and late == CLIENTS - 40 and fresh,
  string.format("served %d first, %d/%d after fds freed in %.2f s, fresh client %s",
    early, late, CLIENTS - 40, recover, fresh and "served" or "NOT served"))

-- The same server without the back-off: accept returns EMFILE without
-- yielding, so a plain `while true do srv:accept() end` keeps the task
-- running - it spins, and the tasks that would close descriptors never run.
-- Reported as a NOTE: the error result is what the issue allows, and the
-- script chose to retry at once.
do
  local p2 = assert(io.popen(string.format(
    "exec sh -c 'ulimit -n %d; exec bin/csock stress/emfile_server.lua naive'", LIMIT), "r"))
  local b2 = p2:read("l") or ""
  local port2 = math.tointeger(tonumber(b2:match(":(%d+)")))
  local pid2 = math.tointeger(tonumber(b2:match("pid (%d+)")))
  local cs = {}
  for i = 1, CLIENTS do
    local c = assert(csock.socket(csock.AF_INET, csock.SOCK_STREAM))
    c:settimeout(1)
    if c:connect("127.0.0.1", port2) then c:write("ping\n") end
    cs[i] = c
  end
  csock.sleep(0.5)
  local c0, n0 = S.cpu(pid2), csock.now()
  csock.sleep(WINDOW)
  local c1, n1 = S.cpu(pid2), csock.now()
  local served = 0
  for i = 1, 5 do
    if cs[i]:read("l") == "pong" then served = served + 1 end
  end
  for _, c in ipairs(cs) do c:close() end
  os.execute("kill " .. pid2 .. " 2>/dev/null")
  p2:close()
  -- accept itself pauses 50 ms before it reports EMFILE, so even a script that
  -- retries at once neither spins nor starves the tasks that serve clients
  local cpu = (c0 and c1) and (c1 - c0) / (n1 - n0) * 100 or -1
  S.row("EMFILE (no back-off)", "same, accept retried at once by the script", CLIENTS,
    cpu >= 0 and cpu < 50 and served == 5,
    string.format("server CPU %.0f%%; %d of the first 5 clients served (accept pauses 50 ms on EMFILE)",
      cpu, served))
end
S.exit()
