-- chat.lua: a line-based chat room. Every line a client sends goes to every other client.
--
--   csock examples/chat.lua [port [host]]             (default 7001 127.0.0.1)
--
-- A client is greeted with "* welcome <name>, <n> online" once it is in the room; the others see
-- "* <name> joined" and "* <name> left", and each message as "<name>: <line>".
-- Try it with a few `nc 127.0.0.1 7001` in separate terminals.
local csock = require "csock"

local port = tonumber(arg[1]) or 7001
local host = arg[2] or "127.0.0.1"
local family = host:find(":", 1, true) and csock.AF_INET6 or csock.AF_INET

-- Each member has an outbox and a writer task that waits on a condition for lines to send, so a
-- broadcast only appends and signals: a slow member never holds up the room. A sender pauses to
-- let the writers catch up once some outbox holds PAUSE_AT lines; a member whose outbox grows
-- past MAX_QUEUED lines all the same (it does not read) is dropped.
local PAUSE_AT, MAX_QUEUED = 100, 1000

local members = {} -- socket -> {name =, outbox = {lines}, ready = csock.cond()}
local online = 0

local function drop(c)
  local m = members[c]
  if m then
    members[c] = nil
    online = online - 1
    m.ready:signal() -- its writer ends
  end
  c:close() -- wakes the member's reading task, which then leaves quietly
end

-- Queues a line for c; returns how many lines now wait for it.
local function send(c, line)
  local m = members[c]
  if not m then return 0 end
  m.outbox[#m.outbox + 1] = line
  if #m.outbox > MAX_QUEUED then
    drop(c)
    return 0
  end
  m.ready:signal()
  return #m.outbox
end

local function broadcast(from, line)
  local most = 0
  for c in pairs(members) do
    if c ~= from then most = math.max(most, send(c, line)) end
  end
  if most >= PAUSE_AT then csock.sleep(0) end -- the writers run before the sender reads on
end

local function writer(c, m)
  while members[c] == m do
    if #m.outbox == 0 then
      m.ready:wait()
    else
      local lines = table.concat(m.outbox)
      m.outbox = {}
      if not c:write(lines) then return drop(c) end -- gone, or not reading within the timeout
    end
  end
end

local function member(c, addr)
  local name = ("%s:%d"):format(addr.addr, addr.port)
  c:settimeout(5)
  local m = {name = name, outbox = {}, ready = csock.cond()}
  members[c] = m
  online = online + 1
  csock.spawn(writer, c, m)
  send(c, ("* welcome %s, %d online\n"):format(name, online))
  broadcast(c, ("* %s joined\n"):format(name))
  while true do
    local line, _, code = c:read("l")
    if line then
      line = line:gsub("\r$", "")
      if line == "/quit" then break end
      broadcast(c, ("%s: %s\n"):format(name, line))
    elseif code ~= csock.ETIMEDOUT then
      break -- the member left, or was dropped; a quiet member just keeps waiting
    end
  end
  local was_in = members[c] ~= nil
  drop(c)
  if was_in then broadcast(nil, ("* %s left\n"):format(name)) end
end

local server <close> = csock.socket(family, csock.SOCK_STREAM)
assert(server:setsockopt(csock.SOL_SOCKET, csock.SO_REUSEADDR, true))
assert(server:bind(host, port))
assert(server:listen(128))

local me = server:getsockname()
print(("listening on %s:%d"):format(me.addr, me.port))
io.stdout:flush()

while true do
  local c, addr = server:accept()
  if c then
    csock.spawn(member, c, addr)
  else
    io.stderr:write("accept: ", addr, "\n")
    csock.sleep(0.1)
  end
end
