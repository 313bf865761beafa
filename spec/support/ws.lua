--[==[
spec/support/ws.lua - WebSocket peers for spec/websocket_spec.lua.

  W.node_path()             NODE_PATH of the npm `ws` package, installed once into
                            a cache under /tmp (npm must work: no skip)
  W.node_client(url, steps [, protocols [, ca]]) starts node with `ws` as a client
                            running steps (a list of {op, ...}, see CLIENT below); a
                            helper child whose stdout has one line per event
  W.node_server([tls])      starts node with a `ws` echo server (SERVER below), wss://
                            with tls = {cert =, key =}: rt.start's {pid =, port =, ...};
                            rt.stop returns its events
  W.raw_client(port, hex [, shut]) python3: the upgrade, then the frames in hex (no
                            checks of ours; with shut, then the end of its stream), then
                            prints each frame it gets: `op len hex` lines, `close code
                            reason`, then `eof`
  W.raw_server(hex [, accept]) python3: a server that answers one upgrade (with accept as
                            Sec-WebSocket-Accept if given) and sends hex; rt.start's record
  W.frame(b1, payload, opts) a frame built byte by byte in Lua, independent of csock's C:
                            opts.mask (a 4-byte key string, or false), opts.len (a false length)
  W.hex(s), W.unhex(s)
  W.mini_http(sock)         a stand-in for csock.http's req and res over an accepted socket
]==]
local helper = require "helper"
local rt = require "support.rt"

local W = {}

local NODE_CACHE = "/tmp/csock-spec-node-ws-" .. (os.getenv("USER") or "u")

function W.node_path()
  local mod = NODE_CACHE .. "/node_modules"
  local f = io.open(mod .. "/ws/package.json")
  if f then
    f:close()
    return mod
  end
  local r = rt.exec({ "sh", "-c", "mkdir -p " .. rt.q(NODE_CACHE) .. " && cd " .. rt.q(NODE_CACHE)
    .. " && npm install --no-audit --no-fund --no-save ws" }, { limit = 180 })
  assert(r.status == 0, "npm install ws failed (the spec needs the npm registry):\n" .. r.err)
  return mod
end

function W.hex(s)
  return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

function W.unhex(s)
  return (s:gsub("%x%x", function(h) return string.char(tonumber(h, 16)) end))
end

function W.frame(b1, payload, opts)
  opts = opts or {}
  local n = opts.len or #payload
  local mask = opts.mask
  if mask == nil then mask = "\x11\x22\x33\x44" end
  local bit = mask and 0x80 or 0
  local head
  if n >= 0 and n < 126 then
    head = string.char(b1, bit | n)
  elseif n >= 0 and n < 65536 then
    head = string.char(b1, bit | 126) .. string.pack(">I2", n)
  else
    head = string.char(b1, bit | 127) .. string.pack(">I8", n)
  end
  if not mask then return head .. payload end
  local out = {}
  for i = 1, #payload do
    out[i] = string.char(payload:byte(i) ~ mask:byte((i - 1) % 4 + 1))
  end
  return head .. mask .. table.concat(out)
end

local CLIENT = [[
const WebSocket = require('ws');
const steps = JSON.parse(process.argv[3]);
const ws = new WebSocket(process.argv[2], steps.protocols || [], { maxPayload: 64 << 20 });
let got = 0, waiting = null;
const say = (s) => process.stdout.write(s + '\n');
function next() {
  while (steps.list.length) {
    const [op, a, b] = steps.list.shift();
    if (op === 'text') ws.send(a);
    else if (op === 'binary') ws.send(Buffer.from(a, 'hex'), { binary: true });
    else if (op === 'rawtext') ws.send(Buffer.from(a, 'hex'), { binary: false });
    else if (op === 'repeat') ws.send(a.repeat(b));
    else if (op === 'frag') { ws.send(a, { fin: false }); ws.send(b, { fin: true }); }
    else if (op === 'ping') ws.ping(a);
    else if (op === 'close') ws.close(a, b);
    else if (op === 'wait') { if (got < a) { waiting = a; return; } }
  }
}
ws.on('open', () => { say('open ' + ws.protocol); next(); });
ws.on('message', (d, isBinary) => {
  got++;
  say('message ' + (isBinary ? 'binary ' : 'text ') + d.length + ' ' +
      (isBinary ? d.toString('hex') : d.toString()).slice(0, 64));
  if (waiting !== null && got >= waiting) { waiting = null; next(); }
});
ws.on('pong', (d) => say('pong ' + d.toString()));
ws.on('close', (c, r) => { say('close ' + c + ' ' + r.toString()); });
ws.on('error', (e) => say('error ' + e.message));
]]

local SERVER = [[
const { WebSocketServer } = require('ws');
const fs = require('fs');
const opts = { maxPayload: 64 << 20, handleProtocols: (ps) => ps.has('chat') ? 'chat' : false };
let wss;
if (process.env.TLS_KEY) {  // wss: an https server of node's carries the upgrades
  const server = require('https').createServer({ key: fs.readFileSync(process.env.TLS_KEY),
    cert: fs.readFileSync(process.env.TLS_CERT) });
  wss = new WebSocketServer({ server, ...opts });
  server.listen(0, '127.0.0.1', () => console.log('listening on 127.0.0.1:' + server.address().port));
} else {
  wss = new WebSocketServer({ host: '127.0.0.1', port: 0, ...opts });
  wss.on('listening', () => console.log('listening on 127.0.0.1:' + wss.address().port));
}
wss.on('connection', (ws, req) => {
  ws.on('message', (d, isBinary) => {
    const s = d.toString();
    let m;
    if ((m = /^close:(\d+):(.*)$/.exec(s))) ws.close(+m[1], m[2]);
    else if (s === 'frag') { ws.send('ab', { fin: false }); ws.send('cd', { fin: true }); }
    else if ((m = /^ping:(.*)$/.exec(s))) { ws.ping(m[1]); ws.send('pinged'); }
    else if ((m = /^big:(\d+)$/.exec(s))) ws.send('x'.repeat(+m[1]));
    else if (s === 'badutf8') ws.send(Buffer.from([0xc3, 0x28]), { binary: false });
    else if (s === 'whoami') ws.send(req.url + ' ' + ws.protocol + ' ' + req.headers['x-test']);
    else ws.send(d, { binary: isBinary });
  });
  ws.on('pong', (d) => console.log('pong ' + d.toString()));
  ws.on('close', (c, r) => console.log('close ' + c + ' ' + r.toString()));
});
]]

local function node_script(name, text)
  local path = NODE_CACHE .. "/" .. name
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  return path
end

local function json_string(s)
  return '"' .. s:gsub('[%c"\\]', function(c) return string.format("\\u%04x", c:byte()) end) .. '"'
end

local function json(v)
  if type(v) == "table" then
    local t = {}
    for i, x in ipairs(v) do t[i] = json(x) end
    return "[" .. table.concat(t, ",") .. "]"
  elseif type(v) == "string" then
    return json_string(v)
  end
  return tostring(v)
end

-- ca: a CA certificate file node trusts besides its own (for wss://).
function W.node_client(url, steps, protocols, ca)
  local path = W.node_path()
  local script = node_script("client.js", CLIENT)
  local arg = '{"list":' .. json(steps) .. (protocols and ',"protocols":' .. json(protocols) or "") .. "}"
  local env = ca and "NODE_EXTRA_CA_CERTS=" .. rt.q(ca) .. " " or ""
  return helper.spawn(string.format("%sNODE_PATH=%s node %s %s %s", env, rt.q(path), rt.q(script),
    rt.q(url), rt.q(arg)), { foreign = true })
end

-- tls: {cert =, key =} files to serve wss:// instead of ws://.
function W.node_server(tls)
  local path = W.node_path()
  local script = node_script("server.js", SERVER)
  local argv = { "env", "-u", "LD_PRELOAD", "NODE_PATH=" .. path }
  if tls then
    argv[#argv + 1] = "TLS_CERT=" .. tls.cert
    argv[#argv + 1] = "TLS_KEY=" .. tls.key
  end
  argv[#argv + 1] = "node"
  argv[#argv + 1] = script
  return rt.start(argv, { limit = 30 })
end

local RAW_COMMON = [[
import socket, struct, sys
def recvn(s, n):
    b = b''
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            return None
        b += c
    return b
def frames(s):
    while True:
        h = recvn(s, 2)
        if h is None:
            print('eof'); return
        op, n = h[0] & 15, h[1] & 127
        if n == 126: n = struct.unpack('>H', recvn(s, 2))[0]
        elif n == 127: n = struct.unpack('>Q', recvn(s, 8))[0]
        key = recvn(s, 4) if h[1] & 128 else None
        d = recvn(s, n) if n else b''
        if key: d = bytes(x ^ key[i % 4] for i, x in enumerate(d))
        if op == 8:
            code = struct.unpack('>H', d[:2])[0] if len(d) >= 2 else 1005
            print('close %d %s' % (code, d[2:].decode('utf-8', 'replace')), flush=True)
        else:
            print('%d %d %s' % (op, n, d.hex()[:64]), flush=True)
]]

local RAW_CLIENT = RAW_COMMON .. [[
s = socket.create_connection(('127.0.0.1', int(sys.argv[1])))
s.sendall(b'GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n'
          b'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n')
head = b''
while not head.endswith(b'\r\n\r\n'):
    c = s.recv(1)
    if not c: break
    head += c
print(head.split(b'\r\n')[0].decode(), flush=True)
s.sendall(bytes.fromhex(sys.argv[2]))
if len(sys.argv) > 3:
    s.shutdown(socket.SHUT_WR)
frames(s)
]]

local RAW_SERVER = RAW_COMMON .. [[
import base64, hashlib
l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen(1)
print('listening on 127.0.0.1:%d' % l.getsockname()[1], flush=True)
s, _ = l.accept()
head = b''
while not head.endswith(b'\r\n\r\n'):
    head += s.recv(1)
key = [ln.split(b':', 1)[1].strip() for ln in head.split(b'\r\n') if ln.lower().startswith(b'sec-websocket-key:')][0]
acc = base64.b64encode(hashlib.sha1(key + b'258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest()).decode()
if len(sys.argv) > 2: acc = sys.argv[2]
s.sendall(('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n'
           'Sec-WebSocket-Accept: %s\r\n\r\n' % acc).encode() + bytes.fromhex(sys.argv[1]))
frames(s)
]]

-- shut: shut down the sending side after hex (an end of stream without a close frame).
function W.raw_client(port, hex, shut)
  if shut then return helper.spawn_python(RAW_CLIENT, port, hex, "shut") end
  return helper.spawn_python(RAW_CLIENT, port, hex)
end

function W.raw_server(hex, accept)
  local argv = { "env", "-u", "LD_PRELOAD", "python3", "-u", "-c", RAW_SERVER, hex }
  if accept then argv[#argv + 1] = accept end
  return rt.start(argv, { limit = 20 })
end

-- The request head of an accepted socket as csock.http's req, and a res
-- that answers (status, header, finish) or hands the socket over (detach).
function W.mini_http(sock)
  local line = assert(sock:read("l"))
  local method, target, version = line:match("^(%u+) (%S+) HTTP/(%d%.%d)\r$")
  local headers = {}
  while true do
    local l = assert(sock:read("l")):gsub("\r$", "")
    if l == "" then break end
    local n, v = l:match("^([^:]+):%s*(.-)%s*$")
    n = n:lower()
    headers[n] = headers[n] and headers[n] .. ", " .. v or v
  end
  local req = { method = method, path = target, version = version, headers = headers }
  local res = { code = 200, lines = {} }
  function res.status(_, c) res.code = c end
  function res.header(_, n, v) res.lines[#res.lines + 1] = n .. ": " .. v .. "\r\n" end
  function res.finish(_, body)
    sock:write(string.format("HTTP/1.1 %d X\r\n%sContent-Length: %d\r\nConnection: close\r\n\r\n%s",
      res.code, table.concat(res.lines), #body, body))
    sock:close()
  end
  function res.detach() return sock end
  return req, res
end

return W
