--[[
spec/support/http.lua - helpers of the csock.http specs.

  H.serve(handler, opts, fn [, limit])  runs fn(port, srv) in rt.loop beside an http.server
                                         on 127.0.0.1 port 0; closes the server afterwards
  H.raw(port, bytes [, timeout])         sends bytes on a new connection and returns all the
                                         server sent until it closed (or the timeout passed),
                                         and the error that ended the read, if any
  H.status(text)                         the status code of the first response in text
  H.start_server(args)                   spec/support/http_server.lua in a csock process:
                                         rt.start's {pid =, port = ...}
]]
local csock = require "csock"
local http = require "csock.http"
local rt = require "support.rt"

local H = {}

function H.serve(handler, opts, fn, limit)
  return rt.loop(function()
    local l, port = rt.listener(64)
    local srv = http.server(l, handler, opts)
    local r = table.pack(pcall(fn, port, srv))
    srv:close(0)
    if not r[1] then error(r[2], 0) end
    return table.unpack(r, 2, r.n)
  end, limit)
end

function H.raw(port, bytes, timeout)
  local c = assert(csock.tcp_connect("127.0.0.1", port, timeout or 3))
  if bytes and bytes ~= "" then c:write(bytes) end
  local parts = {}
  local err
  while true do
    local data, e = c:recv(65536)
    if not data then
      err = e
      break
    end
    if data == "" then break end
    parts[#parts + 1] = data
  end
  c:close()
  return table.concat(parts), err
end

function H.status(text)
  return math.tointeger(tonumber(text:match("^HTTP/1%.%d (%d%d%d)")))
end

function H.start_server(args)
  local argv = {rt.BIN, "spec/support/http_server.lua"}
  for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
  return rt.start(argv)
end

return H
