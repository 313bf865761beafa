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

function S.log(fmt, ...)
  io.stderr:write(string.format(fmt, ...), "\n")
end

function S.exit()
  os.exit(failed and 1 or 0)
end

return S
