-- static.lua: a static file server on csock.http.
--
--   csock examples/static.lua [root [port [host]]]      (default . 8080 127.0.0.1)
--
-- GET and HEAD of the files under root; a path naming a directory serves its index.html.
-- Files go out in 64 KiB pieces with a Content-Length, so a large file costs a bounded
-- amount of memory. Paths with ".." segments get 400; anything else missing gets 404.
local csock = require "csock"
local http = require "csock.http"

local root = arg[1] or "."
local port, host = tonumber(arg[2]) or 8080, arg[3] or "127.0.0.1"
local PIECE = 64 * 1024

local TYPES = {
  html = "text/html; charset=utf-8", txt = "text/plain; charset=utf-8", css = "text/css",
  js = "text/javascript", json = "application/json", png = "image/png", jpg = "image/jpeg",
  svg = "image/svg+xml", lua = "text/plain; charset=utf-8",
}

local function unescape(path)
  return (path:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

local function fail(res, status, text)
  res:status(status)
  res:header("Content-Type", "text/plain")
  res:finish(text .. "\n")
end

-- An open regular file and its size, or nil.
local function open(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local readable = f:read(0) -- nil for a directory (EISDIR), and for an empty file
  local size = f:seek("end")
  if not size or (not readable and size ~= 0) then
    f:close()
    return nil
  end
  f:seek("set")
  return f, size
end

local function serve(req, res)
  if req.method ~= "GET" and req.method ~= "HEAD" then
    res:header("Allow", "GET, HEAD")
    return fail(res, 405, "method not allowed")
  end
  local path = unescape(req.path)
  if path:find("\0", 1, true) or ("/" .. path .. "/"):find("/%.%./") then
    return fail(res, 400, "bad path")
  end
  if path:sub(-1) == "/" then path = path .. "index.html" end
  local f, size = open(root .. path)
  if not f then return fail(res, 404, "not found") end
  res:header("Content-Type", TYPES[path:match("%.(%w+)$") or ""] or "application/octet-stream")
  res:header("Content-Length", size)
  if req.method == "HEAD" then
    f:close()
    return res:finish()
  end
  while true do
    local piece = f:read(PIECE)
    if not piece then break end
    if not res:write(piece) then break end -- the client went away
  end
  f:close()
  res:finish()
end

local listener = assert(csock.tcp_listen(host, port, 128))
local me = listener:getsockname()
print(("listening on %s:%d"):format(me.addr, me.port))
io.stdout:flush()
http.serve(listener, serve)
