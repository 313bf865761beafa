--[[
stress/lib.lua - what the stress scripts share.

  S.pid()              this process' id
  S.fds()              open descriptors of this process (/proc/<pid>/fd)
  S.rss()              resident set size in KiB (/proc/self/status VmRSS)
  S.cpu(pid)           user+system CPU seconds of a process (/proc/<pid>/stat)
  S.row(case, tried, count, ok, result)
                       prints one row of the table run.sh assembles, and
                       remembers a failure for S.exit(); ok == nil makes
                       an informational NOTE row
  S.exit()             exits 0 when every row passed, 1 otherwise

Rows go to stdout as `ROW|case|tried|count|PASS result`; anything else a
script prints (diagnostics) goes to stderr.
]]
local S = {}

function S.pid()
  local f = assert(io.open("/proc/self/stat"))
  local pid = f:read("n")
  f:close()
  return math.tointeger(pid)
end

function S.fds()
  local p = assert(io.popen("ls /proc/" .. S.pid() .. "/fd | wc -l"))
  local n = p:read("n")
  p:close()
  return math.tointeger(n)
end

function S.rss()
  local f = assert(io.open("/proc/self/status"))
  local text = f:read("a")
  f:close()
  return math.tointeger(tonumber(text:match("VmRSS:%s*(%d+)")))
end

local ticks = 100
do
  local p = io.popen("getconf CLK_TCK 2>/dev/null")
  if p then
    ticks = tonumber(p:read("l")) or 100
    p:close()
  end
end

-- CPU seconds (user + system) a process has used; nil when it is gone.
function S.cpu(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if not f then return nil end
  local text = f:read("a")
  f:close()
  -- the command name (field 2) may hold spaces: count fields after its ')'
  local rest = text:match("%) (.*)$")
  local fields = {}
  for w in rest:gmatch("%S+") do fields[#fields + 1] = w end
  -- fields[1] is field 3 (state): utime is field 14, stime field 15
  return (tonumber(fields[12]) + tonumber(fields[13])) / ticks
end

local failed = false

function S.row(case, tried, count, ok, result)
  if ok == false then failed = true end
  local line = string.format("ROW|%s|%s|%s|%s %s", case, tried, tostring(count),
    ok == nil and "NOTE" or ok and "PASS" or "FAIL", result)
  io.stdout:write(line:gsub("\n", " "), "\n")
  io.stdout:flush()
end

-- A leak check: cycles(warm) first, then cycles(n) between two full collections. Returns
-- the descriptors and RSS (KiB) before and after, and the seconds (by now()) cycles(n) took.
function S.measure(cycles, warm, n, now)
  local function settle()
    collectgarbage("collect")
    collectgarbage("collect")
  end
  cycles(warm)
  settle()
  local m = {fd0 = S.fds(), rss0 = S.rss()}
  local t0 = now()
  cycles(n)
  settle()
  m.fd1, m.rss1, m.seconds = S.fds(), S.rss(), now() - t0
  return m
end

-- The row of a leak check: flat means no descriptor more and RSS within 2 MiB (allocator
-- noise), with no error and whatever else the case requires (more_ok).
function S.leak_row(case, tried, n, m, errors, more_ok)
  local ok = m.fd1 <= m.fd0 and m.rss1 - m.rss0 <= 2048 and errors == 0 and more_ok ~= false
  S.row(case, tried, n, ok, string.format("fds %d->%d, RSS %d->%d KiB, errors %d, %.0f cycles/s",
    m.fd0, m.fd1, m.rss0, m.rss1, errors, n / m.seconds))
end

function S.log(fmt, ...)
  io.stderr:write(string.format(fmt, ...), "\n")
end

function S.exit()
  os.exit(failed and 1 or 0)
end

return S
