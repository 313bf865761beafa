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

local members = {} -- socket -> name
local online = 0

-- Writes happen from the sender's task and may wait, so the room is copied first: other tasks
-- join and leave meanwhile. A member that does not take its lines within the socket's timeout (or
-- whose socket another task is already writing) is dropped rather than allowed to stall the room;
-- a queue and a writer task per member would be kinder, and longer.
local function drop(c)
  if members[c] then
    members[c] = nil
    online = online - 1
  end
  c:close() -- wakes the member's own task, which then leaves quietly
end

local function broadcast(from, line)
  local room = {}
  for c in pairs(members) do
    if c ~= from then room[#room + 1] = c end
  end
  for _, c in ipairs(room) do
    if members[c] and not c:write(line) then drop(c) end
  end
end

local function member(c, addr)
  local name = ("%s:%d"):format(addr.addr, addr.port)
  c:settimeout(5)
  members[c] = name
  online = online + 1
  c:write(("* welcome %s, %d online\n"):format(name, online))
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
