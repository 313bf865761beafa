-- stress/slow_peers.lua - run by bin/csock: a server whose connections have
-- a 2 s socket timeout.  A slowloris client (one byte a second, never a
-- newline) and a client that never reads its (large) responses must be
-- dropped by the timeout, while 100 well-behaved clients, started while the
-- two hold their connections, are each served without delay.
package.path = "./stress/?.lua;" .. package.path
local csock = require "csock"
local S = require "lib"

local TIMEOUT, GOOD, BIG = 2.0, 100, 256 * 1024

local srv = assert(csock.socket(csock.AF_INET, csock.SOCK_STREAM))
assert(srv:bind("127.0.0.1", 0))
assert(srv:listen(512))
local port = srv:getsockname().port

local dropped = {} -- why the server dropped a connection, by the first line's kind
local function handle(c)
  c:settimeout(TIMEOUT)
  while true do
    local line, _, code = c:read("l")
    if not line then
      if code == csock.ETIMEDOUT then dropped.read = (dropped.read or 0) + 1 end
      break
    end
    -- "big" asks for a large answer, anything else for a short one
    local ok, _, wcode = c:write(line == "big" and string.rep("x", BIG) .. "\n" or "ok\n")
    if not ok then
      if wcode == csock.ETIMEDOUT then dropped.write = (dropped.write or 0) + 1 end
      break
    end
  end
  c:close()
end

csock.spawn(function()
  while true do
    local c = srv:accept()
    if not c then return end
    csock.spawn(handle, c)
  end
end)

local function connect()
  local c = assert(csock.socket(csock.AF_INET, csock.SOCK_STREAM))
  c:settimeout(10)
  assert(c:connect("127.0.0.1", port))
  return c
end

-- slowloris: a byte a second; reports when the server hung up on it
local loris = csock.spawn(function()
  local c = connect()
  local t0, sent = csock.now(), 0
  while csock.now() - t0 < 10 do
    local ok = c:send("G")
    if not ok then break end
    sent = sent + 1
    c:settimeout(1)
    local r, err = c:recv(1)
    if r == "" or (not r and err ~= "timeout") then break end -- the server closed it
    c:settimeout(10)
  end
  c:close()
  return csock.now() - t0, sent
end)

-- never reads: asks for big answers as fast as it can and never reads them
local deaf = csock.spawn(function()
  local c = connect()
  local t0 = csock.now()
  c:settimeout(0.5)
  local asked = 0
  while csock.now() - t0 < 10 do
    local ok = c:write("big\n")
    if ok then asked = asked + 1 end
    -- once the server dropped it, the kernel reports the reset or EOF
    local ok2, _, code = c:getpeername()
    if not ok2 or (not ok and code ~= csock.ETIMEDOUT) then break end
    if dropped.write then break end
    csock.sleep(0.05)
  end
  local t = csock.now() - t0
  c:close()
  return t, asked
end)

csock.sleep(0.3) -- both bad peers hold their connections now

-- 100 good clients, all at once
local lat, failures = {}, 0
local goods = {}
for i = 1, GOOD do
  goods[i] = csock.spawn(function()
    local t0 = csock.now()
    local c = connect()
    c:write("hello\n")
    local r = c:read("l")
    c:close()
    if r ~= "ok" then failures = failures + 1 end
    lat[#lat + 1] = csock.now() - t0
  end)
end
for _, t in ipairs(goods) do t:join() end
table.sort(lat)
local p50, pmax = lat[#lat // 2] or 0, lat[#lat] or 0

local _, ltime, lsent = loris:join()
local _, dtime, dasked = deaf:join()
srv:close()

S.row("slowloris", "1 byte/s, no newline; server timeout " .. TIMEOUT .. " s", lsent or 0,
  (dropped.read or 0) >= 1 and ltime and ltime < TIMEOUT + 1.5,
  string.format("dropped by read timeout after %.2f s", ltime or -1))
S.row("never reads", BIG // 1024 .. " KiB answers never read; timeout " .. TIMEOUT .. " s",
  dasked or 0, (dropped.write or 0) >= 1 and dtime and dtime < TIMEOUT + 3,
  string.format("dropped by write timeout after %.2f s", dtime or -1))
S.row("good clients", "served while the two above hang on", GOOD,
  failures == 0 and pmax < 0.25,
  string.format("%d failed; latency median %.1f ms, max %.1f ms", failures, p50 * 1000,
    pmax * 1000))
S.exit()
