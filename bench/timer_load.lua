-- timer_load.lua - timer precision of csock's loop while it serves HTTP.
--
--   csock bench/timer_load.lua PORT [TASKS [SECONDS [INTERVAL_MS]]]
--
-- One process: an HTTP/1.1 keep-alive "Hello, World!" server on
-- 127.0.0.1:PORT (the same framing as the peers, servers/common.lua) and
-- TASKS tasks (default 100) that each sleep INTERVAL_MS (default 10 ms) over
-- and over and record how late every wake-up was (actual sleep - asked).
-- A sample counts as "loaded" when at least one HTTP connection was open both
-- when the sleep began and when it ended, "idle" when none was.  The harness
-- (run.sh) runs wrk against the server in the middle of the run.
-- After SECONDS (default 10) it prints one line
--   timer tasks=.. interval_ms=.. requests=.. loaded_n=.. loaded_p50_ms=..
--   loaded_p99_ms=.. loaded_max_ms=.. idle_n=.. idle_p50_ms=.. ...
-- and exits.  Listens on loopback only; bounded by SECONDS.
local csock = require "csock"

local port = tonumber(arg[1])
local ntasks = tonumber(arg[2] or 100)
local seconds = tonumber(arg[3] or 10)
local interval = tonumber(arg[4] or 10) / 1000
if not port or not ntasks or not seconds or not interval then
  io.stderr:write("usage: csock timer_load.lua PORT [TASKS [SECONDS [INTERVAL_MS]]]\n")
  os.exit(2)
end

local find, sub, rep = string.find, string.sub, string.rep
local now, sleep = csock.now, csock.sleep

local RESP = "HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\nHello, World!"
local RESP_CLOSE = "HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n" ..
                   "Connection: close\r\n\r\nHello, World!"
local CLOSE_PAT = "\n[Cc][Oo][Nn][Nn][Ee][Cc][Tt][Ii][Oo][Nn]:[ \t]*[Cc][Ll][Oo][Ss][Ee]"

-- same as servers/common.lua: answer every complete request at the front of buf
local function process(buf)
  local pos, n = 1, 0
  while true do
    local e = find(buf, "\r\n\r\n", pos, true)
    if not e then break end
    local c = find(buf, CLOSE_PAT, pos)
    pos = e + 4
    if c and c < e then return rep(RESP, n) .. RESP_CLOSE, "", true, n + 1 end
    n = n + 1
  end
  local rest = pos > #buf and "" or sub(buf, pos)
  return rep(RESP, n), rest, false, n
end

local active, requests = 0, 0

local function serve(con)
  active = active + 1
  con:setsockopt(csock.IPPROTO_TCP, csock.TCP_NODELAY, true)
  local buf = ""
  while true do
    local data = con:recv(16384)
    if not data or data == "" then break end
    if buf ~= "" then data = buf .. data end
    local out, rest, close, n = process(data)
    buf = rest
    requests = requests + n
    if out ~= "" and not con:write(out) then break end
    if close then break end
  end
  con:close()
  active = active - 1
end

local srv = assert(csock.socket(csock.AF_INET, csock.SOCK_STREAM))
assert(srv:setsockopt(csock.SOL_SOCKET, csock.SO_REUSEADDR, true))
assert(srv:bind("127.0.0.1", port))
assert(srv:listen(4096))

csock.spawn(function()
  while true do
    local con = srv:accept()
    if con then csock.spawn(serve, con) end
  end
end)

local loaded, idle = {}, {}
local MAXS = 2000000  -- bound the memory of the samples
local function sleeper()
  while true do
    local busy0 = active > 0
    local t0 = now()
    sleep(interval)
    local late = (now() - t0 - interval) * 1000
    local busy1 = active > 0
    if busy0 and busy1 then
      if #loaded < MAXS then loaded[#loaded + 1] = late end
    elseif not busy0 and not busy1 then
      if #idle < MAXS then idle[#idle + 1] = late end
    end
  end
end
for _ = 1, ntasks do csock.spawn(sleeper) end

sleep(seconds)

local function stats(name, a)
  table.sort(a)
  local n = #a
  local function q(p)
    if n == 0 then return "" end
    local i = math.max(1, math.ceil(p * n))
    return string.format("%.3f", a[i])
  end
  return string.format("%s_n=%d %s_p50_ms=%s %s_p99_ms=%s %s_max_ms=%s",
    name, n, name, q(0.5), name, q(0.99), name, n > 0 and string.format("%.3f", a[n]) or "")
end
io.stdout:write(string.format("timer tasks=%d interval_ms=%g requests=%d %s %s\n",
  ntasks, interval * 1000, requests, stats("loaded", loaded), stats("idle", idle)))
io.stdout:flush()
os.exit(0)
