--[[
fuzz/reduce.lua PROGRAM PATTERN [OUT] - shrinks a crashing program of fuzz/lua_api.sh.

Runs PROGRAM the way lua_api.sh does (lua5.4, the ASan+UBSan build preloaded,
timeout 10 s) and keeps removing pieces of it -- whole lines first, then the
"; "-separated statements of a line -- as long as its stderr still contains
PATTERN (a plain string, e.g. "resolve.c:329" or "heap-use-after-free"; "HANG": it must
still run past a 5 s timeout; "STATUS=141": it must still end with that status, e.g.
killed by SIGPIPE).  A piece
whose removal breaks the syntax is kept, since the program then fails to load.
Writes the smallest program to OUT (default PROGRAM.min.lua).
]]

local prog, pattern, outpath = arg[1], arg[2], arg[3]
if not (prog and pattern) then
  io.stderr:write("usage: lua5.4 fuzz/reduce.lua PROGRAM PATTERN [OUT]\n")
  os.exit(2)
end
outpath = outpath or prog:gsub("%.lua$", "") .. ".min.lua"
-- PATTERN "HANG": the program must still be killed by the timeout (5 s then)
local limit = pattern == "HANG" and 5 or 10

local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local function spit(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

local rt = io.popen("cc -print-file-name=libasan.so; cc -print-file-name=libubsan.so"):read("a"):gsub("\n", " ")
local trial, errfile = os.tmpname() .. ".lua", os.tmpname()

-- true when the lines still load and still make the report
local function interesting(lines)
  local text = table.concat(lines, "\n") .. "\n"
  if not load(text) then return false end
  spit(trial, text)
  os.execute(string.format(
    "LD_PRELOAD='%s' ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1 "
      .. "LUA_PATH='./lua/?.lua;./lua/?/init.lua;;' LUA_CPATH='./build-asan/?.so;;' "
      .. "timeout -k 2 %d lua5.4 %s >/dev/null 2>%s </dev/null; echo $? >%s.rc", rt, limit, trial, errfile, errfile))
  local _, _, code = os.execute(string.format("exit $(cat %s.rc)", errfile))
  if pattern == "HANG" then return code == 124 or code == 137 end
  local status = pattern:match("^STATUS=(%d+)$")
  if status then return code == tonumber(status) end
  return slurp(errfile):find(pattern, 1, true) ~= nil
end

local lines = {}
for l in (slurp(prog) .. "\n"):gmatch("(.-)\n") do lines[#lines + 1] = l end
assert(interesting(lines), "the program does not report " .. pattern)

-- Removes lines (chunks of n, then halving n) while the program stays interesting.
local function pass_lines()
  local n = #lines // 2
  while n >= 1 do
    local i = 1
    while i <= #lines do
      local t = table.move(lines, 1, i - 1, 1, {})
      table.move(lines, i + n, #lines, #t + 1, t)
      if #t < #lines and interesting(t) then lines = t else i = i + n end
    end
    n = n // 2
  end
end

-- Removes "; "-separated statements inside each line.
local function pass_statements()
  for i = 1, #lines do
    local parts = {}
    for p in (lines[i] .. "; "):gmatch("(.-); ") do parts[#parts + 1] = p end
    local j = 1
    while #parts > 1 and j <= #parts do
      local t = table.move(parts, 1, j - 1, 1, {})
      table.move(parts, j + 1, #parts, #t + 1, t)
      local saved = lines[i]
      lines[i] = table.concat(t, "; ")
      if interesting(lines) then parts = t else lines[i], j = saved, j + 1 end
    end
  end
end

local before
repeat
  before = #table.concat(lines, "\n")
  pass_lines()
  pass_statements()
until #table.concat(lines, "\n") >= before

spit(outpath, table.concat(lines, "\n") .. "\n")
os.remove(trial)
os.remove(errfile)
os.remove(errfile .. ".rc")
print(string.format("%s: %d lines, %d bytes", outpath, #lines, #table.concat(lines, "\n")))
