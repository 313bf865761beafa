-- WebSocket (RFC 6455, issue 20): csock.websocket's server and client against
-- node's npm `ws` (installed at test time) and python3 raw sockets, and the
-- byte helpers of csock.core.ws against references written apart from them.

local csock = require "csock"
local websocket = require "csock.websocket"
local rt = require "support.rt"
local W = require "support.ws"
local wsc = require("csock.core").ws

local frame, hex = W.frame, W.hex

local function lines_of(text)
  local t = {}
  for l in (text or ""):gmatch("[^\n]+") do t[#t + 1] = l end
  return t
end

--[[ Serves one upgrade on a fresh listener: start(port) starts the peer
(a child), then handler(ws) runs in a loop; returns handler's results and
the peer's output lines. ]]
local function serve(start, handler, opts)
  local l, port = rt.listener()
  local child = start(port)
  local res = table.pack(rt.loop(function()
    local req, r = W.mini_http(assert(l:accept()))
    local ws = assert(websocket.accept(req, r, opts))
    return handler(ws)
  end))
  l:close()
  local _, _, out, err = child:wait()
  return res, lines_of(out), err
end

local function node_serve(steps, handler, opts, protocols)
  return serve(function(port)
    return W.node_client("ws://127.0.0.1:" .. port .. "/", steps, protocols)
  end, handler, opts)
end

local function raw_serve(bytes, handler, opts)
  return serve(function(port) return W.raw_client(port, hex(bytes)) end, handler, opts)
end

-- The next n lines a peer started by rt.start prints (waiting for them: the peer prints an
-- event after csock's side is done with it, so stopping it at once could lose the line).
local function events(proc, n)
  local t = {}
  for i = 1, n do t[i] = proc.pipe:read("l") end
  return t
end

-- Receives until the close; the messages as "kind:data" and the close results.
local function drain(ws)
  local got = {}
  while true do
    local data, kind, code, reason = ws:receive()
    if not data then return got, kind, code, reason end
    got[#got + 1] = kind .. ":" .. data
  end
end

describe("csock.core.ws", function()
  it("computes RFC 6455's example Sec-WebSocket-Accept", function()
    assert.equal("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", wsc.accept_key("dGhlIHNhbXBsZSBub25jZQ=="))
  end)

  it("hashes FIPS 180's SHA-1 test vectors", function()
    assert.equal("a9993e364706816aba3e25717850c26c9cd0d89d", hex(wsc.sha1("abc")))
    assert.equal("da39a3ee5e6b4b0d3255bfef95601890afd80709", hex(wsc.sha1("")))
    assert.equal("84983e441c3bd26ebaae4aa1f95129e5e54670f1",
      hex(wsc.sha1("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")))
    assert.equal("34aa973cd4c4daa4f61eeb2bdbad27316534016f", hex(wsc.sha1(string.rep("a", 1000000))))
  end)

  it("makes 24-character keys that differ", function()
    local a, b = wsc.new_key(), wsc.new_key()
    assert.matches("^[%w+/]+==$", a)
    assert.equal(24, #a)
    assert.are_not.equal(a, b)
  end)

  it("judges UTF-8 as utf8.len (strict) does", function()
    local cases = { "", "plain", "h\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\xf4\x8f\xbf\xbf",
      "\xc3", "\xc3\x28", "\xc0\xaf", "\xe0\x80\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80",
      "\xf8\x88\x80\x80\x80", "\xff", "abcdefgh\x80", string.rep("x", 17) .. "\xe2\x82" }
    for _, s in ipairs(cases) do
      assert.equal(utf8.len(s) ~= nil, wsc.utf8(s), hex(s))
    end
    local pieces = { "a", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\xed\xbf\xbf", "\x80", "\xf5" }
    for _ = 1, 2000 do
      local t = {}
      for i = 1, math.random(0, 12) do
        local p = pieces[math.random(#pieces)]
        if math.random(10) == 1 then p = p:sub(1, math.random(0, #p)) end
        t[i] = p
      end
      local s = table.concat(t)
      assert.equal(utf8.len(s) ~= nil, wsc.utf8(s), hex(s))
    end
  end)

  it("builds frames as RFC 6455 5.2 lays them out, masked or not", function()
    for _, n in ipairs { 0, 5, 125, 126, 65535, 65536 } do
      local data = string.rep("\x5a", n)
      assert.equal(frame(0x82, data, { mask = false }), wsc.frame(0x82, data))
      local f = wsc.frame(0x81, data, true)
      local head = #frame(0x81, data, { mask = false }) - n
      local key = f:sub(head + 1, head + 4)
      assert.equal(frame(0x81, data, { mask = key }), f)
      assert.equal(data, wsc.unmask(f, string.unpack(">I4", key), head + 5))
    end
  end)

  it("rejects bad arguments", function()
    assert.has_error(function() wsc.unmask("abc", -1) end, "bad argument #2 to 'unmask' (key out of range)")
    assert.has_error(function() wsc.unmask("abc", 1, 5) end, "bad argument #3 to 'unmask' (position out of range)")
    assert.has_error(function() wsc.frame(256, "") end, "bad argument #1 to 'frame' (first byte out of range)")
    assert.has_error(function() wsc.utf8(nil) end, "bad argument #1 to 'utf8' (string expected, got nil)")
  end)
end)

describe("websocket server with node's ws as the client", function()
  it("echoes text, binary and a 1 MiB message", function()
    local res, out = node_serve({ { "text", "hello" }, { "binary", "000102ff" }, { "repeat", "z", 1048576 },
      { "wait", 3 }, { "close", 1000, "done" } }, function(ws)
      local got = {}
      while true do
        local data, kind, code, reason = ws:receive()
        if not data then return got, kind, code, reason end
        got[#got + 1] = kind .. ":" .. #data
        assert(ws:send(data, kind))
      end
    end)
    assert.same({ { "text:5", "binary:4", "text:1048576" }, "closed", 1000, "done", n = 4 }, res)
    assert.same({ "open ", "message text 5 hello", "message binary 4 000102ff",
      "message text 1048576 " .. string.rep("z", 64), "close 1000 " }, out)
  end)

  it("joins fragments and answers pings", function()
    local res, out = node_serve({ { "frag", "ab", "cd" }, { "ping", "are you there" }, { "text", "last" },
      { "close", 4000, "bye" } }, drain)
    assert.same({ { "text:abcd", "text:last" }, "closed", 4000, "bye", n = 4 }, res)
    assert.same({ "open ", "pong are you there", "close 4000 " }, out)
  end)

  it("closes with the server's code and reason", function()
    local res, out = node_serve({ { "text", "x" } }, function(ws)
      assert.same({ "x", "text" }, { ws:receive() })
      local closed = ws:close(4001, "done here")
      return closed, ws:receive()
    end)
    assert.same({ true, nil, "closed", 4001, "done here", n = 5 }, res)
    assert.same({ "open ", "close 4001 done here" }, out)
  end)

  it("closes from one task while another receives: the receiver ends the handshake", function()
    local res, out = node_serve({ { "text", "x" } }, function(ws)
      assert.same({ "x", "text" }, { ws:receive() })
      local reader = csock.spawn(function() return ws:receive() end)
      csock.sleep(0.05)
      local closed = ws:close(4005, "from another task")
      return closed, reader:join()
    end)
    assert.same({ true, true, nil, "closed", 4005, "from another task", n = 6 }, res)
    assert.same({ "open ", "close 4005 from another task" }, out)
  end)

  it("closes with 1009 a message over max_message", function()
    local res, out = node_serve({ { "repeat", "m", 2000 } }, function(ws)
      return ws:receive()
    end, { max_message = 1000 })
    local why = "frame of 2000 bytes exceeds max_frame (1000)"
    assert.same({ nil, "closed", 1009, why, n = 4 }, res)
    assert.same({ "open ", "close 1009 " .. why }, out)
  end)

  it("closes with 1009 fragments that add up to more than max_message", function()
    local res, out = node_serve({ { "frag", string.rep("a", 600), string.rep("b", 600) } }, function(ws)
      return ws:receive()
    end, { max_message = 1000 })
    local why = "message exceeds max_message (1000 bytes)"
    assert.same({ nil, "closed", 1009, why, n = 4 }, res)
    assert.same({ "open ", "close 1009 " .. why }, out)
  end)

  it("closes with 1007 a text message that is not UTF-8", function()
    local res, out = node_serve({ { "rawtext", "c328" } }, function(ws)
      return ws:receive()
    end)
    local why = "invalid UTF-8 in a text message"
    assert.same({ nil, "closed", 1007, why, n = 4 }, res)
    assert.same({ "open ", "close 1007 " .. why }, out)
  end)

  it("sends whole frames when many tasks send at once", function()
    local res, out = node_serve({ { "wait", 60 }, { "close", 1000, "" } }, function(ws)
      local tasks = {}
      for t = 1, 6 do
        tasks[t] = csock.spawn(function()
          for i = 1, 10 do assert(ws:send(string.format("%d-%d-", t, i) .. string.rep("w", 20000))) end
        end)
      end
      for _, t in ipairs(tasks) do assert(t:join()) end
      return ws:receive()
    end)
    assert.same({ nil, "closed", 1000, "", n = 4 }, res)
    local count = 0
    for _, l in ipairs(out) do
      if l:find("^message text 2000%d %d+%-%d+%-w+$") then count = count + 1 end
    end
    assert.equal(60, count)
  end)

  it("picks a subprotocol the client offers", function()
    local res, out = node_serve({ { "close", 1000, "" } }, function(ws)
      return ws.protocol, ws:receive()
    end, { protocols = { "superchat", "chat" } }, { "chat", "superchat" })
    assert.same({ "superchat", nil, "closed", 1000, "", n = 5 }, res)
    assert.same({ "open superchat", "close 1000 " }, out)
  end)
end)

describe("websocket client against node's ws server", function()
  local server
  before_each(function() server = W.node_server() end)
  after_each(function() rt.stop(server) end)

  local function url(path) return "ws://127.0.0.1:" .. server.port .. (path or "/") end

  it("sends and receives text and binary, with path, query, headers and subprotocol", function()
    local got = rt.loop(function()
      local ws = assert(websocket.connect(url("/x?y=1"), { protocols = { "chat" }, headers = { ["X-Test"] = "hi" } }))
      assert(ws:send("hello"))
      assert(ws:send("\0\1\255", "binary"))
      assert(ws:send("whoami"))
      local t = {}
      for i = 1, 3 do t[i] = table.concat({ ws:receive() }, "|") end
      t[4] = ws.protocol
      ws:close()
      return t
    end)
    assert.same({ "hello|text", "\0\1\255|binary", "/x?y=1 chat hi|text", "chat" }, got)
    assert.same({ "close 1000 " }, events(server, 1))
  end)

  it("joins fragments and answers pings", function()
    local got = rt.loop(function()
      local ws = assert(websocket.connect(url()))
      assert(ws:send("frag"))
      assert(ws:send("ping:hey"))
      local a, b = ws:receive(), ws:receive()
      ws:close(4003, "client says")
      return { a, b }
    end)
    assert.same({ "abcd", "pinged" }, got)
    assert.same({ "pong hey", "close 4003 client says" }, events(server, 2))
  end)

  it("ends with the server's close code and reason", function()
    local got = table.pack(rt.loop(function()
      local ws = assert(websocket.connect(url()))
      assert(ws:send("close:4002:server says"))
      local a = table.pack(ws:receive())
      return a[1], a[2], a[3], a[4], ws:send("late")
    end))
    assert.same({ nil, "closed", 4002, "server says", nil, "closed", n = 6 }, got)
  end)

  it("closes with 1009 and 1007 on messages too big or not UTF-8", function()
    local got = rt.loop(function()
      local ws = assert(websocket.connect(url(), { max_message = 1000 }))
      assert(ws:send("big:1000"))
      local ok = #ws:receive() == 1000
      assert(ws:send("big:1001"))
      local a = { ws:receive() }
      local ws2 = assert(websocket.connect(url()))
      assert(ws2:send("badutf8"))
      return { ok, a, { ws2:receive() } }
    end)
    assert.same({ true, { nil, "closed", 1009, "frame of 1001 bytes exceeds max_frame (1000)" },
      { nil, "closed", 1007, "invalid UTF-8 in a text message" } }, got)
    local seen = events(server, 2)
    table.sort(seen)
    assert.same({ "close 1007 invalid UTF-8 in a text message",
      "close 1009 frame of 1001 bytes exceeds max_frame (1000)" }, seen)
  end)

  it("returns nil, message, errno when the connection is refused", function()
    local l, port = rt.listener()
    l:close()
    local ws, msg, code = rt.loop(function() return websocket.connect("ws://127.0.0.1:" .. port .. "/") end)
    assert.is_nil(ws)
    assert.equal("Connection refused", msg)
    assert.equal(csock.ECONNREFUSED, code)
  end)
end)

describe("websocket client against a raw python3 server", function()
  it("refuses a wrong Sec-WebSocket-Accept", function()
    local srv = W.raw_server("", "AAAAAAAAAAAAAAAAAAAAAAAAAAA=")
    local ws, msg, code = rt.loop(function() return websocket.connect("ws://127.0.0.1:" .. srv.port .. "/") end)
    rt.stop(srv)
    assert.is_nil(ws)
    assert.equal("websocket handshake: wrong Sec-WebSocket-Accept", msg)
    assert.equal(csock.EPROTO or 71, code)
  end)

  it("closes with 1002 on a masked frame from the server", function()
    local srv = W.raw_server(hex(frame(0x81, "masked")))
    local got = table.pack(rt.loop(function()
      local ws = assert(websocket.connect("ws://127.0.0.1:" .. srv.port .. "/"))
      return ws:receive()
    end))
    local out = events(srv, 1)
    rt.stop(srv)
    assert.same({ nil, "closed", 1002, "masked frame from the server", n = 4 }, got)
    assert.same({ "close 1002 masked frame from the server" }, out)
  end)

  it("reads messages that came with the handshake's answer", function()
    local srv = W.raw_server(hex(frame(0x81, "early", { mask = false }) .. frame(0x88, "\3\232", { mask = false })))
    local got = table.pack(rt.loop(function()
      local ws = assert(websocket.connect("ws://127.0.0.1:" .. srv.port .. "/"))
      local a, b = ws:receive()
      return a, b, ws:receive()
    end))
    rt.stop(srv)
    assert.same({ "early", "text", nil, "closed", 1000, "", n = 6 }, got)
  end)
end)

describe("websocket server against protocol violations (raw python3 client)", function()
  local cases = {
    { "an unmasked frame", frame(0x81, "hi", { mask = false }), 1002, "unmasked frame from the client" },
    { "reserved bits", frame(0xC1, "hi"), 1002, "reserved bits set" },
    { "an unknown opcode", frame(0x83, "hi"), 1002, "unknown opcode 3" },
    { "an unknown control opcode", frame(0x8B, "hi"), 1002, "unknown opcode 11" },
    { "a fragmented ping", frame(0x09, "hi"), 1002, "fragmented control frame" },
    { "a ping over 125 bytes", frame(0x89, string.rep("p", 126)), 1002, "control frame longer than 125 bytes" },
    { "a continuation with no message", frame(0x80, "hi"), 1002, "continuation frame with no message to continue" },
    { "a new message inside a fragmented one", frame(0x01, "a") .. frame(0x81, "b"), 1002,
      "new message inside a fragmented message" },
    { "a close code that may not be sent", frame(0x88, "\3\237"), 1002, "invalid close code 1005" },
    { "a close code out of range", frame(0x88, "\19\136"), 1002, "invalid close code 5000" },
    { "a 1-byte close payload", frame(0x88, "\3"), 1002, "close frame with a 1-byte payload" },
    { "a length with its high bit set", frame(0x82, "", { len = 1 << 63 }), 1002,
      "frame length with its high bit set" },
    { "a frame over max_frame (before its payload comes)", frame(0x82, "", { len = 1 << 20 }), 1009,
      "frame of 1048576 bytes exceeds max_frame (65536)" },
    { "bad UTF-8 across fragments", frame(0x01, "ok\xc3") .. frame(0x80, "\x28"), 1007,
      "invalid UTF-8 in a text message" },
    { "bad UTF-8 in a close reason", frame(0x88, "\3\232\xff"), 1007, "invalid UTF-8 in the close reason" },
  }
  for _, c in ipairs(cases) do
    it("closes with " .. c[3] .. " on " .. c[1], function()
      local res, out = raw_serve(c[2], function(ws) return ws:receive() end, { max_frame = 65536 })
      assert.same({ nil, "closed", c[3], c[4], n = 4 }, res)
      assert.same({ "HTTP/1.1 101 Switching Protocols", "close " .. c[3] .. " " .. c[4], "eof" }, out)
    end)
  end

  for _, c in ipairs {
    { "after a whole frame", frame(0x81, "hi"), { "text:hi" }, "connection closed without a close frame" },
    { "inside a frame's header", frame(0x81, "hi"):sub(1, 1), {}, "connection closed inside a frame" },
    { "inside a frame's payload", frame(0x82, string.rep("p", 300)):sub(1, 100), {},
      "connection closed inside a frame" },
  } do
    it("reports 1006 when the client's stream ends " .. c[1], function()
      local res, out = serve(function(port) return W.raw_client(port, hex(c[2]), true) end, drain)
      assert.same({ c[3], "closed", 1006, c[4], n = 4 }, res)
      assert.same({ "HTTP/1.1 101 Switching Protocols", "eof" }, out)
    end)
  end

  it("joins small fragments up to max_message exactly, and closes with 1009 one byte over", function()
    local function fragments(last)
      local bytes = frame(0x01, "12345")
      for _ = 1, 9 do bytes = bytes .. frame(0x00, "12345") end
      return bytes .. frame(0x80, last)
    end
    local res, out = raw_serve(fragments("end"), function(ws) return ws:receive() end, { max_message = 53 })
    assert.same({ string.rep("12345", 10) .. "end", "text", n = 2 }, res)
    assert.same({ "HTTP/1.1 101 Switching Protocols" }, out)
    res, out = raw_serve(fragments("end!"), function(ws) return ws:receive() end, { max_message = 53 })
    local why = "message exceeds max_message (53 bytes)"
    assert.same({ nil, "closed", 1009, why, n = 4 }, res)
    assert.same({ "HTTP/1.1 101 Switching Protocols", "close 1009 " .. why, "eof" }, out)
  end)

  it("closes with 1009 a flood of empty fragments: each costs 64 bytes past 64 KiB of slack", function()
    local parts = { frame(0x01, "") }
    for i = 2, 1100 do parts[i] = frame(0x00, "") end
    local res, out = raw_serve(table.concat(parts), function(ws) return ws:receive() end, { max_message = 1000 })
    -- 1000 + 65536 bytes of slack hold 1039 fragments of 64
    local why = "message of 1040 fragments exceeds max_message (1000 bytes)"
    assert.same({ nil, "closed", 1009, why, n = 4 }, res)
    assert.same({ "HTTP/1.1 101 Switching Protocols", "close 1009 " .. why, "eof" }, out)
  end)

  it("takes a ping between fragments, a character split across them, and a close with no code", function()
    local bytes = frame(0x01, "caf\xc3") .. frame(0x89, "p1") .. frame(0x80, "\xa9!") .. frame(0x8A, "x")
      .. frame(0x82, "", { len = 0 }) .. frame(0x88, "")
    local res, out = raw_serve(bytes, drain)
    assert.same({ { "text:caf\xc3\xa9!", "binary:" }, "closed", 1005, "", n = 4 }, res)
    assert.same({ "HTTP/1.1 101 Switching Protocols", "10 2 " .. hex("p1"), "close 1005 ", "eof" }, out)
  end)
end)

describe("websocket upgrade requests", function()
  -- curl asking 127.0.0.1:port for /chat with the extra headers, as a child.
  local function curl(port, headers)
    local cmd = "curl -s -i --max-time 5"
    for _, h in ipairs(headers) do cmd = cmd .. " -H " .. rt.q(h) end
    return require("helper").spawn(cmd .. " http://127.0.0.1:" .. port .. "/chat", { foreign = true })
  end

  local good = { "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Version: 13",
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==" }

  local function refused(headers)
    local l, port = rt.listener()
    local child = curl(port, headers)
    local ws, msg = rt.loop(function()
      return websocket.accept(W.mini_http(assert(l:accept())))
    end)
    l:close()
    local _, _, out = child:wait()
    return ws, msg, out
  end

  it("answers 101 with the accept key to curl", function()
    local l, port = rt.listener()
    local child = curl(port, good)
    rt.loop(function()
      local ws = assert(websocket.accept(W.mini_http(assert(l:accept()))))
      ws.sock:close()
    end)
    l:close()
    local _, _, out = child:wait()
    assert.equal("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      .. "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n", out)
  end)

  it("answers 426 with the version it speaks to another version", function()
    local ws, msg, out = refused({ good[1], good[2], "Sec-WebSocket-Version: 8", good[4] })
    assert.is_nil(ws)
    assert.equal("websocket upgrade refused: unsupported Sec-WebSocket-Version", msg)
    assert.matches("^HTTP/1.1 426 ", out)
    assert.matches("\r\nSec%-WebSocket%-Version: 13\r\n", out)
  end)

  it("answers 400 to a request without a key", function()
    local ws, msg, out = refused({ good[1], good[2], good[3] })
    assert.is_nil(ws)
    assert.equal("websocket upgrade refused: bad Sec-WebSocket-Key", msg)
    assert.matches("^HTTP/1.1 400 ", out)
  end)

  it("answers 426 to a plain GET", function()
    local ws, msg, out = refused({})
    assert.is_nil(ws)
    assert.equal("websocket upgrade refused: no Upgrade: websocket", msg)
    assert.matches("^HTTP/1.1 426 ", out)
  end)
end)

describe("websocket timeouts", function()
  it("give nil, timeout, ETIMEDOUT in the middle of a frame and lose nothing", function()
    local got = rt.loop(function(go)
      local l, port = rt.listener()
      local server = go(function()
        local req, r = W.mini_http(assert(l:accept()))
        local ws = assert(websocket.accept(req, r, { timeout = 0.1 }))
        local a = { ws:receive() }
        local b = { ws:receive() }
        local c = { ws:receive() }
        return a, b, c
      end)
      local c = assert(csock.tcp_connect("127.0.0.1", port))
      assert(c:write("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n",
        "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"))
      repeat local line = c:read("l") until line == "\r"
      local f = frame(0x81, string.rep("t", 300))
      assert(c:write(f:sub(1, 3)))
      csock.sleep(0.15)
      assert(c:write(f:sub(4, 9)))
      csock.sleep(0.15)
      assert(c:write(f:sub(10)))
      local _, a, b, cc = server:join()
      return { a, b, cc }
    end)
    assert.same({ { nil, "timeout", csock.ETIMEDOUT }, { nil, "timeout", csock.ETIMEDOUT },
      { string.rep("t", 300), "text" } }, got)
  end)
end)

describe("websocket bad arguments", function()
  local ws
  before_each(function()
    local a = csock.socketpair()
    ws = websocket._wrap(a, false)
  end)

  it("send", function()
    assert.has_error(function() ws:send(nil) end, "bad argument #2 to 'send' (string expected, got nil)")
    assert.has_error(function() ws:send("x", "json") end, "bad argument #3 to 'send' (invalid option 'json')")
    assert.has_error(function() ws:send("\xff") end, "bad argument #2 to 'send' (invalid UTF-8 in a text message)")
  end)

  it("close", function()
    assert.has_error(function() ws:close(1005) end, "bad argument #2 to 'close' (invalid close code 1005)")
    assert.has_error(function() ws:close(1006) end, "bad argument #2 to 'close' (invalid close code 1006)")
    assert.has_error(function() ws:close(1000, string.rep("r", 124)) end,
      "bad argument #3 to 'close' (reason longer than 123 bytes)")
  end)

  it("ping", function()
    assert.has_error(function() ws:ping(string.rep("p", 126)) end,
      "bad argument #2 to 'ping' (ping data longer than 125 bytes)")
  end)

  it("connect", function()
    assert.has_error(function() websocket.connect(42) end,
      "bad argument #1 to 'websocket_connect' (string expected, got number)")
    assert.has_error(function() websocket.connect("http://x/") end,
      "bad argument #1 to 'websocket_connect' (invalid WebSocket URL 'http://x/')")
    assert.has_error(function() websocket.connect("ws://x/", { max_message = -1 }) end,
      "bad argument #2 to 'websocket_connect' (max_message must be a non-negative integer)")
    assert.has_error(function() websocket.connect("ws://x/", { timeout = -1 }) end,
      "bad argument #2 to 'websocket_connect' (timeout must be a non-negative number)")
    assert.has_error(function() websocket.connect("ws://x/", { protocols = { "a b" } }) end,
      "bad argument #2 to 'websocket_connect' (protocols must be a list of tokens)")
    assert.has_error(function() websocket.connect("ws://x/", 5) end,
      "bad argument #2 to 'websocket_connect' (table expected, got number)")
    assert.has_error(function() websocket.connect("ws://x:99999/") end,
      "bad argument #1 to 'websocket_connect' (invalid WebSocket URL 'ws://x:99999/')")
    assert.has_error(function() websocket.connect("ws://x/a\r\nX-Evil: 1") end,
      "bad argument #1 to 'websocket_connect' (invalid WebSocket URL 'ws://x/a\r\nX-Evil: 1')")
  end)

  it("websocket (accept)", function()
    local req = { method = "GET", version = "1.1", headers = {} }
    assert.has_error(function() websocket.accept(req, {}, { max_frame = 1.5 }) end,
      "bad argument #3 to 'websocket' (max_frame must be a non-negative integer)")
    assert.has_error(function() websocket.accept(nil, {}) end,
      "bad argument #1 to 'websocket' (request expected, got nil)")
  end)
end)

describe("websocket through csock.http", function()
  local http = require "csock.http"

  it("upgrades a request of http.server and talks to http.websocket_connect and node", function()
    local l, port = rt.listener()
    local child = W.node_client("ws://127.0.0.1:" .. port .. "/node", { { "text", "from node" }, { "wait", 1 },
      { "close", 1000, "" } })
    local got = rt.loop(function()
      local seen = {}
      local srv = http.server(l, function(req, res)
        local ws = assert(http.websocket(req, res))
        local data, kind = ws:receive()
        seen[#seen + 1] = req.path .. " " .. kind .. " " .. data
        ws:send(req.path .. ": " .. data)
        ws:receive()
      end)
      local ws = assert(http.websocket_connect("ws://127.0.0.1:" .. port .. "/lua"))
      assert(ws:send("from lua"))
      local answer = ws:receive()
      ws:close()
      repeat csock.sleep(0.01) until #seen == 2
      srv:close(1)
      table.sort(seen)
      return { answer, seen }
    end)
    local _, _, out = child:wait()
    assert.same({ "/lua: from lua", { "/lua text from lua", "/node text from node" } }, got)
    assert.same({ "open ", "message text 16 /node: from node", "close 1000 " }, lines_of(out))
  end)

  it("tells a client that sent one byte over the default max_message (16 MiB) 1009", function()
    local l, port = rt.listener()
    local why = "frame of 16777217 bytes exceeds max_frame (16777216)"
    local got = rt.loop(function()
      local server_end
      local srv = http.server(l, function(req, res)
        local ws = assert(http.websocket(req, res))
        server_end = table.pack(ws:receive())
      end)
      local ws = assert(http.websocket_connect("ws://127.0.0.1:" .. port .. "/"))
      local sent = table.pack(ws:send(string.rep("x", 16 * 1024 * 1024 + 1)))
      local client_end = table.pack(ws:receive())
      srv:close(1)
      return { sent, client_end, server_end }
    end, 20)
    assert.same({ { true, n = 1 }, { nil, "closed", 1009, why, n = 4 }, { nil, "closed", 1009, why, n = 4 } }, got)
  end)

  it("gives nil, message, EPROTO when the server answers the upgrade with 404", function()
    local l, port = rt.listener()
    local got = table.pack(rt.loop(function()
      local srv = http.server(l, function(_, res)
        res:status(404)
        res:finish("no such room\n")
      end)
      local ws, msg, code = http.websocket_connect("ws://127.0.0.1:" .. port .. "/room")
      srv:close(1)
      return ws, msg, code
    end))
    assert.same({ nil, "websocket handshake: the server answered HTTP/1.1 404 Not Found", csock.EPROTO, n = 3 }, got)
  end)

  it("connects to an IPv6 literal URL with its Host header bracketed", function()
    if not rt.has_ipv6() then return pending("no ipv6") end
    local l = assert(csock.tcp_listen("::1", 0))
    local port = l:getsockname().port
    local got = rt.loop(function()
      local host
      local srv = http.server(l, function(req, res)
        host = req.headers.host
        local ws = assert(http.websocket(req, res))
        ws:send(ws:receive())
        ws:receive()
      end)
      local ws = assert(http.websocket_connect("ws://[::1]:" .. port))
      assert(ws:send("six"))
      local echo = ws:receive()
      ws:close()
      srv:close(1)
      return { echo, host }
    end)
    assert.same({ "six", "[::1]:" .. port }, got)
  end)

  it("answers 426 through http.server to a GET that is no upgrade (curl)", function()
    local l, port = rt.listener()
    local child = require("helper").spawn("curl -s -i --max-time 5 http://127.0.0.1:" .. port .. "/",
      { foreign = true })
    local got = rt.loop(function()
      local result
      local srv = http.server(l, function(req, res) result = { http.websocket(req, res) } end)
      repeat csock.sleep(0.01) until result
      srv:close(1)
      return result
    end)
    local _, _, out = child:wait()
    assert.same({ nil, "websocket upgrade refused: no Upgrade: websocket" }, got)
    assert.matches("^HTTP/1.1 426 ", out)
    assert.matches("\r\nSec%-WebSocket%-Version: 13\r\n", out)
    assert.matches("\r\n\r\nWebSocket upgrade refused: no Upgrade: websocket\n$", out)
  end)
end)

describe("examples/ws_chat.lua", function()
  it("greets, relays and says who left, to csock and node clients", function()
    local proc = rt.start({ rt.BIN, "examples/ws_chat.lua", 0 })
    rt.defer(finally, function() rt.stop(proc) end)
    assert.matches("^listening on 127%.0%.0%.1:%d+$", proc.line)
    local url = "ws://127.0.0.1:" .. proc.port .. "/chat"
    local got = rt.loop(function()
      local a = assert(websocket.connect(url))
      local t = { a:receive() }
      local b = assert(websocket.connect(url))
      t[#t + 1] = b:receive()
      t[#t + 1] = a:receive()
      assert(a:send("hello from a"))
      t[#t + 1] = a:receive()
      t[#t + 1] = b:receive()
      b:close()
      t[#t + 1] = a:receive()
      a:close()
      return t
    end)
    assert.same({ "* welcome guest1, 1 online", "text", "* welcome guest2, 2 online", "* guest2 joined",
      "guest1: hello from a", "guest1: hello from a", "* guest2 left" }, got)
    local child = W.node_client(url, { { "wait", 1 }, { "text", "from node" }, { "wait", 2 }, { "close", 1000, "" } })
    local _, _, out = child:wait()
    assert.same({ "open ", "message text 26 * welcome guest3, 1 online", "message text 17 guest3: from node",
      "close 1000 " }, lines_of(out))
  end)

  it("serves its page to curl", function()
    local proc = rt.start({ rt.BIN, "examples/ws_chat.lua", 0 })
    rt.defer(finally, function() rt.stop(proc) end)
    local r = rt.exec({ "curl", "-s", "--max-time", "5", "http://127.0.0.1:" .. proc.port .. "/" })
    assert.equal(0, r.status)
    assert.matches('new WebSocket("ws://" + location.host + "/chat")', r.out, 1, true)
  end)
end)

describe("websocket over TLS (wss)", function()
  local http = require "csock.http"
  local certs = require "support.certs"
  teardown(certs.remove)

  it("serves wss through http.server to node and to http.websocket_connect, verified", function()
    local c = certs.make()
    local l, port = rt.listener()
    local child = W.node_client("wss://localhost:" .. port .. "/n", { { "text", "over tls" }, { "wait", 1 },
      { "close", 1000, "" } }, nil, c.ca)
    local got = rt.loop(function()
      local seen = 0
      local srv = http.server(l, function(req, res)
        local ws = assert(http.websocket(req, res))
        local data = ws:receive()
        ws:send(req.path .. " " .. data .. " " .. ws.sock:tlsinfo().version)
        ws:receive()
        seen = seen + 1
      end, { tls = csock.tls_context { mode = "server", certificate = c.server, key = c.key } })
      local ctx = csock.tls_context { cafile = c.ca }
      local ws = assert(http.websocket_connect("wss://localhost:" .. port .. "/lua", { tls = ctx }))
      assert(ws:send("from lua"))
      local answer = ws:receive()
      local verified = ws.sock:tlsinfo().verified
      ws:close()
      repeat csock.sleep(0.01) until seen == 2
      srv:close(1)
      return { answer, verified }
    end, 15)
    local _, _, out = child:wait()
    assert.matches("^/lua from lua TLSv1%.[23]$", got[1])
    assert.is_true(got[2])
    assert.equal("open ", lines_of(out)[1])
    assert.matches("^message text %d+ /n over tls TLSv1%.[23]$", lines_of(out)[2])
    assert.equal("close 1000 ", lines_of(out)[3])
  end)

  it("connects to node's wss server and refuses a certificate it cannot verify", function()
    local c = certs.make()
    local server = W.node_server({ cert = c.server, key = c.key })
    rt.defer(finally, function() rt.stop(server) end)
    local got = rt.loop(function()
      local url = "wss://localhost:" .. server.port .. "/secure"
      local ws = assert(websocket.connect(url, { tls = csock.tls_context { cafile = c.ca } }))
      assert(ws:send("whoami"))
      local who = ws:receive()
      ws:close()
      local none, msg, code = websocket.connect(url)
      return { who, none, msg, code }
    end, 15)
    assert.equal("/secure  undefined", got[1]) -- no subprotocol, no X-Test
    assert.is_nil(got[2])
    assert.matches("certificate verify failed", got[3], 1, true)
    assert.equal(csock.EPROTO, got[4])
  end)
end)
