--[==[
csock.websocket - WebSocket (RFC 6455) over csock sockets, plain or TLS.

csock.http exposes it as http.websocket(req, res [, opts]) (accept below)
and http.websocket_connect(url [, opts]) (connect below); both return a
websocket object:

  ws:send(data [, "text"|"binary"])  one message ("text" by default)
  ws:receive()                       data, "text"|"binary"; fragments joined,
                                     pings answered; after the close (or a
                                     protocol violation, or a lost connection)
                                     nil, "closed", code, reason
  ws:ping([data])                    sends a ping
  ws:close([code [, reason]])        the closing handshake; harmless when closed
  ws:settimeout(seconds)             the socket's timeout for each operation

Frames are parsed here with string.unpack; the bytes of payloads (masking,
UTF-8 checks, SHA-1 and base64 of the handshake) are C's: csock.core.ws.  A
message costs one read for the frame's first two bytes, one for the rest
(length, key and payload together when the length fits in those two bytes),
and one write per frame sent.
]==]
local csock = require "csock"
local wsc = require("csock.core").ws

local byte, char, unpack, format = string.byte, string.char, string.unpack, string.format
local concat, type, tointeger, error, setmetatable = table.concat, type, math.tointeger, error, setmetatable
local frame, unmask, utf8ok = wsc.frame, wsc.unmask, wsc.utf8

local M = {}

local DEFAULT_MAX = 16 * 1024 * 1024
local EPROTO = csock.EPROTO or 71 -- Linux's value, until the core exports it
local OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10
local KIND = { [OP_TEXT] = "text", [OP_BINARY] = "binary" }
local FIN = 0x80

local function argerror(n, fname, msg, level)
  error(format("bad argument #%d to '%s' (%s)", n, fname, msg), (level or 2) + 1)
end

-- ---------------------------------------------------------------- options

local function check_limit(opts, name, fname, argn)
  local v = opts[name]
  if v == nil then return nil end
  local n = tointeger(v)
  if not n or n < 0 then argerror(argn, fname, name .. " must be a non-negative integer", 3) end
  return n
end

local function check_duration(opts, name, fname, argn)
  local v = opts[name]
  if v ~= nil and (type(v) ~= "number" or v ~= v or v < 0) then
    argerror(argn, fname, name .. " must be a non-negative number", 3)
  end
  return v
end

--[[ The options every websocket takes, argument argn of fname (for the
errors).  Unknown fields are left alone: csock.http passes its own tables. ]]
local function check_opts(opts, fname, argn)
  if opts == nil then opts = {} end
  if type(opts) ~= "table" then argerror(argn, fname, "table expected, got " .. type(opts), 2) end
  local o = {
    max_message = check_limit(opts, "max_message", fname, argn) or DEFAULT_MAX,
    timeout = check_duration(opts, "timeout", fname, argn),
    close_timeout = check_duration(opts, "close_timeout", fname, argn) or 5,
  }
  o.max_frame = check_limit(opts, "max_frame", fname, argn) or o.max_message
  local protocols = opts.protocols
  if protocols ~= nil then
    if type(protocols) == "string" then protocols = { protocols } end
    if type(protocols) ~= "table" then argerror(argn, fname, "protocols must be a list of strings", 2) end
    for _, p in ipairs(protocols) do
      if type(p) ~= "string" or not p:find("^[!#$%%&'*+%-.^_`|~%w]+$") then
        argerror(argn, fname, "protocols must be a list of tokens", 2)
      end
    end
  end
  o.protocols = protocols
  return o
end

-- ---------------------------------------------------------------- the object

local WebSocket = {}
WebSocket.__index = WebSocket
WebSocket.__name = "csock.websocket"

-- Releases the write lock of its websocket: a <close> variable, so a task
-- cancelled in the middle of a write does not keep the lock.
local Unlock = {
  __close = function(u)
    local ws = u.ws
    ws.writing = false
    if ws.wwait > 0 then ws.wcond:signal() end
  end,
}

local function new(sock, client, o, protocol)
  sock:settimeout(o.timeout)
  local ws = setmetatable({
    sock = sock,
    client = client, -- a client masks what it sends and gets frames unmasked
    protocol = protocol,
    max_message = o.max_message,
    max_frame = o.max_frame,
    close_timeout = o.close_timeout,
    state = "open", -- then "closing" (our close frame sent), then "closed"
    writing = false,
    wwait = 0,
  }, WebSocket)
  ws.unlock = setmetatable({ ws = ws }, Unlock)
  -- the longest payload of the common frame receive's fast path takes
  ws.small = math.min(125, o.max_frame, o.max_message)
  ws.maskbit = client and 0 or 0x80
  return ws
end

function WebSocket:__tostring()
  return format("websocket (%s%s)", self.state, self.client and ", client" or "")
end

-- The socket is gone: record the code and reason the receive calls report.
local function finish(self, code, reason)
  if self.state ~= "closed" then
    self.state, self.code, self.reason = "closed", code, reason
  end
  self.sock:close()
  return nil, "closed", self.code, self.reason
end

--[[ Writes one frame; one task at a time, as a frame must go out whole.
Another task's frame in progress makes this one wait its turn (inside a
task: outside the loop nothing else can be writing). A failed write
leaves the stream with part of a frame: the connection is lost (1006). ]]
local function send_frame(self, b1, data)
  while self.writing do
    local c = self.wcond or csock.cond()
    self.wcond = c
    self.wwait = self.wwait + 1
    local ok, err = pcall(c.wait, c)
    self.wwait = self.wwait - 1
    if not ok then error(err, 0) end
  end
  if self.state == "closed" then return nil, "closed" end
  self.writing = true
  local _ <close> = self.unlock
  local ok, err, code = self.sock:write(frame(b1, data, self.client))
  if ok then return true end
  finish(self, 1006, err)
  return nil, err, code
end

local function close_payload(code, reason)
  if not code then return "" end
  return char(code >> 8, code & 0xFF) .. (reason or "")
end

-- Sends our close frame (once) and enters "closing".
local function send_close(self, code, reason)
  if self.state ~= "open" then return true end
  self.state = "closing"
  return send_frame(self, FIN | OP_CLOSE, close_payload(code, reason))
end

--[[ After the close frame of a failure: sends nothing more and reads what
the peer still sends until it closes (or close_timeout, or max_message and
1 MiB more), as nginx's lingering close does: closing with unread bytes
would send a reset, which can make the peer lose the close frame before
reading it.  The most common failure is a message just over max_message,
whose rest the peer is still writing: that much must fit. ]]
local function linger(self)
  local sock = self.sock
  sock:shutdown("w")
  sock:settimeout(self.close_timeout)
  local deadline, left = csock.now() + self.close_timeout, self.max_message + (1 << 20)
  repeat
    local data = sock:recv(65536)
    if not data or data == "" then return end
    left = left - #data
  until left <= 0 or csock.now() >= deadline
end

--[[ A protocol violation: a close frame with code (best effort), then the
connection.  RFC 6455 7.1.7 lets an endpoint that fails the connection
drop it without waiting for the peer's close frame. ]]
local function fail(self, code, reason)
  if self.state == "open" then
    self.state = "closing"
    local ok, sent = pcall(send_frame, self, FIN | OP_CLOSE, close_payload(code, reason))
    if ok and sent then linger(self) end
  end
  return finish(self, code, reason)
end

-- ---------------------------------------------------------------- reading frames

--[[ Close codes a peer may send (RFC 6455 7.4 and IANA's registry): 1004,
1005, 1006 and 1015 are reserved, 1016-2999 unassigned, 3000-4999 for
libraries and applications. ]]
local function valid_code(code)
  return (code >= 1000 and code <= 1014 and code ~= 1004 and code ~= 1005 and code ~= 1006)
    or (code >= 3000 and code <= 4999)
end

-- The close code and reason a bad first two bytes of a frame deserve, or nil.
local function header_problem(self, b1, b2)
  if b1 & 0x70 ~= 0 then return 1002, "reserved bits set" end
  local op = b1 & 0x0F
  local masked = b2 >= 0x80
  if op >= OP_CLOSE then
    if op > OP_PONG then return 1002, "unknown opcode " .. op end
    if b1 < FIN then return 1002, "fragmented control frame" end
    if b2 & 0x7F > 125 then return 1002, "control frame longer than 125 bytes" end
  elseif op > OP_BINARY then
    return 1002, "unknown opcode " .. op
  elseif op == OP_CONT then
    if not self.frags then return 1002, "continuation frame with no message to continue" end
  elseif self.frags then
    return 1002, "new message inside a fragmented message"
  end
  if self.client then
    if masked then return 1002, "masked frame from the server" end
  elseif not masked then
    return 1002, "unmasked frame from the client"
  end
  return nil
end

--[[ A message's bytes count against max_message as they are.  Its
fragments also cost memory of their own (a string and a table slot each):
each counts at least FRAG_COST bytes against max_message and FRAG_SLACK
more, so that a flood of tiny (or empty) fragments cannot pile up, while
a message of a few small fragments is as long as its bytes. ]]
local FRAG_COST, FRAG_SLACK = 64, 64 * 1024
local function frag_cost(payload)
  local n = #payload
  return n < FRAG_COST and FRAG_COST or n
end

-- The close code and reason a payload of len bytes deserves, or nil.
local function length_problem(self, len, data)
  if not data then return nil end -- a control frame: 125 bytes at most, checked already
  if len > self.max_frame then
    return 1009, format("frame of %d bytes exceeds max_frame (%d)", len, self.max_frame)
  end
  local frags = self.frags
  if not frags then
    if len > self.max_message then
      return 1009, format("message exceeds max_message (%d bytes)", self.max_message)
    end
  elseif len + self.fbytes > self.max_message then
    return 1009, format("message exceeds max_message (%d bytes)", self.max_message)
  elseif (len < FRAG_COST and FRAG_COST or len) + self.flen > self.max_message + FRAG_SLACK then
    return 1009, format("message of %d fragments exceeds max_message (%d bytes)", #frags + 1,
      self.max_message)
  end
  return nil
end

--[[ The socket read nothing: a timeout keeps every state for the next
receive; the end of the stream or an error is an abnormal closure. ]]
local function read_failed(self, err, code)
  if code == csock.ETIMEDOUT then return nil, err, code end
  return finish(self, 1006, err or "connection closed without a close frame")
end

--[[ Reads one frame: its first byte and its payload (unmasked).  Each step
records what it read in self (h1, h2; then len and key), so a timeout in
the middle of a frame resumes there on the next call.  Returns nil plus
receive's results when the frame cannot be had. ]]
local function read_frame(self)
  local sock = self.sock
  local h1, h2 = self.h1, self.h2
  if not h1 then
    local h, err, code = sock:read(2)
    if not h then return read_failed(self, err, code) end
    if #h < 2 then return finish(self, 1006, "connection closed inside a frame") end
    h1, h2 = byte(h, 1, 2)
    local bad, why = header_problem(self, h1, h2)
    if bad then return fail(self, bad, why) end
    self.h1, self.h2 = h1, h2
  end
  local len, key = self.len, self.key
  if not len then
    len = h2 & 0x7F
    local masked = h2 >= 0x80
    if len >= 126 then
      local ext = len == 126 and 2 or 8
      local h, err, code = sock:read(masked and ext + 4 or ext)
      if not h then return read_failed(self, err, code) end
      if #h < (masked and ext + 4 or ext) then return finish(self, 1006, "connection closed inside a frame") end
      len = unpack(len == 126 and ">I2" or ">i8", h)
      if len < 0 then return fail(self, 1002, "frame length with its high bit set") end
      key = masked and unpack(">I4", h, ext + 1) or false
    else
      key = false
      if masked then key = nil end -- the key comes with the payload
    end
    local bad, why = length_problem(self, len, h1 & 0x0F < OP_CLOSE)
    if bad then return fail(self, bad, why) end
    self.len, self.key = len, key
  end
  local payload
  if key == nil then
    local chunk, err, code = sock:read(4 + len)
    if not chunk then return read_failed(self, err, code) end
    if #chunk < 4 + len then return finish(self, 1006, "connection closed inside a frame") end
    payload = unmask(chunk, unpack(">I4", chunk), 5)
  elseif len == 0 then
    payload = ""
  else
    local err, code
    payload, err, code = sock:read(len)
    if not payload then return read_failed(self, err, code) end
    if #payload < len then return finish(self, 1006, "connection closed inside a frame") end
    if key then payload = unmask(payload, key) end
  end
  self.h1, self.h2, self.len, self.key = nil, nil, nil, nil
  return h1, payload
end

--[[ After both close frames: a server closes the TCP connection at once; a
client waits (up to close_timeout) for the server to close it first, as
RFC 6455 7.1.1 asks, so that the server holds TIME_WAIT. ]]
local function after_close(self)
  if self.client then
    local sock = self.sock
    sock:settimeout(self.close_timeout)
    local deadline = csock.now() + self.close_timeout
    repeat
      local data = sock:recv(4096)
    until not data or data == "" or csock.now() >= deadline
  end
end

-- The peer's close frame: check it, answer it if we did not start the close, end.
local function got_close(self, payload)
  local code, reason = 1005, ""
  if #payload == 1 then return fail(self, 1002, "close frame with a 1-byte payload") end
  if #payload >= 2 then
    code, reason = unpack(">I2", payload), payload:sub(3)
    if not valid_code(code) then return fail(self, 1002, "invalid close code " .. code) end
    if not utf8ok(reason) then return fail(self, 1007, "invalid UTF-8 in the close reason") end
  end
  if self.state == "open" then
    pcall(send_close, self, code ~= 1005 and code or nil, nil)
  end
  self.state, self.code, self.reason = "closed", code, reason
  after_close(self)
  return finish(self, code, reason)
end

-- receive's results when a frame's first two bytes did not come (h: what did).
local function no_header(self, h, err, code)
  if h then return finish(self, 1006, "connection closed inside a frame") end
  return read_failed(self, err, code)
end

--[[ The common frame, a whole text or binary message of up to 125 bytes
(self.small), read with its masking key in one read.  A timeout leaves
the state read_frame resumes from. ]]
local function fast_message(self, h1, len)
  local sock, payload = self.sock, ""
  if self.client then
    if len > 0 then
      local err, code
      payload, err, code = sock:read(len)
      if not payload then
        self.h1, self.h2, self.len, self.key = h1, len, len, false
        return read_failed(self, err, code)
      end
    end
  else
    local chunk, err, code = sock:read(4 + len)
    if not chunk then
      self.h1, self.h2, self.len, self.key = h1, len | 0x80, len, nil
      return read_failed(self, err, code)
    end
    if #chunk < 4 + len then return finish(self, 1006, "connection closed inside a frame") end
    payload = unmask(chunk, unpack(">I4", chunk), 5)
  end
  if #payload < len then return finish(self, 1006, "connection closed inside a frame") end
  if h1 == 0x81 then
    if not utf8ok(payload) then return fail(self, 1007, "invalid UTF-8 in a text message") end
    return payload, "text"
  end
  return payload, "binary"
end

-- A whole message from its last frame (op: the first frame's opcode).
local function message(self, op, data)
  if op == OP_TEXT and not utf8ok(data) then
    return fail(self, 1007, "invalid UTF-8 in a text message")
  end
  return data, KIND[op]
end

--[[ ws:receive(): the next message as data, kind; pings are answered and
pongs dropped on the way.  After the close: nil, "closed", code, reason
(code 1005 when the peer's close frame had none, 1006 when the connection
was lost without one).  A timeout returns nil, "timeout", ETIMEDOUT and
loses nothing. ]]
function WebSocket:receive()
  if self.state == "closed" then return nil, "closed", self.code, self.reason end
  if not self.h1 and not self.frags then
    local h, err, code = self.sock:read(2)
    if not h or #h < 2 then return no_header(self, h, err, code) end
    local h1, h2 = byte(h, 1, 2)
    local len = h2 - self.maskbit
    if (h1 == 0x81 or h1 == 0x82) and len >= 0 and len <= self.small then
      return fast_message(self, h1, len)
    end
    local bad, why = header_problem(self, h1, h2)
    if bad then return fail(self, bad, why) end
    self.h1, self.h2 = h1, h2
  end
  while true do
    local b1, payload, c3, c4 = read_frame(self)
    if not b1 then return nil, payload, c3, c4 end
    local op = b1 & 0x0F
    if op == OP_PING then
      if self.state == "open" then
        if not send_frame(self, FIN | OP_PONG, payload) then -- the connection is lost
          return nil, "closed", self.code, self.reason
        end
      end
    elseif op == OP_CLOSE then
      return got_close(self, payload)
    elseif op ~= OP_PONG then
      if b1 >= FIN and op ~= OP_CONT then return message(self, op, payload) end
      if op ~= OP_CONT then
        self.frags, self.fop, self.flen, self.fbytes = { payload }, op, frag_cost(payload), #payload
      else
        local frags = self.frags
        frags[#frags + 1] = payload
        self.flen, self.fbytes = self.flen + frag_cost(payload), self.fbytes + #payload
        if b1 >= FIN then
          local fop = self.fop
          self.frags, self.fop, self.flen, self.fbytes = nil, nil, nil, nil
          return message(self, fop, concat(frags))
        end
      end
    end
  end
end

local function check_data(data, fname)
  if type(data) ~= "string" then argerror(2, fname, "string expected, got " .. type(data), 3) end
end

--[[ ws:send(data [, kind]): one message as one frame; true, or nil,
"closed" once a close frame went either way, or nil, message, errno when
the connection failed. ]]
function WebSocket:send(data, kind)
  check_data(data, "send")
  local op = OP_TEXT
  if kind == "binary" then
    op = OP_BINARY
  elseif kind ~= nil and kind ~= "text" then
    argerror(3, "send", "invalid option '" .. tostring(kind) .. "'")
  elseif not utf8ok(data) then
    argerror(2, "send", "invalid UTF-8 in a text message")
  end
  if self.state ~= "open" then return nil, "closed" end
  return send_frame(self, FIN | op, data)
end

-- ws:ping([data]): sends a ping (at most 125 bytes); the pong is dropped by receive.
function WebSocket:ping(data)
  data = data or ""
  check_data(data, "ping")
  if #data > 125 then argerror(2, "ping", "ping data longer than 125 bytes") end
  if self.state ~= "open" then return nil, "closed" end
  return send_frame(self, FIN | OP_PING, data)
end

function WebSocket:settimeout(t)
  self.sock:settimeout(t)
  return self
end

--[==[ ws:close([code [, reason]]): sends a close frame (code 1000 unless
given) and waits up to close_timeout for the peer's, unless another task is
receiving: that task sees the peer's close and ends the connection. ]==]
function WebSocket:close(code, reason)
  if code ~= nil then
    local c = tointeger(code)
    if not c or not valid_code(c) then
      argerror(2, "close", "invalid close code " .. tostring(code))
    end
    code = c
  end
  if reason ~= nil then
    if type(reason) ~= "string" then argerror(3, "close", "string expected, got " .. type(reason)) end
    if #reason > 123 then argerror(3, "close", "reason longer than 123 bytes") end
    if not utf8ok(reason) then argerror(3, "close", "reason is not valid UTF-8") end
  end
  if self.state == "closed" then return true end
  if self.state == "open" then
    local ok = send_close(self, code or 1000, reason)
    if not ok then return true end
  end
  self.sock:settimeout(self.close_timeout)
  local deadline = csock.now() + self.close_timeout
  while self.state ~= "closed" and csock.now() < deadline do
    local ok, data, err = pcall(self.receive, self)
    if not ok then
      if tostring(data):find("socket is busy", 1, true) then return true end -- its reader ends it
      error(data, 0)
    end
    if not data and err ~= "closed" then break end
  end
  finish(self, 1006, "no close frame from the peer")
  return true
end

function WebSocket:__close()
  self:close()
end
M.WebSocket = WebSocket

-- A websocket over a socket that already did its handshake (the specs and
-- fuzz/fuzz_ws.c use it; client: whether this end is the client).
function M._wrap(sock, client, opts)
  return new(sock, client, check_opts(opts, "_wrap", 3))
end

-- ---------------------------------------------------------------- handshake helpers

-- Whether the comma-separated header value has token (any letter case).
local function has_token(value, token)
  if not value then return false end
  for item in value:gmatch("[^,]+") do
    if item:match("^%s*(.-)%s*$"):lower() == token then return true end
  end
  return false
end

-- The first protocol of ours the peer offered (opts.protocols order), or nil.
local function choose_protocol(offered, ours)
  if not offered or not ours then return nil end
  for _, p in ipairs(ours) do
    if has_token(offered, p:lower()) then return p end
  end
  return nil
end

-- Why req is not a WebSocket upgrade (RFC 6455 4.2.1), with the status to answer.
local function upgrade_problem(req)
  local h = req.headers
  if req.method ~= "GET" then return "the method must be GET", 400 end
  if req.version ~= "1.1" then return "HTTP/1.1 required", 400 end
  if not has_token(h["upgrade"], "websocket") then return "no Upgrade: websocket", 426 end
  if not has_token(h["connection"], "upgrade") then return "no Connection: Upgrade", 400 end
  if h["sec-websocket-version"] ~= "13" then return "unsupported Sec-WebSocket-Version", 426 end
  local key = h["sec-websocket-key"]
  if not key or #key ~= 24 or not key:find("^[%w+/]+==$") then
    return "bad Sec-WebSocket-Key", 400
  end
  return nil
end

--[[ accept(req, res [, opts]): answers a server request with the upgrade
and returns the websocket over the connection res:detach() gives; a
request that is no upgrade gets 400 (or 426 with the version we speak)
and accept returns nil, message. ]]
function M.accept(req, res, opts)
  if type(req) ~= "table" and type(req) ~= "userdata" then
    argerror(1, "websocket", "request expected, got " .. type(req))
  end
  local o = check_opts(opts, "websocket", 3)
  local why, status = upgrade_problem(req)
  if why then
    res:status(status)
    if status == 426 then
      res:header("Sec-WebSocket-Version", "13")
      res:header("Upgrade", "websocket")
    end
    res:header("Content-Type", "text/plain")
    res:finish("WebSocket upgrade refused: " .. why .. "\n")
    return nil, "websocket upgrade refused: " .. why
  end
  local h = req.headers
  local protocol = choose_protocol(h["sec-websocket-protocol"], o.protocols)
  local sock = res:detach()
  local head = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    .. "Sec-WebSocket-Accept: " .. wsc.accept_key(h["sec-websocket-key"]) .. "\r\n"
    .. (protocol and "Sec-WebSocket-Protocol: " .. protocol .. "\r\n" or "") .. "\r\n"
  local ok, err, code = sock:write(head)
  if not ok then
    sock:close()
    return nil, err, code
  end
  return new(sock, false, o, protocol)
end

-- scheme, host, port, resource of a ws:// or wss:// URL, or nil.
local function parse_url(url)
  local scheme, rest = url:match("^(wss?)://(.*)$")
  if not scheme or url:find("[%s%c]") then return nil end -- blanks would break the request line
  local authority, resource = rest:match("^([^/?#]*)([^#]*)")
  if resource == "" then resource = "/" elseif resource:sub(1, 1) == "?" then resource = "/" .. resource end
  local host, port = authority:match("^%[([%x:.]+)%]:?(%d*)$")
  if not host then host, port = authority:match("^([^:@%[%]]+):?(%d*)$") end
  if not host then return nil end
  port = port ~= "" and tointeger(tonumber(port)) or (scheme == "wss" and 443 or 80)
  if port < 1 or port > 65535 then return nil end
  return scheme, host, port, resource
end

local function connect_socket(scheme, host, port, o, opts)
  if scheme == "ws" then return csock.tcp_connect(host, port, o.timeout) end
  if not csock.tls_connect then
    return nil, "wss: this csock has no TLS (csock.tls_connect)", csock.EPROTONOSUPPORT
  end
  return csock.tls_connect(host, port, {
    timeout = o.timeout, context = opts.tls, insecure = opts.insecure, alpn = opts.alpn,
  })
end

local function request_head(host, port, scheme, resource, key, o, opts)
  local default = (scheme == "ws" and port == 80) or (scheme == "wss" and port == 443)
  local hostname = host:find(":", 1, true) and "[" .. host .. "]" or host
  local t = {
    "GET " .. resource .. " HTTP/1.1",
    "Host: " .. hostname .. (default and "" or ":" .. port),
    "Upgrade: websocket", "Connection: Upgrade",
    "Sec-WebSocket-Key: " .. key, "Sec-WebSocket-Version: 13",
  }
  if o.protocols then t[#t + 1] = "Sec-WebSocket-Protocol: " .. concat(o.protocols, ", ") end
  if opts.origin then t[#t + 1] = "Origin: " .. tostring(opts.origin) end
  if opts.headers then
    for name, value in pairs(opts.headers) do
      local line = tostring(name) .. ": " .. tostring(value)
      if line:find("[\r\n]") then argerror(2, "websocket_connect", "header with a line break", 4) end
      t[#t + 1] = line
    end
  end
  t[#t + 1] = "\r\n"
  return concat(t, "\r\n")
end

local MAX_RESPONSE_LINES = 100

--[[ Reads the server's answer to the upgrade: the status line and headers
(lowercase names, repeated ones joined with ", "); nil, message, code when
it is not a well-formed HTTP/1.1 response head. ]]
local function read_response(sock)
  local status, err, code = sock:read("l")
  if not status then return nil, err or "connection closed during the handshake", code or EPROTO end
  local headers = {}
  for _ = 1, MAX_RESPONSE_LINES do
    local line
    line, err, code = sock:read("l")
    if not line then return nil, err or "connection closed during the handshake", code or EPROTO end
    line = line:gsub("\r$", "")
    if line == "" then return status:gsub("\r$", ""), headers end
    local name, value = line:match("^([^:%s]+):%s*(.-)%s*$")
    if not name then return nil, "websocket handshake: malformed header line", EPROTO end
    name = name:lower()
    headers[name] = headers[name] and headers[name] .. ", " .. value or value
  end
  return nil, "websocket handshake: too many header lines", EPROTO
end

-- Why the server's answer does not accept our upgrade, or nil.
local function response_problem(status, h, key, o)
  if not status:find("^HTTP/1%.1 101[ \r]") and status ~= "HTTP/1.1 101" then
    return "the server answered " .. status:sub(1, 80)
  end
  if not has_token(h["upgrade"], "websocket") then return "no Upgrade: websocket in the answer" end
  if not has_token(h["connection"], "upgrade") then return "no Connection: Upgrade in the answer" end
  if h["sec-websocket-accept"] ~= wsc.accept_key(key) then return "wrong Sec-WebSocket-Accept" end
  if h["sec-websocket-extensions"] then return "an extension we did not offer" end
  local p = h["sec-websocket-protocol"]
  if p and not choose_protocol(p, o.protocols) then return "a subprotocol we did not offer" end
  return nil
end

--[[ connect(url [, opts]): opens a client websocket to a ws:// or wss://
URL; nil, message, code when the connection or the handshake fails. ]]
function M.connect(url, opts)
  if type(url) ~= "string" then argerror(1, "websocket_connect", "string expected, got " .. type(url)) end
  local o = check_opts(opts, "websocket_connect", 2)
  opts = opts or {}
  local scheme, host, port, resource = parse_url(url)
  if not scheme then argerror(1, "websocket_connect", "invalid WebSocket URL '" .. url .. "'") end
  local key = wsc.new_key()
  local head = request_head(host, port, scheme, resource, key, o, opts)
  local sock, err, code = connect_socket(scheme, host, port, o, opts)
  if not sock then return nil, err, code end
  sock:settimeout(o.timeout)
  local ok
  ok, err, code = sock:write(head)
  local status, h
  if ok then status, h, code = read_response(sock) end
  if not status then
    sock:close()
    return nil, h or err, code
  end
  local why = response_problem(status, h, key, o)
  if why then
    sock:close()
    return nil, "websocket handshake: " .. why, EPROTO
  end
  local ws = new(sock, true, o, h["sec-websocket-protocol"])
  ws.headers = h
  return ws
end

return M
