-- ws_chat.lua: a WebSocket chat room on csock.http. Every text message a client sends goes to
-- every client as "<name>: <text>"; GET / serves a page that joins the room from a browser.
--
--   csock examples/ws_chat.lua [port [host]]          (default 7002 127.0.0.1)
--
-- A client is greeted with "* welcome <name>, <n> online"; the others see "* <name> joined" and
-- "* <name> left". Try it in a browser at http://127.0.0.1:7002/, or from a shell with
-- `python3 -m websockets ws://127.0.0.1:7002/chat` or node's `wscat`.
local csock = require "csock"
local http = require "csock.http"

local port = tonumber(arg[1]) or 7002
local host = arg[2] or "127.0.0.1"

-- Each member has an outbox and a writer task, so a broadcast only appends and signals: a slow
-- member never holds up the room, and one whose outbox passes MAX_QUEUED messages is dropped.
local MAX_QUEUED = 1000

local members = {} -- websocket -> {name =, outbox = {texts}, ready = csock.cond()}
local online, serial = 0, 0

local function leave(ws)
  local m = members[ws]
  if not m then return end
  members[ws] = nil
  online = online - 1
  m.ready:signal() -- its writer ends
end

local function broadcast(text, except)
  for ws, m in pairs(members) do
    if ws ~= except then
      if #m.outbox >= MAX_QUEUED then
        leave(ws)
        ws:close(1008, "too slow")
      else
        m.outbox[#m.outbox + 1] = text
        m.ready:signal()
      end
    end
  end
end

local function writer(ws, m)
  while members[ws] == m do
    if #m.outbox == 0 then
      m.ready:wait()
    else
      local out = m.outbox
      m.outbox = {}
      for _, text in ipairs(out) do
        if not ws:send(text) then return leave(ws) end
      end
    end
  end
end

local PAGE = [[<!doctype html><meta charset="utf-8"><title>csock chat</title>
<pre id="log"></pre><input id="msg" autofocus placeholder="say something, then Enter">
<script>
const ws = new WebSocket("ws://" + location.host + "/chat");
const log = (t) => { document.getElementById("log").textContent += t + "\n"; };
ws.onmessage = (e) => log(e.data);
ws.onclose = (e) => log("* closed (" + e.code + ")");
document.getElementById("msg").onkeydown = (e) => {
  if (e.key === "Enter") { ws.send(e.target.value); e.target.value = ""; }
};
</script>
]]

local function chat(req, res)
  if not req.headers["upgrade"] then
    res:header("Content-Type", "text/html; charset=utf-8")
    return res:finish(PAGE)
  end
  local ws = http.websocket(req, res, { max_message = 64 * 1024 })
  if not ws then return end -- a bad upgrade: http.websocket has answered it
  serial = serial + 1
  local m = { name = "guest" .. serial, outbox = {}, ready = csock.cond() }
  members[ws] = m
  online = online + 1
  m.outbox[1] = string.format("* welcome %s, %d online", m.name, online)
  broadcast("* " .. m.name .. " joined", ws)
  local w = csock.spawn(writer, ws, m)
  while true do
    local text, kind = ws:receive()
    if not text then break end
    if kind == "text" then broadcast(m.name .. ": " .. text) end
  end
  if members[ws] then
    leave(ws)
    broadcast("* " .. m.name .. " left")
  end
  w:join()
end

local listener = assert(csock.tcp_listen(host, port))
print(string.format("listening on %s:%d", host, listener:getsockname().port))
io.stdout:flush()
http.serve(listener, chat)
